//! End to end against moto (a real S3 wire protocol, started by each test):
//! layout and exactly-once with an independent reader (boto3), conditional create
//! between two replicas, an outage under load, the crash window between upload
//! and clean-up, a multipart hour with bounded memory, and server-side encryption.

mod cloud;
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use cloud::checks::{assert_exactly_once, corpus, hour_stem};
use cloud::{scenarios, Moto, OutageProxy};
use common::*;
use serde_json::Value;

const BUCKET: &str = "archive";

fn s3_sink(endpoint: &str, extra: &str) -> String {
    format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}'}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in], late_after: 10m}}
sinks:
  archive:
    type: s3
    inputs: [hourly]
    bucket: {BUCKET}
    prefix: logs
    endpoint: '{endpoint}'
    region: us-east-1
    access_key_id: test
    secret_access_key: '${{TEST_S3_SECRET:-test}}'
    account_id: acme
{extra}"
    )
}

#[test]
fn loghub_lines_land_once_each_in_s3_encrypted_with_the_archive_layout() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let events = corpus(150, 6, 0);
    let topology = s3_sink(
        &moto.endpoint(),
        "    server_side_encryption: AES256\n    storage_class: STANDARD\n",
    );
    let sediment = cloud::start(Setup::new(dir.path()).topology(&topology));
    for chunk in events.chunks(500) {
        assert_eq!(
            post_ndjson(&sediment.url("/"), chunk),
            Ok(200),
            "{}",
            sediment.log()
        );
    }
    let n = events.len() as u64;
    assert_component_metrics(&sediment.metrics(), "archive", "sink", "s3", n, n);
    sediment.stop();

    let objects = moto.download(BUCKET, "");
    assert_exactly_once(&objects, &events, "logs/");
    let hours: HashSet<String> = events
        .iter()
        .map(|e| hour_stem("logs/", e["timestamp"].as_str().unwrap()))
        .collect();
    assert_eq!(objects.len(), hours.len(), "one object per hour");
    for o in &objects {
        assert!(
            o.key.ends_with(".json.gz") && !o.key.contains(".1.json.gz"),
            "{}",
            o.key
        );
        assert_eq!(o.sse.as_deref(), Some("AES256"), "{} is encrypted", o.key);
    }
}

#[test]
fn two_replicas_writing_the_same_hours_never_overwrite_each_other() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let topology = s3_sink(&moto.endpoint(), "");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = cloud::start(Setup::new(a_dir.path()).topology(&topology));
    let b = cloud::start(Setup::new(b_dir.path()).topology(&topology));
    let a_events = corpus(60, 3, 0);
    let b_events = corpus(60, 3, 100_000);
    let (a_events2, b_events2) = (a_events.clone(), b_events.clone());
    let (a_url, b_url) = (a.url("/"), b.url("/"));
    let ta = std::thread::spawn(move || post_ndjson(&a_url, &a_events2));
    let tb = std::thread::spawn(move || post_ndjson(&b_url, &b_events2));
    assert_eq!(ta.join().unwrap(), Ok(200));
    assert_eq!(tb.join().unwrap(), Ok(200));
    // Both finalise the same three hours at once.
    let (sa, sb) = (
        std::thread::spawn(move || a.stop()),
        std::thread::spawn(move || b.stop()),
    );
    sa.join().unwrap();
    sb.join().unwrap();

    let objects = moto.download(BUCKET, "logs/");
    let all: Vec<Value> = a_events.iter().chain(&b_events).cloned().collect();
    assert_exactly_once(&objects, &all, "logs/");
    let primaries = objects
        .iter()
        .filter(|o| !o.key.contains(".1.json.gz"))
        .count();
    let seconds = objects
        .iter()
        .filter(|o| o.key.contains(".1.json.gz"))
        .count();
    assert_eq!(
        (primaries, seconds),
        (3, 3),
        "each hour: one replica's .json.gz, the other's .1"
    );
}

#[test]
fn an_outage_under_load_loses_and_duplicates_nothing() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    // A proxy stands for the network path: taking it down refuses connections and
    // cuts open ones while moto keeps its (in-memory) objects, so every event can
    // be checked, including those written before the outage.
    let proxy = OutageProxy::start(moto.port);
    let sink = format!(
        "    bucket: {BUCKET}\n    endpoint: 'http://127.0.0.1:{}'\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n",
        proxy.port
    );
    scenarios::outage("s3", &sink, &proxy, || moto.download(BUCKET, "logs/"));
}

/// The store's operations on a multipart object (5 MiB parts) and on a single
/// request, conditional create on both paths, then the crash window: sediment
/// uploaded a segment and died before deleting it; the restart (here, the
/// uploader given the same segment again) finds its object by the segment id in
/// the object's metadata and writes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_operations_and_the_crash_window() {
    let moto = tokio::task::spawn_blocking(|| {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        moto
    })
    .await
    .unwrap();
    let store = sediment_sinks::s3::S3Store::connect(settings(&moto.endpoint())).await;
    scenarios::store_and_crash_window(Arc::new(store), "s3_crash_window", "s3", true).await;
    tokio::task::spawn_blocking(move || drop(moto))
        .await
        .unwrap();
}

fn settings(endpoint: &str) -> sediment_sinks::s3::S3Settings {
    sediment_sinks::s3::S3Settings {
        sink: "archive".into(),
        bucket: BUCKET.into(),
        prefix: "logs/".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
        static_keys: Some(("test".into(), "test".into(), None)),
        assume_role: None,
        server_side_encryption: None,
        kms_key_id: None,
        storage_class: None,
        part_size: 5 << 20,
    }
}

/// A >64 MiB hour goes up in 16 MiB parts read from the staging file one at a
/// time: sediment's resident set while uploading stays below 64 MiB.
#[test]
fn a_large_hour_is_uploaded_in_parts_with_bounded_memory() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let sink = format!(
        "    bucket: {BUCKET}\n    endpoint: '{}'\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n",
        moto.endpoint()
    );
    let large = scenarios::large_hour("s3", &sink);
    let out = moto.python(
        "objs = s3.list_objects_v2(Bucket=sys.argv[1])['Contents']\n\
         print(json.dumps([[o['Key'], o['Size'], o['ETag']] for o in objs]))",
        &[BUCKET],
    );
    let objects: Vec<(String, u64, String)> = serde_json::from_str(&out).unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (key, size, etag) = &objects[0];
    assert!(*size > 64 << 20, "{key} is {size} bytes");
    let parts: u64 = etag
        .trim_matches('"')
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(parts, size.div_ceil(16 << 20), "multipart ETag {etag}");
    eprintln!(
        "s3: {key} {:.1} MiB in {parts} parts, largest RSS while uploading {} MiB",
        *size as f64 / 1048576.0,
        large.upload_kib / 1024
    );
    let downloaded = moto.download(BUCKET, "logs/");
    assert_eq!(downloaded[0].lines.len(), large.sent);
}
