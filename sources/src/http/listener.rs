//! The HTTP source's accept loop: a cap on connections, header and idle
//! timeouts, TLS, and graceful shutdown, around hyper's HTTP/1 connection driver.
//!
//! `axum::serve` has none of the first three, so slow, silent or idle clients
//! held connections — and file descriptors — for as long as they liked; under a
//! 1,024-descriptor limit about 1,010 of them made every request hang.
//!
//! - **Cap.** At most `max_connections` are open. By default that is half the
//!   process's file-descriptor limit (read at start, at most
//!   [`DEFAULT_MAX_CONNECTIONS`]), which leaves the other half to staging
//!   segments, sinks, other sources and the API's `/health`. A connection over the
//!   cap closes the longest-idle connection that has no request in progress (as
//!   nginx reuses idle keep-alive connections), so real requests are still served
//!   while idle clients hold every slot; when every connection has a request in
//!   progress, the new one is closed at once. Both are counted in
//!   `errors_total{error_type="connection_limit"}`.
//! - **Timeouts**: [`super::deadline`]. A connection that misses its head
//!   deadline is counted in `errors_total{error_type="header_timeout"}`.
//! - **TLS**: the handshake runs in the connection's own task, within the
//!   connection's head deadline, so slow handshakes never hold up accepting.
//!   Failures are counted in `errors_total{error_type="tls_handshake"}`.
//! - **Early answers** (before the body was read) say `Connection: close`, and
//!   the close lingers: see [`super::deadline`].
//! - **Shutdown**: the listener closes; idle connections close at once, requests
//!   in progress finish and get their answers.
//!
//! Repeatable warnings (failed handshakes, the cap) are logged at most once a
//! minute with a count ([`Throttle`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntCounter;
use sediment_core::metrics::ComponentMetrics;
use sediment_core::throttle::Throttle;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::deadline::{Activity, Deadline, TimedOut};
use super::respond;

/// The largest default `max_connections`, whatever the file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// hyper's own limits on a request head, twice ours ([`respond::MAX_HEADERS`],
/// [`respond::MAX_HEAD_BYTES`]): beyond them hyper answers `431` itself, with an
/// empty body (hyper offers no way to give its own error responses a body). The
/// buffer size also bounds what one connection holds while reading: 64 KiB.
const HYPER_MAX_HEADERS: usize = 2 * respond::MAX_HEADERS;
const HYPER_MAX_BUF: usize = 2 * respond::MAX_HEAD_BYTES;
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the listener serves connections: validated options plus what it counts with.
pub struct Conf {
    /// The component id, for logs.
    pub id: String,
    /// Time for a whole request head (and a new connection's TLS handshake).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// HTTPS when set.
    pub tls: Option<TlsAcceptor>,
    /// The source's metrics.
    pub metrics: ComponentMetrics,
}

/// `max_connections` under a file-descriptor soft limit of `fd_limit`: the
/// configured value, else half the limit (at most [`DEFAULT_MAX_CONNECTIONS`]);
/// with a warning when a configured value is more than half the limit.
pub fn connection_cap(configured: Option<usize>, fd_limit: Option<u64>) -> (usize, Option<String>) {
    let half = fd_limit.map(|l| usize::try_from(l / 2).unwrap_or(usize::MAX));
    match (configured, half) {
        (Some(n), Some(half)) if n > half => (
            n,
            Some(format!(
                "max_connections ({n}) is more than half of the process's file-descriptor limit ({}), \
                 so a flood of connections can leave none for the archive, the other sources and /health; \
                 raise the limit (ulimit -n, systemd LimitNOFILE=) or lower max_connections",
                fd_limit.unwrap_or_default()
            )),
        ),
        (Some(n), _) => (n, None),
        (None, Some(half)) => (half.clamp(1, DEFAULT_MAX_CONNECTIONS), None),
        (None, None) => (DEFAULT_MAX_CONNECTIONS, None),
    }
}

/// The soft `RLIMIT_NOFILE` of this process; `None` when unlimited or unknown.
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// What every connection task shares.
struct Ctx {
    conf: Conf,
    router: Router,
    http: http1::Builder,
    open: Mutex<Open>,
    epoch: Instant,
    connection_limit: IntCounter,
    header_timeouts: IntCounter,
    tls_handshake: IntCounter,
    too_large_head: IntCounter,
    limit_warnings: Throttle,
    handshake_warnings: Throttle,
    accept_warnings: Throttle,
}

/// The open connections, by accept order.
#[derive(Default)]
struct Open {
    next: u64,
    connections: HashMap<u64, Entry>,
}

struct Entry {
    activity: Arc<Activity>,
    /// Cancelled to close the connection gracefully (over the cap).
    close: CancellationToken,
}

/// Serves `listener` with `router` until `shutdown`, then lets requests in
/// progress finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    conf: Conf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF);
    let m = &conf.metrics;
    let ctx = Arc::new(Ctx {
        connection_limit: m.errors("connection_limit"),
        header_timeouts: m.errors("header_timeout"),
        tls_handshake: m.errors("tls_handshake"),
        too_large_head: m.http_requests(431),
        conf,
        router,
        http,
        open: Mutex::new(Open::default()),
        epoch: Instant::now(),
        limit_warnings: Throttle::per_minute(),
        handshake_warnings: Throttle::per_minute(),
        accept_warnings: Throttle::per_minute(),
    });
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(source = %ctx.conf.id, error = %e, "an http connection task failed");
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if let Some(n) = ctx.accept_warnings.hit() {
                    tracing::warn!(source = %ctx.conf.id, error = %e, failures = n, "cannot accept connections; retrying");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let accepted_at = Instant::now();
        let Some((entry, close)) = ctx.admit() else {
            continue; // over the cap with every connection busy: `stream` closes here
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            connection(stream, peer, accepted_at, &entry, close, shutdown).await;
        });
    }
    // Connections watch `shutdown` themselves: idle ones close, busy ones finish.
    drop(listener);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(source = %ctx.conf.id, error = %e, "an http connection task failed");
        }
    }
    Ok(())
}

/// An open connection's place in [`Open`]; leaves it on drop.
struct Registered {
    ctx: Arc<Ctx>,
    key: u64,
    activity: Arc<Activity>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.ctx.open().connections.remove(&self.key);
    }
}

impl Ctx {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection (closing the longest-idle one when at
    /// the cap) and registers it; `None` when every open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<(Registered, CancellationToken)> {
        let mut open = self.open();
        if open.connections.len() >= self.conf.max_connections {
            self.connection_limit.inc();
            if let Some(n) = self.limit_warnings.hit() {
                tracing::warn!(
                    source = %self.conf.id,
                    max_connections = self.conf.max_connections,
                    connections = n,
                    "max_connections reached: closing the longest-idle connections to make room, or the new ones when every connection has a request in progress"
                );
            }
            let victim = open
                .connections
                .iter()
                .filter(|(_, e)| !e.activity.is_busy())
                .min_by_key(|(key, e)| (e.activity.idle_since_ms(), **key))
                .map(|(key, _)| *key)?;
            if let Some(e) = open.connections.remove(&victim) {
                e.close.cancel();
            }
        }
        let key = open.next;
        open.next += 1;
        let activity = Arc::new(Activity::new(self.epoch));
        let close = CancellationToken::new();
        open.connections.insert(
            key,
            Entry {
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        Some((
            Registered {
                ctx: self.clone(),
                key,
                activity,
            },
            close,
        ))
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &str) {
        self.tls_handshake.inc();
        if let Some(n) = self.handshake_warnings.hit() {
            tracing::warn!(source = %self.conf.id, peer = %peer, error = %error, failures = n, "TLS handshakes failed (failures: how many since the last such line)");
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    accepted_at: Instant,
    entry: &Registered,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let ctx = &entry.ctx;
    let Some(acceptor) = ctx.conf.tls.clone() else {
        return serve_http(stream, peer, accepted_at, entry, close, shutdown).await;
    };
    let deadline = accepted_at + ctx.conf.header_timeout;
    let handshake = tokio::select! {
        _ = close.cancelled() => return,
        _ = shutdown.cancelled() => return,
        h = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => h,
    };
    match handshake {
        Ok(Ok(tls)) => serve_http(tls, peer, accepted_at, entry, close, shutdown).await,
        Ok(Err(e)) => ctx.handshake_failed(peer, &e.to_string()),
        Err(_) => ctx.handshake_failed(peer, "no handshake within header_timeout"),
    }
}

/// Serves HTTP/1 requests on one connection until it ends, times out, is closed
/// to make room, or the source shuts down (then after its request in progress).
async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    accepted_at: Instant,
    entry: &Registered,
    close: CancellationToken,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = entry.ctx.clone();
    let activity = entry.activity.clone();
    let io = Deadline::new(
        io,
        activity.clone(),
        accepted_at,
        ctx.conf.header_timeout,
        ctx.conf.idle_timeout,
    );
    let service = {
        let (ctx, activity) = (ctx.clone(), activity.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = activity.begin();
            let (ctx, activity) = (ctx.clone(), activity.clone());
            async move {
                let response = ctx.respond(request, peer, &activity).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = ctx.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = close.cancelled(), if !closing => closing = true,
            _ = shutdown.cancelled(), if !closing => closing = true,
        }
        // Idle: closes now; a request in progress: finishes, then the connection closes.
        conn.as_mut().graceful_shutdown();
    };
    match (result, activity.timed_out()) {
        (_, Some(TimedOut::Head)) => {
            ctx.header_timeouts.inc();
            tracing::debug!(source = %ctx.conf.id, peer = %peer, "connection closed: no whole request head within header_timeout");
        }
        (_, Some(TimedOut::Idle)) => {
            tracing::debug!(source = %ctx.conf.id, peer = %peer, "keep-alive connection closed after idle_timeout");
        }
        (Err(e), None) => {
            tracing::debug!(source = %ctx.conf.id, peer = %peer, error = %e, "connection ended with an error");
        }
        (Ok(()), None) => {}
    }
}

impl Ctx {
    /// A JSON `431` for an oversized head, else the router's answer, with
    /// framework-level rejections turned into JSON errors, and `Connection: close`
    /// when it was given before the request body was read to its end (a `401`,
    /// `413` or `503` answered early): that connection cannot carry another
    /// request, and saying so spares keep-alive clients a reset.
    async fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        activity: &Activity,
    ) -> Response {
        if let Some(response) = respond::too_large_head(&request) {
            self.too_large_head.inc();
            activity.linger();
            return response;
        }
        let (parts, body) = request.into_parts();
        let (body, read_all) = respond::Tracked::wrap(axum::body::Body::new(body));
        let mut request = Request::from_parts(parts, body);
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = match self.router.clone().call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut response = respond::json_rejection(response).await;
        if !respond::was_read(&read_all) {
            respond::close(&mut response);
            activity.linger();
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_half_the_fd_limit_and_a_larger_one_warns() {
        assert_eq!(connection_cap(None, Some(1024)), (512, None));
        assert_eq!(
            connection_cap(None, Some(1 << 20)),
            (DEFAULT_MAX_CONNECTIONS, None)
        );
        assert_eq!(connection_cap(None, Some(1)), (1, None));
        assert_eq!(connection_cap(None, None), (DEFAULT_MAX_CONNECTIONS, None));
        assert_eq!(connection_cap(Some(300), Some(1024)), (300, None));
        let (cap, warning) = connection_cap(Some(2000), Some(1024));
        assert_eq!(cap, 2000);
        assert!(warning.unwrap().starts_with(
            "max_connections (2000) is more than half of the process's file-descriptor limit (1024)"
        ));
    }
}
