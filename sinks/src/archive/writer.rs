//! The archive writer: what every archive sink runs, whatever its storage.
//!
//! Three stages, each bounded:
//! 1. *compress* — batches are serialised and gzip-compressed on the blocking pool,
//!    [`COMPRESSORS`] at a time;
//! 2. *commit* — one task owns the staging segments; it takes every compressed batch
//!    that is ready, appends them and fsyncs once (group commit), then completes
//!    their acknowledgements. It also seals segments when their hour is due, when
//!    they reach `max_object_size`, and at shutdown;
//! 3. *upload* — sealed segments become objects, retried forever, named
//!    idempotently (see [`super::upload`]).
//!
//! Parts of a group (a large HTTP request staged in chunks) are held back in
//! [`super::groups`] and committed together with the group's last part, so
//! such a request becomes visible whole or not at all.
//!
//! Events of a replayable stream (a Kafka partition) take a side path in the
//! commit stage: they go to [`super::streams`] files, one per stream and hour,
//! whose acknowledgements complete only when [`super::stream_upload`] has
//! stored their object. When the topology starts shutting down, those files are
//! sealed at once, so that the source can still commit what they hold.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sediment_core::clock::SharedClock;
use sediment_core::component::{BuildContext, Sink};
use sediment_core::metrics::{ArchiveMetrics, ComponentMetrics};
use sediment_core::output::BatchReceiver;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::compress::{compress, split_by_hours, Compressed};
use super::config::ArchiveSettings;
use super::groups::{Groups, HeldCounts};
use super::staging::{Append, Recovered, SealedSegment, Staging};
use super::stream_upload::StreamUploader;
use super::streams::{SealedStream, StreamStaging};
use super::upload::Uploader;
use sediment_core::storage::ObjectStore;

/// Batches compressed at once.
pub const COMPRESSORS: usize = 2;
/// Compressed batches waiting for a commit, beyond those compressing.
const COMMIT_QUEUE: usize = 4;
/// Most batches in one group commit.
const MAX_ROUND: usize = 64;
/// Most segments open at once; beyond, the earliest due is sealed early.
const MAX_OPEN_SEGMENTS: usize = 128;
/// How often due segments are looked for.
const SEAL_CHECK: Duration = Duration::from_secs(1);

/// An archive sink over any [`ObjectStore`].
pub struct ArchiveSink {
    id: String,
    settings: ArchiveSettings,
    store: Arc<dyn ObjectStore>,
    staging: Option<Stages>,
    recovered: Vec<SealedSegment>,
    clock: SharedClock,
    component: ComponentMetrics,
    metrics: ArchiveMetrics,
    shutdown_timeout: Duration,
    /// Cancelled when the topology starts shutting down.
    shutdown: CancellationToken,
    /// What is stored of each replayable stream.
    progress: Arc<sediment_core::stream::Progress>,
}

/// Both staging areas and the held groups, owned by the commit stage.
struct Stages {
    staging: Staging,
    streams: StreamStaging,
    groups: Groups,
    /// [`sediment_core::stream::Progress::stored_wanted`] when last seen.
    stored_wanted: u64,
}

/// Where sealed files go.
struct Uploads {
    segments: mpsc::UnboundedSender<SealedSegment>,
    streams: mpsc::UnboundedSender<SealedStream>,
}

impl ArchiveSink {
    /// Opens the sink's staging folder (`data_dir/<id>/staging`) and recovers it.
    pub fn new(
        cx: &BuildContext,
        settings: ArchiveSettings,
        store: Arc<dyn ObjectStore>,
    ) -> anyhow::Result<ArchiveSink> {
        let dir = cx.data_dir.join(&cx.id).join("staging");
        let Recovered {
            staging,
            sealed: recovered,
            damaged_members,
        } = Staging::open(&dir, MAX_OPEN_SEGMENTS).with_context(|| {
            format!(
                "cannot open or recover the staging folder {}",
                dir.display()
            )
        })?;
        let streams_dir = cx.data_dir.join(&cx.id).join("streams");
        let streams = StreamStaging::open(&streams_dir)
            .with_context(|| format!("cannot open the stream folder {}", streams_dir.display()))?;
        let groups_dir = cx.data_dir.join(&cx.id).join("groups");
        let groups = Groups::open(&groups_dir)
            .with_context(|| format!("cannot open the folder {}", groups_dir.display()))?;
        let metrics = cx.metrics.archive();
        metrics.damaged_members.inc_by(damaged_members);
        metrics.staged_bytes.set(
            (staging.open_bytes() + recovered.iter().map(SealedSegment::data_bytes).sum::<u64>())
                as i64,
        );
        metrics.open_partitions.set(staging.open_count() as i64);
        if !recovered.is_empty() || staging.open_count() > 0 {
            tracing::info!(sink = %cx.id, sealed = recovered.len(), open = staging.open_count(), "recovered staged data from a previous run");
        }
        Ok(ArchiveSink {
            id: cx.id.clone(),
            settings,
            store,
            staging: Some(Stages {
                staging,
                streams,
                groups,
                stored_wanted: cx.progress.stored_wanted(),
            }),
            recovered,
            clock: cx.clock.clone(),
            component: cx.metrics.clone(),
            metrics,
            shutdown_timeout: cx.shutdown_timeout,
            shutdown: cx.shutdown.clone(),
            progress: cx.progress.clone(),
        })
    }
}

#[async_trait]
impl Sink for ArchiveSink {
    async fn run(mut self: Box<Self>, input: BatchReceiver) -> anyhow::Result<()> {
        let (upload_tx, upload_rx) = mpsc::unbounded_channel();
        for segment in std::mem::take(&mut self.recovered) {
            let _ = upload_tx.send(segment);
        }
        let uploader = Uploader::new(
            self.id.clone(),
            self.store.clone(),
            self.settings.template.clone(),
            self.metrics.clone(),
        );
        let (stream_tx, stream_rx) = mpsc::unbounded_channel();
        let stream_uploader = StreamUploader {
            sink: self.id.clone(),
            store: self.store.clone(),
            template: self.settings.template.clone(),
            metrics: self.metrics.clone(),
            level: self.settings.compression_level,
            progress: self.progress.clone(),
            listed: Default::default(),
            failed: Default::default(),
        };
        let stream_uploads = tokio::spawn(stream_uploader.run(stream_rx));
        let segment_uploads = tokio::spawn(uploader.run(upload_rx));
        let mut uploads = tokio::spawn(async move {
            let _ = segment_uploads.await;
            let _ = stream_uploads.await;
        });

        let (jobs_tx, jobs_rx) = mpsc::channel(COMMIT_QUEUE);
        let compressing = tokio::spawn(compress_stage(
            input,
            jobs_tx,
            self.settings.compression_level,
            self.component.clone(),
            self.id.clone(),
            self.progress.clone(),
        ));
        let sinks = Uploads {
            segments: upload_tx,
            streams: stream_tx,
        };
        self.commit_stage(jobs_rx, &sinks).await?;
        let _ = compressing.await;
        drop(sinks);

        tracing::info!(sink = %self.id, timeout = ?self.shutdown_timeout, "uploading the remaining staged segments");
        if tokio::time::timeout(self.shutdown_timeout, &mut uploads)
            .await
            .is_err()
        {
            uploads.abort();
            tracing::warn!(sink = %self.id, location = %self.store.location(), "shutdown_timeout reached; unfinished segments stay staged and are uploaded at the next start");
        }
        Ok(())
    }
}

async fn compress_stage(
    mut input: BatchReceiver,
    jobs: mpsc::Sender<JoinHandle<Compressed>>,
    level: u32,
    metrics: ComponentMetrics,
    sink: String,
    progress: Arc<sediment_core::stream::Progress>,
) {
    let permits = Arc::new(Semaphore::new(COMPRESSORS));
    while let Some(batch) = input.recv().await {
        metrics.received_events.inc_by(batch.len() as u64);
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (sink, progress) = (sink.clone(), progress.clone());
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            compress(batch, level, &sink, &progress)
        });
        if jobs.send(job).await.is_err() {
            break;
        }
    }
}

impl ArchiveSink {
    async fn commit_stage(
        &mut self,
        mut jobs: mpsc::Receiver<JoinHandle<Compressed>>,
        uploads: &Uploads,
    ) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let mut streams_sealed = false;
        let mut tick = tokio::time::interval(SEAL_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    let mut round = vec![job.await.context("a compression task panicked")?];
                    while round.len() < MAX_ROUND {
                        match jobs.try_recv() {
                            Ok(job) => round.push(job.await.context("a compression task panicked")?),
                            Err(_) => break,
                        }
                    }
                    self.commit(round, uploads).await?;
                }
                _ = tick.tick() => self.commit(Vec::new(), uploads).await?,
                _ = shutdown.cancelled(), if !streams_sealed => {
                    // The source commits only what is stored: store stream files now.
                    streams_sealed = true;
                    let sealed = self.with_staging(|s| seal_streams(&mut s.streams)).await?;
                    self.hand_over_streams(sealed, uploads);
                }
            }
        }
        // Input closed: seal everything so the uploads can finish before exit.
        let (sealed, streams) = self
            .with_staging(|s| {
                let mut sealed = Vec::new();
                for hour in s.staging.hours() {
                    sealed.extend(s.staging.seal(hour)?);
                }
                Ok((sealed, seal_streams(&mut s.streams)?))
            })
            .await?;
        self.hand_over(sealed, uploads);
        self.hand_over_streams(streams, uploads);
        Ok(())
    }

    /// Commits a round in parts that each touch at most [`MAX_OPEN_SEGMENTS`] hours.
    async fn commit(&mut self, round: Vec<Compressed>, uploads: &Uploads) -> anyhow::Result<()> {
        let round = self.settle_groups(round).await?;
        for part in split_by_hours(round, MAX_OPEN_SEGMENTS) {
            self.commit_part(part, uploads).await?;
        }
        Ok(())
    }

    /// Appends a round (possibly empty) durably, completes its acks, seals what is due.
    async fn commit_part(
        &mut self,
        round: Vec<Compressed>,
        uploads: &Uploads,
    ) -> anyhow::Result<()> {
        let now = self.clock.now_ms().div_euclid(1000);
        let late_flush = self.settings.late_flush_interval.as_secs() as i64;
        let max_bytes = self.settings.max_object_size;
        let mut appends = Vec::new();
        let mut stream_appends = Vec::new();
        let mut acks = Vec::with_capacity(round.len());
        let (mut events, mut late, mut bytes) = (0, 0, 0);
        for (i, c) in round.into_iter().enumerate() {
            for m in c.members {
                // An hour already past its close goes to a late part, flushed every late_flush_interval.
                let deadline_if_new = if now >= m.close_at {
                    now + late_flush
                } else {
                    m.close_at
                };
                bytes += m.member.len() as u64;
                match m.stream {
                    // A stream's offsets are committed only once its records are stored:
                    // its files go out at least every late_flush_interval, so the
                    // commit lag stays bounded by that, not by the hour.
                    Some(slice) => stream_appends.push((
                        i,
                        slice,
                        m.hour,
                        deadline_if_new.min(now + late_flush),
                        m.member,
                    )),
                    None => appends.push(Append {
                        hour: m.hour,
                        deadline_if_new,
                        member: m.member,
                    }),
                }
            }
            events += c.events;
            late += c.late_events;
            if c.skipped > 0 {
                self.component
                    .discarded("already_stored", "")
                    .inc_by(c.skipped);
            }
            acks.push(Some(c.ack));
        }
        let stream_acks: Vec<Option<sediment_core::Ack>> = acks.to_vec();
        let progress = self.progress.clone();
        let result = self
            .with_staging(move |stages| {
                // Stream members first: a batch whose member cannot be written fails.
                let mut failed = Vec::new();
                for (i, slice, hour, deadline, member) in stream_appends {
                    let ack = stream_acks[i].as_ref().expect("one ack per batch");
                    if let Err(e) = stages.streams.append(&slice, hour, deadline, &member, ack) {
                        tracing::error!(stream = %slice.stream.name, error = %e, "cannot stage stream records; they are read again from the source");
                        failed.push(i);
                    }
                }
                // The clones used to hand acks to stream files are done with: a batch
                // whose member could not be written fails through its dropped clone.
                for (i, ack) in stream_acks.into_iter().enumerate() {
                    if let Some(ack) = ack {
                        if !failed.contains(&i) {
                            ack.complete();
                        }
                    }
                }
                let dropped = stages.streams.drop_stale(&progress);
                let _ = dropped;
                let mut stream_sealed = Vec::new();
                // A source waiting for storage asked for everything now.
                let wanted = progress.stored_wanted();
                let all = if std::mem::replace(&mut stages.stored_wanted, wanted) != wanted {
                    stages.streams.keys()
                } else {
                    Vec::new()
                };
                for key in stages
                    .streams
                    .oversized(max_bytes)
                    .into_iter()
                    .chain(stages.streams.due(now))
                    .chain(all)
                {
                    stream_sealed.extend(stages.streams.seal(&key)?);
                }
                let staging = &mut stages.staging;
                if appends.is_empty() {
                    // A tick: notice a removed staging folder even without traffic.
                    if let Err(e) = staging.restore_unlinked() {
                        tracing::error!(error = %e, "cannot restore removed staging segments; will try again");
                    }
                }
                let appended = staging.append(&appends);
                let mut sealed = Vec::new();
                let mut seal_error = None;
                for hour in staging
                    .oversized(max_bytes)
                    .into_iter()
                    .chain(staging.due(now))
                {
                    match staging.seal(hour) {
                        Ok(s) => sealed.extend(s),
                        Err(e) => seal_error = Some(e),
                    }
                }
                Ok((appended, sealed, seal_error, stream_sealed, failed))
            })
            .await;
        let (appended, sealed, seal_error, stream_sealed, failed) = match result {
            Ok(r) => r,
            Err(e) => (Err(e), Vec::new(), None, Vec::new(), Vec::new()),
        };
        for i in failed {
            acks[i] = None; // dropped uncompleted: that batch failed
        }
        self.hand_over_streams(stream_sealed, uploads);
        match appended {
            Ok(evicted) => {
                acks.into_iter()
                    .flatten()
                    .for_each(sediment_core::Ack::complete);
                self.component.sent_events.inc_by(events);
                self.metrics.late_events.inc_by(late);
                self.metrics.staged_bytes.add(bytes as i64);
                self.hand_over(evicted, uploads);
            }
            Err(e) => {
                // The failed acks tell every waiting sender; nothing of this round stays staged.
                drop(acks);
                self.component.errors("staging_write").inc();
                tracing::error!(sink = %self.id, error = %e, events, "cannot stage events; their senders are told to retry");
            }
        }
        if let Some(e) = seal_error {
            self.component.errors("staging_seal").inc();
            tracing::error!(sink = %self.id, error = %e, "cannot seal a staging segment; will try again");
        }
        self.hand_over(sealed, uploads);
        Ok(())
    }

    /// Holds back the parts of groups that are not their last; gives a last
    /// part its group's held members, so that the group is committed whole;
    /// deletes groups that ended without their last part.
    async fn settle_groups(&mut self, round: Vec<Compressed>) -> anyhow::Result<Vec<Compressed>> {
        let held = self.staging.as_ref().is_some_and(|s| !s.groups.is_empty());
        if !held && round.iter().all(|c| c.group.is_none()) {
            return Ok(round);
        }
        let sink = self.id.clone();
        let round = self
            .with_staging(move |stages| {
                let mut kept = Vec::with_capacity(round.len());
                for mut c in round {
                    let Some(part) = c.group.take() else {
                        kept.push(c);
                        continue;
                    };
                    if !part.last {
                        let counts = HeldCounts {
                            events: c.events,
                            late_events: c.late_events,
                            raw_bytes: c.raw_bytes,
                        };
                        match stages.groups.hold(&part.group, &c.members, counts) {
                            Ok(()) => c.ack.complete(),
                            Err(e) => {
                                tracing::error!(sink = %sink, error = %e, "cannot hold back a part of a large request; the request fails and nothing of it is archived");
                            }
                        }
                        continue;
                    }
                    match stages.groups.take(&part.group) {
                        Ok((mut members, counts)) => {
                            members.append(&mut c.members);
                            c.members = members;
                            c.events += counts.events;
                            c.late_events += counts.late_events;
                            c.raw_bytes += counts.raw_bytes;
                            kept.push(c);
                        }
                        Err(e) => {
                            tracing::error!(sink = %sink, error = %e, "cannot read back the parts of a large request; the request fails and nothing of it is archived");
                        }
                    }
                }
                stages.groups.drop_abandoned();
                Ok(kept)
            })
            .await?;
        Ok(round)
    }

    fn hand_over(&self, sealed: Vec<SealedSegment>, uploads: &Uploads) {
        for segment in sealed {
            tracing::debug!(sink = %self.id, segment = %segment.path.display(), "sealed a segment for upload");
            let _ = uploads.segments.send(segment);
        }
        if let Some(stages) = &self.staging {
            self.metrics
                .open_partitions
                .set((stages.staging.open_count() + stages.streams.open_count()) as i64);
        }
    }

    fn hand_over_streams(&self, sealed: Vec<SealedStream>, uploads: &Uploads) {
        for file in sealed {
            let _ = uploads.streams.send(file);
        }
    }

    /// Runs `f` on the staging state on the blocking pool (it writes and fsyncs).
    async fn with_staging<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Stages) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let mut staging = self
            .staging
            .take()
            .expect("staging is only taken for the duration of a call");
        let (staging, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut staging);
            (staging, result)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.staging = Some(staging);
        result
    }
}

/// Seals every open stream file.
fn seal_streams(streams: &mut StreamStaging) -> std::io::Result<Vec<SealedStream>> {
    let mut sealed = Vec::new();
    for key in streams.keys() {
        sealed.extend(streams.seal(&key)?);
    }
    Ok(sealed)
}
