//! `sediment check-storage`: a "test connection" for archive sinks.
//!
//! For each archive sink (or the one named), through the sink's own store
//! ([`sediment_core::component::ValidatedSink::open_store`], so exactly the
//! credentials and options the pipeline would use), three steps, one line each:
//! 1. **write** `sediment-verified` at the root of the sink's prefix with the same
//!    conditional create the archive uses. If the name is taken by a previous
//!    verification object (its segment id is [`VERIFICATION_ID`]), that object is
//!    deleted and the create retried; anything else under that name is left alone.
//! 2. **list** the prefix `sediment-verified` and expect the object there.
//! 3. **read** it back and compare its bytes.
//!
//! The object is a valid archive object (a head member carrying the verification
//! id, then one gzip member of one JSON line), so `zcat` reads it and the `file`
//! store finds its id like any segment's.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sediment_core::component::Validated;
use sediment_core::storage::{ObjectStore, PutOutcome};
use sediment_sinks::archive::member;

/// Name of the verification object, at the root of the sink's prefix.
pub const VERIFICATION_KEY: &str = "sediment-verified";

/// The segment id that marks an object as sediment's verification object.
const VERIFICATION_ID: [u8; 16] = [
    0x5e, 0xd1, 0xe0, 0x00, 0xc4, 0xec, 0x4b, 0x00, 0x80, 0x00, 0x76, 0xe7, 0x1f, 0x1e, 0xd0, 0x00,
];

/// Checks the sinks of the config at `path`; `Ok(false)` when a step failed.
pub fn check_storage(path: &Path, only: Option<&str>) -> anyhow::Result<bool> {
    let config = crate::load(path)?;
    let sinks: Vec<_> = config
        .components
        .iter()
        .filter(|c| only.is_none_or(|id| c.id == id))
        .filter_map(|c| match &c.validated {
            Validated::Sink(sink) => Some((c.id.as_str(), c.type_name, sink)),
            _ => None,
        })
        .collect();
    if let Some(id) = only {
        if sinks.is_empty() {
            anyhow::bail!("{} has no sink `{id}`", path.display());
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut checked = 0;
        let mut ok = true;
        for (id, type_name, sink) in sinks {
            let Some(store) = sink.open_store().await else {
                if only.is_some() {
                    anyhow::bail!("sink `{id}` (type {type_name}) does not archive to storage");
                }
                continue;
            };
            checked += 1;
            match store {
                Ok(store) => ok &= check_one(id, store).await,
                Err(e) => {
                    println!("{id}: open: FAILED: {e:#}");
                    ok = false;
                }
            }
        }
        if checked == 0 {
            anyhow::bail!("{} has no archive sink to check", path.display());
        }
        Ok(ok)
    })
}

/// The three steps on one store; prints a line per step.
async fn check_one(id: &str, store: Arc<dyn ObjectStore>) -> bool {
    let mut location = store.location();
    if !location.ends_with('/') {
        location.push('/');
    }
    let content = verification_content(id);
    let report = |step: &str, result: Result<(), String>| match result {
        Ok(()) => {
            println!("{id}: {step} {location}{VERIFICATION_KEY}: ok");
            true
        }
        Err(e) => {
            println!("{id}: {step} {location}{VERIFICATION_KEY}: FAILED: {e}");
            false
        }
    };
    let wrote = report("write", write(store.as_ref(), &content).await);
    let listed = report("list", list(store.as_ref()).await);
    let read = report("read", read(store.as_ref(), &content).await);
    wrote && listed && read
}

async fn write(store: &dyn ObjectStore, content: &[u8]) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!(
        "sediment-check-storage-{}-{}",
        std::process::id(),
        hyphenated(&VERIFICATION_ID)
    ));
    std::fs::write(&file, content)
        .map_err(|e| format!("cannot write the local file {}: {e}", file.display()))?;
    let result = write_from(store, &file).await;
    let _ = std::fs::remove_file(&file);
    result
}

async fn write_from(store: &dyn ObjectStore, file: &Path) -> Result<(), String> {
    let id = hyphenated(&VERIFICATION_ID);
    for _ in 0..3 {
        match store.put_if_absent(VERIFICATION_KEY, file, &id).await {
            Ok(PutOutcome::Created) => return Ok(()),
            Err(e) => return Err(e.to_string()),
            Ok(PutOutcome::AlreadyExists) => {
                let info = store
                    .head(VERIFICATION_KEY)
                    .await
                    .map_err(|e| format!("the name is taken and cannot be inspected: {e}"))?;
                match info {
                    Some(info) if info.segment_id.as_deref() != Some(id.as_str()) => {
                        return Err(format!(
                            "an object that is not sediment's verification object is already named {VERIFICATION_KEY}; it is left untouched"
                        ));
                    }
                    // Our previous verification object (or gone meanwhile): replace it.
                    _ => store.delete(VERIFICATION_KEY).await.map_err(|e| {
                        format!("cannot replace the previous verification object: {e}")
                    })?,
                }
            }
        }
    }
    Err("another process keeps recreating the verification object".into())
}

async fn list(store: &dyn ObjectStore) -> Result<(), String> {
    let keys = store
        .list(VERIFICATION_KEY)
        .await
        .map_err(|e| e.to_string())?;
    if keys.iter().any(|k| k == VERIFICATION_KEY) {
        Ok(())
    } else {
        Err(format!("the listing does not show {VERIFICATION_KEY}"))
    }
}

async fn read(store: &dyn ObjectStore, content: &[u8]) -> Result<(), String> {
    let bytes = store
        .get(VERIFICATION_KEY)
        .await
        .map_err(|e| e.to_string())?;
    // The content depends only on the sink id and version, so a concurrent
    // check of the same sink writes the same bytes.
    if bytes == content {
        Ok(())
    } else {
        Err(format!(
            "read back {} bytes that are not the verification object written",
            bytes.len()
        ))
    }
}

/// A head member with [`VERIFICATION_ID`], then one JSON line saying what this is.
fn verification_content(sink: &str) -> Vec<u8> {
    let line = format!(
        "{{\"sediment\":\"check-storage verification object\",\"sink\":{:?},\"version\":{:?}}}\n",
        sink,
        env!("CARGO_PKG_VERSION")
    );
    let mut bytes = member::encode_head(VERIFICATION_ID);
    bytes.extend(member::encode_data(line.as_bytes(), 6));
    bytes
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as segment ids are written.
fn hyphenated(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_id_is_written_like_a_segment_id() {
        assert_eq!(
            hyphenated(&VERIFICATION_ID),
            "5ed1e000-c4ec-4b00-8000-76e71f1ed000"
        );
        let content = verification_content("archive");
        assert!(content.len() > member::HEADER_LEN);
    }
}
