//! Answers the HTTP source gives outside the ingestion handlers: every error is
//! `{"error": "<one sentence>"}`, and a response sent before the request body was
//! read to its end says `Connection: close` (the connection cannot be reused).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

/// Headers a request may have; more get a JSON `431`.
pub const MAX_HEADERS: usize = 100;
/// Bytes a request head may have (request line and headers); more get a JSON `431`.
pub const MAX_HEAD_BYTES: usize = 32 << 10;
/// The most of a framework rejection's text kept in its JSON error.
const MAX_REJECTION_TEXT: usize = 1024;

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A JSON `431` (closing the connection) when the head is over our limits.
pub fn too_large_head<B>(request: &Request<B>) -> Option<Response> {
    if request.headers().len() <= MAX_HEADERS && head_bytes(request) <= MAX_HEAD_BYTES {
        return None;
    }
    let mut response = error_response(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        &format!(
            "the request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADERS} headers"
        ),
    );
    close(&mut response);
    Some(response)
}

/// The size of a request head as sent, near enough: request line and headers.
fn head_bytes<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    line + headers
}

/// An error answer that is not JSON (an axum extractor's rejection is plain text)
/// becomes `{"error": "<its text>"}`; every other response passes unchanged.
pub async fn json_rejection(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let json = error_response(status, &text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}

/// Marks `response` as the last on its connection.
pub fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// A request body that notes whether it was read to its end.
pub struct Tracked {
    inner: Body,
    read_all: Arc<AtomicBool>,
}

impl Tracked {
    /// Wraps `body`; the flag turns true once it has been read to its end.
    pub fn wrap(body: Body) -> (Body, Arc<AtomicBool>) {
        let read_all = Arc::new(AtomicBool::new(http_body::Body::is_end_stream(&body)));
        let tracked = Tracked {
            inner: body,
            read_all: read_all.clone(),
        };
        (Body::new(tracked), read_all)
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read_all.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a tracked body was read to its end.
pub fn was_read(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Acquire)
}
