//! The `gcs` sink: the archive in a Google Cloud Storage bucket.
//!
//! Client crate: the community **`gcloud-storage`** (the crate formerly published
//! as `google-cloud-storage` ≤ 0.24). The name `google-cloud-storage` now belongs
//! to Google's official SDK, which lists objects only over gRPC `google.storage.v2`:
//! no emulator speaks it (fake-gcs-server has the JSON API only), so that SDK
//! could not be tested end to end here. `gcloud-storage` speaks the JSON API —
//! resumable uploads, `ifGenerationMatch`, list with prefix, ranged download —
//! and works both against GCS and fake-gcs-server (`anonymous: true`). All of it
//! is behind [`store::GcsStore`], so swapping the crate touches one file.

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
pub use store::GcsStore;

/// Resumable upload chunks must be multiples of this (GCS rule).
const CHUNK_GRANULE: u64 = 256 * 1024;

/// `type: gcs` options besides the shared archive options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcsOptions {
    /// Bucket the objects go to. Required.
    bucket: String,
    /// Object name prefix; a `/` is appended when missing. Default: none.
    #[serde(default)]
    prefix: String,
    /// JSON API endpoint, e.g. an emulator's `http://127.0.0.1:4443`.
    /// Default: `https://storage.googleapis.com`.
    #[serde(default)]
    endpoint: Option<String>,
    /// Storage class of new objects (`STANDARD`, `NEARLINE`, `COLDLINE`,
    /// `ARCHIVE`). Default: the bucket's default class.
    #[serde(default)]
    storage_class: Option<String>,
    /// Service-account key file (JSON). Default: Application Default Credentials.
    #[serde(default)]
    credentials_path: Option<String>,
    /// Send no credentials at all (emulators, public buckets). Default: false.
    #[serde(default)]
    anonymous: bool,
    /// Resumable-upload chunk: how much of the staging file is read and sent at a
    /// time (bounds memory). Default: 8MiB; a multiple of 256KiB.
    #[serde(default = "default_chunk_size")]
    chunk_size: ByteSize,
}

fn default_chunk_size() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}

/// How [`GcsStore::connect`] authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcsAuth {
    /// No credentials.
    Anonymous,
    /// A service-account key file.
    CredentialsFile(String),
    /// Application Default Credentials.
    Default,
}

/// Everything [`GcsStore::connect`] needs, validated.
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// The sink id, for messages.
    pub sink: String,
    /// Bucket name.
    pub bucket: String,
    /// Name prefix, empty or ending in `/`.
    pub prefix: String,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Storage class of new objects.
    pub storage_class: Option<String>,
    /// Credentials.
    pub auth: GcsAuth,
    /// Resumable upload chunk size in bytes.
    pub chunk_size: u64,
}

#[derive(Debug)]
struct GcsSink {
    gcs: GcsSettings,
    settings: ArchiveSettings,
}

/// Registry entry for `type: gcs`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "gcs",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    Ok(Validated::Sink(Box::new(validate(cx, value)?)))
}

fn validate(cx: &ParseContext, value: serde_yaml::Value) -> Result<GcsSink, Vec<ConfigError>> {
    let (o, settings) = parse_archive_sink::<GcsOptions>(&cx.path, value)?;
    let mut errors = Vec::new();
    if o.bucket.is_empty() {
        errors.push(ConfigError::new(
            join(&cx.path, "bucket"),
            "must name a bucket",
        ));
    }
    let prefix = cloud::parse_prefix(&o.prefix).unwrap_or_else(|e| {
        errors.push(ConfigError::new(join(&cx.path, "prefix"), e));
        String::new()
    });
    let chunk_size = o.chunk_size.get();
    if chunk_size == 0 || chunk_size % CHUNK_GRANULE != 0 {
        errors.push(ConfigError::new(
            join(&cx.path, "chunk_size"),
            "must be a non-zero multiple of 256KiB",
        ));
    }
    let auth = match (o.anonymous, o.credentials_path) {
        (true, Some(_)) => {
            errors.push(ConfigError::new(
                join(&cx.path, "credentials_path"),
                "cannot be used with anonymous: true",
            ));
            GcsAuth::Anonymous
        }
        (true, None) => GcsAuth::Anonymous,
        (false, Some(path)) => GcsAuth::CredentialsFile(path),
        (false, None) => GcsAuth::Default,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GcsSink {
        gcs: GcsSettings {
            sink: cx.id.clone(),
            bucket: o.bucket,
            prefix,
            endpoint: o.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            storage_class: o.storage_class,
            auth,
            chunk_size,
        },
        settings,
    })
}

#[async_trait]
impl ValidatedSink for GcsSink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let store = Arc::new(GcsStore::connect(self.gcs).await?);
        Ok(Box::new(ArchiveSink::new(cx, self.settings, store)?))
    }

    fn archive_layout(&self) -> Option<(String, String)> {
        self.settings.layout()
    }

    async fn open_store(&self) -> Option<anyhow::Result<Arc<dyn ObjectStore>>> {
        Some(
            GcsStore::connect(self.gcs.clone())
                .await
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        )
    }
}

/// The shared classification of a GCS answer, for `archive::cloud`'s table test.
#[cfg(test)]
pub(crate) fn classify_answer_for_tests(
    status: u16,
    code: Option<&str>,
) -> crate::archive::StorageError {
    store::classify_answer(status, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<GcsSettings, String> {
        let cx = ParseContext {
            id: "archive".into(),
            path: "sinks.archive".into(),
        };
        validate(&cx, serde_yaml::from_str(text).unwrap())
            .map(|s| s.gcs)
            .map_err(|e| {
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    #[test]
    fn options_and_defaults() {
        let gcs = check(
            "{bucket: b, prefix: p, endpoint: 'http://x/', storage_class: NEARLINE,
              credentials_path: /k.json, chunk_size: 512KiB}",
        )
        .unwrap();
        assert_eq!(gcs.prefix, "p/");
        assert_eq!(gcs.endpoint.as_deref(), Some("http://x"));
        assert_eq!(gcs.auth, GcsAuth::CredentialsFile("/k.json".into()));
        assert_eq!(gcs.chunk_size, 512 << 10);
        let gcs = check("{bucket: b}").unwrap();
        assert_eq!(gcs.auth, GcsAuth::Default);
        assert_eq!(gcs.chunk_size, 8 << 20);
        assert_eq!(
            check("{bucket: b, anonymous: true}").unwrap().auth,
            GcsAuth::Anonymous
        );
    }

    #[test]
    fn bad_options_name_their_field() {
        let e = check("{bucket: '', chunk_size: 100KiB, anonymous: true, credentials_path: k}")
            .unwrap_err();
        for field in ["bucket", "chunk_size", "credentials_path"] {
            assert!(e.contains(&format!("sinks.archive.{field}")), "{e}");
        }
    }
}
