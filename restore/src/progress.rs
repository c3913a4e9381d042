//! Progress a person can watch: a bar on a terminal (`indicatif`), else one
//! JSON line every [`JSON_EVERY`] on stderr; and the summary at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::engine::Summary;

/// How often progress is written as JSON when stderr is not a terminal.
pub const JSON_EVERY: Duration = Duration::from_secs(5);

/// Counters the run updates and the reporter reads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Objects planned.
    pub objects_total: AtomicU64,
    /// Their compressed bytes.
    pub bytes_total: AtomicU64,
    /// Objects done (read, skipped or passed over on resume).
    pub objects_done: AtomicU64,
    /// Their compressed bytes.
    pub bytes_done: AtomicU64,
    /// Lines handed to the output.
    pub lines_written: AtomicU64,
}

impl Progress {
    /// Counts one object as done.
    pub fn object_done(&self, bytes: u64) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Reports `progress` until `done` fires.
pub async fn report(progress: Arc<Progress>, done: CancellationToken) {
    let started = Instant::now();
    if std::io::stderr().is_terminal() {
        let total = progress.bytes_total.load(Ordering::Relaxed);
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} compressed · {msg} · ETA {eta}",
            )
            .expect("a valid template"),
        );
        loop {
            let p = &progress;
            let lines = p.lines_written.load(Ordering::Relaxed);
            let rate = lines as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_position(p.bytes_done.load(Ordering::Relaxed));
            bar.set_message(format!(
                "objects {}/{} · {lines} lines · {rate:.0} lines/s",
                p.objects_done.load(Ordering::Relaxed),
                p.objects_total.load(Ordering::Relaxed),
            ));
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
    } else {
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(JSON_EVERY) => {}
            }
            let p = &progress;
            let lines = p.lines_written.load(Ordering::Relaxed);
            let line = serde_json::json!({
                "progress": {
                    "objects_done": p.objects_done.load(Ordering::Relaxed),
                    "objects_total": p.objects_total.load(Ordering::Relaxed),
                    "bytes_done": p.bytes_done.load(Ordering::Relaxed),
                    "bytes_total": p.bytes_total.load(Ordering::Relaxed),
                    "lines_written": lines,
                    "lines_per_second": (lines as f64 / started.elapsed().as_secs_f64().max(1e-3)).round(),
                    "elapsed_seconds": started.elapsed().as_secs(),
                }
            });
            eprintln!("{line}");
        }
    }
}

/// The summary, for a person (terminal) or a program (else, one JSON line).
pub fn print_summary(summary: &Summary) {
    if !std::io::stderr().is_terminal() {
        eprintln!("{}", serde_json::json!({ "summary": summary }));
        return;
    }
    let s = summary;
    let rate = s.lines_written as f64 / s.elapsed_seconds.max(1e-3);
    eprintln!(
        "restore {}in {:.1}s:",
        if s.interrupted { "interrupted " } else { "" },
        s.elapsed_seconds
    );
    eprintln!(
        "  objects read      {:>12}  ({} compressed bytes, {} GET and {} LIST requests)",
        s.objects_read, s.compressed_bytes, s.get_requests, s.list_requests
    );
    eprintln!("  lines read        {:>12}", s.lines_read);
    eprintln!(
        "  lines written     {:>12}  ({rate:.0} lines/s)",
        s.lines_written
    );
    eprintln!("  outside the range {:>12}", s.outside_range);
    eprintln!("  filtered by query {:>12}", s.filtered);
    eprintln!("  duplicates        {:>12}", s.duplicates);
    if s.invalid_lines > 0 {
        eprintln!("  invalid lines     {:>12}", s.invalid_lines);
    }
    if s.after_limit > 0 || s.limit_reached {
        eprintln!("  after --limit     {:>12}", s.after_limit);
    }
    eprintln!("  cold objects      {:>12}  skipped", s.cold_skipped);
    eprintln!("  damaged objects   {:>12}", s.damaged.len());
    if s.delivered_before > 0 {
        eprintln!(
            "  delivered by earlier runs of this restore: {} lines",
            s.delivered_before
        );
    }
    for d in &s.damaged {
        eprintln!("  damaged: {}: {}", d.key, d.reason);
    }
}
