//! [`AzureBlobStore`]: the five [`ObjectStore`] operations over `azure_storage_blobs` 0.21.
//!
//! - Create-if-absent is `If-None-Match: *` on `Put Blob` (objects up to
//!   `block_size`) or on `Put Block List` (larger ones, whose blocks are staged
//!   one at a time from the staging file, so memory holds one block). Azure
//!   answers `409 BlobAlreadyExists` or `412 ConditionNotMet` for a taken name;
//!   uncommitted blocks of a lost race are garbage-collected by Azure in a week.
//! - The segment id is blob metadata `sediment_segment_id` (Azure metadata names
//!   must be C# identifiers, so no dashes); `head` returns it.
//! - Errors are translated into the shared [`Failure`] and classified and worded
//!   by [`crate::archive::cloud`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::request_options::{IfMatchCondition, Metadata};
use azure_core::{ExponentialRetryOptions, RetryOptions};
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::{
    BlobBlockType, BlobClient, BlockId, BlockList, ClientBuilder, ContainerClient,
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{AzureAuth, AzureBlobSettings};
use crate::archive::cloud::{self, error_chain, storage_error, Call, Failure};
use sediment_core::storage::{
    ByteStream, ListPage, ObjectInfo, ObjectStore, PutOutcome, StorageError,
};

/// The metadata name holding the staging segment id.
pub const SEGMENT_ID_METADATA: &str = "sediment_segment_id";

const WRITE: &str = "write (Put Blob)";

/// An Azure container (and prefix) as an object store.
#[derive(Clone)]
pub struct AzureBlobStore {
    pub(super) container: ContainerClient,
    /// The storage account, for messages.
    account: String,
    pub(super) azure: AzureBlobSettings,
}

impl std::fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("azure", &self.azure)
            .finish()
    }
}

impl AzureBlobStore {
    /// Builds the client from the configured credentials (token credentials refresh themselves).
    pub fn connect(azure: AzureBlobSettings) -> anyhow::Result<AzureBlobStore> {
        let fail = |what: &str, e: azure_core::Error| {
            anyhow::anyhow!(
                "sink {}: {what} for container {}: {e}",
                azure.sink,
                azure.container
            )
        };
        let mut account = azure.account.clone();
        let mut endpoint = azure.endpoint.clone();
        let credentials = match &azure.auth {
            AzureAuth::ConnectionString(text) => {
                let parsed = ConnectionString::new(text)
                    .map_err(|e| fail("the connection string is not valid", e))?;
                if parsed.use_development_storage == Some(true) {
                    account.get_or_insert_with(|| "devstoreaccount1".into());
                    endpoint
                        .get_or_insert_with(|| "http://127.0.0.1:10000/devstoreaccount1".into());
                }
                if let Some(name) = parsed.account_name {
                    account.get_or_insert_with(|| name.to_owned());
                }
                if let Some(blob) = parsed.blob_endpoint {
                    endpoint.get_or_insert_with(|| blob.trim_end_matches('/').to_owned());
                }
                parsed
                    .storage_credentials()
                    .map_err(|e| fail("the connection string has no usable credentials", e))?
            }
            AzureAuth::AccountKey(key) => {
                StorageCredentials::access_key(account.clone().unwrap_or_default(), key.clone())
            }
            AzureAuth::SasToken(token) => {
                StorageCredentials::sas_token(token.trim_start_matches('?'))
                    .map_err(|e| fail("the SAS token is not valid", e))?
            }
            AzureAuth::Identity => StorageCredentials::token_credential(
                azure_identity::create_credential()
                    .map_err(|e| fail("no managed identity or environment credential", e))?,
            ),
        };
        let account = account.ok_or_else(|| {
            anyhow::anyhow!(
                "sink {}: no storage account name for container {}",
                azure.sink,
                azure.container
            )
        })?;
        let location = match endpoint {
            Some(uri) => CloudLocation::Custom {
                account: account.clone(),
                uri,
            },
            None => CloudLocation::Public {
                account: account.clone(),
            },
        };
        // A few quick SDK retries for blips; beyond that the archive uploader retries
        // (forever, with backoff, counted in sediment_upload_retries_total).
        let retry = ExponentialRetryOptions::default()
            .max_retries(2u32)
            .max_total_elapsed(Duration::from_secs(5));
        let container = ClientBuilder::with_location(location, credentials)
            .retry(RetryOptions::exponential(retry))
            .container_client(&azure.container);
        Ok(AzureBlobStore {
            container,
            account,
            azure,
        })
    }

    pub(super) fn blob(&self, key: &str) -> BlobClient {
        self.container
            .blob_client(cloud::full_name(&self.azure.prefix, key))
    }

    pub(super) fn error(&self, permission: &str, e: azure_core::Error) -> StorageError {
        let location = self.location();
        let call = Call {
            sink: &self.azure.sink,
            location: &location,
            permission,
        };
        classify(call, &e)
    }

    fn metadata(segment_id: &str) -> Metadata {
        let mut metadata = Metadata::new();
        metadata.insert(SEGMENT_ID_METADATA, segment_id.to_owned());
        metadata
    }

    /// The outcome of a conditional create: a taken name is not an error.
    fn created(&self, result: azure_core::Result<()>) -> Result<PutOutcome, StorageError> {
        match result {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) => match e.kind() {
                // 412: the If-None-Match condition; 409 BlobAlreadyExists: the same, as
                // some service versions word it. Other 409s (leases…) are real errors.
                ErrorKind::HttpResponse { status, error_code }
                    if *status as u16 == 412
                        || (*status as u16 == 409
                            && error_code.as_deref() == Some("BlobAlreadyExists")) =>
                {
                    Ok(PutOutcome::AlreadyExists)
                }
                _ => Err(self.error(WRITE, e)),
            },
        }
    }
}

#[async_trait]
impl ObjectStore for AzureBlobStore {
    fn location(&self) -> String {
        format!(
            "azure://{}/{}/{}",
            self.account, self.azure.container, self.azure.prefix
        )
    }

    async fn put_if_absent(
        &self,
        key: &str,
        source: &Path,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError> {
        let local = |e: std::io::Error| cloud::staged_file_error(source, e);
        let mut file = tokio::fs::File::open(source).await.map_err(local)?;
        let size = file.metadata().await.map_err(local)?.len();
        let blob = self.blob(key);
        let absent = || IfMatchCondition::NotMatch("*".into());
        if size <= self.azure.block_size {
            let mut body = Vec::with_capacity(size as usize);
            file.read_to_end(&mut body).await.map_err(local)?;
            let put = blob
                .put_block_blob(body)
                .content_type("application/gzip")
                .metadata(Self::metadata(segment_id))
                .if_match(absent())
                .await
                .map(|_| ());
            return self.created(put);
        }
        let mut blocks = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            let length = self.azure.block_size.min(size - offset);
            let mut chunk = vec![0u8; length as usize];
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(local)?;
            file.read_exact(&mut chunk).await.map_err(local)?;
            // Ids must all have the same length within a blob.
            let id = BlockId::new(format!("{segment_id}-{:06}", blocks.len()).into_bytes());
            blob.put_block(id.clone(), chunk)
                .await
                .map_err(|e| self.error(WRITE, e))?;
            blocks.push(BlobBlockType::new_uncommitted(id));
            offset += length;
        }
        let commit = blob
            .put_block_list(BlockList { blocks })
            .content_type("application/gzip")
            .metadata(Self::metadata(segment_id))
            .if_match(absent())
            .await
            .map(|_| ());
        self.created(commit)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self.blob(key).get_properties().await {
            Ok(p) => Ok(Some(ObjectInfo {
                size: p.blob.properties.content_length,
                segment_id: p
                    .blob
                    .metadata
                    .unwrap_or_default()
                    .remove(SEGMENT_ID_METADATA),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("read (Get Blob Properties)", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full = format!("{}{prefix}", self.azure.prefix);
        let mut pages = self.container.list_blobs().prefix(full).into_stream();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list (List Blobs)", e))?;
            for blob in page.blobs.blobs() {
                keys.extend(cloud::key_of(&self.azure.prefix, &blob.name).map(str::to_owned));
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start: Option<String>,
    ) -> Result<ListPage, StorageError> {
        super::read::list_page(self, prefix, start).await
    }

    async fn get_stream(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        super::read::get_stream(self, key, offset).await
    }

    fn reads_for(&self, size: u64) -> u64 {
        super::read::reads_for(size)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.blob(key)
            .get_content()
            .await
            .map_err(|e| self.error("read (Get Blob)", e))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.blob(key).delete().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error("delete (Delete Blob)", e)),
        }
    }
}

fn is_not_found(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { status, .. } if *status as u16 == 404)
}

/// Translates an `azure_core` error into the shared [`Failure`] and words it.
fn classify(call: Call<'_>, e: &azure_core::Error) -> StorageError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let failure = Failure::Answered {
                status: *status as u16,
                code: error_code.as_deref(),
            };
            storage_error(call, failure, "")
        }
        ErrorKind::Credential => storage_error(
            call,
            Failure::Credentials { timed_out: false },
            &format!("no credential token: {}", error_chain(e)),
        ),
        _ => storage_error(call, Failure::NoAnswer, &error_chain(e)),
    }
}

/// [`classify`] of the error `azure_core` gives for an answer `status` with `code`.
#[cfg(test)]
pub(crate) fn classify_answer(status: u16, code: Option<&str>) -> StorageError {
    let status = azure_core::StatusCode::try_from(status).expect("a valid status");
    let kind = ErrorKind::HttpResponse {
        status,
        error_code: code.map(str::to_owned),
    };
    let e = azure_core::Error::message(kind, "the service's message");
    let call = Call {
        sink: "archive",
        location: "azure://a/c/",
        permission: "write (test)",
    };
    classify(call, &e)
}
