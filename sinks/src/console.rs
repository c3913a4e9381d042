//! The `console` sink: NDJSON to standard output, for debugging and pipes.

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Sink, Validated, ValidatedSink,
};
use sediment_core::config::{parse_typed, ConfigError};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::output::BatchReceiver;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// `type: console` has no options of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleOptions {}

#[derive(Debug)]
struct ConsoleSink {
    metrics: Option<ComponentMetrics>,
}

/// Registry entry for `type: console`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "console",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    parse_typed::<ConsoleOptions>(&cx.path, value)?;
    Ok(Validated::Sink(Box::new(ConsoleSink { metrics: None })))
}

#[async_trait]
impl ValidatedSink for ConsoleSink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(ConsoleSink {
            metrics: Some(cx.metrics.clone()),
        }))
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn run(self: Box<Self>, mut input: BatchReceiver) -> anyhow::Result<()> {
        let metrics = self.metrics.expect("built sinks have metrics");
        let mut stdout = tokio::io::stdout();
        let mut buf = Vec::new();
        while let Some(batch) = input.recv().await {
            metrics.received_events.inc_by(batch.len() as u64);
            buf.clear();
            batch.events.iter().for_each(|e| e.write_ndjson(&mut buf));
            match stdout.write_all(&buf).await.and(stdout.flush().await) {
                Ok(()) => {
                    metrics.sent_events.inc_by(batch.len() as u64);
                    batch.ack.complete();
                }
                Err(e) => {
                    metrics.errors("stdout_write").inc();
                    anyhow::bail!("cannot write to standard output: {e}");
                }
            }
        }
        Ok(())
    }
}
