//! The checkpoint of a restore: how far its output has committed, kept under
//! `data_dir/restore/`, so that running the same command again continues where
//! the last run stopped.
//!
//! A checkpoint is named by a hash of what defines the restore (sink, the
//! `--from`/`--to` as typed, query, output, layout and field flags,
//! de-duplication), so the same command finds it again; it keeps the range as
//! first resolved, so `--from -6h` means the same six hours when resumed. It is
//! rewritten atomically (temporary file, fsync, rename, directory fsync) after
//! every commit of the output.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::time::TimeRange;

/// A point in a restore's order: before raw line `raw` of object `key` of listing unit `unit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Listing unit (a day or an hour of the range), in order.
    pub unit: usize,
    /// Object key within the unit (listings are in key order).
    pub key: String,
    /// Raw (non-empty) line index within the object.
    pub raw: u64,
}

/// What a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// A random id of this restore (part of HTTP idempotency keys).
    pub restore_id: String,
    /// The range as resolved by the first run.
    pub range: TimeRange,
    /// When the first run started (RFC 3339).
    pub started_at: String,
    /// Everything before it is delivered.
    pub position: Option<Position>,
    /// For a file output: its length at `position`.
    pub file_len: Option<u64>,
    /// Lines delivered by all runs so far.
    pub delivered: u64,
    /// Objects in the plan.
    pub objects: u64,
    /// Their compressed bytes.
    pub bytes: u64,
    /// Damaged objects met so far.
    #[serde(default)]
    pub damaged: Vec<crate::engine::Damaged>,
    /// The restore finished.
    pub complete: bool,
}

const VERSION: u32 = 1;

/// Where a restore's checkpoint lives and how it is written.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint of the restore described by `identity` under `data_dir`.
    pub fn new(data_dir: &Path, identity: &str) -> CheckpointFile {
        let hash = xxhash_rust::xxh3::xxh3_128(identity.as_bytes());
        CheckpointFile {
            path: data_dir.join("restore").join(format!("{hash:032x}.json")),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored checkpoint, if any.
    pub fn load(&self) -> Result<Option<Checkpoint>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot read the restore checkpoint {}: {e}",
                    self.path.display()
                ))
            }
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the restore checkpoint {} is damaged ({e}); run with --fresh to start over",
                self.path.display()
            )
        })?;
        if checkpoint.version != VERSION {
            return Err(format!(
                "the restore checkpoint {} is from another version of sediment; run with --fresh to start over",
                self.path.display()
            ));
        }
        Ok(Some(checkpoint))
    }

    /// A new checkpoint for a restore starting now.
    pub fn fresh(range: TimeRange) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            restore_id: uuid::Uuid::new_v4().simple().to_string(),
            range,
            started_at: crate::time::format_ms(crate::time::now_ms()),
            position: None,
            file_len: None,
            delivered: 0,
            objects: 0,
            bytes: 0,
            damaged: Vec::new(),
            complete: false,
        }
    }

    /// Writes `checkpoint` durably.
    pub fn store(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        let at = |e: std::io::Error| {
            format!(
                "cannot write the restore checkpoint {}: {e}",
                self.path.display()
            )
        };
        let dir = self.path.parent().expect("the checkpoint is in a folder");
        std::fs::create_dir_all(dir).map_err(at)?;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(checkpoint).expect("a checkpoint serialises");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(at)?;
            f.write_all(&text).map_err(at)?;
            f.sync_all().map_err(at)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(at)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at)
    }

    /// Forgets the checkpoint (`--fresh`).
    pub fn remove(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
                "cannot remove the restore checkpoint {}: {e}",
                self.path.display()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_and_positions_order_by_unit_key_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path(), "sink=a from=-6h");
        assert!(file.load().unwrap().is_none());
        let mut c = CheckpointFile::fresh(TimeRange {
            from_ms: 1,
            to_ms: 2,
        });
        c.position = Some(Position {
            unit: 1,
            key: "k".into(),
            raw: 7,
        });
        file.store(&c).unwrap();
        let back = file.load().unwrap().unwrap();
        assert_eq!(back.position, c.position);
        assert_eq!(back.restore_id, c.restore_id);
        assert_ne!(
            file.path(),
            CheckpointFile::new(dir.path(), "sink=a from=-7h").path()
        );
        let p = |unit, key: &str, raw| Position {
            unit,
            key: key.into(),
            raw,
        };
        assert!(p(0, "z", 9) < p(1, "a", 0));
        assert!(p(1, "a", 9) < p(1, "b", 0));
        assert!(p(1, "b", 1) < p(1, "b", 2));
        std::fs::write(file.path(), "{").unwrap();
        assert!(file.load().unwrap_err().contains("--fresh"));
    }
}
