//! librdkafka's callbacks: rebalances, commit results, statistics, errors.
//!
//! They run inside the consumer loop's polls. A revoke commits what is
//! committable and then stops the partition's work at once
//! ([`crate::partitions::revoke`]: [`sediment_core::stream::Progress::revoke`]
//! makes the sinks drop its staged records). An assignment pauses the new
//! partitions until the loop has read their committed offsets and metadata and
//! seeded [`sediment_core::stream::Progress`] — only then are they resumed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::stream::{Progress, StreamId};
use std::sync::Mutex;
use tokio::sync::mpsc;

use crate::partitions::{revoke, Partition, Partitions};

/// The consumer's context.
pub struct Context {
    /// The source's id.
    pub source: String,
    /// Brokers, for messages.
    pub servers: String,
    /// Owned partitions.
    pub partitions: Partitions,
    /// Newly assigned partitions, for the loop to seed.
    pub assigned: mpsc::UnboundedSender<Vec<(String, i32)>>,
    /// Component metrics.
    pub metrics: ComponentMetrics,
    /// What the topology's sinks stored.
    pub progress: Arc<Progress>,
    /// When a client error was last logged (once a minute).
    last_error: Mutex<Option<Instant>>,
}

impl Context {
    /// A context for the source `source`.
    pub fn new(
        source: &str,
        servers: &str,
        partitions: Partitions,
        assigned: mpsc::UnboundedSender<Vec<(String, i32)>>,
        metrics: ComponentMetrics,
        progress: Arc<Progress>,
    ) -> Context {
        Context {
            progress,
            source: source.to_owned(),
            servers: servers.to_owned(),
            partitions,
            assigned,
            metrics,
            last_error: Mutex::new(None),
        }
    }
}

fn keys(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// A commit refused because this member no longer owns what it commits.
pub fn ownership_lost(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::IllegalGeneration
                | C::UnknownMemberId
                | C::RebalanceInProgress
                | C::FencedInstanceId
        )
    )
}

impl Context {
    /// The result of a commit of `offsets`: confirmed offsets and their metric,
    /// or why it was refused.
    pub fn committed(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
                for e in offsets.elements() {
                    if let (Offset::Offset(o), Some(p)) = (
                        e.offset(),
                        map.get_mut(&(e.topic().to_owned(), e.partition())),
                    ) {
                        p.confirmed = Some(p.confirmed.map_or(o, |c| c.max(o)));
                        self.metrics
                            .kafka_committed(e.topic(), e.partition())
                            .set(o);
                    }
                }
            }
            Err(e) if ownership_lost(e) => {
                tracing::warn!(source = %self.source, error = %e, "a commit was refused: this replica no longer owns those partitions; the group rebalances and their next owner continues from the last commit");
            }
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "a commit failed; it is tried again")
            }
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .kafka_lag(topic, *partition)
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(source = %self.source, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(source = %self.source, brokers = %self.servers, error = %error, reason, "the Kafka client reports an error; it keeps retrying");
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            revoke(
                consumer,
                &self.partitions,
                &keys(tpl),
                &self.metrics,
                &self.progress,
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = keys(tpl);
                {
                    let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
                    for (topic, partition) in &assigned {
                        map.insert(
                            (topic.clone(), *partition),
                            Partition::new(Arc::new(StreamId::kafka(topic, *partition))),
                        );
                    }
                }
                // Nothing is read before the committed state is known.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(source = %self.source, error = %e, "cannot pause newly assigned partitions");
                }
                self.metrics
                    .kafka_rebalances("assign")
                    .inc_by(assigned.len() as u64);
                tracing::info!(source = %self.source, partitions = ?assigned, "partitions assigned");
                let _ = self.assigned.send(assigned);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(source = %self.source, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Only librdkafka's own commits report here (sediment commits itself,
        // and handles the result in [`Context::committed`]).
        self.committed(&result, offsets);
    }
}
