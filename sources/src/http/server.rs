//! The HTTP server: auth, limits, back-pressure, and waiting for durability.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use sediment_core::component::{BuildContext, Source};
use sediment_core::event::{format_time_ms, now_ms, Replaced};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::output::SendError;
use sediment_core::{Outcome, Output};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::auth::authorized;
use super::body;
use super::budget::{MemoryBudget, Shortfall};
use super::chunks::{self, Prepared};
use super::decode::{self, BodyError, Format};
use super::idempotency::{self, Begin, Keys};
use super::listener;
use super::respond::error_response;
use super::send::{send_chunked, send_whole, Sent};
use super::{AuthOptions, HttpSettings, MEZMO_PATH};

/// The request header naming a request for de-duplication.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A bound, not yet serving, HTTP source.
pub struct HttpSource {
    keys: Keys,
    listener: TcpListener,
    settings: HttpSettings,
    id: String,
    metrics: ComponentMetrics,
    /// `max_connections`, resolved against the fd limit.
    max_connections: usize,
}

struct Shared {
    settings: HttpSettings,
    id: String,
    out: Output,
    metrics: ComponentMetrics,
    in_flight: Semaphore,
    /// What request bodies and their events may hold at once.
    budget: MemoryBudget,
    /// Idempotency keys of requests taken.
    keys: Keys,
}

impl HttpSource {
    /// Binds the listen address.
    pub async fn bind(settings: HttpSettings, cx: &BuildContext) -> anyhow::Result<HttpSource> {
        let listener = crate::net::listen(settings.address, None)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.address))?;
        let (max_connections, warning) =
            listener::connection_cap(settings.max_connections, listener::fd_limit());
        if let Some(warning) = warning {
            tracing::warn!(source = %cx.id, "{warning}");
        }
        tracing::info!(source = %cx.id, address = %listener.local_addr()?, path = %settings.path, tls = settings.tls.is_some(), max_connections, "http source listening");
        Ok(HttpSource {
            max_connections,
            keys: Keys::open(&cx.data_dir.join(&cx.id), &cx.id),
            listener,
            settings,
            id: cx.id.clone(),
            metrics: cx.metrics.clone(),
        })
    }
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, out: Output, shutdown: CancellationToken) -> anyhow::Result<()> {
        let shared = Arc::new(Shared {
            in_flight: Semaphore::new(self.settings.max_in_flight),
            budget: MemoryBudget::new(self.settings.memory_limit),
            settings: self.settings,
            id: self.id,
            out,
            metrics: self.metrics,
            keys: self.keys,
        });
        let conf = listener::Conf {
            id: shared.id.clone(),
            header_timeout: shared.settings.header_timeout,
            idle_timeout: shared.settings.idle_timeout,
            max_connections: self.max_connections,
            tls: shared.settings.tls.clone().map(TlsAcceptor::from),
            metrics: shared.metrics.clone(),
        };
        let app = Router::new()
            .route(&shared.settings.path, post(ingest))
            .route(MEZMO_PATH, post(ingest_mezmo))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(shared);
        listener::serve(self.listener, app, conf, shutdown).await?;
        Ok(())
    }
}

async fn ingest(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = decode::format_of(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    handle(&shared, peer, query, headers, body, format).await
}

async fn ingest_mezmo(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&shared, peer, query, headers, body, Ok(Format::Mezmo)).await
}

async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Body,
    format: Result<Format, BodyError>,
) -> Response {
    let (status, body) = accept_once(shared, peer, query, &headers, body, format).await;
    shared.metrics.http_requests(status.as_u16()).inc();
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        let scheme = match shared.settings.auth {
            Some(AuthOptions::Basic { .. }) => "Basic realm=\"sediment\"",
            _ => "Bearer",
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(scheme),
        );
    }
    response
}

/// `404` for any other path, as a JSON error.
async fn not_found(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    shared.metrics.http_requests(404).inc();
    error_response(
        StatusCode::NOT_FOUND,
        &format!(
            "nothing is served at {}: send logs with POST to {} or {MEZMO_PATH}",
            uri.path(),
            shared.settings.path
        ),
    )
}

/// `405` for a method other than `POST`, as a JSON error.
async fn method_not_allowed(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
) -> Response {
    shared.metrics.http_requests(405).inc();
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} takes POST, not {method}", uri.path()),
    )
}

/// [`accept`], taking a request with an `Idempotency-Key` only once (see
/// [`super::idempotency`]).
async fn accept_once(
    shared: &Shared,
    peer: SocketAddr,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    body: Body,
    format: Result<Format, BodyError>,
) -> (StatusCode, Value) {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().unwrap_or(""));
    let guard =
        match key {
            Some(key) if authorized(shared.settings.auth.as_ref(), headers) => {
                if !idempotency::valid(key) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the Idempotency-Key header must be 1 to 200 visible ASCII characters",
                    );
                }
                match shared.keys.begin(key).await {
                    Begin::Duplicate(accepted) => {
                        shared
                            .metrics
                            .discarded("duplicate_request", "")
                            .inc_by(accepted);
                        return (
                            StatusCode::OK,
                            json!({ "accepted": accepted, "duplicate": true }),
                        );
                    }
                    Begin::Busy => return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "a request with this Idempotency-Key is still being processed; retry later",
                    ),
                    Begin::New(guard) => Some(guard),
                }
            }
            _ => None,
        };
    let (status, answer) = accept(shared, peer, query, headers, body, format).await;
    if let (StatusCode::OK, Some(guard)) = (status, guard) {
        guard.commit(answer["accepted"].as_u64().unwrap_or(0));
    }
    (status, answer)
}

fn error(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
    (status, json!({ "error": message.into() }))
}

async fn accept(
    shared: &Shared,
    peer: SocketAddr,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    body: Body,
    format: Result<Format, BodyError>,
) -> (StatusCode, Value) {
    if !authorized(shared.settings.auth.as_ref(), headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    }
    let format = match format {
        Ok(f) => f,
        Err(e) => return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
    };
    let max = shared.settings.max_body_size;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max_body_size ({max} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return too_large();
    }
    // The body first, bounded in time and held in the memory budget; only then a
    // slot, so that slow senders cannot hold the slots others need.
    let mut reservation = shared.budget.reserve();
    let limits = body::BodyLimits {
        max,
        deadline: tokio::time::Instant::now() + shared.settings.request_timeout,
        queue_timeout: shared.settings.queue_timeout,
    };
    let raw = match body::read(body, declared, limits, &mut reservation).await {
        Ok(b) => b,
        Err(refusal) => return refused_body(shared, refusal),
    };
    let Ok(_permit) =
        tokio::time::timeout(shared.settings.queue_timeout, shared.in_flight.acquire()).await
    else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry later",
        );
    };
    let received_bytes = raw.len() as u64;
    let request = chunks::Request {
        body: raw,
        encoding: headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        format,
        max_body_size: max,
        timestamp_fields: shared.settings.timestamp_fields.clone(),
        meta: request_meta(shared, peer, query, headers),
        // Mezmo's lines carry their own `meta`; `_meta` there is always sediment's, so
        // the server's hostname and tags cannot be replaced by a line.
        trust_meta: shared.settings.trust_meta && format != Format::Mezmo,
        now_ms: now_ms(),
        max_hours: shared.settings.max_hours_per_request,
        max_events: shared.settings.max_events_per_request,
    };
    let prepared = tokio::task::spawn_blocking(move || {
        let prepared = chunks::prepare(request, &mut reservation);
        (prepared, reservation)
    })
    .await;
    let (prepared, mut reservation) = match prepared {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the body could not be processed: {e}"),
            )
        }
    };
    let (count, outcome) = match prepared {
        Ok(Prepared::Whole(events, replaced)) => {
            count_replaced(&shared.metrics, replaced);
            let count = events.len();
            if count == 0 {
                return (StatusCode::OK, json!({ "accepted": 0 }));
            }
            (
                count,
                send_whole(&shared.out, shared.settings.queue_timeout, events).await,
            )
        }
        Ok(Prepared::Chunked(chunker, replaced)) => {
            if let Err(e) = reservation
                .grow(chunks::CHUNKED_ALLOWANCE, shared.settings.queue_timeout)
                .await
            {
                return refused_body(
                    shared,
                    match e {
                        Shortfall::Busy => body::BodyRefusal::Busy,
                        Shortfall::TooLarge => body::BodyRefusal::OverBudget,
                    },
                );
            }
            count_replaced(&shared.metrics, replaced);
            let count = chunker.events;
            let settings = &shared.settings;
            let (queue, request) = (settings.queue_timeout, settings.request_timeout);
            (
                count,
                send_chunked(&shared.out, queue, request, *chunker).await,
            )
        }
        Err(e) => return refused_parse(shared, e),
    };
    drop(reservation);
    match outcome {
        Sent::All(outcome) => answer(shared, count, received_bytes, outcome),
        Sent::Refused(reason) => {
            shared.metrics.errors("pipeline_full").inc();
            let message = match reason {
                SendError::Full => "the pipeline is full; retry later",
                SendError::Closed => "sediment is shutting down; retry later",
            };
            error(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

fn answer(
    shared: &Shared,
    count: usize,
    received_bytes: u64,
    outcome: Outcome,
) -> (StatusCode, Value) {
    shared.metrics.received_events.inc_by(count as u64);
    shared.metrics.received_bytes.inc_by(received_bytes);
    match outcome {
        Outcome::Delivered => {
            shared.metrics.sent_events.inc_by(count as u64);
            (StatusCode::OK, json!({ "accepted": count }))
        }
        Outcome::Failed => {
            shared.metrics.errors("not_durable").inc();
            tracing::warn!(source = %shared.id, events = count, "a request could not be made durable; the sender was asked to retry");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the events could not be stored durably; retry later",
            )
        }
        Outcome::Rejected => {
            shared.metrics.errors("rejected_downstream").inc();
            error(
                StatusCode::BAD_GATEWAY,
                "a downstream receiver refused these events for good (sediment's log says why); sending them again will not help until that is fixed",
            )
        }
    }
}

fn refused_body(shared: &Shared, refusal: body::BodyRefusal) -> (StatusCode, Value) {
    let s = &shared.settings;
    match refusal {
        body::BodyRefusal::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than max_body_size ({} bytes)",
                s.max_body_size
            ),
        ),
        body::BodyRefusal::OverBudget => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "this request needs more memory than memory_limit ({} bytes) allows",
                s.memory_limit
            ),
        ),
        body::BodyRefusal::Timeout => {
            shared.metrics.errors("body_timeout").inc();
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within request_timeout ({:?})",
                    s.request_timeout
                ),
            )
        }
        body::BodyRefusal::Busy => {
            shared.metrics.errors("memory_limit").inc();
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sediment is holding as much request data as memory_limit allows; retry later",
            )
        }
        body::BodyRefusal::Broken(e) => error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        ),
    }
}

fn refused_parse(shared: &Shared, e: BodyError) -> (StatusCode, Value) {
    match e {
        BodyError::Malformed(m) => {
            shared.metrics.errors("bad_request").inc();
            error(StatusCode::BAD_REQUEST, m)
        }
        BodyError::TooLarge(m) => error(StatusCode::PAYLOAD_TOO_LARGE, m),
        BodyError::Unsupported(m) => error(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        BodyError::Busy(m) => {
            shared.metrics.errors("memory_limit").inc();
            error(StatusCode::SERVICE_UNAVAILABLE, m)
        }
    }
}

/// Counts reserved fields a client sent that had to be replaced.
fn count_replaced(metrics: &ComponentMetrics, replaced: Replaced) {
    for (error_type, n) in [
        ("replaced_id", replaced.ids),
        ("replaced_ts", replaced.timestamps),
        ("replaced_meta", replaced.metas),
    ] {
        if n > 0 {
            metrics.errors(error_type).inc_by(n);
        }
    }
}

fn request_meta(
    shared: &Shared,
    peer: SocketAddr,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Value {
    let mut meta = Map::new();
    meta.insert("source".into(), Value::String(shared.id.clone()));
    meta.insert("source_type".into(), Value::String("http".into()));
    meta.insert(
        "received_at".into(),
        Value::String(format_time_ms(now_ms())),
    );
    meta.insert("remote_addr".into(), Value::String(peer.to_string()));
    if !query.is_empty() {
        let q: Map<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        meta.insert("query".into(), Value::Object(q));
    }
    let kept: Map<String, Value> = shared
        .settings
        .headers
        .iter()
        .filter_map(|name| {
            headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.clone(), Value::String(v.to_owned())))
        })
        .collect();
    if !kept.is_empty() {
        meta.insert("headers".into(), Value::Object(kept));
    }
    Value::Object(meta)
}
