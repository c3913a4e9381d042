//! The `kafka` source: N sediment replicas share a topic's partitions through a
//! consumer group, and every record is archived exactly once, across `kill -9`
//! of any replica, rebalances, paused "zombie" replicas, and the loss of a
//! replica's `data_dir`. With Kafka as the source, Kafka is the buffer: nothing
//! depends on a local disk surviving.
//!
//! # Layout
//! - [`config`]: options → a validated librdkafka configuration.
//! - [`record`]: a record → an event with a deterministic `_id`.
//! - [`partitions`]: per owned partition, the batches in flight and the offsets.
//! - [`context`]: librdkafka callbacks: rebalances, commits, statistics.
//! - [`source`]: the consumer loop.
//!
//! # Exactly once at rest: the design
//!
//! 1. **Positions.** Each event carries its stream (the topic partition), offset
//!    and the generation of this replica's ownership of the partition
//!    ([`sediment_core::stream`]). Archive sinks keep such events apart per
//!    partition and hour, and complete their acknowledgement only when their
//!    object is **in storage**, not when staged.
//! 2. **Commits follow storage.** A partition's offset is committed only up to
//!    the end of the longest prefix of batches every sink has stored, so every
//!    record below a commit is in an object. Hours still close at hour end +
//!    `late_after` and late records go out every `late_flush_interval`, so the
//!    lag of commits is bounded by those, not by the hour.
//! 3. **Deterministic names.** An object of a partition's records is named by
//!    its hour and `{topic}-{partition}-{first_offset}`, the first offset of the
//!    hour's records it holds that are not yet stored, and created only if
//!    absent (`If-None-Match: *`, `ifGenerationMatch=0`, link/`O_EXCL`). Its
//!    segment id records its offsets; a sink records the last stored offset per
//!    hour. Offsets are the records' own, so gaps (transactions, compaction) do
//!    not matter: a name is "the first offset after what is stored", never
//!    "last + 1".
//! 4. **What the next owner must know.** Records of an hour can be stored
//!    beyond the commit (another hour's object held the commit back). So a
//!    commit carries, as its metadata, each sink's per-hour table of the last
//!    offset stored at or beyond the commit. A replica that is assigned a
//!    partition reads the commit and that table first (the partition stays
//!    paused until then), and skips records already stored. Its objects then
//!    start where the previous owner's next objects would have started: when
//!    the previous owner wrote one after its last commit, the names collide,
//!    the create fails, and the object's recorded last offset tells what to
//!    skip — never a second copy, never a gap. The metadata is a shortcut, not
//!    a requirement (some brokers, Tansu among them, do not keep it, and a
//!    replica killed after an upload never committed it): before its first
//!    upload of a partition's hour, an owner lists that hour's objects of the
//!    partition and records the last offset of the latest one as stored
//!    (the archive sinks' stream uploads, `sinks/src/archive/stream_upload.rs`).
//! 5. **Ownership.** On a revoke the partition's committable offset is
//!    committed, then [`sediment_core::stream::Progress::revoke`] stops its work
//!    at once: sinks drop its staged records (failing their acknowledgements)
//!    and upload nothing more of it. A commit refused with
//!    `RebalanceInProgress`, `IllegalGeneration` or `UnknownMemberId` means
//!    ownership is lost; the rebalance that follows revokes. A zombie that
//!    wakes and uploads before it learns this is harmless: its objects carry the
//!    same deterministic names, so whoever comes second skips.
//! 6. **Back-pressure.** When the pipeline is full, or
//!    `max_unstored_records` records wait for storage, every partition is
//!    paused (librdkafka stops fetching; its queue is bounded at 1 MiB, and so
//!    are fetch responses, see [`config::PREFETCH_KBYTES`]) while the loop keeps
//!    polling, so the replica stays in the group.
//! 7. **Commits** are made on the blocking pool and their result handled there:
//!    librdkafka reports a manual asynchronous commit to nobody.
//!
//! Why `rdkafka` (librdkafka, built from source with its `cmake-build` feature:
//! Debian's is too old) and not `rskafka`: `rskafka` has no consumer groups,
//! and sharing partitions between replicas is the point. The assignor is
//! cooperative-sticky: a rebalance moves only the partitions that must move.

pub mod config;
pub mod context;
pub mod partitions;
pub mod record;
pub mod source;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::StreamConsumer;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Source, Validated, ValidatedSource,
};
use sediment_core::config::ConfigError;
use tokio::sync::mpsc;

use config::KafkaSettings;

/// Registry entries of this crate.
pub fn factories() -> Vec<Factory> {
    vec![Factory {
        kind: ComponentKind::Source,
        type_name: "kafka",
        parse,
    }]
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    Ok(Validated::Source(Box::new(config::parse(&cx.path, value)?)))
}

#[async_trait]
impl ValidatedSource for KafkaSettings {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let partitions = Arc::new(Mutex::new(Default::default()));
        let (assigned_tx, assigned) = mpsc::unbounded_channel();
        let context = context::Context::new(
            &cx.id,
            &self.servers,
            partitions.clone(),
            assigned_tx,
            cx.metrics.clone(),
            cx.progress.clone(),
        );
        let consumer =
            StreamConsumer::from_config_and_context(&self.client, context).map_err(|e| {
                anyhow::anyhow!(
                    "source `{}`: cannot create the Kafka consumer for {}: {e}",
                    cx.id,
                    self.servers
                )
            })?;
        tracing::info!(source = %cx.id, brokers = %self.servers, topics = ?self.topics, group = %self.group_id, "kafka source ready");
        Ok(Box::new(source::KafkaSource {
            consumer: Arc::new(consumer),
            partitions,
            assigned,
            topics: self.topics.clone(),
            servers: self.servers.clone(),
            shape: record::Shape {
                source: cx.id.clone(),
                decoding: self.decoding,
                timestamp_fields: self.timestamp_fields.clone(),
            },
            metrics: cx.metrics.clone(),
            shutdown_timeout: cx.shutdown_timeout,
            progress: cx.progress.clone(),
            max_unstored_records: self.max_unstored_records,
        }))
    }
}
