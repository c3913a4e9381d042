//! kill -9 under load, restart, repeat: every event answered 200 is archived exactly
//! once, none answered with an error status is archived, and nothing is archived twice.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::*;
use rand::Rng;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused(u16),
    /// The connection broke: the events may or may not have been made durable.
    Unknown,
}

const CLIENTS: u64 = 4;
const BATCH: u64 = 50;
const ROUNDS: u64 = 5;

fn load(
    url: String,
    client: u64,
    round: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(u64, u64, Outcome)>>>,
) {
    let lines = loghub_lines(common::SYSTEMS[(client as usize) % SYSTEMS.len()], 2000);
    let now = Utc::now().timestamp_millis();
    let mut next = (round * CLIENTS + client) * 10_000_000;
    while !stop.load(Ordering::Relaxed) {
        let first = next;
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                let seq = first + i;
                // Spread over the current and two past hours.
                let ts = now - ((seq % 3) as i64) * 3_600_000;
                json!({"seq": seq, "message": lines[(seq as usize) % lines.len()], "timestamp": ts})
            })
            .collect();
        next += BATCH;
        let outcome = match post_ndjson(&url, &events) {
            Ok(200) => Outcome::Accepted,
            Ok(status) => Outcome::Refused(status),
            Err(_) => Outcome::Unknown,
        };
        log.lock().unwrap().push((first, BATCH, outcome));
        if outcome == Outcome::Unknown {
            return; // the server is gone
        }
    }
}

#[test]
fn kill_9_under_load_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let sediment = Setup::new(dir.path()).start();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, stop, log) = (sediment.url("/"), stop.clone(), log.clone());
                std::thread::spawn(move || load(url, c, round, stop, log))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        sediment.kill9();
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().for_each(|c| c.join().unwrap());
    }
    // A last, clean run uploads whatever the crashes left staged.
    let sediment = Setup::new(dir.path()).start();
    sediment.stop();

    let mut archived: HashMap<u64, usize> = HashMap::new();
    for (_, events) in read_archive(&dir.path().join("archive")) {
        for e in events {
            *archived.entry(e["seq"].as_u64().unwrap()).or_default() += 1;
        }
    }
    let log = log.lock().unwrap();
    let (mut accepted, mut unknown) = (0, 0);
    for (first, n, outcome) in log.iter() {
        for seq in *first..first + n {
            let count = archived.get(&seq).copied().unwrap_or(0);
            match outcome {
                Outcome::Accepted => {
                    assert_eq!(count, 1, "acknowledged seq {seq} archived {count} times")
                }
                Outcome::Refused(status) => {
                    assert_eq!(count, 0, "seq {seq} refused with {status} but archived")
                }
                Outcome::Unknown => assert!(count <= 1, "seq {seq} archived {count} times"),
            }
        }
        accepted += u64::from(*outcome == Outcome::Accepted);
        unknown += u64::from(*outcome == Outcome::Unknown);
    }
    assert!(
        archived.values().all(|c| *c == 1),
        "no line is archived twice"
    );
    assert!(
        accepted > ROUNDS * 5,
        "the load was real: {accepted} acknowledged batches"
    );
    eprintln!(
        "{accepted} batches acknowledged, {unknown} cut by kill -9, {} events archived",
        archived.len()
    );
}
