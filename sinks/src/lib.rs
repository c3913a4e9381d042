//! sediment's sinks.
//!
//! # Layout
//! - [`archive`]: the archive writer every archive sink shares — staging segments of
//!   gzip members in `data_dir` ([`archive::staging`], [`archive::member`]), group
//!   commit ([`archive::writer`]), recovery that keeps every intact member of a
//!   damaged segment ([`archive::recovery`]), object naming ([`archive::naming`]),
//!   verified, idempotent uploads with retries ([`archive::upload`]). A storage
//!   backend implements the narrow [`archive::ObjectStore`] trait (defined in
//!   core); the cloud ones share one retry policy, error wording and prefix rule
//!   ([`archive::cloud`]).
//! - [`file`]: `type: file`, the archive in a local folder.
//! - [`s3`]: `type: s3`, the archive in an S3 bucket (`aws-sdk-s3`); multipart
//!   uploads above `part_size`, conditional create with `If-None-Match: *`.
//! - [`gcs`]: `type: gcs`, the archive in a Google Cloud Storage bucket
//!   (`gcloud-storage`, JSON API); resumable uploads with `ifGenerationMatch=0`.
//! - [`azure_blob`]: `type: azure_blob`, the archive in an Azure Blob container
//!   (`azure_storage_blobs` 0.21); block lists above `block_size`, `If-None-Match: *`.
//!
//!   Each cloud backend sits behind the cargo feature of its name (`s3`, `gcs`,
//!   `azure_blob`, on by default). A build without one still knows the type name,
//!   so a config that uses it gets an error saying how to rebuild, not "unknown type".
//! - [`console`]: `type: console`, NDJSON to stdout.
//! - [`deflate`]: libdeflate compressors kept per thread, for whole-buffer gzip.
//! - [`http`]: `type: http`, batches of archive lines POSTed to any HTTP intake,
//!   acknowledged on `2xx`; its [`http::HttpClient`] also serves restore's HTTP output.
//!
//! Design decisions: an acknowledgement completes only after its events are
//! fsync'd in staging; an object is created only if its name is free, and carries
//! the id of the segment it came from, so a restart never writes a segment twice.
#![warn(missing_docs)]

pub mod archive;
#[cfg(feature = "azure_blob")]
pub mod azure_blob;
pub mod console;
pub mod deflate;
pub mod file;
#[cfg(feature = "gcs")]
pub mod gcs;
pub mod http;
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure_blob")))]
mod left_out;
#[cfg(feature = "s3")]
pub mod s3;

/// Every sink type of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![
        file::factory(),
        #[cfg(feature = "s3")]
        s3::factory(),
        #[cfg(not(feature = "s3"))]
        left_out::s3(),
        #[cfg(feature = "gcs")]
        gcs::factory(),
        #[cfg(not(feature = "gcs"))]
        left_out::gcs(),
        #[cfg(feature = "azure_blob")]
        azure_blob::factory(),
        #[cfg(not(feature = "azure_blob"))]
        left_out::azure_blob(),
        console::factory(),
        http::factory(),
    ]
}
