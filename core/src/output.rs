//! A component's output: the senders of every downstream input (fan-out).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::batch::Batch;

/// The sending half of a component's input channel.
pub type BatchSender = mpsc::Sender<Batch>;
/// The receiving half of a component's input channel.
pub type BatchReceiver = mpsc::Receiver<Batch>;

/// Why an [`Output`] did not take a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// A downstream queue stayed full for the whole wait: back-pressure.
    #[error("the pipeline is full")]
    Full,
    /// Every downstream component has stopped.
    #[error("the pipeline is shutting down")]
    Closed,
}

/// Sends batches to every downstream consumer, copying them when there are several.
#[derive(Debug, Clone, Default)]
pub struct Output {
    senders: Vec<BatchSender>,
}

impl Output {
    /// An output feeding the given consumers.
    pub fn new(senders: Vec<BatchSender>) -> Output {
        Output { senders }
    }

    /// Number of consumers.
    pub fn consumers(&self) -> usize {
        self.senders.len()
    }

    /// Sends, waiting as long as it takes for room (transforms: back-pressure
    /// propagates upstream by not reading their own input).
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        let mut permits = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            permits.push(sender.reserve().await.map_err(|_| SendError::Closed)?);
        }
        deliver(permits, batch);
        Ok(())
    }

    /// Sends only if every consumer has room within `wait` (sources that can push
    /// back on their clients). Either every consumer gets the batch or none does.
    pub async fn try_send(&self, batch: Batch, wait: Duration) -> Result<(), (SendError, Batch)> {
        let reserve_all = async {
            let mut permits = Vec::with_capacity(self.senders.len());
            for sender in &self.senders {
                permits.push(sender.reserve().await.map_err(|_| SendError::Closed)?);
            }
            Ok(permits)
        };
        match tokio::time::timeout(wait, reserve_all).await {
            Ok(Ok(permits)) => {
                deliver(permits, batch);
                Ok(())
            }
            Ok(Err(e)) => Err((e, batch)),
            Err(_) => Err((SendError::Full, batch)),
        }
    }
}

impl Output {
    /// Sends only if every consumer has room now, without waiting: all or
    /// nothing (a source that must keep polling while it waits, such as kafka).
    pub fn try_send_now(&self, batch: Batch) -> Result<(), (SendError, Batch)> {
        let mut permits = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            match sender.try_reserve() {
                Ok(permit) => permits.push(permit),
                Err(mpsc::error::TrySendError::Full(())) => return Err((SendError::Full, batch)),
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err((SendError::Closed, batch))
                }
            }
        }
        deliver(permits, batch);
        Ok(())
    }
}

fn deliver(mut permits: Vec<mpsc::Permit<'_, Batch>>, batch: Batch) {
    let Some(last) = permits.pop() else {
        // No consumer: the topology forbids it for transforms and warns for sources;
        // the events are handled by being dropped.
        batch.ack.complete();
        return;
    };
    for permit in permits {
        permit.send(Batch {
            events: batch.events.clone(),
            ack: batch.ack.clone(),
            group: batch.group.clone(),
        });
    }
    last.send(batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Ack;
    use crate::event::Event;
    use serde_json::json;

    fn batch(n: usize) -> (Batch, crate::ack::AckWaiter) {
        let events = (0..n)
            .map(|i| {
                Event::stamp(
                    json!({"i": i}).as_object().unwrap().clone(),
                    &[],
                    0,
                    &json!({}),
                )
            })
            .collect();
        let (ack, waiter) = Ack::new();
        (Batch::new(events, ack), waiter)
    }

    #[tokio::test]
    async fn fan_out_copies_and_acknowledges_only_when_every_consumer_is_done() {
        let (tx1, mut rx1) = mpsc::channel(1);
        let (tx2, mut rx2) = mpsc::channel(1);
        let out = Output::new(vec![tx1, tx2]);
        let (b, waiter) = batch(3);
        out.send(b).await.unwrap();
        let (first, second) = (rx1.recv().await.unwrap(), rx2.recv().await.unwrap());
        assert_eq!(first.events, second.events, "each consumer gets a copy");
        first.ack.complete();
        let waiting = tokio::spawn(waiter.delivered());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one consumer is still working");
        second.ack.complete();
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn try_send_is_all_or_nothing() {
        let (tx1, mut rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let out = Output::new(vec![tx1, tx2.clone()]);
        let (filler, _) = batch(1);
        tx2.send(filler).await.unwrap(); // the second consumer is full
        let (b, waiter) = batch(2);
        let (reason, back) = out
            .try_send(b, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(reason, SendError::Full);
        assert!(
            rx1.try_recv().is_err(),
            "the free consumer got nothing either"
        );
        assert_eq!(back.len(), 2, "the batch comes back to the caller");
        drop(back);
        assert!(
            !waiter.delivered().await,
            "a batch handed back unhandled is not delivered"
        );
    }
}
