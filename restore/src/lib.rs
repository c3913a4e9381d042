//! Restore: read archives back for a time range — pruned, parallel,
//! de-duplicated, filtered, resumable — to stdout, a file or an HTTP endpoint,
//! or into a topology through the `archive` source.
//!
//! # Layout
//! - [`time`]: `--from`/`--to` parsing and the half-open [`time::TimeRange`].
//! - [`layout`]: key templates read backwards — which prefixes to list (one per
//!   day for the default layout), which hour and part a key holds.
//! - [`plan`]: the listing pass; the selected objects go to a plan file, with a
//!   tally of objects, bytes, requests and storage classes (the dry run, and the
//!   cold-storage check made before anything is written).
//! - [`read`]: one object: streamed download and gunzip on one thread, then
//!   (`lines`) lines, id and time, filters on another.
//! - [`dedup`]: exact per-hour de-duplication by id, spilling to disk.
//! - [`engine`]: reads objects in parallel but consumes them in plan order, so
//!   that output order, de-duplication and checkpoints are deterministic.
//! - [`output`]: stdout, a file (`.gz`), or HTTP through the `http` sink's client.
//! - [`checkpoint`]: the committed position, for resuming.
//! - [`progress`]: the progress bar or JSON progress lines, and the summary.
//! - [`source`]: `type: archive`, the same engine as a topology source.
//!
//! `sediment restore` (in the binary) parses the command line into a
//! [`Request`] and calls [`execute`].

pub mod checkpoint;
pub mod dedup;
pub mod engine;
pub mod layout;
mod lines;
pub mod output;
pub mod plan;
pub mod progress;
pub mod read;
pub mod source;
pub mod time;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sediment_core::storage::ObjectStore;
use sediment_query::Query;
use tokio_util::sync::CancellationToken;

use checkpoint::CheckpointFile;
use engine::{Resume, Settings, Start};
use layout::Layout;
use output::{FileOutput, HttpOutput, Output, StreamOutput};
use progress::Progress;
use read::Filters;
use time::TimeRange;

/// Registry entries of this crate.
pub fn factories() -> Vec<sediment_core::component::Factory> {
    vec![source::factory()]
}

/// Where restored lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// `-`.
    Stdout,
    /// A file path (`.gz` → gzip).
    File(PathBuf),
    /// An `http(s)://` URL.
    Url(String),
}

impl OutputTarget {
    /// Reads `--output`.
    pub fn parse(text: &str) -> OutputTarget {
        if text == "-" {
            OutputTarget::Stdout
        } else if text.starts_with("http://") || text.starts_with("https://") {
            OutputTarget::Url(text.to_owned())
        } else {
            OutputTarget::File(std::path::absolute(text).unwrap_or_else(|_| PathBuf::from(text)))
        }
    }
}

/// A restore to run, validated.
pub struct Request {
    /// The archive's storage.
    pub store: Arc<dyn ObjectStore>,
    /// How its keys are laid out.
    pub layout: Layout,
    /// The range, as resolved now (a resumed restore keeps its first range).
    pub range: TimeRange,
    /// Only matching lines.
    pub query: Option<Query>,
    /// The id field.
    pub id_field: String,
    /// The time field.
    pub time_field: String,
    /// Where lines go.
    pub output: OutputTarget,
    /// List and tally only.
    pub dry_run: bool,
    /// Stop after this many lines.
    pub limit: Option<u64>,
    /// Objects read at once.
    pub parallel: usize,
    /// Lines per second at most.
    pub rate: Option<f64>,
    /// Skip objects in cold storage instead of refusing.
    pub skip_cold: bool,
    /// Memory for ids; `None` turns de-duplication off.
    pub dedup_memory: Option<usize>,
    /// Ignore (and replace) a checkpoint.
    pub fresh: bool,
    /// Where checkpoints, plans and spilled ids live.
    pub data_dir: PathBuf,
    /// What defines this restore (the flags as typed), naming its checkpoint.
    pub identity: String,
}

/// How a restore ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Everything was restored (or the dry run printed its plan).
    Done,
    /// It finished, but some objects were damaged (exit 1).
    Damaged,
    /// Interrupted; running the same command again continues (exit 130).
    Interrupted,
}

/// Runs a restore; errors are one sentence for the operator.
pub async fn execute(req: Request, cancel: CancellationToken) -> Result<Ended, String> {
    let file = CheckpointFile::new(&req.data_dir, &req.identity);
    let plan_path = file.path().with_extension("plan");
    if req.fresh {
        file.remove()?;
        let _ = std::fs::remove_file(&plan_path);
    }
    if req.dry_run {
        let tally = plan::plan(&req.store, &req.layout, &req.range, None).await?;
        print_plan(&tally, &req);
        return Ok(Ended::Done);
    }
    let mut listed_now = 0;
    let mut checkpoint = match file.load()? {
        Some(c) if c.complete => {
            eprintln!("this restore already completed (started {}); nothing to do. Run it with --fresh to restore again.", c.started_at);
            return Ok(Ended::Done);
        }
        Some(c) if plan_path.exists() => {
            tracing::info!(started = %c.started_at, from = %time::format_ms(c.range.from_ms), to = %time::format_ms(c.range.to_ms), delivered = c.delivered, "resuming an interrupted restore from its checkpoint");
            c
        }
        Some(_) => {
            return Err(format!(
                "the restore checkpoint {} has no plan beside it; run with --fresh to start over",
                file.path().display()
            ));
        }
        None => {
            if let OutputTarget::File(path) = &req.output {
                if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
                    return Err(format!(
                        "the output file {} exists; remove it or pass --fresh to overwrite it",
                        path.display()
                    ));
                }
            }
            std::fs::create_dir_all(plan_path.parent().expect("in a folder")).map_err(|e| {
                format!(
                    "cannot create {}: {e}",
                    req.data_dir.join("restore").display()
                )
            })?;
            let tally = plan::plan(&req.store, &req.layout, &req.range, Some(&plan_path)).await?;
            if tally.cold_objects > 0 && !req.skip_cold {
                let _ = std::fs::remove_file(&plan_path);
                let (key, class) = tally.first_cold.clone().unwrap_or_default();
                return Err(format!(
                    "{} of the {} objects in the range are in cold storage ({class}, first {key}) and cannot be read without restoring them in the storage first; nothing was written. Restore them there, or pass --skip-cold to restore the rest",
                    tally.cold_objects, tally.objects
                ));
            }
            listed_now = tally.list_requests;
            let mut c = CheckpointFile::fresh(req.range);
            c.objects = tally.objects;
            c.bytes = tally.bytes;
            file.store(&c)?;
            c
        }
    };
    let progress = Arc::new(Progress::default());
    progress
        .objects_total
        .store(checkpoint.objects, Ordering::Relaxed);
    progress
        .bytes_total
        .store(checkpoint.bytes, Ordering::Relaxed);
    let resume = checkpoint.position.clone().map(|position| Resume {
        hour: req.layout.read(&position.key).map(|k| k.hour),
        position,
    });
    let mut output = match &req.output {
        OutputTarget::Stdout => Output::Stdout(StreamOutput::stdout()),
        OutputTarget::File(path) => {
            Output::File(FileOutput::open(path, checkpoint.file_len.unwrap_or(0))?)
        }
        OutputTarget::Url(url) => {
            let settings =
                sediment_sinks::http::ClientSettings::for_uri(url, "--output").map_err(|e| {
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
            let metrics = sediment_core::metrics::ComponentMetrics::new("restore", "sink", "http")
                .http_sink();
            let client = sediment_sinks::http::HttpClient::new("restore", settings, metrics)
                .map_err(|e| e.to_string())?;
            Output::Http(HttpOutput::new(
                client,
                1000,
                1 << 20,
                checkpoint.restore_id.clone(),
                cancel.clone(),
            ))
        }
    };
    if resume.is_some() && output.at_least_once() {
        tracing::warn!("resuming a restore to standard output: lines written after its last checkpoint may appear again");
    }
    let spill_dir = req
        .data_dir
        .join("restore")
        .join(format!("spill-{}", checkpoint.restore_id));
    let settings = Settings {
        store: req.store.clone(),
        filters: Arc::new(Filters {
            range: checkpoint.range,
            id_field: req.id_field.clone(),
            time_field: req.time_field.clone(),
            query: req.query.clone(),
        }),
        parallel: req.parallel,
        dedup_memory: req.dedup_memory,
        spill_dir: spill_dir.clone(),
        hour_ordered: req.layout.hour_ordered(),
        limit: req.limit,
        rate: req.rate,
    };
    let reporting = CancellationToken::new();
    let reporter = tokio::spawn(progress::report(progress.clone(), reporting.clone()));
    let plan_reader = plan::PlanReader::open(&plan_path)?;
    let before = checkpoint.delivered;
    let damaged_before = checkpoint.damaged.clone();
    let result = {
        let mut on_commit = |c: &output::Committed, summary: &engine::Summary| {
            checkpoint.position = Some(c.position.clone());
            checkpoint.file_len = c.file_len.or(checkpoint.file_len);
            checkpoint.delivered = before + c.lines;
            checkpoint.damaged = damaged_before
                .iter()
                .chain(&summary.damaged)
                .cloned()
                .collect();
            file.store(&checkpoint)
        };
        engine::run(
            &settings,
            plan_reader,
            Start {
                resume,
                delivered_before: before,
            },
            &mut output,
            &mut on_commit,
            &progress,
            &cancel,
        )
        .await
    };
    reporting.cancel();
    let _ = reporter.await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => return Err(format!("restore stopped: {e}; what was delivered is checkpointed, so running the same command again continues")),
    };
    summary.list_requests = listed_now;
    summary.damaged = damaged_before.into_iter().chain(summary.damaged).collect();
    let ended = if summary.interrupted {
        Ended::Interrupted
    } else {
        checkpoint.complete = true;
        checkpoint.damaged = summary.damaged.clone();
        file.store(&checkpoint)?;
        let _ = std::fs::remove_file(&plan_path);
        if summary.damaged.is_empty() {
            Ended::Done
        } else {
            Ended::Damaged
        }
    };
    progress::print_summary(&summary);
    Ok(ended)
}

fn print_plan(tally: &plan::Tally, req: &Request) {
    println!(
        "restore plan for {} .. {} in {}",
        time::format_ms(req.range.from_ms),
        time::format_ms(req.range.to_ms),
        req.store.location()
    );
    println!(
        "{:<26} {:>8} {:>14}  storage classes",
        "hour", "objects", "bytes"
    );
    for (hour, h) in &tally.hours {
        let classes: Vec<String> = h.classes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        println!(
            "{hour:<26} {:>8} {:>14}  {}",
            h.objects,
            h.bytes,
            classes.join(", ")
        );
    }
    let cold = match &tally.first_cold {
        Some((key, class)) => format!(
            "; {} objects ({} bytes) in cold storage, first {key} ({class})",
            tally.cold_objects, tally.cold_bytes
        ),
        None => String::new(),
    };
    println!(
        "total: {} objects, {} bytes, {} LIST requests, {} GET requests{cold}",
        tally.objects, tally.bytes, tally.list_requests, tally.get_requests
    );
}
