//! Batches: what crosses every channel of the topology.

use crate::ack::Ack;
use crate::event::Event;

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
}

impl Batch {
    /// A batch with its acknowledgement.
    pub fn new(events: Vec<Event>, ack: Ack) -> Batch {
        Batch { events, ack }
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
    fn value(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len() + 2,
            serde_json::Value::Object(m) => {
                m.iter().map(|(k, v)| k.len() + 4 + value(v)).sum::<usize>() + 2
            }
            serde_json::Value::Array(a) => a.iter().map(|v| value(v) + 1).sum::<usize>() + 2,
            _ => 8,
        }
    }
    event
        .fields
        .iter()
        .map(|(k, v)| k.len() + 4 + value(v))
        .sum::<usize>()
        + 2
}
