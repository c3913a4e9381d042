//! sediment's sinks.
//!
//! # Layout
//! - [`archive`]: the archive writer every archive sink shares — staging segments of
//!   gzip members in `data_dir` ([`archive::staging`], [`archive::member`]), group
//!   commit ([`archive::writer`]), object naming ([`archive::naming`]), idempotent
//!   uploads with retries ([`archive::upload`]). A storage backend implements
//!   the narrow [`archive::ObjectStore`] trait (defined in core).
//! - [`file`]: `type: file`, the archive in a local folder.
//! - [`console`]: `type: console`, NDJSON to stdout.
//!
//! Design decisions: an acknowledgement completes only after its events are
//! fsync'd in staging; an object is created only if its name is free, and carries
//! the id of the segment it came from, so a restart never writes a segment twice.
#![warn(missing_docs)]

pub mod archive;
pub mod console;
pub mod file;

/// Every sink type of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![file::factory(), console::factory()]
}
