//! The `http` sink's task loop: batches → requests, `concurrency` at once.
//!
//! Input batches are serialised to archive lines on the blocking pool, then cut
//! into requests of at most `max_events` events and `max_bytes` bytes; a
//! request also leaves when its first event has waited `batch.timeout`. An
//! input batch split over several requests completes its acknowledgement only
//! when all of them are delivered (each request holds a clone of it).
//!
//! A request takes a slot of `concurrency` before it is built; while every slot
//! is busy (in flight or waiting to retry) the loop reads no input, so memory
//! stays at about `concurrency × max_bytes` plus the input channel, and
//! back-pressure reaches the sources.
//!
//! Shutdown: from the moment the topology starts shutting down, requests have
//! `shutdown_timeout` to be delivered; then retries stop and the acknowledgements
//! of what is undelivered fail (an HTTP sender of sediment gets no `200` for it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sediment_core::component::{BuildContext, Sink};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::output::BatchReceiver;
use sediment_core::{Ack, Batch, Event};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{HttpClient, SendError};
use super::config::BatchSettings;

/// A running `http` sink.
pub struct HttpSink {
    client: HttpClient,
    batch: BatchSettings,
    metrics: ComponentMetrics,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
}

/// The request being filled.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    events: usize,
    acks: Vec<Ack>,
    /// When it must leave, set by its first event.
    deadline: Option<Instant>,
}

/// One input batch as archive lines.
struct Serialised {
    lines: Vec<u8>,
    /// End offset of each line in `lines`.
    ends: Vec<usize>,
    ack: Ack,
}

impl HttpSink {
    /// A sink sending through `client`.
    pub fn new(client: HttpClient, batch: BatchSettings, cx: &BuildContext) -> HttpSink {
        HttpSink {
            client,
            batch,
            metrics: cx.metrics.clone(),
            shutdown: cx.shutdown.clone(),
            shutdown_timeout: cx.shutdown_timeout,
        }
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn run(self: Box<Self>, mut input: BatchReceiver) -> anyhow::Result<()> {
        let this = *self;
        let slots = Arc::new(Semaphore::new(this.client_concurrency()));
        let give_up = CancellationToken::new();
        tokio::spawn(give_up_after_shutdown(
            this.shutdown.clone(),
            this.shutdown_timeout,
            give_up.clone(),
        ));
        let mut requests = JoinSet::new();
        let mut pending = Pending::default();
        loop {
            let deadline = pending.deadline;
            tokio::select! {
                batch = input.recv() => {
                    let Some(batch) = batch else { break };
                    this.metrics.received_events.inc_by(batch.len() as u64);
                    let serialised = serialise(batch).await?;
                    this.add(serialised, &mut pending, &slots, &mut requests, &give_up).await;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    this.flush(&mut pending, &slots, &mut requests, &give_up).await;
                }
            }
            while requests.try_join_next().is_some() {}
        }
        this.flush(&mut pending, &slots, &mut requests, &give_up)
            .await;
        while requests.join_next().await.is_some() {}
        Ok(())
    }
}

impl HttpSink {
    fn client_concurrency(&self) -> usize {
        self.client.concurrency()
    }

    /// Adds a batch's lines to the pending request, sending each one that fills.
    async fn add(
        &self,
        batch: Serialised,
        pending: &mut Pending,
        slots: &Arc<Semaphore>,
        requests: &mut JoinSet<()>,
        give_up: &CancellationToken,
    ) {
        let Serialised { lines, ends, ack } = batch;
        if ends.is_empty() {
            ack.complete();
            return;
        }
        if pending.events == 0
            && ends.len() <= self.batch.max_events
            && lines.len() <= self.batch.max_bytes
        {
            // The usual case, a batch that is a request of its own: its
            // buffer is the request's, not copied line by line.
            pending.deadline = Some(Instant::now() + self.batch.timeout);
            pending.events = ends.len();
            pending.lines = lines;
        } else {
            let mut start = 0;
            // Whether some of this batch's lines are in `pending` (then a flush takes a clone of its ack).
            let mut holds_this_batch = false;
            for end in ends {
                let line = &lines[start..end];
                start = end;
                let full = pending.events >= self.batch.max_events
                    || pending.lines.len() + line.len() > self.batch.max_bytes;
                if pending.events > 0 && full {
                    if holds_this_batch {
                        pending.acks.push(ack.clone());
                    }
                    self.flush(pending, slots, requests, give_up).await;
                }
                if pending.events == 0 {
                    pending.deadline = Some(Instant::now() + self.batch.timeout);
                }
                pending.lines.extend_from_slice(line);
                pending.events += 1;
                holds_this_batch = true;
            }
            debug_assert!(holds_this_batch, "the last line is always pending");
        }
        pending.acks.push(ack);
        if pending.events >= self.batch.max_events || pending.lines.len() >= self.batch.max_bytes {
            self.flush(pending, slots, requests, give_up).await;
        }
    }

    /// Sends the pending request once a slot is free (waiting is the back-pressure).
    async fn flush(
        &self,
        pending: &mut Pending,
        slots: &Arc<Semaphore>,
        requests: &mut JoinSet<()>,
        give_up: &CancellationToken,
    ) {
        if pending.events == 0 {
            return;
        }
        let Pending {
            lines,
            events,
            acks,
            ..
        } = std::mem::take(pending);
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (client, give_up) = (self.client.clone(), give_up.clone());
        let discarded = self.metrics.discarded("rejected", "");
        requests.spawn(async move {
            let _slot = slot;
            let encoder = client.clone();
            let payload =
                match tokio::task::spawn_blocking(move || encoder.encode(&lines, events)).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "encoding an http request failed");
                        return;
                    }
                };
            match client.send(&payload, &give_up).await {
                Ok(()) => acks.into_iter().for_each(Ack::complete),
                Err(SendError::Rejected { .. }) => {
                    discarded.inc_by(events as u64);
                    acks.into_iter().for_each(Ack::reject);
                }
                Err(e @ SendError::Cancelled { .. }) => {
                    tracing::warn!(events, error = %e, "shutdown_timeout reached with a request undelivered; its senders get an error");
                    acks.into_iter().for_each(Ack::fail);
                }
            }
        });
    }
}

/// Serialises a batch's events to archive lines on the blocking pool.
async fn serialise(batch: Batch) -> anyhow::Result<Serialised> {
    // The parts of a group are forwarded as they come: a receiver cannot be
    // asked to hold them back.
    let Batch { events, ack, .. } = batch;
    let (lines, ends) = tokio::task::spawn_blocking(move || lines_of(&events))
        .await
        .map_err(|e| anyhow::anyhow!("serialising events failed: {e}"))?;
    Ok(Serialised { lines, ends, ack })
}

fn lines_of(events: &[Event]) -> (Vec<u8>, Vec<usize>) {
    // Sized once: growing a buffer of a thousand lines by doubling copied it
    // over and over (a tenth of a forwarding sediment's CPU went to memmove).
    let estimate: usize = events.iter().map(|e| e.estimated_json_bytes() + 1).sum();
    let mut lines = Vec::with_capacity(estimate);
    let mut ends = Vec::with_capacity(events.len());
    for event in events {
        event.write_ndjson(&mut lines);
        ends.push(lines.len());
    }
    (lines, ends)
}

/// Fires `give_up` `timeout` after `shutdown`.
async fn give_up_after_shutdown(
    shutdown: CancellationToken,
    timeout: Duration,
    give_up: CancellationToken,
) {
    shutdown.cancelled().await;
    tokio::time::sleep(timeout).await;
    give_up.cancel();
}
