//! The narrow trait every archive storage backend implements.
//!
//! A backend only stores and finds objects; batching, naming, compression and
//! retries live once, in the archive writer (`sediment-sinks`). The trait lives in
//! core so that commands outside the data path (`check-storage`, `restore`) can
//! reach a sink's storage through [`crate::component::ValidatedSink::open_store`].

use std::path::Path;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// What sediment knows about an object it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The staging segment the object was made from, when sediment wrote it.
    pub segment_id: Option<String>,
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key, relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The provider's storage class or access tier, when it reports one.
    pub storage_class: Option<String>,
    /// It cannot be read without a separate restore first (S3 `GLACIER` and
    /// `DEEP_ARCHIVE`, Azure's `Archive` tier).
    pub cold: bool,
}

/// One page of a listing and where the next one starts.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects of this page, in key order.
    pub objects: Vec<ListedObject>,
    /// Pass to [`ObjectStore::list_page`] for the next page; `None` on the last.
    pub next: Option<String>,
}

/// An object's bytes as they arrive, in chunks.
pub type ByteStream = BoxStream<'static, Result<bytes::Bytes, StorageError>>;

/// Outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// Another object already has that key; nothing was written.
    AlreadyExists,
}

/// A storage failure, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Worth retrying soon: timeouts, resets, 5xx, throttling.
    #[error("{0}")]
    Transient(String),
    /// Needs an operator (permissions, missing bucket); still retried, less noisily.
    #[error("{0}")]
    Permanent(String),
}

/// Put-if-absent, list, get and head: all a backend provides.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where objects go, for messages (`file:///srv/archive`, `s3://bucket/prefix`).
    fn location(&self) -> String;

    /// Creates `key` from the file at `source` only if no object has that key.
    /// `segment_id` is stored with the object so [`ObjectStore::head`] can return it.
    async fn put_if_absent(
        &self,
        key: &str,
        source: &Path,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError>;

    /// The object at `key`, if any.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;

    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// The whole content of `key`.
    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;

    /// One page of the objects whose keys start with `prefix`, in key order,
    /// from `start` (a previous page's `next`). Pages are the provider's own
    /// (at most about a thousand objects), so a listing is never held whole.
    async fn list_page(
        &self,
        prefix: &str,
        start: Option<String>,
    ) -> Result<ListPage, StorageError>;

    /// The content of `key` from byte `offset` on, streamed: never the whole
    /// object in memory.
    async fn get_stream(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError>;

    /// How many requests reading an object of `size` bytes makes.
    fn reads_for(&self, _size: u64) -> u64 {
        1
    }

    /// Deletes `key`; an absent key is not an error. Only `check-storage` calls it,
    /// for its own verification object: archive objects are never deleted.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}
