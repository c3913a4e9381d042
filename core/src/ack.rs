//! End-to-end acknowledgements.
//!
//! A source that must answer its sender (HTTP) creates an [`Ack`] per request and
//! waits on the matching [`AckWaiter`]. The ack travels with the batch: fan-out clones
//! it, transforms pass it on, and every holder must call [`Ack::complete`] once its
//! part is handled (made durable by a sink, or deliberately dropped by a filter). A
//! holder dropped without completing — a sink that failed, a task that was torn
//! down — marks the whole request failed. When the last holder is gone the waiter
//! learns the outcome.

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
    rx: oneshot::Receiver<bool>,
}

#[derive(Debug)]
struct Shared {
    failed: AtomicBool,
    tx: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let delivered = !self.failed.load(Ordering::Acquire);
        if let Some(tx) = self.tx.get_mut().ok().and_then(Option::take) {
            let _ = tx.send(delivered);
        }
    }
}

impl Ack {
    /// A new acknowledgement and the waiter that learns its outcome.
    pub fn new() -> (Ack, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
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
        self.rx.await.unwrap_or(false)
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
}
