//! A stalled sink makes the HTTP source answer 503 + Retry-After, memory stays
//! bounded, and once the sink moves again every acknowledged event comes out once.
//!
//! The stall is real, not simulated: a `console` sink writes into a stdout pipe that
//! the test does not read, so its writes block once the pipe buffer is full. More
//! clients than the pipeline holds batches keep asking, so some must be refused.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOPOLOGY: &str = "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}', queue_timeout: 200ms}
sinks:
  out: {type: console, inputs: [http_in]}
";

/// First seq of a request, its status, and its Retry-After header.
type Outcome = (u64, u16, Option<String>);

#[test]
fn a_stalled_sink_pushes_back_with_503_and_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut sediment = Setup::new(dir.path())
        .topology(TOPOLOGY)
        .stdout(Stdio::piped())
        .start();
    let mut stdout = sediment.child.stdout.take().unwrap();
    let lines = loghub_lines("Hadoop", 2000);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let clients: Vec<_> = (0..16u64)
        .map(|c| {
            let (url, stop, outcomes, lines) = (sediment.url("/"), stop.clone(), outcomes.clone(), lines.clone());
            std::thread::spawn(move || {
                let mut seq = c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..200).map(|i| format!("{}\n", json!({"seq": seq + i, "message": lines[((seq + i) % 2000) as usize]}))).collect();
                    let (status, _, headers) = post(&url, &[("content-type", "application/x-ndjson")], body.as_bytes()).unwrap();
                    outcomes.lock().unwrap().push((seq, status, headers.get("retry-after").cloned()));
                    seq += 200;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let peak_kib = sediment.peak_rss_kib();
    let refused_while_stalled = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.1 == 503)
        .count();
    stop.store(true, Ordering::Relaxed);

    // Unstall the sink: read stdout until sediment exits.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    clients.into_iter().for_each(|c| c.join().unwrap());
    sediment.stop();
    let printed = reader.join().unwrap();

    let outcomes = outcomes.lock().unwrap();
    assert!(
        refused_while_stalled > 0,
        "the stalled pipeline answered 503"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.1 == 503)
            .all(|o| o.2.as_deref() == Some("1")),
        "every 503 carries Retry-After"
    );
    assert!(
        outcomes.iter().all(|o| o.1 == 200 || o.1 == 503),
        "only 200 or 503"
    );
    assert!(
        peak_kib < 100 * 1024,
        "peak RSS {peak_kib} KiB while stalled"
    );

    let mut seen: HashMap<u64, usize> = HashMap::new();
    for line in printed.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *seen.entry(v["seq"].as_u64().unwrap()).or_default() += 1;
    }
    for (first, status, _) in outcomes.iter() {
        let expected = usize::from(*status == 200);
        for seq in *first..first + 200 {
            assert_eq!(
                seen.get(&seq).copied().unwrap_or(0),
                expected,
                "seq {seq} answered {status}"
            );
        }
    }
    eprintln!(
        "{} requests, {refused_while_stalled} refused while stalled, peak RSS {} MiB",
        outcomes.len(),
        peak_kib / 1024
    );
}
