//! The compress stage: a batch becomes one gzip member per hour it touches
//! (per hour and stream for events of a replayable stream, see
//! [`sediment_core::stream`]).
//!
//! Runs on the blocking pool, several batches at once, so compression never
//! blocks the async runtime and uses every core. Events of a stream that this
//! sink has already stored (a new owner replaying from the last commit) and
//! events of a stream this process no longer owns are left out here.

use std::sync::Arc;

use sediment_core::stream::{Progress, StreamId};
use sediment_core::{Ack, Batch, GroupPart, Partition};

use super::member;

/// `late_after` assumed for events that reach an archive sink without an
/// `hour_partition` transform upstream (seconds).
pub const DEFAULT_LATE_AFTER_SECS: i64 = 600;

/// One hour's share of a compressed batch.
#[derive(Debug)]
pub struct HourMember {
    /// Start of the hour, seconds.
    pub hour: i64,
    /// When the hour's primary object is due, seconds.
    pub close_at: i64,
    /// The compressed events.
    pub member: Vec<u8>,
    /// For events of a replayable stream: which, and the offsets they span.
    pub stream: Option<StreamSlice>,
}

/// The events of one stream in a member.
#[derive(Debug, Clone)]
pub struct StreamSlice {
    /// The stream.
    pub stream: Arc<StreamId>,
    /// The generation of this process's ownership they were read in.
    pub generation: u64,
    /// Lowest offset.
    pub first: i64,
    /// Highest offset.
    pub last: i64,
    /// Events.
    pub events: u64,
}

/// A batch, compressed, with its acknowledgement.
#[derive(Debug)]
pub struct Compressed {
    /// One member per hour, in first-seen order.
    pub members: Vec<HourMember>,
    /// Completed once the members are durable.
    pub ack: Ack,
    /// Events in the batch.
    pub events: u64,
    /// Events marked late.
    pub late_events: u64,
    /// NDJSON bytes before compression.
    pub raw_bytes: u64,
    /// Stream events left out: already stored, or of a stream no longer owned.
    pub skipped: u64,
    /// The batch's place in a group that becomes visible as a whole.
    pub group: Option<GroupPart>,
}

/// One member being filled.
struct Slot {
    hour: i64,
    close_at: i64,
    ndjson: Vec<u8>,
    stream: Option<StreamSlice>,
}

/// Serialises and compresses a batch for the sink `sink`.
pub fn compress(batch: Batch, level: u32, sink: &str, progress: &Progress) -> Compressed {
    let Batch { events, ack, group } = batch;
    let mut slots: Vec<Slot> = Vec::with_capacity(1);
    let (mut late_events, mut skipped) = (0, 0);
    let count = events.len() as u64;
    for event in &events {
        let p = event.partition.unwrap_or_else(|| {
            let hour = Partition::hour_of(event.time_ms);
            Partition {
                hour_start: hour,
                close_at: hour + Partition::HOUR_SECS + DEFAULT_LATE_AFTER_SECS,
                late: false,
            }
        });
        if let Some(at) = &event.position {
            let name = at.stream.name.as_str();
            let stored = progress.stored(sink, name, p.hour_start);
            if stored.is_some_and(|s| at.offset <= s) || !progress.current(name, at.generation) {
                skipped += 1;
                continue;
            }
        }
        late_events += u64::from(p.late);
        let stream = event.position.as_ref();
        let found = slots.iter().position(|s| {
            s.hour == p.hour_start
                && match (&s.stream, stream) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.stream == b.stream && a.generation == b.generation,
                    _ => false,
                }
        });
        let i = match found {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    hour: p.hour_start,
                    close_at: p.close_at,
                    ndjson: Vec::with_capacity(64 * 1024),
                    stream: stream.map(|at| StreamSlice {
                        stream: at.stream.clone(),
                        generation: at.generation,
                        first: at.offset,
                        last: at.offset,
                        events: 0,
                    }),
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[i];
        if let (Some(s), Some(at)) = (&mut slot.stream, stream) {
            s.first = s.first.min(at.offset);
            s.last = s.last.max(at.offset);
            s.events += 1;
        }
        event.write_ndjson(&mut slot.ndjson);
    }
    drop(events);
    let raw_bytes = slots.iter().map(|s| s.ndjson.len() as u64).sum();
    let members = slots
        .into_iter()
        .map(|s| HourMember {
            hour: s.hour,
            close_at: s.close_at,
            member: member::encode_data(&s.ndjson, level),
            stream: s.stream,
        })
        .collect();
    Compressed {
        members,
        ack,
        events: count - skipped,
        late_events,
        raw_bytes,
        skipped,
        group,
    }
}

/// Splits a commit round so that no part touches more than `max_hours`
/// distinct hours, keeping the open-segment bound (and one fsync per hour)
/// within a round: whole batches where they fit, and a batch that alone spans
/// more hours in pieces sharing its acknowledgement (it completes when every
/// piece is durable; a piece that fails fails it).
pub fn split_by_hours(round: Vec<Compressed>, max_hours: usize) -> Vec<Vec<Compressed>> {
    let mut parts: Vec<Vec<Compressed>> = Vec::new();
    let mut current: Vec<Compressed> = Vec::new();
    let mut hours: Vec<i64> = Vec::new();
    for c in round {
        let mut new: Vec<i64> = Vec::new();
        for m in &c.members {
            if !hours.contains(&m.hour) && !new.contains(&m.hour) {
                new.push(m.hour);
            }
        }
        if hours.len() + new.len() <= max_hours {
            hours.extend(new);
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            hours.clear();
        }
        let distinct = {
            let mut d: Vec<i64> = c.members.iter().map(|m| m.hour).collect();
            d.sort_unstable();
            d.dedup();
            d.len()
        };
        if distinct <= max_hours {
            hours.extend(c.members.iter().map(|m| m.hour));
            hours.sort_unstable();
            hours.dedup();
            current.push(c);
            continue;
        }
        // One batch wider than a round may be: pieces of at most `max_hours` hours.
        let Compressed {
            members,
            ack,
            events,
            late_events,
            raw_bytes,
            skipped,
            group,
        } = c;
        let mut pieces: Vec<Compressed> = Vec::new();
        let mut piece_hours: Vec<i64> = Vec::new();
        for m in members {
            let starts_piece = pieces.is_empty()
                || (!piece_hours.contains(&m.hour) && piece_hours.len() == max_hours);
            if starts_piece {
                piece_hours.clear();
                let first = pieces.is_empty();
                pieces.push(Compressed {
                    members: Vec::new(),
                    ack: ack.clone(),
                    events: if first { events } else { 0 },
                    late_events: if first { late_events } else { 0 },
                    raw_bytes: if first { raw_bytes } else { 0 },
                    skipped: if first { skipped } else { 0 },
                    group: group.clone(),
                });
            }
            if !piece_hours.contains(&m.hour) {
                piece_hours.push(m.hour);
            }
            pieces
                .last_mut()
                .expect("a piece was started")
                .members
                .push(m);
        }
        ack.complete();
        parts.extend(pieces.into_iter().map(|p| vec![p]));
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(hours: &[i64]) -> (Compressed, sediment_core::ack::AckWaiter) {
        let (ack, waiter) = Ack::new();
        let members = hours
            .iter()
            .map(|&hour| HourMember {
                hour,
                close_at: hour + 4200,
                member: vec![1],
                stream: None,
            })
            .collect();
        let c = Compressed {
            members,
            ack,
            events: hours.len() as u64,
            late_events: 0,
            raw_bytes: 1,
            skipped: 0,
            group: None,
        };
        (c, waiter)
    }

    fn hours_of(part: &[Compressed]) -> usize {
        let mut h: Vec<i64> = part
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.hour))
            .collect();
        h.sort_unstable();
        h.dedup();
        h.len()
    }

    #[tokio::test]
    async fn rounds_are_split_to_stay_within_the_open_segment_bound() {
        let (a, _wa) = batch(&[0, 3600]);
        let (b, _wb) = batch(&[3600, 7200]);
        let (c, _wc) = batch(&[10800, 14400, 18000]);
        let parts = split_by_hours(vec![a, b, c], 3);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        assert!(parts.iter().all(|p| hours_of(p) <= 3));
        assert_eq!(
            split_by_hours(Vec::new(), 3).len(),
            1,
            "a tick is one empty round"
        );

        let wide: Vec<i64> = (0..10).map(|h| h * 3600).collect();
        let (w, waiter) = batch(&wide);
        let parts = split_by_hours(vec![w], 4);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| hours_of(p) <= 4));
        assert_eq!(parts.iter().flatten().map(|c| c.events).sum::<u64>(), 10);
        let mut acks: Vec<Ack> = parts.into_iter().flatten().map(|c| c.ack).collect();
        let last = acks.pop().unwrap();
        acks.into_iter().for_each(Ack::complete);
        drop(last);
        assert_eq!(
            waiter.outcome().await,
            sediment_core::Outcome::Failed,
            "one piece not durable fails the whole batch"
        );
    }
}
