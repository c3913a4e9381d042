//! Planning a restore: list the prefixes of the range, select the objects whose
//! hour overlaps it, and tally what reading them will cost — before anything
//! is downloaded.
//!
//! The plan is streamed page by page into a plan file (one JSON line per
//! selected object, in restore order) so that no listing is ever held whole;
//! the run reads the objects back from it, and a resumed run reads the same
//! plan again, so it restores exactly the objects the first run chose.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sediment_core::retry::Backoff;
use sediment_core::storage::{ListPage, ObjectStore, StorageError};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::time::TimeRange;

/// One selected object, as the plan file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Its listing unit.
    pub unit: usize,
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// The hour its key names (seconds).
    pub hour: i64,
    /// Its part number.
    pub part: u32,
    /// Its storage class, if the provider reports one.
    pub class: Option<String>,
    /// It needs a separate restore from cold storage before it can be read.
    pub cold: bool,
}

/// What the objects of one hour come to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourTally {
    /// Objects selected.
    pub objects: u64,
    /// Their compressed bytes.
    pub bytes: u64,
    /// Objects per storage class (`STANDARD` when the provider names none).
    pub classes: BTreeMap<String, u64>,
}

/// The whole plan's tally.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Per hour (start, RFC 3339).
    pub hours: BTreeMap<String, HourTally>,
    /// Objects selected.
    pub objects: u64,
    /// Their compressed bytes.
    pub bytes: u64,
    /// LIST requests made to plan.
    pub list_requests: u64,
    /// GET requests reading every selected object will take.
    pub get_requests: u64,
    /// Objects in cold storage.
    pub cold_objects: u64,
    /// Their bytes.
    pub cold_bytes: u64,
    /// The first cold object's key and class.
    pub first_cold: Option<(String, String)>,
    /// Listing units (prefixes) listed.
    pub prefixes: Vec<String>,
}

/// Listing retries: transient errors without limit, permanent ones this often.
const LIST_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(30),
};
const PERMANENT_ATTEMPTS: u32 = 3;

/// Lists the range and writes the selected objects to `plan_file` (when given).
pub async fn plan(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    range: &TimeRange,
    plan_file: Option<&Path>,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let tmp = plan_file.map(|p| p.with_extension("plan.tmp"));
    let mut out = match &tmp {
        Some(t) => Some(BufWriter::new(std::fs::File::create(t).map_err(|e| {
            format!("cannot write the restore plan {}: {e}", t.display())
        })?)),
        None => None,
    };
    for (unit, u) in layout.units(range.hours()).into_iter().enumerate() {
        tally.prefixes.push(u.prefix.clone());
        let last_hour = u.first_hour + (u.hours - 1) * 3600;
        let mut start = None;
        loop {
            let page = list(store, &u.prefix, start.clone()).await?;
            tally.list_requests += 1;
            for o in page.objects {
                let Some(at) = layout.read(&o.key) else {
                    continue;
                };
                if at.hour < u.first_hour || at.hour > last_hour || !range.overlaps_hour(at.hour) {
                    continue;
                }
                let planned = Planned {
                    unit,
                    key: o.key,
                    size: o.size,
                    hour: at.hour,
                    part: at.part,
                    class: o.storage_class,
                    cold: o.cold,
                };
                count(&mut tally, store.as_ref(), &planned);
                if let Some(out) = &mut out {
                    serde_json::to_writer(&mut *out, &planned).expect("a plan line serialises");
                    out.write_all(b"\n")
                        .map_err(|e| format!("cannot write the restore plan: {e}"))?;
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
    }
    if let (Some(mut out), Some(tmp), Some(path)) = (out, tmp, plan_file) {
        let at =
            |e: std::io::Error| format!("cannot write the restore plan {}: {e}", path.display());
        out.flush().map_err(at)?;
        out.get_ref().sync_all().map_err(at)?;
        std::fs::rename(&tmp, path).map_err(at)?;
    }
    Ok(tally)
}

fn count(tally: &mut Tally, store: &dyn ObjectStore, p: &Planned) {
    let class = p.class.clone().unwrap_or_else(|| "STANDARD".to_owned());
    if p.cold {
        tally.cold_objects += 1;
        tally.cold_bytes += p.size;
        if tally.first_cold.is_none() {
            tally.first_cold = Some((p.key.clone(), class.clone()));
        }
    }
    let hour = tally
        .hours
        .entry(crate::time::format_ms(p.hour * 1000))
        .or_default();
    hour.objects += 1;
    hour.bytes += p.size;
    *hour.classes.entry(class).or_default() += 1;
    tally.objects += 1;
    tally.bytes += p.size;
    if !p.cold {
        tally.get_requests += store.reads_for(p.size);
    }
}

/// One listing page, retried as uploads are.
async fn list(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    start: Option<String>,
) -> Result<ListPage, String> {
    let (mut attempt, mut permanent) = (0u32, 0u32);
    loop {
        match store.list_page(prefix, start.clone()).await {
            Ok(page) => return Ok(page),
            Err(e) => {
                if matches!(e, StorageError::Permanent(_)) {
                    permanent += 1;
                    if permanent >= PERMANENT_ATTEMPTS {
                        return Err(format!("cannot list {prefix} in {}: {e}", store.location()));
                    }
                }
                let delay = LIST_BACKOFF.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(location = %store.location(), prefix, error = %e, retry_in = ?delay, "listing failed, will retry");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Reads a plan file back, object by object.
pub struct PlanReader {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    path: PathBuf,
}

impl PlanReader {
    /// Opens a plan written by [`plan`].
    pub fn open(path: &Path) -> Result<PlanReader, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the restore plan {}: {e}", path.display()))?;
        Ok(PlanReader {
            lines: std::io::BufReader::new(file).lines(),
            path: path.to_owned(),
        })
    }
}

impl Iterator for PlanReader {
    type Item = Result<Planned, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.lines.next()?;
        Some(
            line.map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()))
                .map_err(|e| {
                    format!(
                        "the restore plan {} is damaged ({e}); run with --fresh",
                        self.path.display()
                    )
                }),
        )
    }
}
