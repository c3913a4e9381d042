//! Staging for events of replayable streams (Kafka partitions): one open file
//! per stream, ownership generation and hour, acknowledged only once its
//! object is in storage (see [`super::stream_upload`]).
//!
//! Why apart from [`super::staging`]: for these events the source is the
//! buffer. A stream's offsets are committed only after its objects are stored,
//! so whatever is staged here can be read again from the source; these files
//! are not fsync'd, not recovered after a crash (a start deletes what a previous
//! run left), and a file of a stream this process no longer owns is dropped
//! with its acknowledgements failed. What matters instead is which records a
//! file holds: its stream, generation and the first and last offsets, which
//! name and describe its object.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sediment_core::stream::{Progress, StreamId};
use sediment_core::Ack;
use uuid::Uuid;

use super::compress::StreamSlice;
use super::member;

/// What keeps a stream file apart from the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The stream.
    pub stream: Arc<StreamId>,
    /// The ownership generation its events were read in.
    pub generation: u64,
    /// Start of the hour, seconds.
    pub hour: i64,
}

#[derive(Debug)]
struct OpenStream {
    path: PathBuf,
    file: File,
    id: Uuid,
    first: i64,
    last: i64,
    size: u64,
    deadline: i64,
    acks: Vec<Ack>,
}

/// A stream file ready for upload, with the acknowledgements it completes.
#[derive(Debug)]
pub struct SealedStream {
    /// The file (head member, then data members).
    pub path: PathBuf,
    /// What it holds.
    pub key: StreamKey,
    /// Lowest offset in it.
    pub first: i64,
    /// Highest offset in it.
    pub last: i64,
    /// Its id (in its head member).
    pub id: Uuid,
    /// Bytes.
    pub size: u64,
    /// Completed once the object is stored; failed if it is dropped.
    pub acks: Vec<Ack>,
}

impl SealedStream {
    /// Bytes of its data members (what `sediment_archive_staged_bytes` counts).
    pub fn data_bytes(&self) -> u64 {
        self.size.saturating_sub(member::head_len())
    }
}

/// The open stream files of one sink.
#[derive(Debug)]
pub struct StreamStaging {
    dir: PathBuf,
    open: HashMap<StreamKey, OpenStream>,
}

impl StreamStaging {
    /// Opens `dir` (created `0700`), deleting what a previous run left there.
    pub fn open(dir: &Path) -> io::Result<StreamStaging> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut removed = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(dir = %dir.display(), files = removed, "dropped stream files of a previous run; their records are read again from the source");
        }
        Ok(StreamStaging {
            dir: dir.to_owned(),
            open: HashMap::new(),
        })
    }

    /// Appends a member of `slice`'s events for `hour`; `ack` completes when its object is stored.
    pub fn append(
        &mut self,
        slice: &StreamSlice,
        hour: i64,
        deadline_if_new: i64,
        bytes: &[u8],
        ack: &Ack,
    ) -> io::Result<()> {
        let key = StreamKey {
            stream: slice.stream.clone(),
            generation: slice.generation,
            hour,
        };
        if !self.open.contains_key(&key) {
            let id = Uuid::now_v7();
            let path = self.dir.join(format!(
                "{hour}-{}-{}-{}.stream",
                slice.stream.name,
                slice.generation,
                id.simple()
            ));
            let mut file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            let head = member::encode_head(*id.as_bytes());
            file.write_all(&head)?;
            self.open.insert(
                key.clone(),
                OpenStream {
                    path,
                    file,
                    id,
                    first: slice.first,
                    last: slice.last,
                    size: head.len() as u64,
                    deadline: deadline_if_new,
                    acks: Vec::new(),
                },
            );
        }
        let open = self.open.get_mut(&key).expect("just inserted");
        open.file.write_all(bytes)?;
        open.size += bytes.len() as u64;
        open.first = open.first.min(slice.first);
        open.last = open.last.max(slice.last);
        open.acks.push(ack.clone());
        Ok(())
    }

    /// Files whose deadline has passed.
    pub fn due(&self, now: i64) -> Vec<StreamKey> {
        self.open
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Files of at least `max_bytes`.
    pub fn oversized(&self, max_bytes: u64) -> Vec<StreamKey> {
        self.open
            .iter()
            .filter(|(_, o)| o.size >= max_bytes)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every open file.
    pub fn keys(&self) -> Vec<StreamKey> {
        self.open.keys().cloned().collect()
    }

    /// Closes `key`'s file for upload.
    pub fn seal(&mut self, key: &StreamKey) -> io::Result<Option<SealedStream>> {
        let Some(mut open) = self.open.remove(key) else {
            return Ok(None);
        };
        open.file.flush()?;
        Ok(Some(SealedStream {
            path: open.path,
            key: key.clone(),
            first: open.first,
            last: open.last,
            id: open.id,
            size: open.size,
            acks: std::mem::take(&mut open.acks),
        }))
    }

    /// Drops the files of streams this process no longer owns (their acknowledgements
    /// fail; the new owner reads the records again). Returns the data bytes dropped.
    pub fn drop_stale(&mut self, progress: &Progress) -> u64 {
        let stale: Vec<StreamKey> = self
            .open
            .keys()
            .filter(|k| !progress.current(&k.stream.name, k.generation))
            .cloned()
            .collect();
        let mut bytes = 0;
        for key in stale {
            if let Some(open) = self.open.remove(&key) {
                bytes += open.size.saturating_sub(member::head_len());
                let _ = fs::remove_file(&open.path);
                tracing::info!(stream = %key.stream.name, "dropped staged records of a stream this replica no longer owns");
            }
        }
        bytes
    }

    /// Open files.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}
