//! The header and idle timeouts of one HTTP connection, enforced on its reads.
//!
//! hyper 1.x has a `header_read_timeout`, but its clock starts whenever hyper
//! waits for a request head, which includes the wait between keep-alive requests:
//! it cannot give a silent keep-alive 60 s and a trickled head 10 s. So the
//! timeouts live here, in a wrapper of the connection's byte stream that knows,
//! from [`Activity`], whether a request is being served:
//! - **head**: from the accept (TLS handshake included) or from the first byte
//!   after an idle wait, the client has `header_timeout` to get a request to the
//!   service. Trickling bytes does not extend it.
//! - **idle**: after a response, the connection may wait `idle_timeout` for the
//!   first byte of its next request.
//! - **busy**: while a request is being served, no deadline here (the body's
//!   own timeout is the handler's).
//!
//! A deadline that passes fails the pending read with `TimedOut`, and hyper
//! closes the connection. hyper always reads while it waits for a head, so the
//! timer is polled exactly when it matters.
//!
//! **Lingering close.** A connection answered before its request body was read
//! ([`Activity::linger`]) is not simply closed: the client may still be sending
//! that body, and closing a socket with unread data makes the kernel send a
//! reset, which can destroy the answer before the client reads it. So the
//! shutdown sends FIN after the answer, then reads and discards what the client
//! still sends until it closes its end, for at most [`LINGER`] (as nginx's
//! `lingering_close` does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the request handlers tell the connection's reader: whether a request is
/// being served, how many were, and since when the connection has been idle.
#[derive(Debug)]
pub struct Activity {
    /// Requests being served: head read, response not yet produced.
    busy: AtomicUsize,
    /// Requests taken on this connection.
    served: AtomicU64,
    /// When the connection last had nothing to do, in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// Which timeout closed the connection, if one did.
    timed_out: AtomicU8,
    /// Answered before its request body was read: drain before closing.
    linger: AtomicBool,
    /// The reader waiting on the connection: woken when a request ends, since
    /// its idle deadline starts then (hyper may not read again by itself).
    reader: AtomicWaker,
    epoch: Instant,
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// No whole request head within `header_timeout`.
    Head,
    /// No next request within `idle_timeout`.
    Idle,
}

impl Activity {
    /// A new connection, idle from now; idle times count from `epoch`.
    pub fn new(epoch: Instant) -> Activity {
        Activity {
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            timed_out: AtomicU8::new(0),
            linger: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            epoch,
        }
    }

    /// A request is being served until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether a request is being served.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// Since when (ms after the epoch) the connection has had nothing to do.
    pub fn idle_since_ms(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Acquire)
    }

    /// The connection was answered before its request body was read: its close
    /// lingers (see the module docs).
    pub fn linger(&self) {
        self.linger.store(true, Ordering::Release);
    }

    /// Which timeout closed the connection, if one did.
    pub fn timed_out(&self) -> Option<TimedOut> {
        match self.timed_out.load(Ordering::Acquire) {
            1 => Some(TimedOut::Head),
            2 => Some(TimedOut::Idle),
            _ => None,
        }
    }
}

/// A request in service; dropping it makes the connection idle again.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms
            .store(a.epoch.elapsed().as_millis() as u64, Ordering::Release);
        a.busy.fetch_sub(1, Ordering::AcqRel);
        a.reader.wake();
    }
}

/// Longest a connection answered early keeps reading what its client sends.
pub const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Idle,
    Busy,
}

/// A connection's byte stream with the header and idle timeouts on its reads.
pub struct Deadline<S> {
    io: S,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Phase,
    /// `served` when the phase was last worked out.
    seen: u64,
    sleep: Pin<Box<Sleep>>,
    /// Lingering: the write half is shut, the rest is being drained.
    lingering: bool,
}

impl<S> Deadline<S> {
    /// `io`, accepted at `accepted`: its first head is due `header_timeout` after that.
    pub fn new(
        io: S,
        activity: Arc<Activity>,
        accepted: Instant,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Deadline<S> {
        Deadline {
            io,
            activity,
            header_timeout,
            idle_timeout,
            phase: Phase::Head,
            seen: 0,
            sleep: Box::pin(tokio::time::sleep_until(accepted + header_timeout)),
            lingering: false,
        }
    }

    /// Moves to the phase the handlers' activity implies.
    fn update_phase(&mut self) {
        if self.activity.is_busy() {
            self.phase = Phase::Busy;
            return;
        }
        let served = self.activity.served.load(Ordering::Acquire);
        if self.phase == Phase::Busy || served != self.seen {
            // A response went out since we last looked: wait for the next request.
            self.seen = served;
            self.phase = Phase::Idle;
            let deadline = Instant::now() + self.idle_timeout;
            self.sleep.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.activity.reader.register(cx.waker());
        this.update_phase();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.phase == Phase::Busy {
            return read;
        }
        if let Poll::Ready(result) = read {
            if this.phase == Phase::Idle && buf.filled().len() > before {
                this.phase = Phase::Head;
                let deadline = Instant::now() + this.header_timeout;
                this.sleep.as_mut().reset(deadline);
            }
            return Poll::Ready(result);
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let (code, message) = match this.phase {
            Phase::Idle => (2, "no request within idle_timeout"),
            _ => (1, "no whole request head within header_timeout"),
        };
        this.activity.timed_out.store(code, Ordering::Release);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.lingering {
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            if !this.activity.linger.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            this.lingering = true;
            this.sleep.as_mut().reset(Instant::now() + LINGER);
        }
        // At most 16 reads per poll, so a client that keeps sending cannot hold
        // the worker; the deadline bounds the whole drain.
        let mut scratch = [0u8; 8192];
        let mut more = false;
        for _ in 0..16 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => more = true,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    more = false;
                    break;
                }
            }
        }
        if more {
            cx.waker().wake_by_ref();
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn pair() -> (
        Deadline<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Activity>,
    ) {
        let (server, client) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = Deadline::new(server, activity.clone(), Instant::now(), HEAD, IDLE);
        (io, client, activity)
    }

    async fn read_error_after(io: &mut Deadline<tokio::io::DuplexStream>) -> (Duration, io::Error) {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => return (start.elapsed(), e),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_gets_header_timeout() {
        let (mut io, _client, activity) = pair();
        let (after, e) = read_error_after(&mut io).await;
        assert_eq!((after, e.kind()), (HEAD, io::ErrorKind::TimedOut));
        assert_eq!(activity.timed_out(), Some(TimedOut::Head));
    }

    #[tokio::test(start_paused = true)]
    async fn trickling_a_head_does_not_extend_header_timeout() {
        let (mut io, mut client, activity) = pair();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let (after, _) = read_error_after(&mut io).await;
        assert_eq!(after, HEAD);
        assert_eq!(activity.timed_out(), Some(TimedOut::Head));
    }

    /// One request served for 30 s (no deadline meanwhile), then the reader is
    /// polled again, as hyper does once the response is out.
    async fn served_one(
        io: &mut Deadline<tokio::io::DuplexStream>,
        client: &mut tokio::io::DuplexStream,
        activity: &Arc<Activity>,
    ) {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let busy = activity.begin();
        let polled = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf)).await;
        assert!(polled.is_err(), "no deadline while the request is served");
        drop(busy);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_starts_when_a_request_ends_though_the_reader_waited_through_it() {
        // hyper reads before it runs the service and may not read again after the
        // response: the end of the request must wake the reader to start its deadline.
        let (mut io, mut client, activity) = pair();
        let start = Instant::now();
        let reader = tokio::spawn(async move { read_error_after(&mut io).await });
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        tokio::task::yield_now().await;
        let busy = activity.begin();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(busy);
        let (_, e) = tokio::time::timeout(Duration::from_secs(1000), reader)
            .await
            .expect("the reader times out")
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(activity.timed_out(), Some(TimedOut::Idle));
        assert_eq!(start.elapsed(), Duration::from_secs(30) + IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_response_a_silent_connection_gets_idle_timeout() {
        let (mut io, mut client, activity) = pair();
        served_one(&mut io, &mut client, &activity).await;
        let (after, e) = read_error_after(&mut io).await;
        assert_eq!((after, e.kind()), (IDLE, io::ErrorKind::TimedOut));
        assert_eq!(activity.timed_out(), Some(TimedOut::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_the_next_request_starts_header_timeout() {
        let (mut io, mut client, activity) = pair();
        served_one(&mut io, &mut client, &activity).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(40)).await;
            client.write_all(b"P").await.unwrap();
            std::future::pending::<()>().await
        });
        let (after, e) = read_error_after(&mut io).await;
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(activity.timed_out(), Some(TimedOut::Head));
        assert_eq!(after, Duration::from_secs(40) + HEAD);
    }
}
