//! End to end against a real Kafka-protocol broker (Tansu, one per test
//! process, shared by the tests through their own topics and groups) and the
//! real `sediment` binary; records produced by confluent-kafka (an independent
//! client). Two replicas of one group archive loghub lines spread over six past
//! hours into one archive (a folder; S3 on moto) through `kill -9` rounds, a
//! `kill -9` that also loses the replica's `data_dir`, a replica paused with
//! SIGSTOP past its session timeout (a zombie) and woken, a third replica
//! joining and one leaving with SIGTERM — every record archived exactly once
//! (by `_meta.kafka` position and by `_id`), read back with zcat and DuckDB.
//! Back-pressure: a million records wait while the storage is unreachable,
//! and sediment's memory stays bounded.
//!
//! Tansu's limits shape the scenario: each group change takes seconds, so
//! faults are injected once the group is stable (the leader leaving in the
//! middle of a rebalance leaves a Tansu group stuck; tests/kafka_mock.rs covers
//! that case), and Tansu does not keep commit metadata, so a new owner learns
//! what is stored from the storage itself (tests/kafka_mock.rs covers the
//! metadata path).

mod cloud;
mod common;
mod kafka;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kafka::*;
use rand::Rng;

/// The kafka source of a replica of group `group`.
fn source(topic: &str, group: &str) -> String {
    format!(
        "
sources:
  kafka_in:
    type: kafka
    bootstrap_servers: '{}'
    topics: [{topic}]
    group_id: {group}
    decoding: text
    librdkafka_options: {{session.timeout.ms: '6000', heartbeat.interval.ms: '500'}}
transforms:
  hourly: {{type: hour_partition, inputs: [kafka_in], late_after: 10m}}
",
        tansu()
    )
}

/// Starts a replica in `root` (its `data_dir` is `root/data`).
fn replica(root: &Path, topology: &str) -> Sediment {
    std::fs::create_dir_all(root).unwrap();
    Setup::new(root)
        .topology(topology)
        .shutdown_timeout("20s")
        .start()
}

/// The partitions a replica has seeded (and so reports a committed offset for).
fn owned(s: &Sediment) -> Vec<i32> {
    s.metrics()
        .lines()
        .filter(|l| l.starts_with("sediment_kafka_committed_offset{"))
        .map(|l| {
            l.split("partition=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Waits until `replicas` together own the 4 partitions, each once, and each
/// replica owns one at least: the group's last rebalance is through.
fn wait_stable(replicas: &[&Sediment]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let each: Vec<Vec<i32>> = replicas.iter().map(|r| owned(r)).collect();
        let mut all: Vec<i32> = each.concat();
        all.sort();
        if all == [0, 1, 2, 3] && each.iter().all(|o| !o.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: {each:?}\n{}",
            replicas
                .iter()
                .map(|r| r.log())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(s: &Sediment, sig: i32) {
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, sig) }, 0);
}

/// Produces `chunks` chunks of `size` records from `first` on, `pause` apart, from a
/// thread, over the 6 hours from `base_hour` (fixed by the caller, so that a run
/// crossing an hour boundary does not spread the records over a seventh).
fn produce_meanwhile(
    topic: &'static str,
    base_hour: i64,
    first: u64,
    chunks: u64,
    size: u64,
    pause: Duration,
) -> std::thread::JoinHandle<Produced> {
    std::thread::spawn(move || {
        let mut all = Produced::new();
        for i in 0..chunks {
            std::thread::sleep(pause);
            all.extend(produce(
                tansu(),
                topic,
                4,
                first + i * size,
                size,
                6,
                base_hour,
            ));
        }
        all
    })
}

/// zcat and DuckDB read every record once: lines, distinct `_id`s and
/// distinct positions all equal `n`; DuckDB's Hive columns name the hours.
fn assert_readers(archive: &Path, n: usize) {
    let zcat = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -name '*.json.gz' ! -name '.*' -print0 | xargs -0 zcat | wc -l",
            archive.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&zcat.stdout).trim(),
        n.to_string(),
        "zcat"
    );
    let script = r#"
import duckdb, json, sys
g = sys.argv[1] + '/**/*.json.gz'
lines, ids, positions = duckdb.sql(f"SELECT count(*), count(DISTINCT json->>'_id'), count(DISTINCT (json->'_meta'->'kafka'->>'partition') || '-' || (json->'_meta'->'kafka'->>'offset')) FROM read_ndjson_objects('{g}')").fetchall()[0]
hours = duckdb.sql(f"SELECT count(DISTINCT (year, month, day, hour(_ts::TIMESTAMPTZ AT TIME ZONE 'UTC'))) FROM read_json('{g}', hive_partitioning = true)").fetchall()[0][0]
print(json.dumps([lines, ids, positions, hours]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<usize> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        vec![n, n, n, 6],
        "DuckDB: lines, distinct _id, distinct positions, hours"
    );
}

#[test]
fn replicas_killed_losing_their_disk_paused_joining_and_leaving_archive_every_record_once() {
    const TOPIC: &str = "file-logs";
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let topology = format!(
        "{}sinks:\n  archive: {{type: file, inputs: [hourly], path: '{}', account_id: acme, late_flush_interval: 1s}}\n",
        source(TOPIC, "file-group"),
        archive.display()
    );
    let base_hour = hours_ago(7);
    let mut produced = produce(tansu(), TOPIC, 4, 0, 12_000, 6, base_hour);
    let producing = produce_meanwhile(
        TOPIC,
        base_hour,
        12_000,
        12,
        1000,
        Duration::from_millis(2500),
    );
    let roots: Vec<_> = (1..=3).map(|i| dir.path().join(format!("r{i}"))).collect();
    let mut r1 = replica(&roots[0], &topology);
    let mut r2 = replica(&roots[1], &topology);
    wait_stable(&[&r1, &r2]);
    let mut rng = rand::rng();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..2500)));
        if round % 2 == 0 {
            r1.kill9();
            r1 = replica(&roots[0], &topology);
        } else {
            r2.kill9();
            r2 = replica(&roots[1], &topology);
        }
        wait_stable(&[&r1, &r2]);
    }
    // A pod rescheduled without its volume.
    std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
    r2.kill9();
    std::fs::remove_dir_all(roots[1].join("data")).unwrap();
    r2 = replica(&roots[1], &topology);
    wait_stable(&[&r1, &r2]);
    // A zombie: paused past its session timeout, its partitions move, it wakes.
    signal(&r1, libc::SIGSTOP);
    wait_stable(&[&r2]);
    signal(&r1, libc::SIGCONT);
    wait_stable(&[&r1, &r2]);
    // A third replica joins, then one leaves gracefully.
    let r3 = replica(&roots[2], &topology);
    wait_stable(&[&r1, &r2, &r3]);
    r2.stop();
    wait_stable(&[&r1, &r3]);
    produced.extend(producing.join().unwrap());
    wait_archived(&archive, produced.len(), Duration::from_secs(120), || {
        r1.log()
    });
    std::thread::sleep(Duration::from_secs(3)); // time for a late duplicate to show
    r1.stop();
    r3.stop();
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
    assert_readers(&archive, produced.len());
}

#[test]
fn replicas_archiving_into_s3_through_kill_and_disk_loss_store_every_record_once() {
    const TOPIC: &str = "s3-logs";
    let moto = cloud::Moto::start();
    moto.create_bucket("archive");
    let dir = tempfile::tempdir().unwrap();
    let topology = format!(
        "{}sinks:\n  archive:\n    type: s3\n    inputs: [hourly]\n    bucket: archive\n    prefix: logs\n    endpoint: '{}'\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n    account_id: acme\n    late_flush_interval: 1s\n",
        source(TOPIC, "s3-group"),
        moto.endpoint()
    );
    let base_hour = hours_ago(7);
    let mut produced = produce(tansu(), TOPIC, 4, 0, 8000, 6, base_hour);
    let producing = produce_meanwhile(TOPIC, base_hour, 8000, 6, 1000, Duration::from_millis(2000));
    let (root1, root2) = (dir.path().join("r1"), dir.path().join("r2"));
    let mut r1 = replica(&root1, &topology);
    let r2 = replica(&root2, &topology);
    wait_stable(&[&r1, &r2]);
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(200..2000)));
    r1.kill9();
    std::fs::remove_dir_all(root1.join("data")).unwrap();
    r1 = replica(&root1, &topology);
    wait_stable(&[&r1, &r2]);
    r2.stop();
    wait_stable(&[&r1]);
    produced.extend(producing.join().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let objects = loop {
        let objects: Vec<(String, Vec<serde_json::Value>)> = moto
            .download("archive", "logs/")
            .into_iter()
            .map(|o| (o.key, o.lines))
            .collect();
        let n: usize = objects.iter().map(|o| o.1.len()).sum();
        if n >= produced.len() || Instant::now() > deadline {
            break objects;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    r1.stop();
    assert_exactly_once(&objects, &produced, TOPIC);
}

#[test]
fn a_million_records_wait_in_kafka_while_the_storage_is_down_with_bounded_memory() {
    const TOPIC: &str = "backlog";
    let moto = cloud::Moto::start();
    moto.create_bucket("archive");
    let proxy = cloud::OutageProxy::start(moto.port);
    let dir = tempfile::tempdir().unwrap();
    let produced = produce(tansu(), TOPIC, 4, 0, 1_000_000, 6, hours_ago(7));
    let topology = format!(
        "{}sinks:\n  archive:\n    type: s3\n    inputs: [hourly]\n    bucket: archive\n    endpoint: 'http://127.0.0.1:{}'\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n    account_id: acme\n    late_flush_interval: 1s\n",
        source(TOPIC, "backlog-group"),
        proxy.port
    );
    let sediment = replica(dir.path(), &topology);
    proxy.down();
    let received = |s: &Sediment| {
        metric(
            &s.metrics(),
            "sediment_component_received_events_total",
            "component_id=\"kafka_in\",component_kind=\"source\",component_type=\"kafka\"",
        )
        .unwrap_or(0)
    };
    // Reading stops once the records in flight reach their bound.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0, Instant::now());
    let plateau = loop {
        let n = received(&sediment);
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_secs(4) {
            break n;
        }
        assert!(Instant::now() < deadline, "reading never stopped: {n}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let rss = sediment.peak_rss_kib();
    eprintln!(
        "backlog: {} records in Kafka, {plateau} read while the storage is down, peak RSS {} MiB",
        produced.len(),
        rss / 1024
    );
    // At most `max_unstored_records` (the default) sent and not stored, plus
    // the one batch that found the bound reached.
    let bound =
        sediment_kafka::config::DEFAULT_MAX_UNSTORED_RECORDS + sediment_kafka::source::BATCH as u64;
    assert!(
        plateau as u64 <= bound,
        "the source paused: {plateau} read, bound {bound}"
    );
    assert!(rss < 160 * 1024, "peak RSS {} MiB", rss / 1024);
    // The storage is back: reading resumes.
    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received(&sediment) < plateau + 100_000 {
        assert!(Instant::now() < deadline, "reading did not resume");
        std::thread::sleep(Duration::from_millis(250));
    }
    let rss = sediment.peak_rss_kib();
    assert!(
        rss < 160 * 1024,
        "peak RSS while catching up {} MiB",
        rss / 1024
    );
    sediment.kill9();
}
