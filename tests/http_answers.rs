//! What the HTTP source answers outside a normal `200` (issue 11 item 8), on raw
//! keep-alive connections to the real binary: an answer given before the body was
//! read says `Connection: close` and then closes; a `200` keeps the connection;
//! framework-level errors (404, 405, 431) have one-sentence JSON bodies.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::raw_http::{closed_within, connect, exchange, post_head, read_response, Response};
use common::{Sediment, Setup};

const TOKEN: &str = "Authorization: Bearer t0ken";

fn start(dir: &std::path::Path) -> Sediment {
    Setup::new(dir)
        .topology(
            "
sources:
  http_in:
    type: http
    address: '127.0.0.1:{HTTP}'
    max_body_size: 1KiB
    auth: {strategy: bearer, tokens: [t0ken]}
    max_in_flight: 1
    queue_timeout: 200ms
transforms:
  hourly: {type: hour_partition, inputs: [http_in], late_after: 10m}
sinks:
  archive: {type: file, inputs: [hourly], path: '{ROOT}/archive', account_id: acme}
",
        )
        .start()
}

fn ndjson_head(len: usize, extra: &[&str]) -> String {
    let mut headers = vec!["Content-Type: application/x-ndjson"];
    headers.extend_from_slice(extra);
    post_head("/", len, &headers)
}

fn says_close(r: &Response) -> bool {
    r.headers.get("connection").map(String::as_str) == Some("close")
}

/// The response, and whether the server then closed the connection.
fn answer_then_closed(stream: &mut TcpStream) -> (Response, bool) {
    let r = read_response(stream).unwrap();
    let closed = closed_within(stream, Duration::from_secs(3));
    (r, closed)
}

#[test]
fn early_answers_say_connection_close_and_a_200_keeps_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let line = b"{\"message\":\"kept alive\"}\n";

    // 200, twice on one connection: keep-alive works and is not cut.
    let mut c = connect(s.http_port, Duration::from_secs(10));
    for _ in 0..2 {
        let r = exchange(&mut c, &ndjson_head(line.len(), &[TOKEN]), line).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!says_close(&r), "{:?}", r.headers);
    }
    assert!(!closed_within(&mut c, Duration::from_millis(300)));

    // 413 from the declared length, before any body byte.
    let mut c = connect(s.http_port, Duration::from_secs(10));
    c.write_all(ndjson_head(5000, &[TOKEN]).as_bytes()).unwrap();
    let (r, closed) = answer_then_closed(&mut c);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        says_close(&r) && closed,
        "413: {:?}, closed: {closed}",
        r.headers
    );

    // 401 before the body is read; the body was sent.
    let mut c = connect(s.http_port, Duration::from_secs(10));
    let head = ndjson_head(line.len(), &["Authorization: Bearer wrong"]);
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(line).unwrap();
    let (r, closed) = answer_then_closed(&mut c);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        says_close(&r) && closed,
        "401: {:?}, closed: {closed}",
        r.headers
    );

    // 503 while the only in-flight slot is taken by a request whose body is half
    // sent. (Where the slot is taken before the body is read, the 503 comes before
    // this body is read too.) Whatever the order, an answer that does not say
    // `Connection: close` leaves the connection open, and one that says it closes.
    let mut first = connect(s.http_port, Duration::from_secs(10));
    first
        .write_all(ndjson_head(line.len(), &[TOKEN]).as_bytes())
        .unwrap();
    first.write_all(&line[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut second = connect(s.http_port, Duration::from_secs(10));
    second
        .write_all(ndjson_head(line.len(), &[TOKEN]).as_bytes())
        .unwrap();
    second.write_all(line).unwrap();
    let (r, closed) = answer_then_closed(&mut second);
    eprintln!(
        "second request while the slot is taken: {} {}, closed: {closed}",
        r.status, r.body
    );
    assert!(matches!(r.status, 200 | 503), "{}", r.body);
    if r.status == 503 {
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    }
    assert_eq!(says_close(&r), closed, "{:?}, closed: {closed}", r.headers);
    first.write_all(&line[5..]).unwrap();
    let r = read_response(&mut first).unwrap();
    assert_eq!((r.status, says_close(&r)), (200, false), "{}", r.body);
    s.stop();
}

/// A client still sending a large body when it is refused gets the answer, not
/// a reset: sediment drains what it sends after answering (lingering close).
#[test]
fn a_client_still_sending_its_body_reads_the_early_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let body = vec![b'a'; 4 << 20];
    for attempt in 0..5 {
        for auth in [TOKEN, "Authorization: Bearer wrong"] {
            let mut c = connect(s.http_port, Duration::from_secs(10));
            let mut writer = c.try_clone().unwrap();
            let (head, body) = (ndjson_head(body.len(), &[auth]), body.clone());
            let sending = std::thread::spawn(move || {
                writer.write_all(head.as_bytes())?;
                writer.write_all(&body)
            });
            let r = read_response(&mut c)
                .unwrap_or_else(|e| panic!("attempt {attempt}, {auth}: no answer: {e}"));
            assert!(matches!(r.status, 413 | 401), "{}", r.body);
            assert!(says_close(&r));
            // The whole body went out: sediment read it rather than reset the connection.
            sending.join().unwrap().unwrap();
            assert!(closed_within(&mut c, Duration::from_secs(5)));
        }
    }
    s.stop();
}

#[test]
fn framework_errors_have_one_sentence_json_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let get = |path: &str, extra: &str| {
        let mut c = connect(s.http_port, Duration::from_secs(10));
        exchange(
            &mut c,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"),
            b"",
        )
        .unwrap()
    };

    let r = get("/nope", "");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.error(),
        "nothing is served at /nope: send logs with POST to / or /logs/ingest"
    );
    let r = get("/", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.error(), "/ takes POST, not GET");
    let r = get("/logs/ingest", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.error(), "/logs/ingest takes POST, not GET");

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = get("/", &many);
    assert_eq!(r.status, 431);
    assert_eq!(
        r.error(),
        "the request head is larger than 32768 bytes or has more than 100 headers"
    );
    assert!(says_close(&r));
    let big = format!("X-Big: {}\r\n", "a".repeat(40 << 10));
    let r = get("/", &big);
    assert_eq!(
        (
            r.status,
            r.error().starts_with("the request head is larger")
        ),
        (431, true)
    );

    // Beyond hyper's own limits (twice ours) hyper answers by itself, and it
    // cannot be given a body: the status is right, the body empty.
    let huge = format!("X-Huge: {}\r\n", "a".repeat(100 << 10));
    let mut c = connect(s.http_port, Duration::from_secs(10));
    let r = exchange(
        &mut c,
        &format!("GET / HTTP/1.1\r\nHost: x\r\n{huge}\r\n"),
        b"",
    );
    assert_eq!(r.map(|r| r.status).ok(), Some(431));
    s.stop();
}
