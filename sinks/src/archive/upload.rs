//! Finalising sealed segments into objects: verified first, idempotent naming,
//! retried forever.
//!
//! Each segment's members are checked before its first upload attempt
//! ([`verify_sealed`]): a damaged one is rewritten with its intact members, so an
//! object is always valid gzip, and what was dropped is logged and counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_core::metrics::ArchiveMetrics;
use sediment_core::retry::Backoff;
use tokio::sync::mpsc;

use super::naming::KeyTemplate;
use super::staging::{verify_sealed, SealedSegment, Verified};
use sediment_core::storage::{ObjectStore, PutOutcome, StorageError};

/// Uploads sealed segments one after another, in the order they were sealed.
#[derive(Debug)]
pub struct Uploader {
    /// The sink's id, for logs.
    pub sink: String,
    /// Where objects go.
    pub store: Arc<dyn ObjectStore>,
    /// How they are named.
    pub template: KeyTemplate,
    /// Archive metrics of the sink.
    pub metrics: ArchiveMetrics,
    /// First part number worth trying per hour (a hint; correctness comes from `head`).
    next_part: HashMap<i64, u32>,
    /// When a permanent error was last logged, to log it once a minute.
    last_permanent_log: Option<Instant>,
}

/// Whether a finalised segment was written now or found already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finalised {
    Created,
    AlreadyPresent,
}

impl Uploader {
    /// An uploader for one sink.
    pub fn new(
        sink: String,
        store: Arc<dyn ObjectStore>,
        template: KeyTemplate,
        metrics: ArchiveMetrics,
    ) -> Uploader {
        Uploader {
            sink,
            store,
            template,
            metrics,
            next_part: HashMap::new(),
            last_permanent_log: None,
        }
    }

    /// Finalises every segment received until the channel closes.
    pub async fn run(mut self, mut segments: mpsc::UnboundedReceiver<SealedSegment>) {
        while let Some(segment) = segments.recv().await {
            self.finalise(segment).await;
        }
    }

    /// Checks `segment`'s members, rewriting it without damaged ones; `false`
    /// when nothing is left to upload. Retries reading errors with backoff.
    async fn verify(&mut self, segment: &mut SealedSegment) -> bool {
        let mut attempt = 0u32;
        loop {
            let mut checked = segment.clone();
            let result = tokio::task::spawn_blocking(move || {
                let verified = verify_sealed(&mut checked);
                (checked, verified)
            })
            .await;
            let (checked, verified) = match result {
                Ok(r) => r,
                Err(e) => (segment.clone(), Err(std::io::Error::other(e))),
            };
            let before = segment.data_bytes();
            *segment = checked;
            match verified {
                Ok(Verified::Intact) => return true,
                Ok(Verified::Repaired { dropped }) => {
                    self.metrics.damaged_members.inc_by(dropped);
                    self.metrics
                        .staged_bytes
                        .sub(before.saturating_sub(segment.data_bytes()) as i64);
                    return true;
                }
                Ok(Verified::Empty { dropped }) => {
                    self.metrics.damaged_members.inc_by(dropped);
                    self.metrics.staged_bytes.sub(before as i64);
                    tracing::warn!(sink = %self.sink, segment = %segment.path.display(), "no intact member left in a staging segment; nothing to upload");
                    return false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.metrics.staged_bytes.sub(before as i64);
                    tracing::error!(sink = %self.sink, segment = %segment.path.display(), "a sealed staging segment was removed before its upload; its events are lost");
                    return false;
                }
                Err(e) => {
                    let delay = UPLOAD_BACKOFF.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.sink, segment = %segment.path.display(), retry_in = ?delay, error = %e, "cannot check a staging segment before upload, will retry");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Makes `segment` an object, retrying with backoff until it is, then deletes it locally.
    async fn finalise(&mut self, mut segment: SealedSegment) {
        if !self.verify(&mut segment).await {
            return;
        }
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            match self.try_finalise(&segment).await {
                Ok((key, outcome)) => {
                    match outcome {
                        Finalised::Created => {
                            self.metrics.objects_created.inc();
                            self.metrics.bytes.inc_by(segment.size);
                            self.metrics
                                .upload_duration
                                .observe(started.elapsed().as_secs_f64());
                            tracing::info!(sink = %self.sink, key = %key, bytes = segment.size, "archived an object");
                        }
                        Finalised::AlreadyPresent => {
                            self.metrics.objects_already_present.inc();
                            tracing::info!(sink = %self.sink, key = %key, "found this segment already archived; not writing it twice");
                        }
                    }
                    let path = segment.path.clone();
                    let removed =
                        tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
                    if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
                        tracing::warn!(sink = %self.sink, segment = %segment.path.display(), error = %e, "cannot delete an archived staging segment; the next start will find its object and delete it");
                    }
                    self.metrics.staged_bytes.sub(segment.data_bytes() as i64);
                    return;
                }
                Err(e) => {
                    self.metrics.upload_retries.inc();
                    let delay = UPLOAD_BACKOFF.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    self.log_failure(&e, &segment, delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_finalise(
        &mut self,
        segment: &SealedSegment,
    ) -> Result<(String, Finalised), StorageError> {
        let id = segment.id.hyphenated().to_string();
        let mut part = self.next_part.get(&segment.hour).copied().unwrap_or(0);
        loop {
            let key = self.template.render(segment.hour, part);
            match self.store.head(&key).await? {
                Some(info) if info.segment_id.as_deref() == Some(id.as_str()) => {
                    return Ok((key, Finalised::AlreadyPresent))
                }
                Some(_) => part += 1,
                None => match self.store.put_if_absent(&key, &segment.path, &id).await? {
                    PutOutcome::Created => {
                        if self.next_part.len() > 10_000 {
                            self.next_part.clear();
                        }
                        self.next_part.insert(segment.hour, part + 1);
                        return Ok((key, Finalised::Created));
                    }
                    // Taken between our head and put: look at it again, it may be ours.
                    PutOutcome::AlreadyExists => {}
                },
            }
        }
    }

    fn log_failure(&mut self, e: &StorageError, segment: &SealedSegment, delay: Duration) {
        let location = self.store.location();
        match e {
            StorageError::Transient(_) => {
                tracing::warn!(sink = %self.sink, location = %location, segment = %segment.path.display(), retry_in = ?delay, error = %e, "upload failed, will retry");
            }
            StorageError::Permanent(_) => {
                let due = self
                    .last_permanent_log
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
                if due {
                    self.last_permanent_log = Some(Instant::now());
                    tracing::error!(sink = %self.sink, location = %location, error = %e, "upload refused; staged data is kept and retried until the storage accepts it");
                }
            }
        }
    }
}

/// Upload retries: from 200 ms up to a minute between attempts.
const UPLOAD_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(60),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::file_store::FileStore;
    use crate::archive::member;
    use crate::archive::naming::DEFAULT_KEY_TEMPLATE;
    use sediment_core::metrics::ComponentMetrics;

    const HOUR: i64 = 1_763_780_400;

    fn segment(dir: &std::path::Path, name: &str, text: &str) -> SealedSegment {
        let id = uuid::Uuid::now_v7();
        let mut bytes = member::encode_head(*id.as_bytes());
        bytes.extend(member::encode_data(text.as_bytes(), 6));
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        SealedSegment {
            path,
            hour: HOUR,
            id,
            size: bytes.len() as u64,
        }
    }

    /// sediment died after uploading a segment but before deleting it: the restart
    /// finds its own object (here at part 1, behind another writer's part 0) and
    /// neither uploads it again nor takes a new part.
    #[tokio::test]
    async fn a_segment_uploaded_before_a_crash_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("archive")));
        let template = KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "acme").unwrap();
        let other = segment(
            dir.path(),
            "other.sealed",
            "{\"from\":\"another replica\"}\n",
        );
        let ours = segment(dir.path(), "ours.sealed", "{\"from\":\"us\"}\n");
        let put = |s: &SealedSegment, part| {
            let (store, key, s) = (store.clone(), template.render(HOUR, part), s.clone());
            async move {
                store
                    .put_if_absent(&key, &s.path, &s.id.hyphenated().to_string())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(put(&other, 0).await, PutOutcome::Created);
        assert_eq!(put(&ours, 1).await, PutOutcome::Created);

        let metrics = ComponentMetrics::new("crash_window", "sink", "file").archive();
        let mut uploader = Uploader::new(
            "crash_window".into(),
            store.clone(),
            template.clone(),
            metrics.clone(),
        );
        uploader.finalise(ours.clone()).await;
        assert_eq!(metrics.objects_already_present.get(), 1);
        assert_eq!(metrics.objects_created.get(), 0);
        assert!(!ours.path.exists(), "the staged copy is cleaned up");
        assert_eq!(store.list("").await.unwrap().len(), 2, "no third object");

        // A fresh segment of the same hour takes the next free part.
        let fresh = segment(dir.path(), "fresh.sealed", "{\"n\":3}\n");
        uploader.finalise(fresh).await;
        assert_eq!(metrics.objects_created.get(), 1);
        assert!(store
            .head(&template.render(HOUR, 2))
            .await
            .unwrap()
            .is_some());
    }
}
