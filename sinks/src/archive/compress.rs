//! The compress stage: a batch becomes one gzip member per hour it touches.
//!
//! Runs on the blocking pool, several batches at once, so compression never
//! blocks the async runtime and uses every core.

use sediment_core::{Ack, Batch, Partition};

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
}

/// Serialises and compresses a batch.
pub fn compress(batch: Batch, level: u32) -> Compressed {
    let Batch { events, ack } = batch;
    let mut hours: Vec<(i64, i64, Vec<u8>)> = Vec::with_capacity(1);
    let mut late_events = 0;
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
        late_events += u64::from(p.late);
        let slot = match hours.iter().position(|(h, _, _)| *h == p.hour_start) {
            Some(i) => i,
            None => {
                hours.push((p.hour_start, p.close_at, Vec::with_capacity(64 * 1024)));
                hours.len() - 1
            }
        };
        event.write_ndjson(&mut hours[slot].2);
    }
    drop(events);
    let raw_bytes = hours.iter().map(|(_, _, b)| b.len() as u64).sum();
    let members = hours
        .into_iter()
        .map(|(hour, close_at, ndjson)| HourMember {
            hour,
            close_at,
            member: member::encode_data(&ndjson, level),
        })
        .collect();
    Compressed {
        members,
        ack,
        events: count,
        late_events,
        raw_bytes,
    }
}
