//! The batch a reader is filling, the limits that send it, and the source's counters.

use std::time::Duration;

use prometheus::IntCounter;
use sediment_core::metrics::ComponentMetrics;
use sediment_core::output::SendError;
use sediment_core::{Ack, AckWaiter, Batch, Event, Output};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::record::Built;

/// A batch is sent once it holds this many messages… (500 rather than 1,000: the
/// same CPU per message in `scripts/bench-syslog`, and half the memory in flight.)
pub const MAX_BATCH_EVENTS: usize = 500;
/// …or this many message bytes…
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// …or once its first message has waited this long.
pub const BATCH_LINGER: Duration = Duration::from_millis(20);
/// Batches of one source sent downstream and not yet durable; each batch carries an
/// acknowledgement that frees its slot. Syslog senders wait for no acknowledgement,
/// so without this bound a fast sender would fill every queue up to the sink (8
/// batches per channel, plus compression and commit queues): in `scripts/bench-syslog`
/// peak RSS was 174 MiB without it (1,000-message batches) and 40 MiB with it
/// (500-message batches). It also bounds what a crash can lose to these batches
/// plus each connection's filling batch.
pub const MAX_IN_FLIGHT_BATCHES: usize = 8;

/// Events on their way into one batch, with their per-batch counts.
#[derive(Debug, Default)]
pub struct Pending {
    events: Vec<Event>,
    bytes: usize,
    parse_errors: u64,
    truncated: u64,
    since: Option<Instant>,
}

impl Pending {
    /// Adds one message of `raw_len` bytes.
    pub fn push(&mut self, built: Built, raw_len: usize, truncated: bool) {
        if self.events.is_empty() {
            self.since = Some(Instant::now());
            self.events.reserve(MAX_BATCH_EVENTS.min(64));
        }
        self.events.push(built.event);
        self.bytes += raw_len;
        self.parse_errors += u64::from(built.parse_error);
        self.truncated += u64::from(truncated);
    }

    /// Counts a truncated message that produced no event (blank once cut).
    pub fn count_truncated(&mut self) {
        self.truncated += 1;
    }

    /// The batch reached a size limit.
    pub fn is_full(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES
    }

    /// When the linger of a non-empty batch runs out.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + BATCH_LINGER)
    }

    /// Takes the batch (if any) and records its counts.
    fn take(&mut self, counters: &Counters) -> Option<Vec<Event>> {
        counters.parse_errors.inc_by(self.parse_errors);
        counters.truncated.inc_by(self.truncated);
        (self.parse_errors, self.truncated) = (0, 0);
        self.since = None;
        if self.events.is_empty() {
            return None;
        }
        counters.received_events.inc_by(self.events.len() as u64);
        counters.received_bytes.inc_by(self.bytes as u64);
        self.bytes = 0;
        Some(std::mem::take(&mut self.events))
    }

    /// TCP/TLS: sends the batch, waiting for an in-flight slot and for room — while
    /// it waits, the connection is not read, which is TCP back-pressure. `Err` when
    /// the pipeline is gone.
    pub async fn send(&mut self, out: &Output, shared: &Shared) -> Result<(), SendError> {
        let Some(events) = self.take(&shared.counters) else {
            return Ok(());
        };
        let slot = shared
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed");
        let n = events.len() as u64;
        let (ack, waiter) = Ack::new();
        out.send(Batch::new(events, ack)).await?;
        shared.counters.sent_events.inc_by(n);
        watch(slot, waiter, shared.counters.not_durable.clone());
        Ok(())
    }

    /// UDP: sends the batch only if there is a slot and room now; otherwise drops
    /// and counts it. `Err` when the pipeline is gone.
    pub async fn offer(&mut self, out: &Output, shared: &Shared) -> Result<(), SendError> {
        let Some(events) = self.take(&shared.counters) else {
            return Ok(());
        };
        let n = events.len() as u64;
        let Ok(slot) = shared.in_flight.clone().try_acquire_owned() else {
            shared.counters.queue_full.inc_by(n);
            return Ok(());
        };
        let (ack, waiter) = Ack::new();
        match out.try_send(Batch::new(events, ack), Duration::ZERO).await {
            Ok(()) => {
                shared.counters.sent_events.inc_by(n);
                watch(slot, waiter, shared.counters.not_durable.clone());
                Ok(())
            }
            Err((reason, batch)) => {
                batch.ack.complete();
                shared.counters.queue_full.inc_by(n);
                match reason {
                    SendError::Full => Ok(()),
                    SendError::Closed => Err(SendError::Closed),
                }
            }
        }
    }
}

/// Frees the in-flight slot once the batch is durable in every sink (or failed).
fn watch(slot: OwnedSemaphorePermit, waiter: AckWaiter, not_durable: IntCounter) {
    tokio::spawn(async move {
        if !waiter.delivered().await {
            not_durable.inc();
        }
        drop(slot);
    });
}

/// The source's metric handles, resolved once.
#[derive(Debug, Clone)]
pub struct Counters {
    received_events: IntCounter,
    received_bytes: IntCounter,
    sent_events: IntCounter,
    parse_errors: IntCounter,
    truncated: IntCounter,
    /// `discarded_events_total{reason="queue_full"}`: UDP batches the pipeline had no room for.
    pub queue_full: IntCounter,
    /// `errors_total{error_type="origin_refused"}`: connections and datagrams from
    /// addresses outside `permit_origin`.
    pub origin_refused: IntCounter,
    /// `errors_total{error_type="tls_handshake"}`.
    pub tls_handshake: IntCounter,
    /// `errors_total{error_type="connection_limit"}`: handshakes in progress
    /// closed to make room for a new connection.
    pub connection_limit: IntCounter,
    /// `errors_total{error_type="read"}`: connections that ended with an I/O error.
    pub read: IntCounter,
    /// `errors_total{error_type="not_durable"}`: batches a sink could not make durable.
    pub not_durable: IntCounter,
}

impl Counters {
    /// Resolves the handles of one source.
    pub fn new(m: &ComponentMetrics) -> Counters {
        Counters {
            received_events: m.received_events.clone(),
            received_bytes: m.received_bytes.clone(),
            sent_events: m.sent_events.clone(),
            parse_errors: m.syslog_parse_errors(),
            truncated: m.errors("truncated"),
            queue_full: m.discarded("queue_full", ""),
            origin_refused: m.errors("origin_refused"),
            tls_handshake: m.errors("tls_handshake"),
            connection_limit: m.errors("connection_limit"),
            read: m.errors("read"),
            not_durable: m.errors("not_durable"),
        }
    }
}

/// What every reader of one source shares.
#[derive(Debug)]
pub struct Shared {
    /// The component id.
    pub id: String,
    /// The validated options.
    pub settings: super::SyslogSettings,
    /// Turns messages into events.
    pub builder: super::record::EventBuilder,
    /// Metric handles.
    pub counters: Counters,
    /// Receive times come from here.
    pub clock: sediment_core::clock::SharedClock,
    /// Slots for batches sent and not yet durable ([`MAX_IN_FLIGHT_BATCHES`]).
    pub in_flight: std::sync::Arc<Semaphore>,
    /// One warning a minute about failed TLS handshakes.
    pub handshake_warnings: sediment_core::throttle::Throttle,
}

impl Shared {
    /// The shared state of the source being built in `cx`.
    pub fn new(
        settings: super::SyslogSettings,
        cx: &sediment_core::component::BuildContext,
    ) -> Shared {
        Shared {
            id: cx.id.clone(),
            builder: super::record::EventBuilder::new(&cx.id, settings.timezone),
            settings,
            counters: Counters::new(&cx.metrics),
            clock: cx.clock.clone(),
            in_flight: std::sync::Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES)),
            handshake_warnings: sediment_core::throttle::Throttle::per_minute(),
        }
    }
}
