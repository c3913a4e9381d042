//! sediment's sources.
//!
//! # Layout
//! - [`http`]: `type: http` — NDJSON/JSON/text bodies and Mezmo's `/logs/ingest`;
//!   replies 200 only once every event of the request is durable.
//! - [`syslog`]: `type: syslog` — RFC 5424/3164 over UDP, TCP or TLS, framing
//!   detected per frame; pushes back through TCP flow control, counts UDP drops.
//! - [`net`]: the TCP listening socket both use (accept queue depth, buffers).
//!
//! A source stamps each event (`_id`, `_ts`, `_meta`) as it is built, sends whole
//! requests (http) or bounded batches (syslog) downstream, and pushes back (503,
//! TCP flow control) rather than queueing without bound.
#![warn(missing_docs)]

pub mod http;
pub mod net;
pub mod syslog;

/// Every source type of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![http::factory(), syslog::factory()]
}
