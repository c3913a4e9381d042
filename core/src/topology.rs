//! Running a validated configuration: channels, tasks, fan-in/fan-out, shutdown.
//!
//! Every transform and sink owns one bounded input channel; each upstream holds a
//! clone of its sender (fan-in), and a component's [`Output`] holds the senders of
//! all its consumers (fan-out). Shutdown flows downstream: sources stop on the
//! shutdown token and drop their outputs; a transform ends when all its inputs are
//! gone; a sink sees its input close, finalises and returns.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::Batch;
use crate::clock::SharedClock;
use crate::component::{BuildContext, ComponentKind, Transform, Validated};
use crate::config::Config;
use crate::metrics::ComponentMetrics;
use crate::output::{BatchReceiver, BatchSender, Output};

/// Batches a component's input channel holds before upstream feels back-pressure.
pub const INPUT_CAPACITY: usize = 8;

/// A started pipeline.
pub struct RunningTopology {
    tasks: JoinSet<(String, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
}

impl RunningTopology {
    /// Builds every component (binding sockets, recovering staging) and starts them.
    pub async fn start(config: Config, clock: SharedClock) -> anyhow::Result<RunningTopology> {
        // 0700: staged logs and state are nobody else's business (an existing
        // folder keeps its mode; the staging folders inside are 0700 anyway).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let mut senders: HashMap<String, BatchSender> = HashMap::new();
        let mut receivers: HashMap<String, BatchReceiver> = HashMap::new();
        for c in config
            .components
            .iter()
            .filter(|c| c.kind != ComponentKind::Source)
        {
            let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
            senders.insert(c.id.clone(), tx);
            receivers.insert(c.id.clone(), rx);
        }
        let output_of = |id: &str| {
            Output::new(
                config
                    .components
                    .iter()
                    .filter(|c| c.inputs.iter().any(|i| i == id))
                    .map(|c| senders[&c.id].clone())
                    .collect(),
            )
        };
        let outputs: HashMap<String, Output> = config
            .components
            .iter()
            .map(|c| (c.id.clone(), output_of(&c.id)))
            .collect();
        drop(senders);

        let shutdown = CancellationToken::new();
        let progress = std::sync::Arc::new(crate::stream::Progress::default());
        let mut tasks = JoinSet::new();
        // Sinks first, then transforms, then sources: nothing produces before its consumers exist.
        let mut ordered: Vec<_> = config.components.into_iter().collect();
        ordered.sort_by_key(|c| match c.kind {
            ComponentKind::Sink => 0,
            ComponentKind::Transform => 1,
            ComponentKind::Source => 2,
        });
        let mut outputs = outputs;
        for c in ordered {
            let cx = BuildContext {
                id: c.id.clone(),
                metrics: ComponentMetrics::new(&c.id, c.kind.as_str(), c.type_name),
                data_dir: config.data_dir.clone(),
                clock: clock.clone(),
                shutdown_timeout: config.shutdown_timeout,
                shutdown: shutdown.clone(),
                progress: progress.clone(),
            };
            let what = format!("{} `{}`", c.kind.as_str(), c.id);
            let id = c.id.clone();
            match c.validated {
                Validated::Sink(v) => {
                    let sink = v
                        .build(&cx)
                        .await
                        .with_context(|| format!("cannot start {what}"))?;
                    let input = receivers
                        .remove(&id)
                        .expect("every sink has an input channel");
                    tasks.spawn(async move { (id, sink.run(input).await) });
                }
                Validated::Transform(v) => {
                    let transform = v.build(&cx);
                    let input = receivers
                        .remove(&id)
                        .expect("every transform has an input channel");
                    let out = outputs.remove(&id).unwrap_or_default();
                    tasks.spawn(async move {
                        (id, run_transform(transform, input, out, cx.metrics).await)
                    });
                }
                Validated::Source(v) => {
                    let source = v
                        .build(&cx)
                        .await
                        .with_context(|| format!("cannot start {what}"))?;
                    let out = outputs.remove(&id).unwrap_or_default();
                    let token = shutdown.child_token();
                    tasks.spawn(async move { (id, source.run(out, token).await) });
                }
            }
        }
        Ok(RunningTopology {
            tasks,
            shutdown,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// Cancelled when the topology starts shutting down, whatever the cause
    /// (`stop` in [`RunningTopology::run_until`] or a failed component).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until `stop` fires or a component fails, then shuts down gracefully.
    ///
    /// Returns the first component error, if any.
    pub async fn run_until(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut first_error = None;
        tokio::select! {
            _ = stop.cancelled() => {}
            Some(done) = self.tasks.join_next() => {
                first_error = component_result(done).err();
            }
        }
        tracing::info!("shutting down: intake stopped, finalising staged data");
        self.shutdown.cancel();
        // Sinks spend up to shutdown_timeout finalising; allow a margin before giving up.
        let deadline = self.shutdown_timeout + Duration::from_secs(10);
        let drain = async {
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = component_result(done) {
                    first_error.get_or_insert(e);
                }
            }
        };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            tracing::error!(timeout = ?deadline, "components did not stop in time; staged data is kept for the next start");
            self.tasks.abort_all();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn component_result(
    done: Result<(String, anyhow::Result<()>), tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match done {
        Ok((_, Ok(()))) => Ok(()),
        Ok((id, Err(e))) => Err(e.context(format!("component `{id}` failed"))),
        Err(e) => Err(anyhow::anyhow!("a component task panicked: {e}")),
    }
}

async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: BatchReceiver,
    out: Output,
    metrics: ComponentMetrics,
) -> anyhow::Result<()> {
    while let Some(Batch {
        mut events,
        ack,
        group,
    }) = input.recv().await
    {
        metrics.received_events.inc_by(events.len() as u64);
        transform.transform(&mut events);
        // An empty part of a group still travels: its group may end with it.
        if events.is_empty() && group.is_none() {
            ack.complete();
            continue;
        }
        metrics.sent_events.inc_by(events.len() as u64);
        let batch = Batch { events, ack, group };
        if out.send(batch).await.is_err() {
            break;
        }
    }
    Ok(())
}
