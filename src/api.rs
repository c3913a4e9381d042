//! `GET /metrics` (Prometheus text format) and `GET /health`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sd_notify::NotifyState;
use sediment_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Where sediment is in its life: `/health` answers 200 only while it is running.
/// The API is served from the start, so its metrics show the start-up (staging
/// recovery), but until every source listens, `/health` answers 503.
///
/// The service manager hears the same transitions: `READY=1` at the moment
/// `/health` turns 200 and `STOPPING=1` when it turns 503 again (systemd's
/// `Type=notify`, through `$NOTIFY_SOCKET`; nothing is sent when it is unset).
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicU8>);

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

impl Health {
    /// The topology is up: every source accepts input. `/health` answers 200.
    pub fn set_running(&self) {
        // Never back from shutting down (a signal during start-up).
        if self
            .0
            .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            notify(&[NotifyState::Ready, NotifyState::Status("running")]);
        }
    }

    /// From now on `/health` answers 503.
    pub fn set_shutting_down(&self) {
        if self.0.swap(SHUTTING_DOWN, Ordering::AcqRel) != SHUTTING_DOWN {
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("shutting down: finishing staged hours"),
            ]);
        }
    }
}

/// Tells the service manager, if there is one; a failure costs only the message.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager through $NOTIFY_SOCKET");
    }
}

/// The running API server.
pub struct Api {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds `address` and serves the API until stopped.
pub async fn serve(address: SocketAddr, health: Health) -> anyhow::Result<Api> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (api.address)"))?;
    tracing::info!(address = %listener.local_addr()?, "api listening: GET /metrics, GET /health");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_check))
        .with_state(health);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "api server failed");
        }
    });
    Ok(Api { stop, task })
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Metrics::global().render(),
    )
}

async fn health_check(State(health): State<Health>) -> impl IntoResponse {
    match health.0.load(Ordering::Acquire) {
        RUNNING => (StatusCode::OK, "ok\n"),
        STARTING => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}
