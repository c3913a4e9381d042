//! End-to-end acknowledgements.
//!
//! A source that must answer its sender (HTTP) creates an [`Ack`] per request and
//! waits on the matching [`AckWaiter`]. The ack travels with the batch: fan-out clones
//! it, transforms pass it on, and every holder must call [`Ack::complete`] once its
//! part is handled (made durable by a sink, or deliberately dropped by a filter). A
//! holder dropped without completing — a sink that failed, a task that was torn
//! down — marks the whole request failed. A holder that knows retrying cannot
//! help (a receiver answered a permanent `4xx`) calls [`Ack::reject`] instead, so
//! the sender is told not to send the same events again. When the last holder is
//! gone the waiter learns the [`Outcome`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// One holder's share of a batch's acknowledgement.
#[derive(Debug)]
pub struct Ack {
    shared: Option<Arc<Shared>>,
    completed: bool,
}

/// Resolves once every holder of the matching [`Ack`] has finished.
#[derive(Debug)]
pub struct AckWaiter {
    rx: oneshot::Receiver<Outcome>,
}

/// What became of an acknowledged batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every holder completed: the events are durable wherever they went.
    Delivered,
    /// A holder failed (storage full, a sink stopped): sending again may work.
    Failed,
    /// A holder was refused for good (a receiver's permanent `4xx`): sending the
    /// same events again will be refused again.
    Rejected,
}

#[derive(Debug)]
struct Shared {
    failed: AtomicBool,
    rejected: AtomicBool,
    tx: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let outcome = if self.rejected.load(Ordering::Acquire) {
            Outcome::Rejected
        } else if self.failed.load(Ordering::Acquire) {
            Outcome::Failed
        } else {
            Outcome::Delivered
        };
        if let Some(tx) = self.tx.get_mut().ok().and_then(Option::take) {
            let _ = tx.send(outcome);
        }
    }
}

impl Ack {
    /// A new acknowledgement and the waiter that learns its outcome.
    pub fn new() -> (Ack, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            rejected: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
        });
        (
            Ack {
                shared: Some(shared),
                completed: false,
            },
            AckWaiter { rx },
        )
    }

    /// An acknowledgement nobody waits for (sources without a reply channel).
    pub fn none() -> Ack {
        Ack {
            shared: None,
            completed: false,
        }
    }

    /// Marks this holder's share as handled.
    pub fn complete(mut self) {
        self.completed = true;
    }

    /// Marks the whole acknowledgement failed.
    pub fn fail(self) {
        // Dropping without completing is exactly a failure.
        drop(self);
    }

    /// Marks the whole acknowledgement refused for good: resending cannot help.
    pub fn reject(self) {
        if let Some(shared) = &self.shared {
            shared.rejected.store(true, Ordering::Release);
        }
        drop(self);
    }
}

impl Clone for Ack {
    fn clone(&self) -> Ack {
        Ack {
            shared: self.shared.clone(),
            completed: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.completed {
            if let Some(shared) = &self.shared {
                shared.failed.store(true, Ordering::Release);
            }
        }
    }
}

impl AckWaiter {
    /// Waits for the outcome: `true` when every holder completed.
    pub async fn delivered(self) -> bool {
        self.outcome().await == Outcome::Delivered
    }

    /// Waits for the outcome.
    pub async fn outcome(self) -> Outcome {
        self.rx.await.unwrap_or(Outcome::Failed)
    }

    /// The outcome if it is known already (a source tracking many batches).
    pub fn try_outcome(&mut self) -> Option<Outcome> {
        match self.rx.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Outcome::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivered_only_when_every_clone_completes() {
        let (ack, waiter) = Ack::new();
        let copy = ack.clone();
        ack.complete();
        copy.complete();
        assert!(waiter.delivered().await);

        let (ack, waiter) = Ack::new();
        let copy = ack.clone();
        ack.complete();
        drop(copy);
        assert!(
            !waiter.delivered().await,
            "a dropped holder fails the request"
        );

        let (ack, waiter) = Ack::new();
        ack.fail();
        assert!(!waiter.delivered().await);
    }

    #[tokio::test]
    async fn a_rejection_wins_over_completions_and_failures() {
        let (ack, waiter) = Ack::new();
        let (copy, third) = (ack.clone(), ack.clone());
        ack.complete();
        copy.reject();
        third.fail();
        assert_eq!(waiter.outcome().await, Outcome::Rejected);

        let (ack, waiter) = Ack::new();
        drop(ack.clone());
        ack.complete();
        assert_eq!(waiter.outcome().await, Outcome::Failed);
    }
}
