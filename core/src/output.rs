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

fn deliver(mut permits: Vec<mpsc::Permit<'_, Batch>>, batch: Batch) {
    let Some(last) = permits.pop() else {
        // No consumer: the topology forbids it for transforms and warns for sources;
        // the events are handled by being dropped.
        batch.ack.complete();
        return;
    };
    for permit in permits {
        permit.send(Batch::new(batch.events.clone(), batch.ack.clone()));
    }
    last.send(batch);
}
