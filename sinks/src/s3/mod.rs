//! The `s3` sink: the archive in an Amazon S3 bucket or an S3-compatible store.
//!
//! Only the storage differs from the `file` sink: options are parsed next to the
//! shared archive options, and [`store::S3Store`] implements the five operations
//! of [`ObjectStore`] with the official `aws-sdk-s3`. Credentials come from
//! `aws-config`'s default chain (env, profile, web identity, IMDS), or from
//! static keys, optionally exchanged through STS `AssumeRole`; the SDK's
//! providers cache and refresh credentials on their own, so rotated keys and
//! expiring roles need no restart.

mod read;
mod store;

use std::sync::Arc;

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Sink, Validated, ValidatedSink,
};
use sediment_core::config::{join, ByteSize, ConfigError};
use serde::Deserialize;

use crate::archive::{cloud, parse_archive_sink, ArchiveSettings, ArchiveSink, ObjectStore};
pub use store::S3Store;

/// Smallest part S3 accepts in a multipart upload (except the last one).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3 allows at most this many parts per upload.
const MAX_PARTS: u64 = 10_000;

/// `type: s3` options besides the shared archive options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Options {
    /// Bucket the objects go to. Required.
    bucket: String,
    /// Key prefix inside the bucket; a `/` is appended when missing. Default: none.
    #[serde(default)]
    prefix: String,
    /// AWS region. Default: the default chain's region (`AWS_REGION`, profile,
    /// IMDS), else `us-east-1`.
    #[serde(default)]
    region: Option<String>,
    /// Endpoint URL of an S3-compatible store (MinIO, moto, R2…). Default: AWS.
    #[serde(default)]
    endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Default: true when
    /// `endpoint` is set, else false (virtual-hosted style).
    #[serde(default)]
    force_path_style: Option<bool>,
    /// Static access key id; needs `secret_access_key`. Default: the AWS default
    /// credential chain.
    #[serde(default)]
    access_key_id: Option<String>,
    /// Static secret access key (use `${VAR}`). Default: none.
    #[serde(default)]
    secret_access_key: Option<String>,
    /// Session token of temporary static credentials. Default: none.
    #[serde(default)]
    session_token: Option<String>,
    /// ARN of a role to assume with the credentials above. Default: none.
    #[serde(default)]
    assume_role: Option<String>,
    /// External id required by the role's trust policy. Default: none.
    #[serde(default)]
    external_id: Option<String>,
    /// `AES256` or `aws:kms`. Default: the bucket's default encryption.
    #[serde(default)]
    server_side_encryption: Option<String>,
    /// KMS key for `aws:kms`. Default: the account's `aws/s3` key.
    #[serde(default)]
    kms_key_id: Option<String>,
    /// Storage class (`STANDARD`, `STANDARD_IA`, `GLACIER_IR`…). Default: `STANDARD`.
    #[serde(default)]
    storage_class: Option<String>,
    /// Objects larger than this are uploaded in parts of this size, read from the
    /// staging file one part at a time (bounds memory). Default: 16MiB; at least 5MiB.
    #[serde(default = "default_part_size")]
    part_size: ByteSize,
}

fn default_part_size() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

/// Everything [`S3Store::connect`] needs, validated.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The sink id, for messages.
    pub sink: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// Region override.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Static credentials: access key, secret, session token.
    pub static_keys: Option<(String, String, Option<String>)>,
    /// Role to assume and its external id.
    pub assume_role: Option<(String, Option<String>)>,
    /// Server-side encryption (`AES256` | `aws:kms`).
    pub server_side_encryption: Option<String>,
    /// KMS key id for `aws:kms`.
    pub kms_key_id: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Multipart part size in bytes.
    pub part_size: u64,
}

#[derive(Debug)]
struct S3Sink {
    s3: S3Settings,
    settings: ArchiveSettings,
}

/// Registry entry for `type: s3`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "s3",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    Ok(Validated::Sink(Box::new(validate(cx, value)?)))
}

fn validate(cx: &ParseContext, value: serde_yaml::Value) -> Result<S3Sink, Vec<ConfigError>> {
    let (o, settings) = parse_archive_sink::<S3Options>(&cx.path, value)?;
    let mut errors = Vec::new();
    let mut error = |field: &str, message: &str| {
        errors.push(ConfigError::new(join(&cx.path, field), message));
    };
    if o.bucket.is_empty() {
        error("bucket", "must name a bucket");
    }
    let prefix = cloud::parse_prefix(&o.prefix).unwrap_or_else(|e| {
        error("prefix", &e);
        String::new()
    });
    let static_keys = match (o.access_key_id, o.secret_access_key) {
        (Some(id), Some(secret)) => Some((id, secret, o.session_token)),
        (None, None) => {
            if o.session_token.is_some() {
                error("session_token", "needs access_key_id and secret_access_key");
            }
            None
        }
        (Some(_), None) => {
            error("secret_access_key", "is required with access_key_id");
            None
        }
        (None, Some(_)) => {
            error("access_key_id", "is required with secret_access_key");
            None
        }
    };
    if o.external_id.is_some() && o.assume_role.is_none() {
        error("external_id", "needs assume_role");
    }
    match o.server_side_encryption.as_deref() {
        None | Some("AES256") => {
            if o.kms_key_id.is_some() {
                error("kms_key_id", "needs server_side_encryption: aws:kms");
            }
        }
        Some("aws:kms") => {}
        Some(other) => error(
            "server_side_encryption",
            &format!("must be AES256 or aws:kms, not `{other}`"),
        ),
    }
    if let Some(class) = &o.storage_class {
        let known = aws_sdk_s3::types::StorageClass::values();
        if !known.contains(&class.as_str()) {
            error(
                "storage_class",
                &format!(
                    "unknown storage class `{class}` (known: {})",
                    known.join(", ")
                ),
            );
        }
    }
    let part_size = o.part_size.get();
    if part_size < MIN_PART_SIZE {
        error("part_size", "must be at least 5MiB (the S3 minimum)");
    }
    if settings.max_object_size > part_size.saturating_mul(MAX_PARTS) {
        error(
            "part_size",
            "is too small for max_object_size (S3 allows 10000 parts)",
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let force_path_style = o.force_path_style.unwrap_or(o.endpoint.is_some());
    Ok(S3Sink {
        s3: S3Settings {
            sink: cx.id.clone(),
            bucket: o.bucket,
            prefix,
            region: o.region,
            endpoint: o.endpoint,
            force_path_style,
            static_keys,
            assume_role: o.assume_role.map(|role| (role, o.external_id)),
            server_side_encryption: o.server_side_encryption,
            kms_key_id: o.kms_key_id,
            storage_class: o.storage_class,
            part_size,
        },
        settings,
    })
}

#[async_trait]
impl ValidatedSink for S3Sink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let store = Arc::new(S3Store::connect(self.s3).await);
        Ok(Box::new(ArchiveSink::new(cx, self.settings, store)?))
    }

    fn archive_layout(&self) -> Option<(String, String)> {
        self.settings.layout()
    }

    async fn open_store(&self) -> Option<anyhow::Result<Arc<dyn ObjectStore>>> {
        let store: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(self.s3.clone()).await);
        Some(Ok(store))
    }
}

/// The shared classification of an S3 answer, for `archive::cloud`'s table test.
#[cfg(test)]
pub(crate) fn classify_answer_for_tests(
    status: u16,
    code: Option<&str>,
) -> crate::archive::StorageError {
    store::classify_answer(status, code)
}

#[cfg(test)]
mod tests;
