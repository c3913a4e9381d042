//! The end-to-end scenarios every cloud backend goes through (tests/gcs.rs,
//! tests/azure_blob.rs; tests/s3.rs spells the same ones out with S3 extras).
//! `sink` is the YAML of the backend's own options, indented for the sink map.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_core::metrics::ComponentMetrics;
use sediment_core::storage::{ObjectStore, PutOutcome};
use sediment_sinks::archive::upload::Uploader;
use sediment_sinks::archive::{member, naming::KeyTemplate, staging::SealedSegment};
use serde_json::Value;

use super::checks::{assert_exactly_once, corpus, hour_stem, metric_sum};
use super::{OutageProxy, S3Object};
use crate::common::{assert_component_metrics, post_ndjson, Setup};

/// `http → hour_partition → <type>` with `sink` options (prefix `logs/`, account `acme`).
pub fn topology(type_name: &str, sink: &str) -> String {
    format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}'}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in], late_after: 10m}}
sinks:
  archive:
    type: {type_name}
    inputs: [hourly]
    prefix: logs
    account_id: acme
{sink}"
    )
}

/// Loghub lines over six past hours land once each, one object per hour.
pub fn layout(type_name: &str, sink: &str, download: impl Fn() -> Vec<S3Object>) {
    let dir = tempfile::tempdir().unwrap();
    let events = corpus(150, 6, 0);
    let sediment = super::start(Setup::new(dir.path()).topology(&topology(type_name, sink)));
    for chunk in events.chunks(500) {
        assert_eq!(post_ndjson(&sediment.url("/"), chunk), Ok(200));
    }
    let n = events.len() as u64;
    assert_component_metrics(&sediment.metrics(), "archive", "sink", type_name, n, n);
    sediment.stop();
    let objects = download();
    assert_exactly_once(&objects, &events, "logs/");
    let hours: HashSet<String> = events
        .iter()
        .map(|e| hour_stem("logs/", e["timestamp"].as_str().unwrap()))
        .collect();
    assert_eq!(objects.len(), hours.len(), "one object per hour");
}

/// Two replicas finalising the same hours at once: `.json.gz` and `.1.json.gz`.
pub fn replicas(type_name: &str, sink: &str, download: impl Fn() -> Vec<S3Object>) {
    let topology = topology(type_name, sink);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = super::start(Setup::new(a_dir.path()).topology(&topology));
    let b = super::start(Setup::new(b_dir.path()).topology(&topology));
    let a_events = corpus(60, 3, 0);
    let b_events = corpus(60, 3, 100_000);
    assert_eq!(post_ndjson(&a.url("/"), &a_events), Ok(200));
    assert_eq!(post_ndjson(&b.url("/"), &b_events), Ok(200));
    let (sa, sb) = (
        std::thread::spawn(move || a.stop()),
        std::thread::spawn(move || b.stop()),
    );
    sa.join().unwrap();
    sb.join().unwrap();
    let objects = download();
    let all: Vec<Value> = a_events.iter().chain(&b_events).cloned().collect();
    assert_exactly_once(&objects, &all, "logs/");
    let seconds = objects
        .iter()
        .filter(|o| o.key.contains(".1.json.gz"))
        .count();
    assert_eq!(
        (objects.len(), seconds),
        (6, 3),
        "one primary and one .1 per hour"
    );
}

/// Storage unreachable for 30 s under load (through `proxy`): nothing lost or
/// duplicated, retries counted, backlog visible. `sink` points at the proxy.
pub fn outage(
    type_name: &str,
    sink: &str,
    proxy: &OutageProxy,
    download: impl Fn() -> Vec<S3Object>,
) {
    let sink = format!("{sink}    late_flush_interval: 1s\n");
    let dir = tempfile::tempdir().unwrap();
    let sediment = super::start(Setup::new(dir.path()).topology(&topology(type_name, &sink)));
    let events = corpus(200, 4, 0);
    let url = sediment.url("/");
    let chunks: Vec<Vec<Value>> = events.chunks(100).map(<[Value]>::to_vec).collect();
    let load = std::thread::spawn(move || {
        let started = Instant::now();
        let count = chunks.len() as u32;
        for (i, chunk) in chunks.iter().enumerate() {
            let due = Duration::from_secs(40) * i as u32 / count;
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            assert_eq!(post_ndjson(&url, chunk), Ok(200));
        }
    });
    std::thread::sleep(Duration::from_secs(5));
    proxy.down();
    std::thread::sleep(Duration::from_secs(30));
    let during = sediment.metrics();
    proxy.up();
    load.join().unwrap();
    let archive = ["component_id=\"archive\""];
    assert!(metric_sum(&during, "sediment_upload_retries_total", &archive) > 0);
    assert!(metric_sum(&during, "sediment_archive_staged_bytes", &archive) > 0);
    sediment.stop();
    assert_exactly_once(&download(), &events, "logs/");
}

fn segment(dir: &Path, name: &str, hour: i64, bytes_of_text: &[u8]) -> SealedSegment {
    let id = uuid::Uuid::now_v7();
    let mut bytes = member::encode_head(*id.as_bytes());
    bytes.extend(member::encode_data(bytes_of_text, 1));
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    SealedSegment {
        path,
        hour,
        id,
        size: bytes.len() as u64,
    }
}

/// The store's five operations on a multi-chunk object, then the crash window:
/// an uploaded segment given again is recognised by the id in its metadata.
/// `large_conditional`: whether the emulator enforces create-if-absent on the
/// multi-chunk path (fake-gcs-server ignores it on resumable sessions).
pub async fn store_and_crash_window(
    store: Arc<dyn ObjectStore>,
    id: &str,
    type_name: &'static str,
    large_conditional: bool,
) {
    use rand::RngCore;
    let dir = tempfile::tempdir().unwrap();
    let hour = 1_763_780_400;
    let template = KeyTemplate::new(
        "year=%Y/month=%m/day=%d/{account_id}.%Y-%m-%d.%H00{part}.json.gz",
        "acme",
    )
    .unwrap();

    // ~20 MiB of incompressible data: several chunks/blocks.
    let mut noise = vec![0u8; 20 << 20];
    rand::rng().fill_bytes(&mut noise);
    let big = segment(dir.path(), "big.sealed", hour, &noise);
    let big_id = big.id.hyphenated().to_string();
    let key = "big/object.json.gz";
    assert_eq!(store.head(key).await.unwrap(), None);
    assert_eq!(
        store.put_if_absent(key, &big.path, &big_id).await.unwrap(),
        PutOutcome::Created
    );
    if large_conditional {
        assert_eq!(
            store
                .put_if_absent(key, &big.path, "another")
                .await
                .unwrap(),
            PutOutcome::AlreadyExists,
            "a taken name is never overwritten"
        );
    }
    // The single-request path, on every emulator.
    let small = segment(dir.path(), "small.sealed", hour, b"{\"small\":1}\n");
    let small_id = small.id.hyphenated().to_string();
    let small_key = "small/object.json.gz";
    assert_eq!(
        store
            .put_if_absent(small_key, &small.path, &small_id)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_if_absent(small_key, &small.path, "another")
            .await
            .unwrap(),
        PutOutcome::AlreadyExists,
        "a taken name is never overwritten"
    );
    let info = store.head(small_key).await.unwrap().unwrap();
    assert_eq!(info.segment_id, Some(small_id));
    store.delete(small_key).await.unwrap();
    let info = store.head(key).await.unwrap().unwrap();
    assert_eq!((info.size, info.segment_id), (big.size, Some(big_id)));
    assert_eq!(
        store.get(key).await.unwrap(),
        std::fs::read(&big.path).unwrap()
    );
    assert_eq!(store.list("big/").await.unwrap(), vec![key.to_owned()]);
    store.delete(key).await.unwrap();
    assert_eq!(store.head(key).await.unwrap(), None);
    store.delete(key).await.unwrap();

    let other = segment(
        dir.path(),
        "other.sealed",
        hour,
        b"{\"from\":\"another replica\"}\n",
    );
    let ours = segment(dir.path(), "ours.sealed", hour, b"{\"from\":\"us\"}\n");
    for (s, part) in [(&other, 0), (&ours, 1)] {
        let put = store
            .put_if_absent(
                &template.render(hour, part),
                &s.path,
                &s.id.hyphenated().to_string(),
            )
            .await
            .unwrap();
        assert_eq!(put, PutOutcome::Created);
    }
    let metrics = ComponentMetrics::new(id, "sink", type_name).archive();
    let uploader = Uploader::new(id.into(), store.clone(), template.clone(), metrics.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(ours.clone()).unwrap();
    tx.send(segment(dir.path(), "fresh.sealed", hour, b"{\"n\":3}\n"))
        .unwrap();
    drop(tx);
    uploader.run(rx).await;
    assert_eq!(
        metrics.objects_already_present.get(),
        1,
        "ours was recognised"
    );
    assert_eq!(
        metrics.objects_created.get(),
        1,
        "only the fresh segment was written"
    );
    assert!(!ours.path.exists(), "the staged copy is cleaned up");
    assert_eq!(
        store.list("year=").await.unwrap().len(),
        3,
        "no fourth object"
    );
    assert!(store
        .head(&template.render(hour, 2))
        .await
        .unwrap()
        .is_some());
}

/// What [`large_hour`] sent and saw.
pub struct LargeHour {
    /// Events acknowledged, all in one hour.
    pub sent: usize,
    /// sediment's largest resident set from SIGTERM to exit (the upload), KiB.
    pub upload_kib: u64,
}

/// One hour of ~70 MiB compressed is staged, then uploaded at shutdown (nothing is
/// due before): the backend must stream it from the staging file in parts, so
/// sediment's resident set stays far below the object's size. The caller checks
/// the parts its storage saw and the downloaded lines.
pub fn large_hour(type_name: &str, sink: &str) -> LargeHour {
    use rand::{Rng, RngCore};
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("{sink}    late_flush_interval: 1h\n    compression_level: 1\n");
    let sediment = super::start(Setup::new(dir.path()).topology(&topology(type_name, &sink)));
    let ts = chrono::DateTime::from_timestamp(
        (chrono::Utc::now().timestamp() / 3600 - 3) * 3600 + 60,
        0,
    )
    .unwrap()
    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Messages are 4 KiB windows at random offsets of a 1 MiB random text: they
    // compress like random text (~75%) and cost the test nothing to make.
    let mut rng = rand::rng();
    let mut pool = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut pool);
    let pool: String = pool
        .iter()
        .map(|b| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[*b as usize % 62],
            )
        })
        .collect();
    let mut sent = 0usize;
    for batch in 0..96 {
        let events: Vec<Value> = (0..250)
            .map(|i| {
                let at = rng.random_range(0..pool.len() - 4096);
                serde_json::json!({"seq": batch * 250 + i, "timestamp": ts, "message": &pool[at..at + 4096]})
            })
            .collect();
        assert_eq!(post_ndjson(&sediment.url("/"), &events), Ok(200));
        sent += events.len();
    }
    let pid = sediment.child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            else {
                break;
            };
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let ingest_kib = sediment.peak_rss_kib();
    let started = Instant::now();
    sediment.stop();
    let upload_kib = watcher.join().unwrap();
    eprintln!(
        "{type_name} large hour: shutdown and upload {:.1} s; sediment peak RSS while ingesting {} MiB, largest while uploading {} MiB",
        started.elapsed().as_secs_f64(),
        ingest_kib / 1024,
        upload_kib / 1024
    );
    assert!(
        upload_kib < 64 * 1024,
        "RSS while uploading ({upload_kib} KiB) stays below 64 MiB"
    );
    LargeHour { sent, upload_kib }
}
