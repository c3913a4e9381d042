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
use sediment_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Where sediment is in its life: `/health` answers 200 only while it is running.
/// The API is served from the start, so its metrics show the start-up (staging
/// recovery), but until every source listens, `/health` answers 503.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicU8>);

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

impl Health {
    /// The topology is up: every source accepts input. `/health` answers 200.
    pub fn set_running(&self) {
        // Never back from shutting down (a signal during start-up).
        let _ = self
            .0
            .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// From now on `/health` answers 503.
    pub fn set_shutting_down(&self) {
        self.0.store(SHUTTING_DOWN, Ordering::Release);
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
