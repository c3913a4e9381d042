//! What a replica knows of each partition it owns, shared by the consumer loop
//! and librdkafka's rebalance callbacks (which run inside the loop's polls).
//!
//! Per partition: the generation of this ownership (from [`Progress::seed`]),
//! the batches sent downstream and not yet answered, in offset order, and the
//! offset committed. A batch's acknowledgement completes only once every
//! archive sink has its records in objects in storage; the committable offset
//! is the end of the longest answered prefix of batches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::stream::{Progress, StreamId};
use sediment_core::{AckWaiter, Outcome};

/// A batch sent downstream.
#[derive(Debug)]
pub struct InFlight {
    /// The offset after its last record (what a commit after it says).
    pub next: i64,
    /// Its records.
    pub records: u64,
    /// Its outcome.
    pub waiter: AckWaiter,
}

/// One owned partition.
#[derive(Debug)]
pub struct Partition {
    /// Its stream.
    pub stream: Arc<StreamId>,
    /// This ownership's generation; 0 until the committed state is read.
    pub generation: u64,
    /// Batches not yet answered, oldest first.
    pub in_flight: VecDeque<InFlight>,
    /// The offset committed and confirmed (`None`: nothing committed yet).
    pub confirmed: Option<i64>,
    /// The end of the answered prefix of batches.
    pub delivered: Option<i64>,
    /// The first offset read in this ownership (where a rewind without a commit goes).
    pub first_read: Option<i64>,
}

impl Partition {
    /// A partition just assigned, not yet seeded.
    pub fn new(stream: Arc<StreamId>) -> Partition {
        Partition {
            stream,
            generation: 0,
            in_flight: VecDeque::new(),
            confirmed: None,
            delivered: None,
            first_read: None,
        }
    }

    /// Takes the answered batches from the front; `false` when one failed (rewind).
    pub fn settle(&mut self) -> bool {
        while let Some(front) = self.in_flight.front_mut() {
            match front.waiter.try_outcome() {
                None => break,
                Some(Outcome::Delivered) => {
                    self.delivered = Some(front.next);
                    self.in_flight.pop_front();
                }
                Some(Outcome::Failed | Outcome::Rejected) => return false,
            }
        }
        true
    }

    /// The offset to commit now, if it moved.
    pub fn to_commit(&self) -> Option<i64> {
        let d = self.delivered?;
        (self.confirmed.is_none_or(|c| d > c)).then_some(d)
    }
}

/// The partitions of one source.
pub type Partitions = Arc<Mutex<HashMap<(String, i32), Partition>>>;

/// Commits `to_commit` of `partitions` (keys of `map`), each with the
/// per-hour table of what is stored beyond it as metadata.
pub fn commit_list(
    map: &HashMap<(String, i32), Partition>,
    only: Option<&[(String, i32)]>,
    progress: &Progress,
) -> Option<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    let mut any = false;
    for ((topic, partition), p) in map {
        if only.is_some_and(|o| !o.iter().any(|k| k.0 == *topic && k.1 == *partition))
            || p.generation == 0
        {
            continue;
        }
        let Some(offset) = p.to_commit() else {
            continue;
        };
        let metadata = progress.commit_metadata(&p.stream.name, offset);
        let mut e = tpl.add_partition(topic, *partition);
        if e.set_offset(Offset::Offset(offset)).is_ok() {
            e.set_metadata(metadata);
            any = true;
        }
    }
    any.then_some(tpl)
}

/// Revokes partitions: commits what is committable first (unless the
/// assignment was lost), then nothing of them is stored or committed any more.
pub fn revoke<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &Partitions,
    revoked: &[(String, i32)],
    metrics: &ComponentMetrics,
    progress: &Progress,
) {
    let lost = consumer.assignment_lost();
    let mut map = partitions.lock().unwrap_or_else(|e| e.into_inner());
    for key in revoked {
        if let Some(p) = map.get_mut(key) {
            p.settle();
        }
    }
    if !lost {
        if let Some(tpl) = commit_list(&map, Some(revoked), progress) {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "cannot commit revoked partitions; their next owner reads a little again (nothing is stored twice)");
            }
        }
    }
    for key in revoked {
        if let Some(p) = map.remove(key) {
            progress.revoke(&p.stream.name);
            metrics.forget_kafka_partition(&key.0, key.1);
            tracing::info!(topic = %key.0, partition = key.1, lost, "partition revoked");
        }
    }
    metrics
        .kafka_rebalances(if lost { "lost" } else { "revoke" })
        .inc_by(revoked.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sediment_core::Ack;

    #[test]
    fn only_the_answered_prefix_is_committable_and_a_failure_stops_it() {
        let mut p = Partition::new(Arc::new(StreamId::kafka("t", 0)));
        let batches: Vec<Ack> = (1..=3)
            .map(|i| {
                let (ack, waiter) = Ack::new();
                p.in_flight.push_back(InFlight {
                    next: i * 10,
                    records: 10,
                    waiter,
                });
                ack
            })
            .collect();
        let mut batches = batches.into_iter();
        let (first, second, third) = (
            batches.next().unwrap(),
            batches.next().unwrap(),
            batches.next().unwrap(),
        );
        second.complete();
        assert!(p.settle());
        assert_eq!(p.to_commit(), None, "the first batch is not answered yet");
        first.complete();
        assert!(p.settle());
        assert_eq!(p.to_commit(), Some(20));
        p.confirmed = Some(20);
        assert_eq!(p.to_commit(), None);
        third.fail();
        assert!(
            !p.settle(),
            "a failed batch means reading again from the commit"
        );
    }
}
