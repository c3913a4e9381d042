//! The `azure_blob` sink: the archive in an Azure Blob Storage container.
//!
//! Client crate: `azure_storage_blobs` 0.21 (with `azure_storage`, `azure_core`,
//! `azure_identity`). It is deprecated upstream, but its successor
//! (`azure_storage_blob` 1.x) has no shared-key auth yet, which connection strings,
//! account keys and Azurite need. Everything SDK-specific is in
//! [`store::AzureBlobStore`], so a swap is one file.

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
pub use store::AzureBlobStore;

/// Azure allows at most this many blocks per blob.
const MAX_BLOCKS: u64 = 50_000;
/// Largest block Azure accepts.
const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;

/// `type: azure_blob` options besides the shared archive options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureBlobOptions {
    /// Container the blobs go to. Required.
    container: String,
    /// Blob name prefix; a `/` is appended when missing. Default: none.
    #[serde(default)]
    prefix: String,
    /// Storage account name. Required unless `connection_string` names it.
    #[serde(default)]
    account: Option<String>,
    /// Blob service URL (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
    /// Default: `https://{account}.blob.core.windows.net`.
    #[serde(default)]
    endpoint: Option<String>,
    /// A storage connection string (use `${VAR}`). Default: none.
    #[serde(default)]
    connection_string: Option<String>,
    /// Shared account key (use `${VAR}`). Default: none.
    #[serde(default)]
    account_key: Option<String>,
    /// SAS token, with or without the leading `?`. Default: none.
    #[serde(default)]
    sas_token: Option<String>,
    /// Blobs larger than this are staged as blocks of this size, read from the
    /// staging file one at a time, then committed as a block list. Default: 8MiB.
    #[serde(default = "default_block_size")]
    block_size: ByteSize,
}

fn default_block_size() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}

/// How [`AzureBlobStore::connect`] authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// A connection string (credentials and possibly the endpoint).
    ConnectionString(String),
    /// The shared account key.
    AccountKey(String),
    /// A SAS token.
    SasToken(String),
    /// Managed identity / workload identity / environment (`azure_identity`).
    Identity,
}

/// Everything [`AzureBlobStore::connect`] needs, validated.
#[derive(Debug, Clone)]
pub struct AzureBlobSettings {
    /// The sink id, for messages.
    pub sink: String,
    /// Container name.
    pub container: String,
    /// Name prefix, empty or ending in `/`.
    pub prefix: String,
    /// Account name, if given.
    pub account: Option<String>,
    /// Blob service URL override.
    pub endpoint: Option<String>,
    /// Credentials.
    pub auth: AzureAuth,
    /// Block size in bytes.
    pub block_size: u64,
}

#[derive(Debug)]
struct AzureBlobSink {
    azure: AzureBlobSettings,
    settings: ArchiveSettings,
}

/// Registry entry for `type: azure_blob`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "azure_blob",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    Ok(Validated::Sink(Box::new(validate(cx, value)?)))
}

fn validate(
    cx: &ParseContext,
    value: serde_yaml::Value,
) -> Result<AzureBlobSink, Vec<ConfigError>> {
    let (o, settings) = parse_archive_sink::<AzureBlobOptions>(&cx.path, value)?;
    let mut errors = Vec::new();
    let mut error = |field: &str, message: &str| {
        errors.push(ConfigError::new(join(&cx.path, field), message));
    };
    if o.container.is_empty() {
        error("container", "must name a container");
    }
    let prefix = cloud::parse_prefix(&o.prefix).unwrap_or_else(|e| {
        error("prefix", &e);
        String::new()
    });
    let given = [
        o.connection_string.is_some(),
        o.account_key.is_some(),
        o.sas_token.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        error(
            "connection_string",
            "use only one of connection_string, account_key and sas_token",
        );
    }
    let auth = match (o.connection_string, o.account_key, o.sas_token) {
        (Some(c), _, _) => AzureAuth::ConnectionString(c),
        (None, Some(k), _) => AzureAuth::AccountKey(k),
        (None, None, Some(s)) => AzureAuth::SasToken(s),
        (None, None, None) => AzureAuth::Identity,
    };
    // Parsed here, not first at connect: the SDK's parse errors quote the whole
    // connection string or token, account key included.
    match &auth {
        AzureAuth::ConnectionString(c) if azure_storage::ConnectionString::new(c).is_err() => {
            error(
                "connection_string",
                "is not a valid connection string (expected `Key=Value` pairs separated by `;`, such as `AccountName=…;AccountKey=…`)",
            );
        }
        AzureAuth::SasToken(s)
            if azure_storage::StorageCredentials::sas_token(s.trim_start_matches('?')).is_err() =>
        {
            error(
                "sas_token",
                "is not a valid SAS token (expected the query string of a SAS URL, such as `sv=…&sig=…`)",
            );
        }
        _ => {}
    }
    if o.account.is_none() && !matches!(auth, AzureAuth::ConnectionString(_)) {
        error(
            "account",
            "is required unless connection_string names the account",
        );
    }
    let block_size = o.block_size.get();
    if block_size == 0 || block_size > MAX_BLOCK_SIZE {
        error("block_size", "must be between 1 byte and 4000MiB");
    } else if settings.max_object_size > block_size.saturating_mul(MAX_BLOCKS) {
        error(
            "block_size",
            "is too small for max_object_size (Azure allows 50000 blocks)",
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AzureBlobSink {
        azure: AzureBlobSettings {
            sink: cx.id.clone(),
            container: o.container,
            prefix,
            account: o.account,
            endpoint: o.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            auth,
            block_size,
        },
        settings,
    })
}

#[async_trait]
impl ValidatedSink for AzureBlobSink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let store = Arc::new(AzureBlobStore::connect(self.azure)?);
        Ok(Box::new(ArchiveSink::new(cx, self.settings, store)?))
    }

    fn archive_layout(&self) -> Option<(String, String)> {
        self.settings.layout()
    }

    async fn open_store(&self) -> Option<anyhow::Result<Arc<dyn ObjectStore>>> {
        Some(
            AzureBlobStore::connect(self.azure.clone())
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        )
    }
}

/// The shared classification of an Azure answer, for `archive::cloud`'s table test.
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

    fn check(text: &str) -> Result<AzureBlobSettings, String> {
        let cx = ParseContext {
            id: "archive".into(),
            path: "sinks.archive".into(),
        };
        validate(&cx, serde_yaml::from_str(text).unwrap())
            .map(|s| s.azure)
            .map_err(|e| {
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    #[test]
    fn options_and_defaults() {
        let a = check("{container: c, prefix: p, account: acct, sas_token: '?sv=1', endpoint: 'http://x/acct/'}")
            .unwrap();
        assert_eq!(a.prefix, "p/");
        assert_eq!(a.auth, AzureAuth::SasToken("?sv=1".into()));
        assert_eq!(a.endpoint.as_deref(), Some("http://x/acct"));
        assert_eq!(a.block_size, 8 << 20);
        assert_eq!(
            check("{container: c, account: a}").unwrap().auth,
            AzureAuth::Identity
        );
        let a = check("{container: c, connection_string: 'AccountName=a;AccountKey=k'}").unwrap();
        assert!(matches!(a.auth, AzureAuth::ConnectionString(_)));
    }

    #[test]
    fn bad_options_name_their_field() {
        let e = check("{container: '', account_key: k, sas_token: s, block_size: 0B}").unwrap_err();
        for field in ["container", "connection_string", "account", "block_size"] {
            assert!(e.contains(&format!("sinks.archive.{field}")), "{e}");
        }
    }
}
