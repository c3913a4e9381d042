//! End to end against fake-gcs-server (the GCS JSON API, started by each test),
//! read back with plain HTTP GETs: layout and exactly-once, two replicas,
//! an outage under load, the store's operations on a multi-chunk resumable upload
//! and the crash window, and a >64 MiB hour in chunks with bounded memory.

mod cloud;
mod common;

use std::sync::Arc;

use cloud::{scenarios, FakeGcs, OutageProxy};

const BUCKET: &str = "archive";

fn sink(endpoint: &str) -> String {
    format!("    bucket: {BUCKET}\n    endpoint: '{endpoint}'\n    anonymous: true\n    storage_class: STANDARD\n")
}

fn emulator() -> FakeGcs {
    let gcs = FakeGcs::start();
    gcs.create_bucket(BUCKET);
    gcs
}

#[test]
fn loghub_lines_land_once_each_in_gcs_with_the_archive_layout() {
    let gcs = emulator();
    scenarios::layout("gcs", &sink(&gcs.endpoint()), || gcs.download(BUCKET, ""));
    let meta = gcs.download(BUCKET, "logs/");
    assert!(meta
        .iter()
        .all(|o| o.metadata.contains_key("sediment-segment-id")));
}

#[test]
fn two_replicas_writing_the_same_hours_never_overwrite_each_other() {
    let gcs = emulator();
    scenarios::replicas("gcs", &sink(&gcs.endpoint()), || gcs.download(BUCKET, ""));
}

#[test]
fn an_outage_under_load_loses_and_duplicates_nothing() {
    let gcs = emulator();
    let proxy = OutageProxy::start(gcs.port);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    scenarios::outage("gcs", &sink(&endpoint), &proxy, || gcs.download(BUCKET, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_operations_and_the_crash_window() {
    let gcs = tokio::task::spawn_blocking(emulator).await.unwrap();
    let settings = sediment_sinks::gcs::GcsSettings {
        sink: "gcs_store".into(),
        bucket: BUCKET.into(),
        prefix: "logs/".into(),
        endpoint: Some(gcs.endpoint()),
        storage_class: None,
        auth: sediment_sinks::gcs::GcsAuth::Anonymous,
        chunk_size: 8 << 20,
    };
    let store = sediment_sinks::gcs::GcsStore::connect(settings)
        .await
        .unwrap();
    // fake-gcs-server ignores ifGenerationMatch on resumable sessions (module docs).
    scenarios::store_and_crash_window(Arc::new(store), "gcs_crash_window", "gcs", false).await;
    // What it cannot enforce is at least asked for: every create, including the
    // resumable session of the 20 MiB object (GCS checks the precondition when the
    // session opens and when it completes), carries ifGenerationMatch=0.
    let requests = gcs.requests();
    let creates: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with(&format!("POST /upload/storage/v1/b/{BUCKET}/o?")))
        .collect();
    let resumable: Vec<&&String> = creates
        .iter()
        .filter(|r| r.contains("uploadType=resumable"))
        .collect();
    assert_eq!(resumable.len(), 1, "one resumable session: {requests:#?}");
    assert!(
        creates.len() > 4 && creates.iter().all(|r| r.contains("ifGenerationMatch=0")),
        "every create is conditional: {creates:#?}"
    );
    let chunks = requests
        .iter()
        .filter(|r| r.starts_with("PUT /upload/"))
        .count();
    assert_eq!(chunks, 3, "20 MiB in 8 MiB chunks: {requests:#?}");
    tokio::task::spawn_blocking(move || drop(gcs))
        .await
        .unwrap();
}

/// A >64 MiB hour goes up as one resumable session of 8 MiB chunks, each read from
/// the staging file when it is sent: sediment's resident set stays below 64 MiB.
#[test]
fn a_large_hour_is_uploaded_in_chunks_with_bounded_memory() {
    let gcs = emulator();
    let large = scenarios::large_hour("gcs", &sink(&gcs.endpoint()));
    let objects = gcs.download(BUCKET, "logs/");
    assert_eq!(objects.len(), 1);
    let size = objects[0].size;
    assert!(size > 64 << 20, "{} is {size} bytes", objects[0].key);
    assert_eq!(objects[0].lines.len(), large.sent);
    let requests = gcs.requests();
    let chunks = requests
        .iter()
        .filter(|r| r.starts_with("PUT /upload/"))
        .count() as u64;
    assert_eq!(
        chunks,
        size.div_ceil(8 << 20),
        "8 MiB chunks: {requests:#?}"
    );
    eprintln!(
        "gcs: {:.1} MiB in {chunks} chunks, largest RSS while uploading {} MiB",
        size as f64 / 1048576.0,
        large.upload_kib / 1024
    );
}
