//! Uploading stream files: exactly once at rest, whoever owned the stream.
//!
//! The object of a stream file is named after its hour and its first offset
//! (`{part}` is `.{topic}-{partition}-{first_offset}`) and created only if
//! absent; its segment id records the offsets it holds (`{id}:{first}:{last}`).
//! Before naming a file, the records of its hour already stored (as far as
//! [`Progress`] knows: this sink's earlier objects, or the last commit's
//! metadata of a previous owner) are cut from it, so its first offset is the
//! first record not yet stored — the same name any owner replaying the stream
//! gives the same records. When the name is taken by an object this file did
//! not write (a previous owner, a paused "zombie" replica), that object's last
//! offset (from its segment id, else read from its lines) is recorded as
//! stored, and the file is cut again: never a second copy, never a gap.
//! Files of a stream no longer owned are dropped, their acknowledgements
//! failed, so nothing is stored or committed for a stream another replica owns.
//!
//! What a previous owner stored does not have to come from its commit's
//! metadata (a broker may not keep it, and a replica killed between an upload
//! and its next commit never wrote it): before the first upload of a stream's
//! hour in an ownership, the hour's objects of that stream are listed
//! (`{hour key up to {part}}.{topic}-{partition}-`, one prefix listing) and the
//! last offset of the one with the highest first offset is recorded as stored.
//! An owner's objects of an hour form a chain without gaps (they are uploaded
//! in order, one at a time, and a failed file fails every later file of its
//! hour and ownership), so the last object's last offset covers all of them.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sediment_core::metrics::ArchiveMetrics;
use sediment_core::retry::Backoff;
use sediment_core::storage::{ObjectStore, PutOutcome, StorageError};
use sediment_core::stream::Progress;
use sediment_core::Ack;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::member;
use super::naming::KeyTemplate;
use super::streams::SealedStream;

/// Retries: as for every upload.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(60),
};
/// Most uploads at once.
pub const PARALLEL: usize = 8;
/// How long a chain waits for its next file before its task ends.
const CHAIN_IDLE: Duration = Duration::from_secs(30);

/// Bytes of lines per data member when a file is rewritten.
const REWRITE_MEMBER: usize = 1 << 20;

/// Uploads stream files: those of one stream and hour one at a time, in the
/// order they were sealed (a chain); different chains at once, at most
/// [`PARALLEL`], so that one hour waiting for its storage holds up no other.
#[derive(Debug, Clone)]
pub struct StreamUploader {
    /// The sink's id (for logs and [`Progress`]).
    pub sink: String,
    /// Where objects go.
    pub store: Arc<dyn ObjectStore>,
    /// How they are named.
    pub template: KeyTemplate,
    /// The sink's archive metrics.
    pub metrics: ArchiveMetrics,
    /// gzip level of rewritten files.
    pub level: u32,
    /// What is stored of each stream (shared with the source).
    pub progress: Arc<Progress>,
    /// (stream, generation, hour) whose objects in storage were looked up.
    pub listed: HashSet<(String, u64, i64)>,
    /// (stream, generation) of which a file failed: their later files fail too,
    /// so that an hour's objects never leave a gap behind the last one.
    pub failed: HashSet<(String, u64)>,
}

enum Put {
    /// Written now, or found written by this file before a crash window.
    Stored(bool),
    /// The name is another object's, which holds the records up to this offset.
    Covered(i64),
}

impl StreamUploader {
    /// Uploads every file received until the channel closes, then waits for the chains.
    pub async fn run(self, mut files: mpsc::UnboundedReceiver<SealedStream>) {
        type Chain = (mpsc::UnboundedSender<SealedStream>, JoinHandle<()>);
        let permits = Arc::new(Semaphore::new(PARALLEL));
        let mut chains: HashMap<(String, i64), Chain> = HashMap::new();
        while let Some(file) = files.recv().await {
            let key = (file.key.stream.name.clone(), file.key.hour);
            let file = match chains.get(&key) {
                Some((tx, _)) => match tx.send(file) {
                    Ok(()) => continue,
                    Err(returned) => returned.0,
                },
                None => file,
            };
            // A new chain (the previous one of this key ended idle): it starts
            // once the previous one has finished, so the order holds.
            chains.retain(|_, (_, h)| !h.is_finished());
            let previous = chains.remove(&key).map(|(_, h)| h);
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(file);
            let worker = StreamUploader {
                listed: HashSet::new(),
                failed: HashSet::new(),
                ..self.clone()
            };
            let handle = tokio::spawn(worker.chain(rx, previous, permits.clone()));
            chains.insert(key, (tx, handle));
        }
        for (_, (tx, handle)) in chains {
            drop(tx);
            let _ = handle.await;
        }
    }

    /// Uploads one chain's files in order until it is idle for [`CHAIN_IDLE`].
    async fn chain(
        mut self,
        mut files: mpsc::UnboundedReceiver<SealedStream>,
        previous: Option<JoinHandle<()>>,
        permits: Arc<Semaphore>,
    ) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        loop {
            let file = match tokio::time::timeout(CHAIN_IDLE, files.recv()).await {
                Ok(Some(file)) => file,
                Ok(None) => return,
                Err(_) => {
                    // Refuse new files (the next one starts a new chain), finish those sent.
                    files.close();
                    match files.try_recv() {
                        Ok(file) => file,
                        Err(_) => return,
                    }
                }
            };
            let _permit = permits.acquire().await;
            self.finalise(file).await;
        }
    }

    async fn finalise(&mut self, file: SealedStream) {
        let owner = (file.key.stream.name.clone(), file.key.generation);
        if self.failed.contains(&owner) {
            return self.drop_file(file, false);
        }
        if !self.upload(file).await {
            self.failed.insert(owner);
        }
    }

    /// Uploads one file; `false` when it was dropped unstored.
    async fn upload(&mut self, mut file: SealedStream) -> bool {
        let progress = self.progress.clone();
        let name = file.key.stream.name.clone();
        let mut attempt = 0u32;
        loop {
            if !progress.current(&name, file.key.generation) {
                tracing::info!(sink = %self.sink, stream = %name, "not uploading records of a stream this replica no longer owns");
                self.drop_file(file, false);
                return false;
            }
            let look = (name.clone(), file.key.generation, file.key.hour);
            if !self.listed.contains(&look) {
                match self.last_stored(&file).await {
                    Ok(last) => {
                        if let Some(last) = last {
                            progress.record(&self.sink, &name, file.key.hour, last);
                        }
                        self.listed.insert(look);
                    }
                    Err(e) => {
                        self.metrics.upload_retries.inc();
                        let delay = BACKOFF.delay(attempt);
                        attempt = attempt.saturating_add(1);
                        tracing::warn!(sink = %self.sink, location = %self.store.location(), stream = %name, retry_in = ?delay, error = %e, "cannot list the stored objects of a stream's hour, will retry");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            if let Some(stored) = progress.stored(&self.sink, &name, file.key.hour) {
                if file.first <= stored {
                    match self.cut(file, stored).await {
                        Ok(Some(rest)) => file = rest,
                        Ok(None) => return true,
                        Err(()) => return false,
                    }
                }
            }
            let key = self
                .template
                .render_part(file.key.hour, &format!(".{name}-{}", file.first));
            let started = Instant::now();
            match self.put(&key, &file).await {
                Ok(Put::Stored(created)) => {
                    progress.record(&self.sink, &name, file.key.hour, file.last);
                    if created {
                        self.metrics.objects_created.inc();
                        self.metrics.bytes.inc_by(file.size);
                        self.metrics
                            .upload_duration
                            .observe(started.elapsed().as_secs_f64());
                        tracing::info!(sink = %self.sink, key = %key, first = file.first, last = file.last, "archived a stream object");
                    } else {
                        self.metrics.objects_already_present.inc();
                    }
                    self.drop_file(file, true);
                    return true;
                }
                Ok(Put::Covered(last)) => {
                    tracing::info!(sink = %self.sink, key = %key, through = last, "another replica stored these records; keeping only what it has not");
                    progress.record(&self.sink, &name, file.key.hour, last);
                }
                Err(e) => {
                    self.metrics.upload_retries.inc();
                    let delay = BACKOFF.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.sink, location = %self.store.location(), key = %key, retry_in = ?delay, error = %e, "stream object upload failed, will retry");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The last offset stored of `file`'s stream and hour, by any owner: that of
    /// the hour's object of the stream with the highest first offset.
    async fn last_stored(&self, file: &SealedStream) -> Result<Option<i64>, StorageError> {
        let name = &file.key.stream.name;
        let marker = "\u{0}";
        let rendered = self.template.render_part(file.key.hour, marker);
        let Some((before, after)) = rendered.split_once(marker) else {
            return Ok(None);
        };
        let prefix = format!("{before}.{name}-");
        let (mut start, mut best): (Option<String>, Option<(i64, String)>) = (None, None);
        loop {
            let page = self.store.list_page(&prefix, start).await?;
            for o in page.objects {
                let first = o
                    .key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(after))
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<i64>().ok());
                if let Some(first) = first {
                    if best.as_ref().is_none_or(|(b, _)| first > *b) {
                        best = Some((first, o.key));
                    }
                }
            }
            start = page.next;
            if start.is_none() {
                break;
            }
        }
        let Some((_, key)) = best else {
            return Ok(None);
        };
        let id = self
            .store
            .head(&key)
            .await?
            .and_then(|i| i.segment_id)
            .unwrap_or_default();
        self.covered(&key, &id, file).await.map(Some)
    }

    async fn put(&self, key: &str, file: &SealedStream) -> Result<Put, StorageError> {
        let mine = file.id.hyphenated().to_string();
        loop {
            if let Some(info) = self.store.head(key).await? {
                let id = info.segment_id.unwrap_or_default();
                if id.split(':').next() == Some(mine.as_str()) {
                    return Ok(Put::Stored(false));
                }
                return self.covered(key, &id, file).await.map(Put::Covered);
            }
            let segment_id = format!("{mine}:{}:{}", file.first, file.last);
            match self
                .store
                .put_if_absent(key, &file.path, &segment_id)
                .await?
            {
                PutOutcome::Created => return Ok(Put::Stored(true)),
                // Taken between head and put: look at it again.
                PutOutcome::AlreadyExists => {}
            }
        }
    }

    /// The last offset the object at `key` holds: from its segment id, else its lines.
    async fn covered(&self, key: &str, id: &str, file: &SealedStream) -> Result<i64, StorageError> {
        if let Some(last) = id
            .rsplit(':')
            .next()
            .and_then(|l| l.parse().ok())
            .filter(|_| id.contains(':'))
        {
            return Ok(last);
        }
        let mut bytes = Vec::new();
        let mut stream = self.store.get_stream(key, 0).await?;
        while let Some(piece) = stream.next().await {
            bytes.extend_from_slice(&piece?);
        }
        let stream_id = file.key.stream.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
            let mut last = i64::MIN;
            for line in reader.lines() {
                let line = line.map_err(|e| {
                    StorageError::Transient(format!("cannot read the object {key}: {e}"))
                })?;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    last = last.max(stream_id.offset_of(&v).unwrap_or(i64::MIN));
                }
            }
            Ok(last)
        })
        .await
        .map_err(|e| StorageError::Transient(format!("reading an object failed: {e}")))?
    }

    /// Cuts from `file` the records at or below `stored`; `None` when nothing is left
    /// (then its acknowledgements complete: every record is stored); `Err` when it
    /// could not be rewritten (then they fail: the records are read again).
    async fn cut(&self, file: SealedStream, stored: i64) -> Result<Option<SealedStream>, ()> {
        let level = self.level;
        let stream = file.key.stream.clone();
        let (path, id) = (file.path.clone(), uuid::Uuid::now_v7());
        let rewritten = tokio::task::spawn_blocking(
            move || -> std::io::Result<Option<(std::path::PathBuf, i64, i64, u64)>> {
                let input = std::fs::File::open(&path)?;
                let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(input));
                let out_path = path.with_extension(format!("{}.stream", id.simple()));
                let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
                let head = member::encode_head(*id.as_bytes());
                out.write_all(&head)?;
                let (mut first, mut last, mut size) = (i64::MAX, i64::MIN, head.len() as u64);
                let mut chunk = Vec::with_capacity(REWRITE_MEMBER + 4096);
                let flush = |chunk: &mut Vec<u8>,
                             out: &mut std::io::BufWriter<std::fs::File>|
                 -> std::io::Result<u64> {
                    if chunk.is_empty() {
                        return Ok(0);
                    }
                    let m = member::encode_data(chunk, level);
                    out.write_all(&m)?;
                    chunk.clear();
                    Ok(m.len() as u64)
                };
                for line in reader.lines() {
                    let line = line?;
                    let offset = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| stream.offset_of(&v));
                    match offset {
                        Some(o) if o > stored => {
                            first = first.min(o);
                            last = last.max(o);
                            chunk.extend_from_slice(line.as_bytes());
                            chunk.push(b'\n');
                            if chunk.len() >= REWRITE_MEMBER {
                                size += flush(&mut chunk, &mut out)?;
                            }
                        }
                        _ => {}
                    }
                }
                size += flush(&mut chunk, &mut out)?;
                out.flush()?;
                drop(out);
                if first == i64::MAX {
                    let _ = std::fs::remove_file(&out_path);
                    return Ok(None);
                }
                Ok(Some((out_path, first, last, size)))
            },
        )
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match rewritten {
            Ok(Some((out_path, first, last, size))) => {
                let _ = std::fs::remove_file(&file.path);
                self.metrics.staged_bytes.sub(file.data_bytes() as i64);
                let rest = SealedStream {
                    path: out_path,
                    key: file.key,
                    first,
                    last,
                    id,
                    size,
                    acks: file.acks,
                };
                self.metrics.staged_bytes.add(rest.data_bytes() as i64);
                Ok(Some(rest))
            }
            Ok(None) => {
                self.drop_file(file, true);
                Ok(None)
            }
            Err(e) => {
                tracing::error!(sink = %self.sink, error = %e, "cannot rewrite a stream file; its records are read again from the source");
                self.drop_file(file, false);
                Err(())
            }
        }
    }

    /// Deletes the file; its acknowledgements complete when `stored`, else fail.
    fn drop_file(&self, file: SealedStream, stored: bool) {
        let _ = std::fs::remove_file(&file.path);
        self.metrics.staged_bytes.sub(file.data_bytes() as i64);
        for ack in file.acks {
            if stored {
                ack.complete();
            } else {
                Ack::fail(ack);
            }
        }
    }
}
