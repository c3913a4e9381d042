//! Running a planned restore: objects are read [`Settings::parallel`] at a time
//! but consumed strictly in plan order, so de-duplication ("the first copy
//! wins"), the output's order and every checkpoint position are the same in
//! every run of the same restore — which is what lets a resumed run continue
//! exactly where the last one committed.
//!
//! Resuming at position P (unit, key, line): objects before P's unit are not
//! read; objects of P's unit before P's key are read for their ids only (when
//! de-duplicating; with a layout whose keys sort by hour, only those of P's
//! hour), so that the id sets are what they were; P's object is read from its
//! start, its first lines for ids only; then the restore goes on as usual.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_core::storage::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Position;
use crate::dedup::IdSet;
use crate::output::{Committed, Output, OutputError, Piece};
use crate::plan::Planned;
use crate::progress::Progress;
use crate::read::{self, Chunk, Filters, LineCounts, Object, ReadEvent};

/// How a restore runs.
#[derive(Clone)]
pub struct Settings {
    /// Where the archive is.
    pub store: Arc<dyn ObjectStore>,
    /// What lines must be.
    pub filters: Arc<Filters>,
    /// Objects read at once.
    pub parallel: usize,
    /// De-duplicate by id with this much memory for ids (`None`: `--no-dedup`).
    pub dedup_memory: Option<usize>,
    /// Where id sets spill.
    pub spill_dir: PathBuf,
    /// The layout's keys sort by hour within a listing unit.
    pub hour_ordered: bool,
    /// Stop after this many lines written (counting earlier runs).
    pub limit: Option<u64>,
    /// Lines per second at most.
    pub rate: Option<f64>,
}

/// An object that could not be read whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Damaged {
    /// Its key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Objects read (not counting those read only for ids).
    pub objects_read: u64,
    /// Their compressed bytes.
    pub compressed_bytes: u64,
    /// GET requests made.
    pub get_requests: u64,
    /// LIST requests made.
    pub list_requests: u64,
    /// Lines read (non-empty).
    pub lines_read: u64,
    /// Lines written to the output.
    pub lines_written: u64,
    /// Lines whose time is outside the range.
    pub outside_range: u64,
    /// Lines the query did not match.
    pub filtered: u64,
    /// Lines dropped as copies of a line already written.
    pub duplicates: u64,
    /// Lines that are not JSON objects.
    pub invalid_lines: u64,
    /// Lines read but not written because `--limit` was reached.
    pub after_limit: u64,
    /// Cold objects skipped (`--skip-cold`).
    pub cold_skipped: u64,
    /// Hours whose ids outgrew `--dedup-memory` and spilled to disk.
    pub dedup_spilled_hours: u64,
    /// Damaged objects.
    pub damaged: Vec<Damaged>,
    /// Lines delivered by earlier runs of this restore.
    pub delivered_before: u64,
    /// Seconds this run took.
    pub elapsed_seconds: f64,
    /// The run stopped early (interrupted).
    pub interrupted: bool,
    /// The limit was reached.
    pub limit_reached: bool,
}

impl Summary {
    fn add(&mut self, c: &LineCounts) {
        self.lines_read += c.read;
        self.outside_range += c.outside_range;
        self.filtered += c.filtered;
        self.invalid_lines += c.invalid;
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The output failed or refused.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Anything else (the plan, the checkpoint, spill files).
    #[error("{0}")]
    Other(String),
}

/// Called with every commit of the output; a failure stops the run.
pub type OnCommit<'a> = &'a mut (dyn FnMut(&Committed, &Summary) -> Result<(), String> + Send);

/// Runs `plan` into `output` from `resume` on.
pub async fn run(
    settings: &Settings,
    plan: impl Iterator<Item = Result<Planned, String>>,
    start: Start,
    output: &mut Output,
    on_commit: OnCommit<'_>,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let Start {
        resume,
        delivered_before,
    } = start;
    let mut run = Run {
        settings,
        summary: Summary {
            delivered_before,
            ..Summary::default()
        },
        sets: HashMap::new(),
        unit: None,
        written_total: delivered_before,
        rate_origin: (Instant::now(), delivered_before),
    };
    let resume_hour = resume.as_ref().and_then(|r| r.hour);
    let mut plan = plan.peekable();
    let mut queue: VecDeque<(Planned, u64, mpsc::Receiver<ReadEvent>)> = VecDeque::new();
    let mut stop = false;
    loop {
        // Keep `parallel` objects reading ahead, in plan order.
        while queue.len() < settings.parallel.max(1) {
            let Some(next) = plan.next() else { break };
            let p = next.map_err(RunError::Other)?;
            if p.cold {
                run.summary.cold_skipped += 1;
                progress.object_done(p.size);
                continue;
            }
            let replay = match &resume {
                None => 0,
                Some(at) => match (
                    p.unit.cmp(&at.position.unit),
                    p.key.as_str().cmp(&at.position.key),
                ) {
                    (std::cmp::Ordering::Less, _) => {
                        progress.object_done(p.size);
                        continue;
                    }
                    (std::cmp::Ordering::Equal, std::cmp::Ordering::Less) => {
                        let needed = settings.dedup_memory.is_some()
                            && (!settings.hour_ordered || Some(p.hour) == resume_hour);
                        if !needed {
                            progress.object_done(p.size);
                            continue;
                        }
                        u64::MAX
                    }
                    (std::cmp::Ordering::Equal, std::cmp::Ordering::Equal) => at.position.raw,
                    _ => 0,
                },
            };
            let object = Object {
                key: p.key.as_str().into(),
                size: p.size,
                hour: p.hour,
            };
            let rx = read::start(
                settings.store.clone(),
                object,
                settings.filters.clone(),
                replay,
            );
            queue.push_back((p, replay, rx));
        }
        let Some((p, replay, mut rx)) = queue.pop_front() else {
            break;
        };
        run.enter(&p)?;
        let key: Arc<str> = p.key.as_str().into();
        while let Some(event) = rx.recv().await {
            match event {
                ReadEvent::Chunk(chunk) => {
                    if stop {
                        continue;
                    }
                    if cancel.is_cancelled() {
                        run.summary.interrupted = true;
                        stop = true;
                        continue;
                    }
                    stop = run
                        .chunk(&p, &key, chunk, output, on_commit, progress)
                        .await?;
                }
                ReadEvent::Done(end) => {
                    if replay != u64::MAX {
                        run.summary.objects_read += 1;
                        run.summary.compressed_bytes += end.bytes;
                        run.summary.get_requests += end.requests;
                        let mut reasons = Vec::new();
                        if let Some(d) = &end.damage {
                            reasons.push(d.clone());
                        }
                        if !end.bad_lines.is_empty() {
                            let lines: Vec<String> =
                                end.bad_lines.iter().map(u64::to_string).collect();
                            reasons.push(format!(
                                "{} lines are not JSON objects or are longer than 64 MiB (the first at line {})",
                                end.invalid,
                                lines.join(", ")
                            ));
                        }
                        if !reasons.is_empty() {
                            let reason = reasons.join("; ");
                            tracing::warn!(key = %p.key, reason = %reason, "a damaged archive object: what could be read is restored");
                            run.summary.damaged.push(Damaged {
                                key: p.key.clone(),
                                reason,
                            });
                        }
                    }
                    progress.object_done(p.size);
                }
            }
        }
        if stop {
            break;
        }
    }
    drop(queue);
    run.close(|_| false);
    if let Some(c) = output.finish().await? {
        on_commit(&c, &run.summary).map_err(RunError::Other)?;
    }
    run.summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(run.summary)
}

/// Where a run starts.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// Where a resumed run continues (`None`: from the beginning).
    pub resume: Option<Resume>,
    /// Lines earlier runs delivered.
    pub delivered_before: u64,
}

/// Where a resumed run continues.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The committed position.
    pub position: Position,
    /// The hour of the position's object (seconds), from its key.
    pub hour: Option<i64>,
}

struct Run<'s> {
    settings: &'s Settings,
    summary: Summary,
    /// Id sets of the open hours of the current unit.
    sets: HashMap<i64, IdSet>,
    unit: Option<usize>,
    written_total: u64,
    rate_origin: (Instant, u64),
}

impl Run<'_> {
    /// Closes the id sets an object can no longer need.
    fn enter(&mut self, p: &Planned) -> Result<(), RunError> {
        if self.unit != Some(p.unit) {
            self.close(|_| false);
            self.unit = Some(p.unit);
        } else if self.settings.hour_ordered {
            self.close(|hour| hour == p.hour);
        }
        Ok(())
    }

    /// Drops the id sets of the hours `keep` says no to, counting spilled ones.
    fn close(&mut self, keep: impl Fn(i64) -> bool) {
        let spilled = &mut self.summary.dedup_spilled_hours;
        self.sets.retain(|hour, set| {
            let kept = keep(*hour);
            if !kept && set.spilled() {
                *spilled += 1;
            }
            kept
        });
    }

    /// Handles one chunk; `Ok(true)` when the limit is reached.
    async fn chunk(
        &mut self,
        p: &Planned,
        key: &Arc<str>,
        chunk: Chunk,
        output: &mut Output,
        on_commit: OnCommit<'_>,
        progress: &Progress,
    ) -> Result<bool, RunError> {
        self.summary.add(&chunk.counts);
        let slice = self
            .settings
            .rate
            .map_or(usize::MAX, |r| ((r / 20.0) as usize).max(1));
        // The kept lines are a subsequence of the chunk's, in order: they are
        // moved to the front of the chunk's own buffer (usually not at all: most
        // lines are kept) rather than copied into a new one.
        let Chunk {
            mut lines,
            records,
            raw_end,
            ..
        } = chunk;
        let mut piece = Piece {
            unit: p.unit,
            key: key.clone(),
            ends: Vec::with_capacity(records.len().min(slice)),
            ..Piece::default()
        };
        let mut set = self.settings.dedup_memory.map(|memory| {
            self.sets.entry(p.hour).or_insert_with(|| {
                IdSet::new(
                    memory,
                    &self.settings.spill_dir,
                    &format!("{}-{}", p.unit, p.hour),
                )
            })
        });
        let (mut start, mut kept_end) = (0, 0);
        let mut limit_hit = false;
        for rec in &records {
            let range = start..rec.end;
            start = rec.end;
            if limit_hit {
                self.summary.after_limit += u64::from(!rec.replay);
                continue;
            }
            let fresh = match (set.as_deref_mut(), rec.id) {
                (Some(set), Some(id)) => set.insert(id).map_err(|e| {
                    RunError::Other(format!(
                        "cannot spill line ids to {}: {e}",
                        self.settings.spill_dir.display()
                    ))
                })?,
                _ => true,
            };
            if rec.replay {
                continue;
            }
            if !fresh {
                self.summary.duplicates += 1;
                continue;
            }
            let len = range.len();
            if range.start != kept_end {
                lines.copy_within(range, kept_end);
            }
            kept_end += len;
            piece.ends.push((kept_end, rec.raw));
            self.summary.lines_written += 1;
            self.written_total += 1;
            if self.settings.limit.is_some_and(|l| self.written_total >= l) {
                limit_hit = true;
                self.summary.limit_reached = true;
                piece.raw_end = rec.raw + 1;
                continue;
            }
            if piece.ends.len() >= slice {
                // Only with --rate: the throttled slice gets its own copy; later
                // kept lines go to the front of the buffer again.
                piece.raw_end = rec.raw + 1;
                piece.lines = lines[..kept_end].to_vec();
                kept_end = 0;
                let next = Piece {
                    unit: p.unit,
                    key: key.clone(),
                    ..Piece::default()
                };
                let full = std::mem::replace(&mut piece, next);
                self.write(full, output, on_commit, progress).await?;
                set = self.settings.dedup_memory.and(self.sets.get_mut(&p.hour));
            }
        }
        if !limit_hit {
            piece.raw_end = raw_end;
        }
        lines.truncate(kept_end);
        piece.lines = lines;
        self.write(piece, output, on_commit, progress).await?;
        Ok(limit_hit)
    }

    async fn write(
        &mut self,
        piece: Piece,
        output: &mut Output,
        on_commit: OnCommit<'_>,
        progress: &Progress,
    ) -> Result<(), RunError> {
        let lines = piece.ends.len() as u64;
        if let Some(rate) = self.settings.rate {
            let (origin, base) = self.rate_origin;
            let due = origin + Duration::from_secs_f64((self.written_total - base) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        progress.lines_written.fetch_add(lines, Ordering::Relaxed);
        if let Some(c) = output.write(piece).await? {
            on_commit(&c, &self.summary).map_err(RunError::Other)?;
        }
        Ok(())
    }
}
