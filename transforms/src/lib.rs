//! sediment's transforms.
//!
//! # Layout
//! - [`hour_partition`]: assigns each event its UTC hour and marks late arrivals;
//!   archive sinks group staging by this partition.
//! - [`exclude`]: drops events matching exclusion rules written in the query
//!   language of the `sediment-query` crate (`docs/queries.md`).
//!
//! Transforms are synchronous functions over a batch's events; the runtime moves
//! batches and acknowledgements between them.
#![warn(missing_docs)]

pub mod exclude;
pub mod hour_partition;

/// Every transform type of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![hour_partition::factory(), exclude::factory()]
}
