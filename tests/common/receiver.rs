//! An HTTP log receiver for tests of sediment's HTTP output (the `http` sink and
//! `sediment restore --output URL`): answers from a script (status,
//! `Retry-After`, delay), then `200`, and records every attempt with the time
//! it arrived and its decoded body. A real HTTP/1.1 server (axum on hyper) in
//! its own runtime, on a free loopback port.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Waits this long before answering (to provoke the sender's timeout).
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }
}

/// One request as received, body decoded (`Content-Encoding` gzip or zstd).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
    /// The `Retry-After` it was answered with.
    pub retry_after: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Attempt {
    /// The body's NDJSON lines (or the elements of a JSON array body).
    pub fn events(&self) -> Vec<Value> {
        if self.body.first() == Some(&b'[') {
            return serde_json::from_slice::<Vec<Value>>(&self.body).expect("a JSON array");
        }
        self.body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
            .collect()
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    attempts: Mutex<Vec<Attempt>>,
    /// Answer every request with this once the script is used up (else 200).
    fallback: Mutex<Option<Reply>>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    pub port: u16,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move { answer(&state, headers, body).await }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            port,
            state,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Answers the next requests with `replies`, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answers every request with `reply` once the script is used up (`None`: 200).
    pub fn fallback(&self, reply: Option<Reply>) {
        *self.state.fallback.lock().unwrap() = reply;
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// The events of every request answered 2xx.
    pub fn accepted(&self) -> Vec<Value> {
        self.attempts()
            .iter()
            .filter(|a| (200..300).contains(&a.status))
            .flat_map(Attempt::events)
            .collect()
    }
}

async fn answer(state: &State, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let at = Instant::now();
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::status(200));
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = decode(headers.get("content-encoding").map(String::as_str), &body);
    state.attempts.lock().unwrap().push(Attempt {
        at,
        status: reply.status,
        retry_after: reply.retry_after.clone(),
        headers,
        body,
    });
    // Recorded on arrival, so an attempt the sender gave up on is seen at once.
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(v) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", v.parse().unwrap());
    }
    response
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a gzip body");
            out
        }
        Some("zstd") => zstd::decode_all(body).expect("a zstd body"),
        _ => body.to_vec(),
    }
}
