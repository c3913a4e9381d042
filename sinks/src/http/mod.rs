//! The `http` sink: forwards events to any HTTP log intake (another sediment, a
//! search system), batched and compressed, acknowledged only on `2xx`.
//!
//! - [`config`]: the options and their validation into [`ClientSettings`] and
//!   [`BatchSettings`].
//! - [`client`]: [`HttpClient`], one request with its retries (batch → request →
//!   retry). `sediment restore --output URL` uses it too.
//! - [`sink`]: the task loop: batching by events, bytes and time, `concurrency`
//!   requests in flight, acknowledgements, shutdown.
//!
//! Delivery: a batch's acknowledgement completes on `2xx`. `408`, `429`, `5xx`,
//! timeouts and connection errors are retried without limit while the pipeline
//! runs, honouring `Retry-After`; any other status refuses the batch for good
//! (its acknowledgement is rejected, the events counted as discarded with
//! `reason="rejected"`, the answer logged once a minute). While every request
//! slot is busy the sink reads no input, so back-pressure reaches the sources.

pub mod client;
pub mod config;
pub mod sink;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Sink, Validated, ValidatedSink,
};
use sediment_core::config::ConfigError;

pub use client::{HttpClient, Payload, SendError};
pub use config::{BatchSettings, ClientSettings, Compression, Encoding};

/// Registry entry for `type: http`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "http",
        parse,
    }
}

/// A validated `http` sink.
#[derive(Debug)]
struct HttpSinkConfig {
    client: ClientSettings,
    batch: BatchSettings,
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let (client, batch) = config::parse(&cx.path, value)?;
    Ok(Validated::Sink(Box::new(HttpSinkConfig { client, batch })))
}

#[async_trait]
impl ValidatedSink for HttpSinkConfig {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let client = HttpClient::new(&cx.id, self.client, cx.metrics.http_sink())?;
        Ok(Box::new(sink::HttpSink::new(client, self.batch, cx)))
    }
}
