//! TCP and TLS: accepting connections, and reading framed messages from each.
//!
//! Each connection is one task that reads into a bounded buffer, frames and
//! parses what it read (bounded work per read: at most [`READ_BUFFER`] bytes), and
//! sends its batch with [`Pending::send`], which waits for room: the socket is not
//! read meanwhile, so a slow pipeline slows the sender through TCP flow control.
//!
//! A connection holds one of `connection_limit` slots from accept to close. It is
//! closed after `idle_timeout` without a byte (time spent waiting for the pipeline
//! does not count). A TLS handshake runs in the connection's task, within
//! [`TLS_HANDSHAKE_TIMEOUT`]; when every slot is taken, the next connection
//! closes the oldest handshake in progress ([`Handshakes`]) instead of waiting
//! for a slot, so connections that never handshake cannot hold up real clients.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use sediment_core::component::{BuildContext, Source};
use sediment_core::event::format_time_ms;
use sediment_core::output::SendError;
use sediment_core::Output;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::framing::Framer;
use super::pending::{Pending, Shared};
use super::record::{Arrival, Origin};
use super::SyslogSettings;

/// Bytes read from a connection at once.
pub const READ_BUFFER: usize = 64 << 10;
/// How long a TLS client may take to complete its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound TCP or TLS syslog source.
pub struct TcpSource {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
}

impl TcpSource {
    /// Binds the listen address.
    pub fn bind(settings: SyslogSettings, cx: &BuildContext) -> anyhow::Result<TcpSource> {
        let address = settings.address;
        let listener = crate::net::listen(address, settings.receive_buffer_bytes)
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let source = TcpSource {
            listener,
            acceptor: settings.tls.clone().map(TlsAcceptor::from),
            shared: Arc::new(Shared::new(settings, cx)),
        };
        tracing::info!(source = %cx.id, address = %source.local_addr()?, mode = ?source.shared.settings.mode, "syslog source listening");
        Ok(source)
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

#[async_trait]
impl Source for TcpSource {
    async fn run(self: Box<Self>, out: Output, shutdown: CancellationToken) -> anyhow::Result<()> {
        let TcpSource {
            listener,
            acceptor,
            shared,
        } = *self;
        let permits = Arc::new(Semaphore::new(shared.settings.connection_limit));
        let handshakes = Arc::new(Handshakes::default());
        let mut connections = JoinSet::new();
        loop {
            // Reaped here rather than in the `select!`: `accept` may hold an accepted
            // connection while it waits for a slot, and must not be dropped then.
            while let Some(done) = connections.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(source = %shared.id, error = %e, "a syslog connection task failed");
                }
            }
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                accepted = accept(&listener, &permits, &handshakes, &shared) => accepted,
            };
            let (stream, peer, permit) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(source = %shared.id, error = %e, "cannot accept a connection; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if !shared.settings.permits(peer.ip()) {
                shared.counters.origin_refused.inc();
                tracing::debug!(source = %shared.id, peer = %peer, "connection refused: not in permit_origin");
                continue;
            }
            if let Some(idle) = shared.settings.keepalive {
                let keepalive = TcpKeepalive::new().with_time(idle).with_interval(idle);
                if let Err(e) = SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
                    tracing::debug!(source = %shared.id, peer = %peer, error = %e, "cannot enable TCP keepalive");
                }
            }
            // Registered here, before the next accept looks for one to close.
            let handshake = acceptor.clone().map(|a| (a, handshakes.begin()));
            let (shared, out, shutdown) = (shared.clone(), out.clone(), shutdown.clone());
            connections.spawn(async move {
                let _permit = permit;
                connection(stream, peer, handshake, &shared, &out, &shutdown).await;
            });
        }
        // Stop accepting; every connection flushes its batch and ends.
        drop(listener);
        while let Some(done) = connections.join_next().await {
            if let Err(e) = done {
                tracing::error!(source = %shared.id, error = %e, "a syslog connection task failed");
            }
        }
        Ok(())
    }
}

/// Waits for a slot and accepts a connection. With every slot taken and a TLS
/// handshake in progress, accepts at once and closes the oldest handshake to
/// free its slot.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    handshakes: &Handshakes,
    shared: &Shared,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let acquire = || async {
        permits
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    };
    if permits.available_permits() == 0 && handshakes.in_progress() {
        let (stream, peer) = listener.accept().await?;
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Ok((stream, peer, permit));
        }
        if handshakes.close_oldest() {
            shared.counters.connection_limit.inc();
            tracing::debug!(source = %shared.id, peer = %peer, "every connection slot taken: closed the oldest TLS handshake in progress");
        }
        return Ok((stream, peer, acquire().await));
    }
    let permit = acquire().await;
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

/// TLS handshakes in progress, oldest first, each with the token that closes it.
#[derive(Debug, Default)]
struct Handshakes(Mutex<(u64, BTreeMap<u64, CancellationToken>)>);

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, CancellationToken>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a handshake; it is over when the guard drops.
    fn begin(self: &Arc<Self>) -> (HandshakeGuard, CancellationToken) {
        let mut g = self.lock();
        let key = g.0;
        g.0 += 1;
        let token = CancellationToken::new();
        g.1.insert(key, token.clone());
        (HandshakeGuard(self.clone(), key), token)
    }

    fn in_progress(&self) -> bool {
        !self.lock().1.is_empty()
    }

    /// Closes the oldest handshake in progress; false when there is none.
    fn close_oldest(&self) -> bool {
        let oldest = self.lock().1.pop_first();
        oldest.map(|(_, token)| token.cancel()).is_some()
    }
}

/// A handshake in progress; leaves [`Handshakes`] on drop.
struct HandshakeGuard(Arc<Handshakes>, u64);

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.0.lock().1.remove(&self.1);
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<(TlsAcceptor, (HandshakeGuard, CancellationToken))>,
    shared: &Shared,
    out: &Output,
    shutdown: &CancellationToken,
) {
    let origin = Origin::of(peer);
    let Some((acceptor, (guard, closed))) = tls else {
        return read_messages(stream, &origin, shared, out, shutdown).await;
    };
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = closed.cancelled() => return,
        h = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => h,
    };
    drop(guard);
    let failure = match handshake {
        Ok(Ok(tls)) => return read_messages(tls, &origin, shared, out, shutdown).await,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
    };
    shared.counters.tls_handshake.inc();
    if let Some(n) = shared.handshake_warnings.hit() {
        tracing::warn!(source = %shared.id, peer = %peer, error = %failure, failures = n, "TLS handshakes failed (failures: how many since the last such line)");
    }
}

/// Reads one connection until it ends or the source shuts down, then sends what
/// it holds, a partial last frame included.
async fn read_messages<S: AsyncRead + Unpin>(
    mut stream: S,
    origin: &Origin,
    shared: &Shared,
    out: &Output,
    shutdown: &CancellationToken,
) {
    let mut framer = Framer::new(shared.settings.max_message_size);
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut pending = Pending::default();
    let idle_timeout = shared.settings.idle_timeout;
    // Restarted after every read and every wait for the pipeline.
    let mut idle = tokio::time::Instant::now() + idle_timeout;
    loop {
        if buf.capacity() - buf.len() < READ_BUFFER / 4 {
            buf.reserve(READ_BUFFER);
        }
        let deadline = pending.deadline();
        let read = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                if pending.send(out, shared).await.is_err() {
                    return;
                }
                idle = tokio::time::Instant::now() + idle_timeout;
                continue;
            }
            _ = tokio::time::sleep_until(idle) => {
                tracing::debug!(source = %shared.id, peer = %origin.remote_addr, timeout = ?idle_timeout, "connection closed: nothing received within idle_timeout");
                None
            }
            r = stream.read_buf(&mut buf) => Some(r),
        };
        let end = match read {
            None | Some(Ok(0)) => true,
            Some(Ok(_)) => false,
            Some(Err(e)) => {
                shared.counters.read.inc();
                tracing::debug!(source = %shared.id, peer = %origin.remote_addr, error = %e, "connection ended with an error");
                true
            }
        };
        let drained = drain(
            &mut framer,
            &mut buf,
            end,
            origin,
            shared,
            &mut pending,
            out,
        )
        .await;
        if drained.is_err() {
            return;
        }
        if end {
            break;
        }
        idle = tokio::time::Instant::now() + idle_timeout;
    }
    let _ = pending.send(out, shared).await;
}

/// Frames, parses and batches everything complete in `buf` (everything, at `end`).
async fn drain(
    framer: &mut Framer,
    buf: &mut BytesMut,
    end: bool,
    origin: &Origin,
    shared: &Shared,
    pending: &mut Pending,
    out: &Output,
) -> Result<(), SendError> {
    let now_ms = shared.clock.now_ms();
    let received_at = format_time_ms(now_ms);
    let arrival = Arrival {
        origin,
        now_ms,
        received_at: &received_at,
    };
    loop {
        let frame = if end {
            framer.decode_eof(buf)
        } else {
            framer.decode(buf)
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        match shared
            .builder
            .build(&frame.bytes, frame.truncated, &arrival)
        {
            Some(built) => pending.push(built, frame.bytes.len(), frame.truncated),
            None if frame.truncated => pending.count_truncated(),
            None => {}
        }
        if pending.is_full() {
            pending.send(out, shared).await?;
        }
    }
}
