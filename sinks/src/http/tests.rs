//! The http sink and its client against a real HTTP server (axum, and axum over
//! rustls for `https`) run in the test: bodies, encodings, auth, TLS, batching,
//! acknowledgements, refusals, back-pressure and shutdown.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use sediment_core::clock::SystemClock;
use sediment_core::component::{BuildContext, Sink};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::{Ack, AckWaiter, Batch, Event, Outcome};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{self, BatchSettings, ClientSettings};
use super::sink::HttpSink;
use super::{HttpClient, SendError};

/// What the receiver answers, in order; then 200.
#[derive(Clone)]
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    delay: Duration,
    body: &'static str,
}

fn answer(status: u16) -> Answer {
    Answer {
        status,
        retry_after: None,
        delay: Duration::ZERO,
        body: "",
    }
}

/// A request as the receiver saw it, body decoded.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn router(&self) -> axum::Router {
        let this = self.clone();
        axum::Router::new().fallback(
            move |method: axum::http::Method, headers: HeaderMap, body: Bytes| {
                let this = this.clone();
                async move {
                    let next = this.script.lock().unwrap().pop_front();
                    let a = next.unwrap_or_else(|| answer(200));
                    tokio::time::sleep(a.delay).await;
                    if (200..300).contains(&a.status) {
                        this.received.lock().unwrap().push(Received {
                            method: method.to_string(),
                            body: decode(&headers, &body),
                            headers,
                        });
                    }
                    let mut response =
                        (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
                    if let Some(v) = a.retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", v.parse().unwrap());
                    }
                    response
                }
            },
        )
    }

    /// Serves plain HTTP on a free loopback port.
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// Serves HTTPS with `pki`'s server certificate.
    async fn start_tls(&self, pki: &Pki) -> SocketAddr {
        let options = sediment_core::tls::ServerTlsOptions {
            crt_file: pki.file("server.pem"),
            key_file: pki.file("server-key.pem"),
            ca_file: None,
        };
        let config = sediment_core::tls::server_config(&options, "test").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = TlsListener {
            tcp: listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        };
        let router = self.router();
        tokio::spawn(async move { axum::serve(tls, router).await });
        addr
    }
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    match headers.get("content-encoding").map(|v| v.to_str().unwrap()) {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some("zstd") => zstd::decode_all(body).unwrap(),
        None => body.to_vec(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("test CA");
        let (other_ca, _) = ca("another CA");
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca_cert, &ca_key)
            .unwrap();
        for (name, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("other-ca.pem", other_ca.pem()),
            ("server.pem", server.pem()),
            ("server-key.pem", server_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn settings(yaml: &str) -> (ClientSettings, BatchSettings) {
    config::parse("sinks.out", serde_yaml::from_str(yaml).unwrap()).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn client(id: &str, yaml: &str) -> HttpClient {
    let (s, _) = settings(yaml);
    let metrics = ComponentMetrics::new(id, "sink", "http").http_sink();
    HttpClient::new(id, s, metrics).unwrap()
}

fn events(n: usize, tag: &str) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let fields = json!({"message": format!("{tag} {i}"), "i": i});
            Event::stamp(
                fields.as_object().unwrap().clone(),
                &[],
                1_700_000_000_000,
                &json!({"source": "test"}),
            )
        })
        .collect()
}

fn ndjson(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    events.iter().for_each(|e| e.write_ndjson(&mut out));
    out
}

fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test]
async fn gzip_zstd_and_plain_bodies_in_ndjson_and_json_arrays_decode_at_the_receiver() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let batch = events(3, "encodings");
    let expected: Vec<Value> = lines(&ndjson(&batch));
    let cases = [
        ("ndjson", "gzip", Some("gzip"), "application/x-ndjson"),
        ("ndjson", "zstd", Some("zstd"), "application/x-ndjson"),
        ("ndjson", "none", None, "application/x-ndjson"),
        ("json", "gzip", Some("gzip"), "application/json"),
        ("json", "none", None, "application/json"),
    ];
    for (encoding, compression, content_encoding, content_type) in cases {
        let c = client(
            "encodings",
            &format!("{{uri: 'http://{addr}/in', encoding: {encoding}, compression: {compression}, method: put}}"),
        );
        let payload = c.encode(&ndjson(&batch), batch.len());
        c.send(&payload, &CancellationToken::new()).await.unwrap();
        let got = receiver.received().pop().unwrap();
        assert_eq!(got.method, "PUT");
        assert_eq!(
            got.headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            content_encoding
        );
        assert_eq!(got.headers["content-type"], content_type);
        let decoded = if encoding == "json" {
            let array: Value = serde_json::from_slice(&got.body).unwrap();
            array.as_array().expect("one JSON array").clone()
        } else {
            lines(&got.body)
        };
        assert_eq!(
            decoded, expected,
            "{encoding}/{compression}: the archive lines"
        );
    }
}

#[test]
fn compression_level_is_the_bodys_level_and_gzip_defaults_to_the_fastest() {
    let batch = events(2000, "levels");
    let lines = ndjson(&batch);
    let size = |yaml: &str| {
        let c = client("levels", yaml);
        let body = c.encode(&lines, batch.len()).body;
        let mut plain = Vec::new();
        match yaml.contains("zstd") {
            true => plain = zstd::decode_all(&body[..]).unwrap(),
            false => {
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&body[..]),
                    &mut plain,
                )
                .unwrap();
            }
        }
        assert_eq!(plain, lines, "{yaml}: the body decodes to the lines");
        body.len()
    };
    let default = size("{uri: 'http://h/'}");
    assert_eq!(default, size("{uri: 'http://h/', compression_level: 1}"));
    assert!(size("{uri: 'http://h/', compression_level: 9}") < default);
    let zstd = size("{uri: 'http://h/', compression: zstd}");
    assert_eq!(
        zstd,
        size("{uri: 'http://h/', compression: zstd, compression_level: 3}")
    );
    assert!(size("{uri: 'http://h/', compression: zstd, compression_level: 19}") < zstd);
}

#[tokio::test]
async fn bearer_basic_and_custom_headers_arrive() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let payload_of = |c: &HttpClient| c.encode(b"{\"a\":1}\n", 1);
    let bearer = client(
        "auth",
        &format!("{{uri: 'http://{addr}/', auth: {{strategy: bearer, token: s3cr3t}}, headers: {{X-Tenant: acme}}}}"),
    );
    bearer
        .send(&payload_of(&bearer), &CancellationToken::new())
        .await
        .unwrap();
    let basic = client(
        "auth",
        &format!("{{uri: 'http://{addr}/', auth: {{strategy: basic, username: u, password: p}}}}"),
    );
    basic
        .send(&payload_of(&basic), &CancellationToken::new())
        .await
        .unwrap();
    let got = receiver.received();
    assert_eq!(got[0].headers["authorization"], "Bearer s3cr3t");
    assert_eq!(got[0].headers["x-tenant"], "acme");
    assert_eq!(got[1].headers["authorization"], "Basic dTpw");
}

#[tokio::test]
async fn https_with_the_ca_file_works_and_a_wrong_ca_fails_with_a_clear_error() {
    let pki = Pki::new();
    let receiver = Receiver::default();
    let addr = receiver.start_tls(&pki).await;
    let uri = format!("https://127.0.0.1:{}/", addr.port());
    let good = client(
        "tls_good",
        &format!(
            "{{uri: '{uri}', tls: {{ca_file: '{}'}}}}",
            pki.file("ca.pem").display()
        ),
    );
    good.send(
        &good.encode(b"{\"tls\":true}\n", 1),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(lines(&receiver.received()[0].body), [json!({"tls": true})]);

    let wrong = client(
        "tls_wrong",
        &format!(
            "{{uri: '{uri}', tls: {{ca_file: '{}'}}, request: {{retry_initial_backoff: 50ms, retry_max_backoff: 100ms}}}}",
            pki.file("other-ca.pem").display()
        ),
    );
    let give_up = CancellationToken::new();
    let cancel = give_up.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let e = wrong
        .send(&wrong.encode(b"{}\n", 1), &give_up)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("cannot connect") && text.contains("invalid peer certificate"),
        "{text}"
    );
    assert!(text.contains(&uri), "names the receiver: {text}");

    let insecure = client(
        "tls_insecure",
        &format!("{{uri: '{uri}', tls: {{verify: false}}}}"),
    );
    insecure
        .send(&insecure.encode(b"{}\n", 1), &CancellationToken::new())
        .await
        .unwrap();
}

/// A running sink with its input and metrics.
struct Running {
    input: mpsc::Sender<Batch>,
    metrics: ComponentMetrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start_sink(id: &str, yaml: &str, shutdown_timeout: Duration) -> Running {
    let (client_settings, batch) = settings(yaml);
    let metrics = ComponentMetrics::new(id, "sink", "http");
    let shutdown = CancellationToken::new();
    let cx = BuildContext {
        id: id.into(),
        metrics: metrics.clone(),
        data_dir: PathBuf::new(),
        clock: Arc::new(SystemClock),
        shutdown_timeout,
        shutdown: shutdown.clone(),
        progress: Default::default(),
    };
    let client = HttpClient::new(id, client_settings, metrics.http_sink()).unwrap();
    let sink = Box::new(HttpSink::new(client, batch, &cx));
    let (input, rx) = mpsc::channel(2);
    Running {
        input,
        metrics,
        shutdown,
        task: tokio::spawn(sink.run(rx)),
    }
}

fn batch(events: Vec<Event>) -> (Batch, AckWaiter) {
    let (ack, waiter) = Ack::new();
    (Batch::new(events, ack), waiter)
}

#[tokio::test]
async fn requests_are_cut_by_events_bytes_and_time_and_split_batches_ack_once_all_parts_arrive() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let sink = start_sink(
        "http_cut",
        &format!("{{uri: 'http://{addr}/', batch: {{max_events: 1000, max_bytes: 64KiB, timeout: 200ms}}}}"),
        Duration::from_secs(5),
    );
    // 2,500 small events: cut by max_events (or bytes) into at least 3 requests.
    let many = events(2500, "many");
    let expected = lines(&ndjson(&many));
    let (b, waiter) = batch(many);
    sink.input.send(b).await.unwrap();
    assert_eq!(waiter.outcome().await, Outcome::Delivered);
    let got = receiver.received();
    assert!(got.len() >= 3, "{} requests", got.len());
    for r in &got {
        let n = lines(&r.body).len();
        assert!(n <= 1000, "{n} events in one request");
        assert!(
            r.body.len() <= 64 << 10,
            "{} bytes in one request",
            r.body.len()
        );
    }
    // Requests run concurrently, so they may arrive in any order.
    let mut all: Vec<Value> = got.iter().flat_map(|r| lines(&r.body)).collect();
    all.sort_by_key(|v| v["i"].as_u64());
    assert!(all == expected, "every line once, unchanged");

    // One event waits at most batch.timeout.
    let started = Instant::now();
    let (b, waiter) = batch(events(1, "alone"));
    sink.input.send(b).await.unwrap();
    assert_eq!(waiter.outcome().await, Outcome::Delivered);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(sink.metrics.sent_events.get(), 2501);
    assert!(sink.metrics.sent_bytes.get() > 0);
    drop(sink.input);
    sink.task.await.unwrap().unwrap();
}

/// A batch that is a request of its own goes whole; one that follows a
/// pending batch fills that request and leaves its rest pending: both ways
/// give the same requests, and each batch's acknowledgement completes once
/// every line of it arrived.
#[tokio::test]
async fn a_batch_alone_is_one_request_and_a_batch_after_another_fills_its_request_first() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let sink = start_sink(
        "http_whole",
        &format!("{{uri: 'http://{addr}/', batch: {{max_events: 1000, max_bytes: 10MiB, timeout: 200ms}}}}"),
        Duration::from_secs(5),
    );
    let whole = events(1000, "whole");
    let (b, waiter) = batch(whole.clone());
    sink.input.send(b).await.unwrap();
    assert_eq!(waiter.outcome().await, Outcome::Delivered);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "exactly max_events: one request");
    assert!(lines(&got[0].body) == lines(&ndjson(&whole)));

    // 300 wait in a request of their own; 800 more fill it to 1,000 and
    // leave 100 for a second request, sent at batch.timeout.
    let (first, second) = (events(300, "first"), events(800, "second"));
    let (b1, w1) = batch(first.clone());
    let (b2, w2) = batch(second.clone());
    sink.input.send(b1).await.unwrap();
    sink.input.send(b2).await.unwrap();
    assert_eq!(w1.outcome().await, Outcome::Delivered);
    assert_eq!(w2.outcome().await, Outcome::Delivered);
    let got = receiver.received();
    let sizes: Vec<usize> = got[1..].iter().map(|r| lines(&r.body).len()).collect();
    assert_eq!(sizes, [1000, 100]);
    let mut want = lines(&ndjson(&first));
    want.extend(lines(&ndjson(&second)));
    let sent: Vec<Value> = got[1..].iter().flat_map(|r| lines(&r.body)).collect();
    assert!(sent == want, "every line once, in order");
    assert_eq!(sink.metrics.sent_events.get(), 2100);
    drop(sink.input);
    sink.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_request_rejects_its_acknowledgement_and_counts_the_events_discarded() {
    let receiver = Receiver::default();
    receiver.script([Answer {
        body: "{\"error\":\"field `message` is required\"}",
        ..answer(400)
    }]);
    let addr = receiver.start().await;
    let sink = start_sink(
        "http_refused",
        &format!("{{uri: 'http://{addr}/', batch: {{timeout: 10ms}}}}"),
        Duration::from_secs(5),
    );
    let (b, waiter) = batch(events(7, "refused"));
    sink.input.send(b).await.unwrap();
    assert_eq!(waiter.outcome().await, Outcome::Rejected);
    assert_eq!(sink.metrics.discarded("rejected", "").get(), 7);
    // The next request is taken: a refusal stops nothing else.
    let (b, waiter) = batch(events(2, "after"));
    sink.input.send(b).await.unwrap();
    assert_eq!(waiter.outcome().await, Outcome::Delivered);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn the_client_reports_a_refusal_with_status_and_body_excerpt() {
    let receiver = Receiver::default();
    let long = "x".repeat(500);
    receiver.script([Answer {
        body: Box::leak(long.into_boxed_str()),
        ..answer(422)
    }]);
    let addr = receiver.start().await;
    let c = client(
        "refusal_text",
        &format!("{{uri: 'http://{addr}/p?token=abc'}}"),
    );
    let e = c
        .send(&c.encode(b"{}\n", 1), &CancellationToken::new())
        .await
        .unwrap_err();
    let SendError::Rejected { status, body, uri } = e else {
        panic!("not a refusal: {e}")
    };
    assert_eq!(status.as_u16(), 422);
    assert_eq!(body.len(), 200, "the first 200 bytes");
    assert_eq!(
        uri,
        format!("http://{addr}/p?token=***"),
        "the token is masked"
    );
}

#[tokio::test]
async fn with_every_slot_retrying_the_sink_stops_reading_its_input() {
    let receiver = Receiver::default();
    receiver.script(std::iter::repeat_n(answer(503), 1000));
    let addr = receiver.start().await;
    let sink = start_sink(
        "http_pressure",
        &format!(
            "{{uri: 'http://{addr}/', batch: {{max_events: 1, timeout: 10ms}}, request: {{concurrency: 2, retry_initial_backoff: 20ms, retry_max_backoff: 50ms}}}}"
        ),
        Duration::from_millis(200),
    );
    let mut waiters = Vec::new();
    let mut refused = false;
    // 2 slots + 1 pending request + a channel of 2: a few more and the input is full.
    for i in 0..20 {
        let (b, w) = batch(events(1, &format!("p{i}")));
        match tokio::time::timeout(Duration::from_millis(300), sink.input.send(b)).await {
            Ok(sent) => {
                sent.unwrap();
                waiters.push(w);
            }
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(
        refused,
        "the sink kept taking batches with every slot retrying"
    );
    assert!(waiters.len() <= 6, "{} batches taken", waiters.len());
    assert!(sink.metrics.upload_retries().get() > 0);
    // Shutdown: retries stop after shutdown_timeout and every undelivered batch fails.
    sink.shutdown.cancel();
    drop(sink.input);
    for w in waiters {
        assert_eq!(w.outcome().await, Outcome::Failed);
    }
    sink.task.await.unwrap().unwrap();
}

#[test]
fn config_errors_name_the_yaml_path_and_never_echo_secrets() {
    let errors = |yaml: &str| -> Vec<String> {
        config::parse("sinks.out", serde_yaml::from_str(yaml).unwrap())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    assert_eq!(errors("{method: post}"), ["sinks.out: missing field `uri`"]);
    assert_eq!(
        errors("{uri: 'ftp://example.com/'}"),
        ["sinks.out.uri: unsupported scheme `ftp`: use http:// or https://"]
    );
    let bad_header = errors("{uri: 'http://h/', headers: {'bad header': v}}");
    assert!(
        bad_header[0]
            .starts_with("sinks.out.headers.bad header: `bad header` is not a valid header name"),
        "{bad_header:?}"
    );
    let secret_value = errors("{uri: 'http://h/', headers: {X-Key: \"top\\nsecret\"}}");
    assert_eq!(secret_value.len(), 1);
    assert!(secret_value[0].starts_with("sinks.out.headers.X-Key:"));
    assert!(!secret_value[0].contains("secret"), "{secret_value:?}");
    assert!(
        errors("{uri: 'http://h/', headers: {Content-Encoding: br}}")[0]
            .starts_with("sinks.out.headers.Content-Encoding:")
    );
    assert_eq!(
        errors("{uri: 'http://h/', tls: {verify: false}}"),
        ["sinks.out.tls: applies to https:// URIs only"]
    );
    assert!(
        errors("{uri: 'https://h/', tls: {ca_file: /nonexistent/ca.pem}}")[0]
            .starts_with("sinks.out.tls.ca_file: cannot read /nonexistent/ca.pem")
    );
    assert_eq!(
        errors("{uri: 'http://h/', request: {concurrency: 0}}"),
        ["sinks.out.request.concurrency: must be between 1 and 1024"]
    );
    assert_eq!(
        errors("{uri: 'http://h/', compression_level: 10}"),
        ["sinks.out.compression_level: must be 1 to 9 for compression: gzip, not 10"]
    );
    assert_eq!(
        errors("{uri: 'http://h/', compression: zstd, compression_level: 0}"),
        ["sinks.out.compression_level: must be 1 to 19 for compression: zstd, not 0"]
    );
    assert_eq!(
        errors("{uri: 'http://h/', compression: none, compression_level: 3}"),
        ["sinks.out.compression_level: has no effect with compression: none; remove it or choose gzip or zstd"]
    );
    assert_eq!(
        errors("{uri: 'http://h/', encoding: xml}")[0],
        "sinks.out.encoding: unknown variant `xml`, expected `ndjson` or `json`"
    );
}
