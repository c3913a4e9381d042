//! The archive writer shared by every archive sink; backends implement
//! [`sediment_core::storage::ObjectStore`] (re-exported here).

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure_blob"))]
pub mod cloud;
pub mod compress;
pub mod config;
pub mod file_store;
pub mod groups;
pub mod member;
pub mod naming;
pub mod recovery;
pub mod staging;
pub mod stream_upload;
pub mod streams;
pub mod upload;
pub mod writer;

pub use config::{parse_archive_sink, ArchiveSettings};
pub use sediment_core::storage::{ObjectInfo, ObjectStore, PutOutcome, StorageError};
pub use writer::ArchiveSink;

#[cfg(test)]
mod tests;
