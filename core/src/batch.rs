//! Batches: what crosses every channel of the topology.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::ack::Ack;
use crate::event::Event;

/// Batches of one request that must become visible together or not at all: a
/// large request staged in chunks (see the HTTP source).
///
/// Archive sinks hold the parts of a group back, out of sight, and make them
/// visible with its last part in one commit; the parts of a group whose last
/// part never comes (the request failed part-way) are discarded once the
/// group is abandoned or every holder of it is gone. Sinks that cannot hold parts back (a
/// forwarder) send each part as it comes.
#[derive(Debug)]
pub struct Group {
    /// Unique within the process.
    pub id: u64,
    abandoned: AtomicBool,
}

impl Group {
    /// A new group.
    pub fn new() -> Arc<Group> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Group {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            abandoned: AtomicBool::new(false),
        })
    }

    /// Says that the last part will never come: sinks discard what they hold
    /// of the group, even while its parts still sit in other components.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Whether [`Group::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }
}

/// A batch's place in a [`Group`].
#[derive(Debug, Clone)]
pub struct GroupPart {
    /// The group.
    pub group: Arc<Group>,
    /// The group's last batch: with it, the whole group becomes visible.
    pub last: bool,
}

/// Events travelling together with the acknowledgement of their request.
///
/// Batches, not events, cross component boundaries: per-event work is only what
/// must be per event, and metrics are counted per batch.
#[derive(Debug)]
pub struct Batch {
    /// The events, in arrival order.
    pub events: Vec<Event>,
    /// Completed by whoever finishes handling these events.
    pub ack: Ack,
    /// Set when the batch is one part of a [`Group`]; such a batch travels even
    /// when a transform left it empty, so that its group can complete.
    pub group: Option<GroupPart>,
}

impl Batch {
    /// A batch with its acknowledgement.
    pub fn new(events: Vec<Event>, ack: Ack) -> Batch {
        Batch {
            events,
            ack,
            group: None,
        }
    }

    /// This batch as a part of `group`.
    pub fn in_group(mut self, part: GroupPart) -> Batch {
        self.group = Some(part);
        self
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Approximate size of the events as JSON, for byte metrics and buffer bounds.
    pub fn estimated_bytes(&self) -> usize {
        self.events.iter().map(estimated_event_bytes).sum()
    }
}

impl Event {
    /// Approximate size of the event as JSON, without serialising it.
    pub fn estimated_json_bytes(&self) -> usize {
        estimated_event_bytes(self)
    }
}

fn estimated_event_bytes(event: &Event) -> usize {
    event.approximate_json_len()
}
