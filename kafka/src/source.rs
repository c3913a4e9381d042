//! The consumer loop: read records, batch them per partition, send them
//! downstream, commit what every sink has stored.
//!
//! Records are copied out of librdkafka as they arrive and turned into events
//! on the blocking pool, per partition in batches of at most [`BATCH`] records
//! or [`LINGER`]. A batch the pipeline cannot take pauses every partition
//! (librdkafka stops fetching; its queue is bounded, see
//! [`crate::config::PREFETCH_KBYTES`]) while the loop
//! keeps polling, so the group membership and rebalances are served; it resumes
//! once the batch is taken. So does a batch that would take the records sent
//! and not yet stored past `max_unstored_records`, which also asks the sinks
//! to store what they hold at once. Every [`COMMIT_EVERY`] the answered prefix of each
//! partition's batches is committed with the per-hour table of what is stored
//! beyond it (see [`sediment_core::stream`]). A failed batch rewinds its
//! partition to the last commit under a new generation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sediment_core::component::Source;
use sediment_core::event::{now_ms, Replaced, Scanner};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::output::SendError;
use sediment_core::retry::Backoff;
use sediment_core::stream::{decode, Progress};
use sediment_core::{Ack, Batch, Output};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::partitions::{commit_list, InFlight, Partitions};
use crate::record::{to_event, Record, Shape};

/// Most records per batch.
pub const BATCH: usize = 500;
/// Longest a record waits for its batch.
pub const LINGER: Duration = Duration::from_millis(20);
/// How often offsets are committed.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How often a batch the pipeline refused is offered again.
const RETRY_BLOCKED: Duration = Duration::from_millis(50);

/// A built, not yet running, kafka source.
pub struct KafkaSource {
    /// The consumer.
    pub consumer: Arc<StreamConsumer<Context>>,
    /// Owned partitions (shared with the callbacks).
    pub partitions: Partitions,
    /// Assignments to seed.
    pub assigned: mpsc::UnboundedReceiver<Vec<(String, i32)>>,
    /// Topics.
    pub topics: Vec<String>,
    /// Brokers, for messages.
    pub servers: String,
    /// How records become events.
    pub shape: Shape,
    /// Component metrics.
    pub metrics: ComponentMetrics,
    /// How long shutdown may take.
    pub shutdown_timeout: Duration,
    /// What the topology's sinks stored.
    pub progress: Arc<Progress>,
    /// Records sent and not yet stored, at most: beyond, the partitions are
    /// paused as when the pipeline is full (so that a stalled storage bounds
    /// what is staged, not only what is in memory) and the sinks are asked to
    /// store what they hold now ([`Progress::want_stored`]).
    pub max_unstored_records: u64,
}

/// Records read but not yet sent, of one partition.
struct Pending {
    generation: u64,
    records: Vec<Record>,
}

/// A finished commit: what it committed and how it went.
type Committed = (TopicPartitionList, rdkafka::error::KafkaResult<()>);

/// A batch the pipeline did not take yet.
struct Blocked {
    key: (String, i32),
    generation: u64,
    next: i64,
    batch: Batch,
    waiter: sediment_core::AckWaiter,
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(
        mut self: Box<Self>,
        out: Output,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if !self.wait_for_brokers(&shutdown).await {
            return Ok(());
        }
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics).map_err(|e| {
            anyhow::anyhow!(
                "source `{}`: cannot subscribe to {topics:?}: {e}",
                self.shape.source
            )
        })?;
        let mut pending: HashMap<(String, i32), Pending> = HashMap::new();
        let mut blocked: Option<Blocked> = None;
        let mut flush = tokio::time::interval(LINGER);
        let mut commit = tokio::time::interval(COMMIT_EVERY);
        // One commit at a time, on the blocking pool (librdkafka reports the
        // result of a manual commit only to a synchronous caller).
        let (commit_tx, mut commit_rx) = mpsc::unbounded_channel();
        let mut committing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => match message {
                    Ok(m) => self.take(&m, &mut pending),
                    Err(e) => tracing::debug!(source = %self.shape.source, error = %e, "consumer error"),
                },
                Some(assigned) = self.assigned.recv() => self.seed(assigned).await,
                _ = flush.tick(), if blocked.is_none() => {
                    blocked = self.flush(&mut pending, &out, false).await;
                }
                _ = tokio::time::sleep(RETRY_BLOCKED), if blocked.is_some() => {
                    let b = blocked.take().expect("checked");
                    blocked = self.offer(b, &out);
                    if blocked.is_none() {
                        self.pause_all(false);
                    }
                }
                _ = commit.tick(), if !committing => committing = self.commit(&commit_tx),
                Some((tpl, result)) = commit_rx.recv() => {
                    committing = false;
                    self.consumer.context().committed(&result, &tpl);
                }
            }
        }
        self.leave(pending, blocked, &out).await;
        Ok(())
    }
}

impl KafkaSource {
    /// Waits until the brokers answer and every topic exists; `false` on shutdown.
    async fn wait_for_brokers(&self, shutdown: &CancellationToken) -> bool {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for attempt in 0.. {
            let consumer = self.consumer.clone();
            let metadata = tokio::task::spawn_blocking(move || {
                consumer.fetch_metadata(None, Duration::from_secs(10))
            })
            .await;
            let problem = match metadata {
                Ok(Ok(m)) => {
                    let missing: Vec<&String> = self
                        .topics
                        .iter()
                        .filter(|t| {
                            !m.topics()
                                .iter()
                                .any(|mt| mt.name() == t.as_str() && mt.error().is_none())
                        })
                        .collect();
                    if missing.is_empty() {
                        return true;
                    }
                    format!("topic(s) {missing:?} do not exist on {}", self.servers)
                }
                Ok(Err(e)) => format!("cannot reach the Kafka brokers {}: {e}", self.servers),
                Err(e) => format!("the metadata request failed: {e}"),
            };
            let delay = backoff.delay(attempt);
            tracing::warn!(source = %self.shape.source, retry_in = ?delay, "{problem}; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        unreachable!("the loop only ends by returning")
    }

    /// Keeps a record for its partition's next batch.
    fn take(
        &self,
        m: &rdkafka::message::BorrowedMessage<'_>,
        pending: &mut HashMap<(String, i32), Pending>,
    ) {
        let key = (m.topic().to_owned(), m.partition());
        let generation = {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            match map.get_mut(&key) {
                Some(p) if p.generation > 0 => {
                    p.first_read.get_or_insert(m.offset());
                    p.generation
                }
                // Not seeded yet (or revoked): it is read again after the seek.
                _ => return,
            }
        };
        let entry = pending.entry(key).or_insert_with(|| Pending {
            generation,
            records: Vec::new(),
        });
        if entry.generation != generation {
            entry.records.clear();
            entry.generation = generation;
        }
        entry.records.push(Record::of(m, now_ms()));
    }

    /// Reads the committed offsets and metadata of newly assigned partitions,
    /// seeds [`Progress`], seeks to the commit and resumes them.
    async fn seed(&self, assigned: Vec<(String, i32)>) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &assigned {
            tpl.add_partition(topic, *partition);
        }
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 0;
        let committed = loop {
            let (consumer, request) = (self.consumer.clone(), tpl.clone());
            match tokio::task::spawn_blocking(move || {
                consumer.committed_offsets(request, Duration::from_secs(10))
            })
            .await
            {
                Ok(Ok(c)) => break c,
                Ok(Err(e)) => {
                    tracing::warn!(source = %self.shape.source, error = %e, "cannot read committed offsets; retrying");
                }
                Err(e) => {
                    tracing::warn!(source = %self.shape.source, error = %e, "reading committed offsets failed")
                }
            }
            attempt += 1;
            tokio::time::sleep(backoff.delay(attempt)).await;
        };
        let mut ready = TopicPartitionList::new();
        {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            for e in committed.elements() {
                let key = (e.topic().to_owned(), e.partition());
                let Some(p) = map.get_mut(&key) else { continue };
                p.generation = self.progress.seed(&p.stream.name, decode(e.metadata()));
                if let Offset::Offset(o) = e.offset() {
                    self.metrics
                        .kafka_committed(e.topic(), e.partition())
                        .set(o);
                    p.confirmed = Some(o);
                    p.delivered = Some(o);
                    let _ = ready.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
                } else {
                    ready.add_partition(e.topic(), e.partition());
                }
                tracing::info!(source = %self.shape.source, topic = %key.0, partition = key.1, committed = ?e.offset(), "partition seeded from its last commit");
            }
        }
        let seek: Vec<(String, i32, i64)> = ready
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
                _ => None,
            })
            .collect();
        for (topic, partition, offset) in seek {
            if let Err(e) = self.consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(5),
            ) {
                tracing::debug!(topic = %topic, partition, error = %e, "seek before resume");
            }
        }
        if let Err(e) = self.consumer.resume(&ready) {
            tracing::warn!(source = %self.shape.source, error = %e, "cannot resume assigned partitions");
        }
    }

    /// Sends every partition's pending records (all of them when `all`, else
    /// full batches and those that waited [`LINGER`]). Returns a batch the
    /// pipeline refused.
    async fn flush(
        &self,
        pending: &mut HashMap<(String, i32), Pending>,
        out: &Output,
        all: bool,
    ) -> Option<Blocked> {
        let keys: Vec<(String, i32)> = pending.keys().cloned().collect();
        for key in keys {
            let Some(p) = pending.get_mut(&key) else {
                continue;
            };
            while !p.records.is_empty() {
                let n = p.records.len().min(BATCH);
                let records: Vec<Record> = p.records.drain(..n).collect();
                let _ = all;
                let generation = p.generation;
                let Some(stream) = self.stream_of(&key, generation) else {
                    p.records.clear();
                    break;
                };
                let next = records.last().map_or(0, |r| r.offset + 1);
                let shape = self.shape.clone();
                let events = tokio::task::spawn_blocking(move || {
                    let (mut replaced, mut scanner) = (Replaced::default(), Scanner::default());
                    let events: Vec<_> = records
                        .into_iter()
                        .map(|r| {
                            to_event(r, &stream, generation, &shape, &mut replaced, &mut scanner)
                        })
                        .collect();
                    (events, replaced)
                })
                .await;
                let Ok((events, replaced)) = events else {
                    continue;
                };
                if replaced.timestamps > 0 {
                    self.metrics
                        .errors("replaced_ts")
                        .inc_by(replaced.timestamps);
                }
                self.metrics.received_events.inc_by(events.len() as u64);
                let (ack, waiter) = Ack::new();
                let blocked = Blocked {
                    key: key.clone(),
                    generation,
                    next,
                    batch: Batch::new(events, ack),
                    waiter,
                };
                if let Some(b) = self.offer(blocked, out) {
                    self.pause_all(true);
                    return Some(b);
                }
            }
        }
        pending.retain(|_, p| !p.records.is_empty());
        None
    }

    fn stream_of(
        &self,
        key: &(String, i32),
        generation: u64,
    ) -> Option<Arc<sediment_core::stream::StreamId>> {
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|p| p.generation == generation)
            .map(|p| p.stream.clone())
    }

    /// Offers a batch downstream without waiting; gives it back when refused.
    fn offer(&self, b: Blocked, out: &Output) -> Option<Blocked> {
        let Blocked {
            key,
            generation,
            next,
            batch,
            waiter,
        } = b;
        let n = batch.len() as u64;
        let unstored: u64 = {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            // A failed batch stays at its front: the next commit rewinds it.
            map.values_mut()
                .map(|p| {
                    p.settle();
                    p.in_flight.iter().map(|b| b.records).sum::<u64>()
                })
                .sum()
        };
        if unstored > 0 && unstored + n > self.max_unstored_records {
            // Waiting for storage: without this the sinks would hold these
            // records until their files' deadlines (`late_flush_interval`).
            self.progress.want_stored();
            return Some(Blocked {
                key,
                generation,
                next,
                batch,
                waiter,
            });
        }
        match out.try_send_now(batch) {
            Ok(()) => {
                self.metrics.sent_events.inc_by(n);
                let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = map.get_mut(&key).filter(|p| p.generation == generation) {
                    p.in_flight.push_back(InFlight {
                        next,
                        records: n,
                        waiter,
                    });
                }
                None
            }
            Err((SendError::Full, batch)) => Some(Blocked {
                key,
                generation,
                next,
                batch,
                waiter,
            }),
            Err((SendError::Closed, batch)) => {
                batch.ack.complete();
                None
            }
        }
    }

    /// Pauses (or resumes) every seeded partition: back-pressure without leaving the group.
    fn pause_all(&self, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        {
            let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            for ((topic, partition), p) in map.iter() {
                if p.generation > 0 {
                    tpl.add_partition(topic, *partition);
                }
            }
        }
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, pause, "pause/resume");
        }
    }

    /// Starts committing what is committable (the result arrives on `done`);
    /// rewinds partitions whose batch failed. `false` when there was nothing to commit.
    fn commit(&self, done: &mpsc::UnboundedSender<Committed>) -> bool {
        let mut rewind = Vec::new();
        let tpl = {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            for (key, p) in map.iter_mut() {
                if p.generation > 0 && !p.settle() {
                    rewind.push((key.clone(), p.confirmed.or(p.first_read)));
                }
            }
            commit_list(&map, None, &self.progress)
        };
        for (key, offset) in rewind {
            self.rewind(&key, offset);
        }
        let Some(tpl) = tpl else { return false };
        let (consumer, done) = (self.consumer.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let result = consumer.commit(&tpl, CommitMode::Sync);
            let _ = done.send((tpl, result));
        });
        true
    }

    /// Commits what is committable and waits for the answer; `false` when it failed.
    async fn commit_now(&self) -> bool {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if self.commit(&tx) {
            if let Some((tpl, result)) = rx.recv().await {
                self.consumer.context().committed(&result, &tpl);
                return result.is_ok();
            }
        }
        true
    }

    /// A batch of `key` failed downstream: read again from `offset` under a new generation.
    fn rewind(&self, key: &(String, i32), offset: Option<i64>) {
        {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            let Some(p) = map.get_mut(key) else { return };
            p.in_flight.clear();
            p.generation = self.progress.seed(&p.stream.name, Default::default());
            p.delivered = p.confirmed;
        }
        tracing::warn!(source = %self.shape.source, topic = %key.0, partition = key.1, from = ?offset, "records were not stored; reading the partition again from its last commit");
        if let Some(o) = offset {
            if let Err(e) =
                self.consumer
                    .seek(&key.0, key.1, Offset::Offset(o), Duration::from_secs(5))
            {
                tracing::warn!(error = %e, "cannot seek back; the partition is read again after the next rebalance");
            }
        }
    }

    /// Shutdown: send what is read, wait (polling, so the group is served) until
    /// every batch is answered or the time is up, commit, leave the group.
    async fn leave(
        &self,
        mut pending: HashMap<(String, i32), Pending>,
        blocked: Option<Blocked>,
        out: &Output,
    ) {
        let deadline = tokio::time::Instant::now()
            + self.shutdown_timeout.saturating_sub(Duration::from_secs(5));
        let mut blocked = blocked;
        while blocked.is_some() && tokio::time::Instant::now() < deadline {
            blocked = self.offer(blocked.take().expect("checked"), out);
            tokio::time::sleep(RETRY_BLOCKED).await;
        }
        if blocked.is_none() {
            let _ = self.flush(&mut pending, out, true).await;
        }
        loop {
            let waiting = {
                let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
                map.values_mut().for_each(|p| {
                    p.settle();
                });
                map.values().any(|p| !p.in_flight.is_empty())
            };
            if !waiting || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = self.consumer.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        // A commit refused while the group rebalances (another member leaving
        // at the same time) is tried again, polling so the rebalance completes.
        let last_try = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.commit_now().await && tokio::time::Instant::now() < last_try {
            tokio::select! {
                _ = self.consumer.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        self.consumer.unsubscribe();
        tracing::info!(source = %self.shape.source, "left the consumer group");
    }
}
