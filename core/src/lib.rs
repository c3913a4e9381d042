//! sediment's core: what every component shares.
//!
//! # Layout
//! - [`event`]: the event (a JSON object with `_id`, `_ts`, `_meta`) and its partition.
//!   An event is JSON text, not a map: the object's bytes in canonical form
//!   (exactly as `serde_json` writes them) plus a small header — the routed
//!   values (`time_ms`, partition, stream position) and where the reserved
//!   fields go (the client's `_id` kept or a fresh one, `_ts` rewritten from
//!   `time_ms`, sediment's `_meta` text). An NDJSON line already in that form
//!   stays a slice of its request's buffer ([`Bytes`], one buffer shared by
//!   the request's batch), so an event in flight costs its bytes plus the
//!   header; the syslog source writes its events' text directly into a
//!   shared arena; anything else is parsed into a map once, stamped and
//!   serialised. The archive line is spliced from the text
//!   ([`Event::write_ndjson`]), byte for byte what serialising the stamped
//!   map gives. Transforms read fields through `sediment_query::Fields`,
//!   parsing only the values a rule looks at.
//! - [`batch`] and [`ack`]: events cross channels in batches that carry an
//!   acknowledgement; it completes only when every sink holding the batch made it
//!   durable, which is what lets the HTTP source answer 200 truthfully.
//! - [`output`]: fan-out to downstream consumers, with all-or-nothing sends for
//!   sources that push back on their clients.
//! - [`config`]: `pipeline.yaml` — interpolation, typed parsing with YAML paths in
//!   every error, topology checks.
//! - [`component`]: the config → validate → build → run contract and the registry of
//!   component types.
//! - [`topology`]: channels and tasks for a validated config, and graceful shutdown.
//! - [`metrics`]: the Prometheus registry and per-component handles.
//! - [`clock`]: time, injectable for tests.
//! - [`retry`]: the backoff every retry loop uses.
//! - [`storage`]: the [`storage::ObjectStore`] trait archive backends implement.
//! - `testing` (feature `testing`, and tests): JSON generators for property tests.
//! - [`stream`]: positions of events in replayable streams (Kafka partitions) and
//!   what archive sinks stored of each, shared by the kafka source and the sinks.
//! - [`tls`]: rustls server and client configurations from PEM files, shared by
//!   every component that speaks TLS.
//! - [`throttle`]: at most one warning per minute for what clients can repeat at
//!   will (failed TLS handshakes, connections over a cap), with a count.
//!
//! Design decisions: channels are bounded ([`topology::INPUT_CAPACITY`] batches), so
//! a slow sink slows its transforms, which makes sources push back; nothing queues
//! without bound. Shutdown flows downstream by closing channels.
#![warn(missing_docs)]

pub mod ack;
pub mod batch;
pub mod clock;
pub mod component;
pub mod config;
pub mod event;
pub mod metrics;
pub mod output;
pub mod retry;
pub mod storage;
pub mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod throttle;
pub mod tls;
pub mod topology;

pub use ack::{Ack, AckWaiter, Outcome};
pub use batch::{Batch, Group, GroupPart};
/// The shared buffer type events keep their text in (see [`event`]).
pub use bytes::Bytes;
pub use event::{Event, Partition};
pub use output::Output;
