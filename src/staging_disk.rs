//! The staging filesystem's free space, sampled for each archive sink.
//!
//! Staged data is what sediment has acknowledged and not yet archived; when its
//! filesystem fills, intake stops (HTTP 503). The gauges
//! `sediment_staging_filesystem_avail_bytes` and `..._size_bytes` let an alert
//! fire well before that (deploy/prometheus/alerts.yml). A plain thread samples
//! them: `statvfs` can hang on a stuck network filesystem, and it must not take an
//! async worker with it.

use std::path::PathBuf;
use std::time::Duration;

use prometheus::IntGauge;
use sediment_core::component::{ComponentKind, Validated};
use sediment_core::config::Config;
use sediment_core::metrics::ComponentMetrics;

/// How often the filesystems are sampled.
const INTERVAL: Duration = Duration::from_secs(10);

/// One archive sink's staging folder and its gauges.
struct Folder {
    path: PathBuf,
    avail: IntGauge,
    size: IntGauge,
}

/// Starts sampling the staging filesystem of every archive sink of `config`
/// (`data_dir/<sink id>`), at once and then every 10 s, for the life of the process.
pub fn watch(config: &Config) {
    let folders: Vec<Folder> = config
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Sink)
        .filter(|c| matches!(&c.validated, Validated::Sink(s) if s.archive_layout().is_some()))
        .map(|c| {
            let (avail, size) =
                ComponentMetrics::new(&c.id, c.kind.as_str(), c.type_name).staging_filesystem();
            Folder {
                path: config.data_dir.join(&c.id),
                avail,
                size,
            }
        })
        .collect();
    if folders.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("staging-disk".into())
        .spawn(move || loop {
            for folder in &folders {
                sample(folder);
            }
            std::thread::sleep(INTERVAL);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the staging disk sampler; sediment_staging_filesystem_* stay unset");
    }
}

fn sample(folder: &Folder) {
    // Before the sink has created its folder (staging recovery of another sink
    // can take a while), the nearest existing parent is on the same filesystem.
    let Some(existing) = folder.path.ancestors().find(|p| p.exists()) else {
        return;
    };
    match rustix::fs::statvfs(existing) {
        Ok(s) => {
            folder.avail.set(bytes(s.f_bavail, s.f_frsize));
            folder.size.set(bytes(s.f_blocks, s.f_frsize));
        }
        Err(e) => {
            tracing::debug!(folder = %existing.display(), error = %e, "cannot statvfs the staging folder");
        }
    }
}

fn bytes(blocks: u64, block_size: u64) -> i64 {
    i64::try_from(blocks.saturating_mul(block_size)).unwrap_or(i64::MAX)
}
