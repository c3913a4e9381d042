//! `sediment restore` interrupted and resumed: `kill -9` at random moments
//! while writing a file and while POSTing into a second sediment, then the same
//! command again, until it completes; and an HTTP receiver that answers 503
//! with Retry-After and 429.

mod common;
mod restore_kit;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::receiver::{Receiver, Reply};
use common::*;
use restore_kit::*;
use serde_json::Value;

/// Starts the restore; kills it with SIGKILL after `after`, or lets it finish.
/// Returns its exit code (`None` when killed).
fn run_or_kill(f: &Fixture, args: &[&str], after: Duration) -> Option<i32> {
    let mut child = Command::new(binary())
        .args(["restore", "--config"])
        .arg(&f.config)
        .args(["--sink", "archive"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + after;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the restore at random moments until it completes; returns the rounds killed.
fn until_done(f: &Fixture, args: &[&str]) -> usize {
    let mut killed = 0;
    for round in 0.. {
        assert!(round < 60, "the restore never completed");
        let after = Duration::from_millis(300 + rand::random::<u64>() % 1200);
        let after = if round >= 8 {
            Duration::from_secs(120)
        } else {
            after
        };
        match run_or_kill(f, args, after) {
            Some(0) => return killed,
            Some(code) => panic!("the restore failed with exit code {code}"),
            None => killed += 1,
        }
    }
    unreachable!()
}

#[test]
fn a_restore_to_a_file_killed_at_random_moments_writes_every_line_once() {
    let f = archive(tempfile::tempdir().unwrap(), &file_sink(), 300);
    let archived = file_archive_lines(&f.root().join("archive"));
    let (from, to, from_ms, to_ms) = f.range();
    let out = f.root().join("restored.ndjson");
    // About 1,900 lines throttled to 400 a second, so that the kills land while it
    // writes (it commits every second).
    let args = [
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        out.to_str().unwrap(),
        "--rate",
        "400",
    ];
    let killed = until_done(&f, &args);
    assert!(killed >= 3, "only {killed} kills landed");
    let restored = text_lines(&std::fs::read(&out).unwrap());
    assert_exactly_the_range(&restored, &archived, from_ms, to_ms);
}

#[test]
fn a_restore_posting_into_a_second_sediment_killed_at_random_moments_archives_every_line_once() {
    let f = archive(tempfile::tempdir().unwrap(), &file_sink(), 300);
    let archived = file_archive_lines(&f.root().join("archive"));
    let (from, to, from_ms, to_ms) = f.range();
    let receiver_dir = tempfile::tempdir().unwrap();
    // The receiver keeps the restored lines' _meta (trust_meta), so lines stay byte-identical.
    let receiver = Setup::new(receiver_dir.path())
        .topology(
            "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}', trust_meta: true}
transforms:
  hourly: {type: hour_partition, inputs: [http_in]}
sinks:
  archive: {type: file, inputs: [hourly], path: '{ROOT}/archive', account_id: acme}
",
        )
        .start();
    let url = receiver.url("/");
    let args = [
        "--from", &from, "--to", &to, "--output", &url, "--rate", "400",
    ];
    let killed = until_done(&f, &args);
    assert!(killed >= 3, "only {killed} kills landed");
    let metrics = receiver.metrics();
    receiver.stop();
    let there = file_archive_lines(&receiver_dir.path().join("archive"));
    assert_exactly_the_range(&there, &archived, from_ms, to_ms);
    let duplicates = metric(
        &metrics,
        "sediment_component_discarded_events_total",
        r#"component_id="http_in",component_kind="source",component_type="http",reason="duplicate_request",rule="""#,
    );
    eprintln!(
        "{killed} kills; requests sent again and answered as duplicates: {duplicates:?} events"
    );
}

#[test]
fn an_http_output_that_answers_503_and_429_gets_every_line_once_honouring_retry_after() {
    // About 2,500 lines: three requests of at most 1,000, sent at once.
    let f = archive(tempfile::tempdir().unwrap(), &file_sink(), 400);
    let archived = file_archive_lines(&f.root().join("archive"));
    let (from, to, from_ms, to_ms) = f.range();
    let receiver = Receiver::start();
    receiver.script([
        Reply::status(503).retry_after("2"),
        Reply::status(429).retry_after("1"),
        Reply::status(503).retry_after("1"),
    ]);
    let started = Instant::now();
    let run = f.restore(&["--from", &from, "--to", &to, "--output", &receiver.url()]);
    run.ok();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let attempts = receiver.attempts();
    // Every refused attempt is followed by its retry no sooner than Retry-After.
    let mut by_key: HashMap<String, Vec<&common::receiver::Attempt>> = HashMap::new();
    for a in &attempts {
        let key = a
            .headers
            .get("idempotency-key")
            .cloned()
            .expect("restore sends an Idempotency-Key");
        by_key.entry(key).or_default().push(a);
    }
    let mut retried = 0;
    for tries in by_key.values() {
        for w in tries.windows(2) {
            let after: u64 = w[0]
                .retry_after
                .as_deref()
                .expect("only refusals are retried")
                .parse()
                .unwrap();
            let gap = w[1].at - w[0].at;
            assert!(
                gap >= Duration::from_millis(after * 1000 - 50),
                "retried {gap:?} after Retry-After: {after}"
            );
            retried += 1;
        }
    }
    assert_eq!(retried, 3, "three refused attempts, each retried once");
    let lines: Vec<String> = receiver.accepted().iter().map(Value::to_string).collect();
    let expected: Vec<String> = archived
        .iter()
        .filter(|l| (from_ms..to_ms).contains(&ts_ms(l)))
        .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
        .collect();
    let (mut got, mut want) = (lines.clone(), expected);
    got.sort();
    want.sort();
    assert!(
        got == want,
        "{} lines arrived, {} expected, each once",
        got.len(),
        want.len()
    );
}

#[test]
fn an_http_output_that_refuses_a_request_stops_the_restore_with_its_answer_and_keeps_the_checkpoint(
) {
    let f = archive(tempfile::tempdir().unwrap(), &file_sink(), 40);
    let (from, to, ..) = f.range();
    let receiver = Receiver::start();
    receiver.fallback(Some(
        Reply::status(400).body("{\"error\":\"line 1: unknown field\"}"),
    ));
    let run = f.restore(&["--from", &from, "--to", &to, "--output", &receiver.url()]);
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    for part in [
        "400 Bad Request",
        "line 1: unknown field",
        "running the same command again continues",
    ] {
        assert!(error.contains(part), "{part} missing from: {error}");
    }
    // Once the receiver takes it, the same command finishes the restore.
    receiver.fallback(None);
    f.restore(&["--from", &from, "--to", &to, "--output", &receiver.url()])
        .ok();
    assert!(!receiver.accepted().is_empty());
}
