//! Handing a request's events to the pipeline: whole, or a large body's
//! chunks as one group, and waiting for their acknowledgements.

use std::time::Duration;

use sediment_core::output::SendError;
use sediment_core::{Ack, Batch, Event, Outcome, Output};

use super::chunks;

/// How sending a request's batches ended.
pub(super) enum Sent {
    /// Every batch went in; the worst outcome of their acknowledgements.
    All(Outcome),
    /// The pipeline refused the (first or a later) batch.
    Refused(SendError),
}

/// Sends a request's events as one batch, waiting up to `queue_timeout` for
/// room, then for its acknowledgement.
pub(super) async fn send_whole(out: &Output, queue_timeout: Duration, events: Vec<Event>) -> Sent {
    let (ack, waiter) = Ack::new();
    match out.try_send(Batch::new(events, ack), queue_timeout).await {
        Ok(()) => Sent::All(waiter.outcome().await),
        Err((reason, batch)) => {
            batch.ack.complete();
            Sent::Refused(reason)
        }
    }
}

/// Streams a validated large body's chunks, [`chunks::OUTSTANDING`] at once,
/// as one group: archive sinks make it visible whole, with its last chunk, or
/// not at all. Later chunks wait for room up to `request_timeout`: a busy
/// pipeline slows a large request down rather than failing it.
pub(super) async fn send_chunked(
    out: &Output,
    queue_timeout: Duration,
    request_timeout: Duration,
    chunker: chunks::Chunker,
) -> Sent {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let producer = tokio::task::spawn_blocking(move || chunker.run(tx));
    let mut pending = std::collections::VecDeque::new();
    let mut worst = Outcome::Delivered;
    let mut refused = None;
    let mut first = true;
    let group = sediment_core::Group::new();
    // Abandons the group unless its last part went in, whatever ends this
    // future (an error, a timeout, the client going away).
    let mut guard = AbandonUnlessSent {
        group: group.clone(),
        sent: false,
    };
    let timeout = request_timeout;
    while let Some((events, last)) = rx.recv().await {
        while pending.len() >= chunks::OUTSTANDING {
            let waiter: sediment_core::ack::AckWaiter = pending.pop_front().expect("not empty");
            match tokio::time::timeout(timeout, waiter.outcome()).await {
                Ok(outcome) => worst = worse(worst, outcome),
                // A part stuck downstream: give up before the last part goes.
                Err(_) => refused = Some(SendError::Full),
            }
        }
        if worst != Outcome::Delivered || refused.is_some() {
            break;
        }
        let wait = if first {
            queue_timeout
        } else {
            request_timeout
        };
        first = false;
        let (ack, waiter) = Ack::new();
        let part = sediment_core::GroupPart {
            group: group.clone(),
            last,
        };
        let batch = Batch::new(events, ack).in_group(part);
        match out.try_send(batch, wait).await {
            Ok(()) => {
                guard.sent = last;
                pending.push_back(waiter);
            }
            Err((reason, batch)) => {
                batch.ack.complete();
                refused = Some(reason);
                break;
            }
        }
    }
    drop(rx);
    let _ = producer.await;
    drop(guard); // abandons the group unless its last part went in
    if let Some(reason) = refused {
        // The group will never complete: its parts are discarded wherever they
        // are, so the client need not wait for them (they may sit in a stuck sink).
        return Sent::Refused(reason);
    }
    for waiter in pending {
        worst = worse(worst, waiter.outcome().await);
    }
    Sent::All(worst)
}

/// Abandons a group when dropped before its last part was sent.
struct AbandonUnlessSent {
    group: std::sync::Arc<sediment_core::Group>,
    sent: bool,
}

impl Drop for AbandonUnlessSent {
    fn drop(&mut self) {
        if !self.sent {
            self.group.abandon();
        }
    }
}

fn worse(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Rejected, _) | (_, Outcome::Rejected) => Outcome::Rejected,
        (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
        _ => Outcome::Delivered,
    }
}
