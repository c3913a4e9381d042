//! End to end against Azurite (started by each test), read back with Python's
//! `azure-storage-blob`: layout and exactly-once, two replicas, an outage under
//! load, the store's operations on a block-list upload and the crash window, and a
//! >64 MiB hour in blocks with bounded memory.

mod cloud;
mod common;

use std::sync::Arc;

use cloud::{scenarios, Azurite, OutageProxy, AZURITE_ACCOUNT, AZURITE_KEY};

const CONTAINER: &str = "archive";

fn sink(endpoint: &str) -> String {
    format!(
        "    container: {CONTAINER}\n    account: {AZURITE_ACCOUNT}\n    account_key: '{AZURITE_KEY}'\n    endpoint: '{endpoint}'\n"
    )
}

fn emulator() -> Azurite {
    let azurite = Azurite::start();
    azurite.create_container(CONTAINER);
    azurite
}

#[test]
fn loghub_lines_land_once_each_in_azure_with_the_archive_layout() {
    let azurite = emulator();
    // Connection-string auth here; account-key auth in the other tests.
    let sink = format!(
        "    container: {CONTAINER}\n    connection_string: '{}'\n",
        azurite.connection_string()
    );
    scenarios::layout("azure_blob", &sink, || azurite.download(CONTAINER, ""));
    let objects = azurite.download(CONTAINER, "logs/");
    assert!(objects
        .iter()
        .all(|o| o.metadata.contains_key("sediment_segment_id")));
}

#[test]
fn two_replicas_writing_the_same_hours_never_overwrite_each_other() {
    let azurite = emulator();
    scenarios::replicas("azure_blob", &sink(&azurite.endpoint()), || {
        azurite.download(CONTAINER, "")
    });
}

#[test]
fn an_outage_under_load_loses_and_duplicates_nothing() {
    let azurite = emulator();
    let proxy = OutageProxy::start(azurite.port);
    let endpoint = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", proxy.port);
    scenarios::outage("azure_blob", &sink(&endpoint), &proxy, || {
        azurite.download(CONTAINER, "")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_operations_and_the_crash_window() {
    let azurite = tokio::task::spawn_blocking(emulator).await.unwrap();
    let settings = sediment_sinks::azure_blob::AzureBlobSettings {
        sink: "azure_store".into(),
        container: CONTAINER.into(),
        prefix: "logs/".into(),
        account: Some(AZURITE_ACCOUNT.into()),
        endpoint: Some(azurite.endpoint()),
        auth: sediment_sinks::azure_blob::AzureAuth::AccountKey(AZURITE_KEY.into()),
        block_size: 8 << 20,
    };
    let store = sediment_sinks::azure_blob::AzureBlobStore::connect(settings).unwrap();
    scenarios::store_and_crash_window(Arc::new(store), "azure_crash_window", "azure_blob", true)
        .await;
    tokio::task::spawn_blocking(move || drop(azurite))
        .await
        .unwrap();
}

/// A >64 MiB hour is staged as 8 MiB blocks, each read from the staging file when
/// it is sent, then committed as one block list: sediment's resident set stays
/// below 64 MiB.
#[test]
fn a_large_hour_is_uploaded_in_blocks_with_bounded_memory() {
    let azurite = emulator();
    let large = scenarios::large_hour("azure_blob", &sink(&azurite.endpoint()));
    let objects = azurite.download(CONTAINER, "logs/");
    assert_eq!(objects.len(), 1);
    let (key, size) = (&objects[0].key, objects[0].size);
    assert!(size > 64 << 20, "{key} is {size} bytes");
    assert_eq!(objects[0].lines.len(), large.sent);
    let blocks: u64 = azurite
        .python(
            "b = svc.get_blob_client(sys.argv[1], sys.argv[2])\n\
             committed, _ = b.get_block_list('committed')\n\
             print(len(committed))",
            &[CONTAINER, key],
        )
        .trim()
        .parse()
        .unwrap();
    assert_eq!(blocks, size.div_ceil(8 << 20), "8 MiB blocks");
    eprintln!(
        "azure_blob: {:.1} MiB in {blocks} blocks, largest RSS while uploading {} MiB",
        size as f64 / 1048576.0,
        large.upload_kib / 1024
    );
}
