//! UDP: one datagram is one message. UDP cannot push back on its senders, so a
//! batch that finds the pipeline full is dropped and counted, never queued.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use sediment_core::component::{BuildContext, Source};
use sediment_core::event::format_time_ms;
use sediment_core::Output;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::pending::{Pending, Shared, MAX_BATCH_EVENTS};
use super::record::{Arrival, Origin};
use super::SyslogSettings;

/// Larger than any UDP payload (65,507 bytes over IPv4).
const DATAGRAM_BUFFER: usize = 1 << 16;

/// A bound UDP syslog source.
pub struct UdpSource {
    socket: UdpSocket,
    shared: Arc<Shared>,
}

impl UdpSource {
    /// Binds the listen address.
    pub fn bind(settings: SyslogSettings, cx: &BuildContext) -> anyhow::Result<UdpSource> {
        let address = settings.address;
        let socket = bind(address, settings.receive_buffer_bytes)
            .map_err(|e| anyhow::anyhow!("cannot listen on udp {address}: {e}"))?;
        let source = UdpSource {
            socket,
            shared: Arc::new(Shared::new(settings, cx)),
        };
        tracing::info!(source = %cx.id, address = %source.local_addr()?, mode = "udp", "syslog source listening");
        Ok(source)
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

fn bind(address: SocketAddr, receive_buffer: Option<usize>) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// Per-datagram state that is worth reusing between datagrams.
struct Reader {
    pending: Pending,
    origin: Option<(SocketAddr, Origin)>,
    received_at: (i64, String),
}

impl Reader {
    fn datagram(&mut self, bytes: &[u8], peer: SocketAddr, shared: &Shared) {
        if !shared.settings.permits(peer.ip()) {
            shared.counters.origin_refused.inc();
            return;
        }
        let max = shared.settings.max_message_size;
        let truncated = bytes.len() > max;
        let bytes = &bytes[..bytes.len().min(max)];
        let now_ms = shared.clock.now_ms();
        if self.received_at.0 != now_ms {
            self.received_at = (now_ms, format_time_ms(now_ms));
        }
        if self.origin.as_ref().is_none_or(|(last, _)| *last != peer) {
            self.origin = Some((peer, Origin::of(peer)));
        }
        let origin = &self.origin.as_ref().expect("set just above").1;
        let arrival = Arrival {
            origin,
            now_ms,
            received_at: &self.received_at.1,
        };
        match shared.builder.build(bytes, truncated, &arrival) {
            Some(built) => self.pending.push(built, bytes.len(), truncated),
            None if truncated => self.pending.count_truncated(),
            None => {}
        }
    }
}

#[async_trait]
impl Source for UdpSource {
    async fn run(self: Box<Self>, out: Output, shutdown: CancellationToken) -> anyhow::Result<()> {
        let UdpSource { socket, shared } = *self;
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut reader = Reader {
            pending: Pending::default(),
            origin: None,
            received_at: (i64::MIN, String::new()),
        };
        loop {
            let deadline = reader.pending.deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {}
                received = socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, peer)) => reader.datagram(&buf[..n], peer, &shared),
                        Err(e) => {
                            shared.counters.read.inc();
                            tracing::debug!(source = %shared.id, error = %e, "cannot receive a datagram");
                        }
                    }
                    // Take what is already queued without waiting, up to one batch.
                    for _ in 1..MAX_BATCH_EVENTS {
                        if reader.pending.is_full() {
                            break;
                        }
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, peer)) => reader.datagram(&buf[..n], peer, &shared),
                            Err(_) => break,
                        }
                    }
                    if !reader.pending.is_full() {
                        continue;
                    }
                }
            }
            // The linger ran out or the batch is full.
            if reader.pending.offer(&out, &shared).await.is_err() {
                return Ok(());
            }
        }
        // Shutting down: the pipeline still drains, so the last batch may wait for room.
        let _ = reader.pending.send(&out, &shared).await;
        Ok(())
    }
}
