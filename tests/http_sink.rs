//! End to end: the `http` sink forwarding into a second real sediment, through
//! kill -9 of the receiver, and against a scripted receiver (503 + Retry-After,
//! 429, a slow answer, a permanent 400).

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::receiver::{Receiver, Reply};
use common::*;
use serde_json::{json, Value};

/// Loghub lines as events over the past six hours, numbered by `seq`.
fn loghub_events(per_system: usize) -> Vec<Value> {
    let now = Utc::now().timestamp_millis();
    let lines: Vec<(String, &str)> = SYSTEMS
        .iter()
        .flat_map(|s| {
            loghub_lines(s, per_system)
                .into_iter()
                .map(move |l| (l, *s))
        })
        .collect();
    let n = lines.len() as i64;
    lines
        .into_iter()
        .enumerate()
        .map(|(i, (line, system))| {
            let ts = now - 6 * 3_600_000 + (i as i64) * 6 * 3_600_000 / n;
            json!({"message": line, "app": system.to_lowercase(), "seq": i, "timestamp": ts})
        })
        .collect()
}

/// seq → every `_id` it was archived with.
fn archived_ids(dir: &std::path::Path) -> HashMap<u64, Vec<String>> {
    let mut ids: HashMap<u64, Vec<String>> = HashMap::new();
    for (_, events) in read_archive(dir) {
        for e in events {
            ids.entry(e["seq"].as_u64().unwrap())
                .or_default()
                .push(e["_id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

fn forwarder(dir: &std::path::Path, uri: &str, options: &str) -> Setup {
    Setup::new(dir).topology(&format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}'}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in]}}
sinks:
  archive: {{type: file, inputs: [hourly], path: '{{ROOT}}/archive', account_id: edge}}
  forward: {{type: http, inputs: [http_in], uri: '{uri}', {options}}}
"
    ))
}

#[test]
fn a_chain_of_two_sediments_archives_every_acknowledged_event_once_with_its_first_id() {
    let (edge_dir, central_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let central = Setup::new(central_dir.path()).start();
    let edge = forwarder(
        edge_dir.path(),
        &central.url("/"),
        "batch: {max_events: 300, timeout: 100ms}",
    )
    .start();
    let events = loghub_events(200);
    for chunk in events.chunks(500) {
        assert_eq!(post_ndjson(&edge.url("/"), chunk), Ok(200));
    }
    let metrics = edge.metrics();
    let n = events.len() as u64;
    assert_component_metrics(&metrics, "forward", "sink", "http", n, n);
    let sent_bytes = metric(
        &metrics,
        "sediment_component_sent_bytes_total",
        r#"component_id="forward",component_kind="sink",component_type="http""#,
    );
    assert!(sent_bytes.unwrap_or(0) > 0, "sent bytes are counted");
    assert!(
        metric(
            &metrics,
            "sediment_http_sink_requests_total",
            r#"component_id="forward",component_kind="sink",component_type="http",status="200""#
        )
        .unwrap_or(0)
            >= 7,
        "2,000 events in requests of at most 300"
    );
    edge.stop();
    central.stop();

    let at_edge = archived_ids(&edge_dir.path().join("archive"));
    let at_central = archived_ids(&central_dir.path().join("archive"));
    assert_eq!(at_edge.len(), events.len());
    assert_eq!(
        at_central.len(),
        events.len(),
        "every event reached the central sediment"
    );
    for (seq, ids) in &at_central {
        assert_eq!(ids.len(), 1, "seq {seq} archived {} times", ids.len());
        assert_eq!(
            ids, &at_edge[seq],
            "seq {seq} keeps the id the edge gave it"
        );
    }
}

#[test]
fn killing_the_receiver_loses_nothing_the_forwarder_acknowledged() {
    let (edge_dir, central_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (central_http, central_api) = (free_port(), free_port());
    let start_central = || {
        Setup::new(central_dir.path())
            .ports(central_http, central_api)
            .start()
    };
    let mut central = Some(start_central());
    let edge = forwarder(
        edge_dir.path(),
        &format!("http://127.0.0.1:{central_http}/"),
        "batch: {max_events: 200, timeout: 50ms}, request: {concurrency: 2, timeout: 2s, retry_initial_backoff: 100ms, retry_max_backoff: 400ms}",
    )
    .start();
    let url = edge.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let posters: Vec<_> = (0..24u64)
        .map(|t| {
            let (url, stop, acknowledged, refused) = (
                url.clone(),
                stop.clone(),
                acknowledged.clone(),
                refused.clone(),
            );
            std::thread::spawn(move || {
                let mut seq = t * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Value> = (seq..seq + 20)
                        .map(|s| json!({"seq": s, "message": format!("line {s}")}))
                        .collect();
                    match post_ndjson(&url, &batch) {
                        Ok(200) => acknowledged.lock().unwrap().extend(seq..seq + 20),
                        Ok(503) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected answer {other:?}"),
                    }
                    seq += 20;
                }
            })
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700 + rand::random::<u64>() % 800));
        central.take().unwrap().kill9();
        std::thread::sleep(Duration::from_millis(2500));
        central = Some(start_central());
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    posters.into_iter().for_each(|p| p.join().unwrap());
    edge.stop();
    central.take().unwrap().stop();

    let acknowledged: HashSet<u64> = acknowledged.lock().unwrap().iter().copied().collect();
    assert!(
        acknowledged.len() > 1000,
        "{} events acknowledged",
        acknowledged.len()
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the forwarder never answered 503 while the receiver was down"
    );
    let archived = archived_ids(&central_dir.path().join("archive"));
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|s| !archived.contains_key(s))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not archived: {missing:?}"
    );
    // A receiver killed after staging a request but before answering gets it
    // again: at least once between processes, exactly once per id in restores.
    let twice = archived.values().filter(|ids| ids.len() > 1).count();
    eprintln!(
        "{} acknowledged, {} refused requests, {twice} archived more than once",
        acknowledged.len(),
        refused.load(Ordering::Relaxed)
    );
}

fn retries_of(metrics: &str, id: &str) -> u64 {
    metric(
        metrics,
        "sediment_upload_retries_total",
        &format!(r#"component_id="{id}",component_kind="sink",component_type="http""#),
    )
    .unwrap_or(0)
}

#[test]
fn retries_honour_retry_after_and_a_timeout_until_the_receiver_takes_the_batch() {
    let receiver = Receiver::start();
    receiver.script([
        Reply::status(503).retry_after("2"),
        Reply::status(429).retry_after("1"),
        Reply::status(200).delay(Duration::from_secs(3)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let edge = forwarder(
        dir.path(),
        &receiver.url(),
        "batch: {timeout: 10ms}, request: {timeout: 1s, retry_initial_backoff: 200ms, retry_max_backoff: 400ms}",
    )
    .start();
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"seq": i, "message": "retry me"}))
        .collect();
    let started = Instant::now();
    assert_eq!(post_ndjson(&edge.url("/"), &events), Ok(200));
    let waited = started.elapsed();
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 4, "503, 429, a timed-out answer, then 200");
    let gap = |i: usize| attempts[i].at - attempts[i - 1].at;
    assert!(
        gap(1) >= Duration::from_millis(1950),
        "after 503 + Retry-After: 2: {:?}",
        gap(1)
    );
    assert!(gap(1) < Duration::from_millis(3000), "{:?}", gap(1));
    assert!(
        gap(2) >= Duration::from_millis(950),
        "after 429 + Retry-After: 1: {:?}",
        gap(2)
    );
    assert!(
        gap(3) >= Duration::from_secs(1),
        "the slow answer timed out first: {:?}",
        gap(3)
    );
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    let seqs: Vec<u64> = receiver
        .accepted()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // The timed-out attempt reached the receiver too; the retry delivered the batch.
    assert_eq!(seqs.len(), 100, "the slow attempt and its retry");
    let metrics = edge.metrics();
    assert_eq!(retries_of(&metrics, "forward"), 3);
    for (status, count) in [("503", 1), ("429", 1), ("error", 1), ("200", 1)] {
        let labels = format!(
            r#"component_id="forward",component_kind="sink",component_type="http",status="{status}""#
        );
        assert_eq!(
            metric(&metrics, "sediment_http_sink_requests_total", &labels),
            Some(count),
            "{status}"
        );
    }
    assert!(metrics
        .contains("sediment_http_sink_request_duration_seconds_count{component_id=\"forward\""));
    edge.stop();
}

#[test]
fn a_permanent_refusal_is_an_error_for_the_sender_logged_and_counted() {
    let receiver = Receiver::start();
    receiver.fallback(Some(
        Reply::status(400).body("{\"error\":\"line 1: field `app` is required\"}"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let edge = forwarder(dir.path(), &receiver.url(), "batch: {timeout: 10ms}").start();
    let events: Vec<Value> = (0..5).map(|i| json!({"seq": i})).collect();
    let (status, body, _) = post(
        &edge.url("/"),
        &[("content-type", "application/x-ndjson")],
        events
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("refused"), "{body}");
    let metrics = edge.metrics();
    assert_eq!(
        metric(
            &metrics,
            "sediment_component_discarded_events_total",
            r#"component_id="forward",component_kind="sink",component_type="http",reason="rejected",rule="""#
        ),
        Some(5)
    );
    edge.stop();
    let log = std::fs::read_to_string(dir.path().join("sediment.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("refused a request for good"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    for part in [
        "sink=forward",
        &format!("url=http://127.0.0.1:{}/", receiver.port),
        "status=400",
        "field `app` is required",
    ] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    // The events still reached the edge's own archive: only the forward failed.
    assert_eq!(archived_ids(&dir.path().join("archive")).len(), 5);
}

#[test]
fn at_shutdown_what_cannot_be_delivered_within_shutdown_timeout_fails_its_sender() {
    let receiver = Receiver::start();
    receiver.fallback(Some(Reply::status(503)));
    let dir = tempfile::tempdir().unwrap();
    let edge = forwarder(
        dir.path(),
        &receiver.url(),
        "batch: {timeout: 10ms}, request: {retry_initial_backoff: 100ms, retry_max_backoff: 200ms}",
    )
    .shutdown_timeout("2s")
    .start();
    let url = edge.url("/");
    let sender = std::thread::spawn(move || post_ndjson(&url, &[json!({"seq": 1})]));
    while receiver.attempts().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    edge.stop();
    let stopped = stopping.elapsed();
    assert_eq!(
        sender.join().unwrap(),
        Ok(503),
        "no 200 for an undelivered event"
    );
    assert!(
        stopped >= Duration::from_secs(2),
        "retried until shutdown_timeout: {stopped:?}"
    );
    assert!(
        stopped < Duration::from_secs(10),
        "then gave up: {stopped:?}"
    );
}

#[test]
fn a_request_sent_again_with_its_idempotency_key_is_archived_once_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (http, api) = (free_port(), free_port());
    let body: String = (0..3).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    let send = |s: &Sediment, key: &str| {
        post(
            &s.url("/"),
            &[
                ("content-type", "application/x-ndjson"),
                ("idempotency-key", key),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    let first = Setup::new(dir.path()).ports(http, api).start();
    let (status, answer, _) = send(&first, "batch-1");
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":3}"#));
    let (status, answer, _) = send(&first, "batch-1");
    assert_eq!(
        (status, answer.as_str()),
        (200, r#"{"accepted":3,"duplicate":true}"#)
    );
    first.kill9();
    let again = Setup::new(dir.path()).ports(http, api).start();
    let (status, answer, _) = send(&again, "batch-1");
    assert_eq!(
        (status, answer.as_str()),
        (200, r#"{"accepted":3,"duplicate":true}"#),
        "remembered across kill -9"
    );
    assert_eq!(
        send(&again, "batch-2").0,
        200,
        "another key is another request"
    );
    let (status, answer, _) = send(&again, "bad key");
    assert_eq!(status, 400, "{answer}");
    again.stop();
    let archived = archived_ids(&dir.path().join("archive"));
    assert_eq!(archived.len(), 3);
    assert!(
        archived.values().all(|ids| ids.len() == 2),
        "batch-1 once and batch-2 once: {archived:?}"
    );
}

#[test]
fn validate_names_the_yaml_path_of_bad_http_sink_options() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "
sources:
  in: {type: http, address: '127.0.0.1:0'}
sinks:
  a: {type: http, inputs: [in]}
  b: {type: http, inputs: [in], uri: 'ftp://example.com/'}
  c: {type: http, inputs: [in], uri: 'http://example.com/', headers: {'x y': z}}
",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "sinks.a: missing field `uri`",
        "sinks.b.uri: unsupported scheme `ftp`",
        "sinks.c.headers.x y: `x y` is not a valid header name",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}
