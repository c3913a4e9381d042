//! sediment's sources.
//!
//! # Layout
//! - [`http`]: `type: http` — NDJSON/JSON/text bodies and Mezmo's `/logs/ingest`;
//!   replies 200 only once every event of the request is durable.
//!
//! A source stamps each event (`_id`, `_ts`, `_meta`) as it is built, sends whole
//! requests as one batch, and pushes back (503) rather than queueing without bound.
#![warn(missing_docs)]

pub mod http;

/// Every source type of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![http::factory()]
}
