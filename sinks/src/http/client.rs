//! [`HttpClient`]: one batch of archive lines → one request → retries until the
//! receiver takes it, refuses it for good, or the caller gives up.
//!
//! Used by the `http` sink and by `sediment restore --output URL`, so both
//! classify answers the same way:
//! - `2xx`: delivered;
//! - `408`, `429`, `5xx`, a timeout or a connection failure: retried after the
//!   answer's `Retry-After` (seconds or an HTTP date, at most [`MAX_RETRY_AFTER`])
//!   or else after exponential backoff with jitter, without limit;
//! - anything else (`4xx`, a redirect): refused for good, with the status and
//!   the first [`BODY_EXCERPT`] bytes of the answer.
//!
//! Logs are rate-limited to one line a minute per kind (refusals, retries), each
//! saying how many were not logged since the last.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use sediment_core::metrics::HttpSinkMetrics;
use tokio_util::sync::CancellationToken;

use super::config::{ClientSettings, Compression, Encoding, Method};

/// The request header naming a request for de-duplication at the receiver.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Bytes of a refusing answer's body kept for the log and the error.
pub const BODY_EXCERPT: usize = 200;
/// Longest `Retry-After` honoured; longer ones wait this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Most bytes of an answer read (to log it or to reuse the connection).
const MAX_ANSWER_READ: usize = 64 << 10;

/// A request body, encoded and compressed once, sent as often as it takes.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The body as sent.
    pub body: Bytes,
    /// Events in it.
    pub events: usize,
    /// Sent as `Idempotency-Key`, the same on every retry, so a receiver that
    /// remembers keys (sediment's HTTP source does) takes a request only once
    /// even when its answer was lost.
    pub idempotency_key: Option<String>,
}

/// Why [`HttpClient::send`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver refused the batch for good.
    #[error("{uri} refused the request with {status}: {body}")]
    Rejected {
        /// The receiver, secrets masked.
        uri: String,
        /// Its answer's status.
        status: StatusCode,
        /// The first bytes of its answer's body.
        body: String,
    },
    /// The caller's cancellation token fired (shutdown deadline, interrupted restore).
    #[error("gave up sending to {uri}: {last_error}")]
    Cancelled {
        /// The receiver, secrets masked.
        uri: String,
        /// What the last attempt met, if any was made.
        last_error: String,
    },
}

/// Sends payloads to one receiver; cheap to share between tasks.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The component id, for logs.
    id: String,
    client: Client,
    settings: ClientSettings,
    shown_uri: String,
    metrics: HttpSinkMetrics,
    refusals: RateLimit,
    retries: RateLimit,
}

/// What one attempt came to.
enum Attempt {
    Delivered(StatusCode),
    Retry {
        reason: String,
        status: Option<StatusCode>,
        after: Option<Duration>,
    },
    Refused(StatusCode, String),
}

/// The TLS configuration of a client for an `http://` URI: never used for a
/// connection (redirects are not followed; `https://` URIs get theirs from
/// the sink's `tls` options), so it trusts nothing.
fn plain_http_tls() -> anyhow::Result<sediment_core::tls::rustls::ClientConfig> {
    use sediment_core::tls::rustls;
    Ok(
        rustls::ClientConfig::builder_with_provider(sediment_core::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

impl HttpClient {
    /// A client for `settings`, labelled `id` in logs and metrics.
    pub fn new(
        id: &str,
        settings: ClientSettings,
        metrics: HttpSinkMetrics,
    ) -> anyhow::Result<HttpClient> {
        let mut builder = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.concurrency)
            .user_agent(concat!("sediment/", env!("CARGO_PKG_VERSION")));
        // Always sediment's own rustls configuration (ring), also for `http://`
        // URIs: otherwise reqwest builds one from the process-wide default crypto
        // provider, and a build without the cloud sinks has none (it panicked).
        let tls = match &settings.tls {
            Some(tls) => (**tls).clone(),
            None => plain_http_tls().map_err(|e| {
                anyhow::anyhow!("sink `{id}`: cannot set up the HTTP client's TLS: {e}")
            })?,
        };
        builder = builder.tls_backend_preconfigured(tls);
        let client = builder.build().map_err(|e| {
            anyhow::anyhow!("sink `{id}`: cannot set up the HTTP client: {}", chain(&e))
        })?;
        Ok(HttpClient {
            inner: Arc::new(Inner {
                id: id.to_owned(),
                client,
                shown_uri: settings.display_uri(),
                settings,
                metrics,
                refusals: RateLimit::default(),
                retries: RateLimit::default(),
            }),
        })
    }

    /// Requests this client's owner may have in flight at once.
    pub fn concurrency(&self) -> usize {
        self.inner.settings.concurrency
    }

    /// The receiver, secrets masked.
    pub fn uri(&self) -> &str {
        &self.inner.shown_uri
    }

    /// Encodes NDJSON `lines` (each ending in `\n`) as this client's body,
    /// compressed. CPU-bound: call it on the blocking pool.
    pub fn encode(&self, lines: &[u8], events: usize) -> Payload {
        let settings = &self.inner.settings;
        let json;
        let raw = match settings.encoding {
            Encoding::Ndjson => lines,
            Encoding::Json => {
                json = ndjson_to_array(lines);
                &json
            }
        };
        let body = match settings.compression {
            Compression::None => raw.to_vec(),
            Compression::Gzip => crate::deflate::gzip(raw, settings.compression_level as u32),
            Compression::Zstd => zstd::bulk::compress(raw, settings.compression_level)
                .expect("zstd compresses any input into a Vec at a validated level"),
        };
        Payload {
            body: Bytes::from(body),
            events,
            idempotency_key: Some(uuid::Uuid::new_v4().simple().to_string()),
        }
    }

    /// Sends `payload` until the receiver takes it (`Ok`), refuses it for good, or
    /// `cancel` fires.
    pub async fn send(
        &self,
        payload: &Payload,
        cancel: &CancellationToken,
    ) -> Result<(), SendError> {
        let inner = &*self.inner;
        let mut attempt = 0u32;
        let mut last_error = String::from("no attempt was made");
        loop {
            if cancel.is_cancelled() {
                return Err(self.cancelled(last_error));
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = self.attempt(payload) => outcome,
                _ = cancel.cancelled() => return Err(self.cancelled(last_error)),
            };
            inner
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Attempt::Delivered(status) => {
                    inner.metrics.request(Some(status.as_u16()));
                    let component = inner.metrics.component();
                    component.sent_events.inc_by(payload.events as u64);
                    component.sent_bytes.inc_by(payload.body.len() as u64);
                    return Ok(());
                }
                Attempt::Refused(status, body) => {
                    inner.metrics.request(Some(status.as_u16()));
                    if let Some(suppressed) = inner.refusals.due() {
                        tracing::error!(sink = %inner.id, url = %inner.shown_uri, status = status.as_u16(), body = %body, events = payload.events, suppressed, "the receiver refused a request for good; its events are discarded and their senders get an error");
                    }
                    return Err(SendError::Rejected {
                        uri: inner.shown_uri.clone(),
                        status,
                        body,
                    });
                }
                Attempt::Retry {
                    reason,
                    status,
                    after,
                } => {
                    inner.metrics.request(status.map(|s| s.as_u16()));
                    inner.metrics.retries.inc();
                    let delay = after.unwrap_or_else(|| inner.settings.backoff.delay(attempt));
                    attempt = attempt.saturating_add(1);
                    if let Some(suppressed) = inner.retries.due() {
                        tracing::warn!(sink = %inner.id, url = %inner.shown_uri, error = %reason, retry_in = ?delay, suppressed, "request failed, will retry");
                    }
                    last_error = reason;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Err(self.cancelled(last_error)),
                    }
                }
            }
        }
    }

    fn cancelled(&self, last_error: String) -> SendError {
        SendError::Cancelled {
            uri: self.inner.shown_uri.clone(),
            last_error,
        }
    }

    async fn attempt(&self, payload: &Payload) -> Attempt {
        let s = &self.inner.settings;
        let method = match s.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let mut request = self
            .inner
            .client
            .request(method, s.uri.clone())
            .headers(s.headers.clone())
            .body(payload.body.clone());
        let encoding = match s.compression {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        };
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if let Some(key) = &payload.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key.as_str());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: transport_error(&e),
                    status: None,
                    after: None,
                }
            }
        };
        let status = response.status();
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_answer(response).await;
        if status.is_success() {
            Attempt::Delivered(status)
        } else if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Attempt::Retry {
                reason: format!("the receiver answered {status}: {}", excerpt(&body)),
                status: Some(status),
                after,
            }
        } else {
            Attempt::Refused(status, excerpt(&body))
        }
    }
}

/// Reads at most [`MAX_ANSWER_READ`] bytes of an answer (the rest is dropped
/// with the connection); a failure mid-answer keeps what was read.
async fn read_answer(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// The first [`BODY_EXCERPT`] bytes of an answer, as text.
fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT)];
    let text = String::from_utf8_lossy(cut).trim().to_owned();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// `Retry-After`: delay seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// A transport failure as one line, without the URL (it may hold secrets).
fn transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let detail = chain(e);
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

/// The causes of an error, joined with `: `, without reqwest's URL prefix.
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn ndjson_to_array(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + 2);
    out.push(b'[');
    for (i, line) in lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(line);
    }
    out.push(b']');
    out
}

/// Lets one log line through per minute, counting the ones held back.
#[derive(Debug, Default)]
struct RateLimit(Mutex<(Option<Instant>, u64)>);

impl RateLimit {
    /// `Some(held back since the last line)` when a line is due now.
    fn due(&self) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            *held += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_for_plain_http_needs_no_process_wide_crypto_provider() {
        // No default provider is installed in this process (the sinks' tests
        // never install one); before, building the client panicked in a
        // build without the cloud sinks.
        let settings = ClientSettings::for_uri("http://127.0.0.1:9/in", "test").unwrap();
        let metrics =
            sediment_core::metrics::ComponentMetrics::new("plain_http", "sink", "http").http_sink();
        assert!(HttpClient::new("plain_http", settings, metrics).is_ok());
    }

    #[test]
    fn retry_after_as_seconds_or_http_date_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn ndjson_becomes_one_array() {
        assert_eq!(
            ndjson_to_array(b"{\"a\":1}\n{\"b\":2}\n"),
            b"[{\"a\":1},{\"b\":2}]"
        );
        assert_eq!(ndjson_to_array(b""), b"[]");
    }

    #[test]
    fn rate_limit_lets_one_line_a_minute_through() {
        let limit = RateLimit::default();
        assert_eq!(limit.due(), Some(0));
        assert_eq!(limit.due(), None);
        assert_eq!(limit.due(), None);
        limit.0.lock().unwrap().0 = Some(Instant::now() - Duration::from_secs(61));
        assert_eq!(limit.due(), Some(2), "says how many were held back");
    }
}
