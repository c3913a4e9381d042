//! End to end: real loghub lines over HTTP into hourly archives in a local folder.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Command;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{json, Value};

const HOURS: i64 = 6;

/// Every loghub system's lines as NDJSON events spread over six past hours.
fn corpus(per_system: usize) -> Vec<Value> {
    let now = Utc::now().timestamp();
    let first_hour = (now / 3600 - HOURS - 1) * 3600;
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
            let ts_ms = first_hour * 1000 + (i as i64) * HOURS * 3_600_000 / n;
            let ts = Utc
                .timestamp_millis_opt(ts_ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({"message": line, "app": system.to_lowercase(), "seq": i, "timestamp": ts})
        })
        .collect()
}

fn expected_key(ts: &str, part: u32) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .with_timezone(&Utc);
    let part = if part == 0 {
        String::new()
    } else {
        format!(".{part}")
    };
    t.format(&format!(
        "year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00{part}.json.gz"
    ))
    .to_string()
}

#[test]
fn loghub_lines_land_once_each_in_their_hour() {
    let dir = tempfile::tempdir().unwrap();
    let events = corpus(200);
    let sediment = Setup::new(dir.path()).start();
    for chunk in events.chunks(500) {
        assert_eq!(post_ndjson(&sediment.url("/"), chunk), Ok(200));
    }
    // A gzip-encoded body counts the same.
    let extra = json!({"message": "gzipped", "seq": -1, "timestamp": events[0]["timestamp"]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{extra}\n").as_bytes()).unwrap();
    let (status, body, _) = post(
        &sediment.url("/"),
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        &gz.finish().unwrap(),
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":1}"#));
    let metrics = sediment.metrics();
    let n = events.len() as u64 + 1;
    assert_component_metrics(&metrics, "http_in", "source", "http", n, n);
    assert_component_metrics(&metrics, "hourly", "transform", "hour_partition", n, n);
    assert_component_metrics(&metrics, "archive", "sink", "file", n, n);
    let labels =
        r#"code="200",component_id="http_in",component_kind="source",component_type="http""#;
    assert_eq!(
        metric(&metrics, "sediment_http_requests_total", labels),
        Some(events.chunks(500).count() as u64 + 1)
    );
    sediment.stop();

    let archive = read_archive(&dir.path().join("archive"));
    let mut by_seq: HashMap<i64, (String, Value)> = HashMap::new();
    let mut ids = HashSet::new();
    for (key, lines) in &archive {
        for e in lines {
            let seq = e["seq"].as_i64().unwrap();
            assert!(
                by_seq.insert(seq, (key.clone(), e.clone())).is_none(),
                "seq {seq} archived twice"
            );
            assert!(
                ids.insert(e["_id"].as_str().unwrap().to_owned()),
                "duplicate _id"
            );
            assert_eq!(e["_id"].as_str().unwrap().len(), 36);
            assert_eq!(e["_meta"]["source"], "http_in");
            assert_eq!(e["_meta"]["source_type"], "http");
            assert!(e["_meta"]["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"));
            assert!(e["_meta"]["received_at"].is_string());
        }
    }
    assert_eq!(by_seq.len(), events.len() + 1, "every event archived");
    for original in &events {
        let (key, archived) = &by_seq[&original["seq"].as_i64().unwrap()];
        let ts = original["timestamp"].as_str().unwrap();
        assert_eq!(key, &expected_key(ts, 0));
        assert_eq!(
            archived["_ts"], original["timestamp"],
            "_ts is the event time"
        );
        assert_eq!(
            archived["message"], original["message"],
            "the event is kept as received"
        );
    }
    let hours: HashSet<String> = events
        .iter()
        .map(|e| expected_key(e["timestamp"].as_str().unwrap(), 0))
        .collect();
    assert_eq!(
        archive.len(),
        hours.len(),
        "one object per hour: {:?}",
        archive.iter().map(|a| &a.0).collect::<Vec<_>>()
    );

    // zcat, a standard reader, agrees with the line count.
    for (key, lines) in &archive {
        let out = Command::new("zcat")
            .arg(dir.path().join("archive").join(key))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().lines().count(),
            lines.len()
        );
    }
    assert!(
        !dir.path()
            .join("data/archive/staging")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "staging is empty after a clean stop"
    );
}

#[test]
fn late_events_for_written_hours_go_to_the_next_part() {
    let dir = tempfile::tempdir().unwrap();
    let events = corpus(20);
    let sediment = Setup::new(dir.path()).start();
    assert_eq!(post_ndjson(&sediment.url("/"), &events[..110]), Ok(200));
    sediment.stop();
    let first: HashSet<String> = read_archive(&dir.path().join("archive"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();

    // A restart receives more lines for hours already archived: they never overwrite, they add `.1` parts.
    let sediment = Setup::new(dir.path()).start();
    assert_eq!(post_ndjson(&sediment.url("/"), &events[110..]), Ok(200));
    sediment.stop();
    let archive = read_archive(&dir.path().join("archive"));
    for (key, lines) in &archive {
        let ts = lines[0]["timestamp"].as_str().unwrap();
        let seqs: Vec<i64> = lines.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        if first.contains(key) {
            assert!(seqs.iter().all(|s| *s < 110), "{key} was rewritten");
        } else if *key == expected_key(ts, 1) {
            assert!(first.contains(&expected_key(ts, 0)) && seqs.iter().all(|s| *s >= 110));
        } else {
            assert_eq!(*key, expected_key(ts, 0));
            assert!(seqs.iter().all(|s| *s >= 110));
        }
    }
    let total: usize = archive.iter().map(|a| a.1.len()).sum();
    assert_eq!(total, events.len());
    assert!(
        archive.iter().any(|(k, _)| k.ends_with(".1.json.gz")),
        "the hour shared by both runs has a .1 part"
    );
}

#[test]
fn mezmo_ingest_and_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let sediment = Setup::new(dir.path()).start();
    let lines = loghub_lines("OpenSSH", 3);
    let ts = (Utc::now().timestamp() - 7200) * 1000;
    let body = json!({"lines": lines.iter().map(|l| json!({"line": l, "app": "sshd", "level": "INFO", "timestamp": ts})).collect::<Vec<_>>()});
    let (status, reply, _) = post(
        &sediment.url("/logs/ingest?hostname=bastion&tags=prod"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!((status, reply.as_str()), (200, r#"{"accepted":3}"#));
    let text = loghub_lines("Apache", 2).join("\n");
    let (status, _, _) = post(
        &sediment.url("/"),
        &[("content-type", "text/plain")],
        text.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    sediment.stop();

    let all: Vec<Value> = read_archive(&dir.path().join("archive"))
        .into_iter()
        .flat_map(|a| a.1)
        .collect();
    let mezmo: Vec<&Value> = all.iter().filter(|e| e.get("line").is_some()).collect();
    assert_eq!(mezmo.len(), 3);
    assert_eq!(mezmo[0]["_meta"]["query"]["hostname"], "bastion");
    assert_eq!(mezmo[0]["app"], "sshd");
    assert_eq!(
        mezmo[0]["_ts"],
        Value::String(
            Utc.timestamp_millis_opt(ts)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    );
    let text_events: Vec<&Value> = all.iter().filter(|e| e.get("message").is_some()).collect();
    assert_eq!(
        text_events
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect::<Vec<_>>(),
        loghub_lines("Apache", 2)
    );
}
