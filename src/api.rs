//! `GET /metrics` (Prometheus text format) and `GET /health`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sediment_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// Whether sediment is shutting down (then `/health` answers 503).
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// From now on `/health` answers 503.
    pub fn set_shutting_down(&self) {
        self.0.store(true, Ordering::Release);
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
    if health.0.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}
