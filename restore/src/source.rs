//! `type: archive`: a source that reads an archive once for a time range —
//! the engine behind `sediment restore` — and then shuts the topology down, so
//! that a restore can flow through a pipeline (archive → exclude → http sink
//! into another system).
//!
//! ```yaml
//! sources:
//!   last_week:
//!     type: archive
//!     storage: {type: s3, bucket: acme-logs, region: eu-west-1, account_id: acme}
//!     from: 2026-11-22
//!     to: 2026-11-29
//!     query: 'level:error'
//! ```
//!
//! `storage` takes exactly the options of an archive sink of that type
//! (`file`, `s3`, `gcs`, `azure_blob`), its `key_template` and `account_id`
//! naming the layout. Lines keep their `_id`, `_ts` and `_meta`. The source
//! reads once and keeps no checkpoint: a stopped topology reads again from
//! the start (use `sediment restore` to resume).

use std::sync::Arc;

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Source, Validated, ValidatedSink,
    ValidatedSource,
};
use sediment_core::config::{join, parse_typed, ByteSize, ConfigError};
use sediment_core::event::{format_time_ms, new_id, parse_time_ms, ID_FIELD, META_FIELD, TS_FIELD};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::{Ack, Batch, Event};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Settings, Start};
use crate::layout::Layout;
use crate::output::Output;
use crate::plan;
use crate::progress::Progress;
use crate::read::Filters;
use crate::time::{now_ms, parse_time, TimeRange};

/// Registry entry for `type: archive`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Source,
        type_name: "archive",
        parse,
    }
}

/// `type: archive` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveOptions {
    /// The archive's storage: an archive sink's options, with its `type`.
    storage: serde_yaml::Value,
    /// Start of the range, included (as `sediment restore --from`).
    from: String,
    /// End of the range, excluded.
    to: String,
    /// Only lines matching this query.
    #[serde(default)]
    query: Option<String>,
    /// A key layout other than the storage's `key_template`.
    #[serde(default)]
    layout: Option<String>,
    /// The field holding each line's id.
    #[serde(default = "default_id_field")]
    id_field: String,
    /// The field holding each line's time.
    #[serde(default = "default_time_field")]
    time_field: String,
    /// Objects read at once.
    #[serde(default = "default_parallel")]
    parallel: usize,
    /// De-duplicate lines by id within each hour.
    #[serde(default = "default_true")]
    dedup: bool,
    /// Memory for one hour's ids before they spill under `data_dir`.
    #[serde(default = "default_dedup_memory")]
    dedup_memory: ByteSize,
}

fn default_id_field() -> String {
    "_id".into()
}
fn default_time_field() -> String {
    "_ts".into()
}
fn default_parallel() -> usize {
    8
}
fn default_true() -> bool {
    true
}
fn default_dedup_memory() -> ByteSize {
    ByteSize(256 << 20)
}

/// A validated `archive` source.
#[derive(Debug)]
struct ArchiveSource {
    storage: Box<dyn ValidatedSink>,
    range: TimeRange,
    layout: Layout,
    query: Option<sediment_query::Query>,
    id_field: String,
    time_field: String,
    parallel: usize,
    dedup_memory: Option<usize>,
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let o: ArchiveOptions = parse_typed(&cx.path, value)?;
    let at = |field: &str| join(&cx.path, field);
    let mut errors = Vec::new();
    let storage = storage(&cx.id, &at("storage"), o.storage).map_err(|mut e| {
        errors.append(&mut e);
    });
    let now = now_ms();
    let from = parse_time(&o.from, now).map_err(|e| errors.push(ConfigError::new(at("from"), e)));
    let to = parse_time(&o.to, now).map_err(|e| errors.push(ConfigError::new(at("to"), e)));
    let range = match (from, to) {
        (Ok(f), Ok(t)) => TimeRange::new(f, t, now)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    &cx.path,
                    e.replace("--from", "from").replace("--to", "to"),
                ))
            })
            .ok(),
        _ => None,
    };
    let query = match &o.query {
        Some(q) => sediment_query::Query::parse(q)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    at("query"),
                    format!("column {}: {}", e.column, e.message),
                ))
            })
            .ok(),
        None => None,
    };
    if o.parallel == 0 || o.parallel > 256 {
        errors.push(ConfigError::new(
            at("parallel"),
            "must be between 1 and 256",
        ));
    }
    let layout = match &storage {
        Ok(s) => {
            let (template, account) = s.archive_layout().expect("archive sinks have a layout");
            let (text, field) = match &o.layout {
                Some(l) => (l.clone(), "layout"),
                None => (template, "storage.key_template"),
            };
            Layout::parse(&text, &account)
                .map_err(|e| errors.push(ConfigError::new(at(field), e)))
                .ok()
        }
        Err(()) => None,
    };
    match (storage, range, layout) {
        (Ok(storage), Some(range), Some(layout)) if errors.is_empty() => {
            Ok(Validated::Source(Box::new(ArchiveSource {
                storage,
                range,
                layout,
                query,
                id_field: o.id_field,
                time_field: o.time_field,
                parallel: o.parallel,
                dedup_memory: o.dedup.then_some(o.dedup_memory.get() as usize),
            })))
        }
        _ => Err(errors),
    }
}

/// Validates `storage` with the archive sink factory of its `type`.
fn storage(
    id: &str,
    path: &str,
    value: serde_yaml::Value,
) -> Result<Box<dyn ValidatedSink>, Vec<ConfigError>> {
    let serde_yaml::Value::Mapping(mut map) = value else {
        return Err(vec![ConfigError::new(
            path,
            "expected a mapping with a `type` (file, s3, gcs or azure_blob)",
        )]);
    };
    let archive_types = ["file", "s3", "gcs", "azure_blob"];
    let type_name = match map.remove("type") {
        Some(serde_yaml::Value::String(t)) if archive_types.contains(&t.as_str()) => t,
        Some(serde_yaml::Value::String(t)) => {
            return Err(vec![ConfigError::new(
                join(path, "type"),
                format!("`{t}` is not an archive storage; use file, s3, gcs or azure_blob"),
            )])
        }
        _ => {
            return Err(vec![ConfigError::new(
                path,
                "needs `type`: file, s3, gcs or azure_blob",
            )])
        }
    };
    let factory = sediment_sinks::factories()
        .into_iter()
        .find(|f| f.type_name == type_name)
        .expect("every archive type is a sink");
    let cx = ParseContext {
        id: id.to_owned(),
        path: path.to_owned(),
    };
    match (factory.parse)(&cx, serde_yaml::Value::Mapping(map))? {
        Validated::Sink(sink) => Ok(sink),
        _ => unreachable!("a sink factory returns a sink"),
    }
}

#[async_trait]
impl ValidatedSource for ArchiveSource {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let store = self
            .storage
            .open_store()
            .await
            .expect("archive sinks have a store")
            .map_err(|e| anyhow::anyhow!("cannot open the archive's storage: {e:#}"))?;
        let dir = cx.data_dir.join(&cx.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        Ok(Box::new(Running {
            settings: Settings {
                store,
                filters: Arc::new(Filters {
                    range: self.range,
                    id_field: self.id_field.clone(),
                    time_field: self.time_field.clone(),
                    query: self.query,
                }),
                parallel: self.parallel,
                dedup_memory: self.dedup_memory,
                spill_dir: dir.join("spill"),
                hour_ordered: self.layout.hour_ordered(),
                limit: None,
                rate: None,
            },
            layout: self.layout,
            range: self.range,
            dir,
            id: cx.id.clone(),
            metrics: cx.metrics.clone(),
        }))
    }
}

struct Running {
    settings: Settings,
    layout: Layout,
    range: TimeRange,
    dir: std::path::PathBuf,
    id: String,
    metrics: ComponentMetrics,
}

#[async_trait]
impl Source for Running {
    async fn run(
        self: Box<Self>,
        out: sediment_core::Output,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let plan_path = self.dir.join("plan");
        let tally = plan::plan(
            &self.settings.store,
            &self.layout,
            &self.range,
            Some(&plan_path),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(source = %self.id, objects = tally.objects, bytes = tally.bytes, "reading the archive");
        let mut output = Output::Pipeline(PipelineOutput {
            out,
            meta: serde_json::json!({"source": self.id, "source_type": "archive"}),
            time_field: self.settings.filters.time_field.clone(),
            metrics: self.metrics.clone(),
        });
        let progress = Progress::default();
        let reader = plan::PlanReader::open(&plan_path).map_err(|e| anyhow::anyhow!(e))?;
        let mut on_commit = |_: &crate::output::Committed, _: &engine::Summary| Ok(());
        let summary = engine::run(
            &self.settings,
            reader,
            Start::default(),
            &mut output,
            &mut on_commit,
            &progress,
            &shutdown,
        )
        .await
        .map_err(|e| anyhow::anyhow!("source `{}`: {e}", self.id))?;
        let _ = std::fs::remove_file(&plan_path);
        for d in &summary.damaged {
            tracing::warn!(source = %self.id, key = %d.key, reason = %d.reason, "a damaged archive object");
        }
        tracing::info!(source = %self.id, lines = summary.lines_written, duplicates = summary.duplicates, "the archive is read; shutting the topology down");
        Ok(())
    }
}

/// Lines into the topology as events.
pub struct PipelineOutput {
    out: sediment_core::Output,
    meta: Value,
    time_field: String,
    metrics: ComponentMetrics,
}

impl PipelineOutput {
    /// Sends the piece's lines downstream, waiting for room (back-pressure).
    pub async fn write(
        &mut self,
        piece: crate::output::Piece,
    ) -> Result<(), crate::output::OutputError> {
        let mut events = Vec::with_capacity(piece.ends.len());
        let mut start = 0;
        let now = now_ms();
        for &(end, _) in &piece.ends {
            let line = &piece.lines[start..end];
            start = end;
            if let Ok(fields) = serde_json::from_slice::<Map<String, Value>>(line) {
                events.push(restored_event(fields, &self.time_field, now, &self.meta));
            }
        }
        self.metrics.received_events.inc_by(events.len() as u64);
        self.metrics.received_bytes.inc_by(piece.lines.len() as u64);
        let n = events.len() as u64;
        self.out
            .send(Batch::new(events, Ack::none()))
            .await
            .map_err(|e| crate::output::OutputError::Io(e.to_string()))?;
        self.metrics.sent_events.inc_by(n);
        Ok(())
    }
}

/// An archived line as an event: its `_id`, `_ts` and `_meta` are kept; what a
/// foreign archive lacks is added (`_ts` from the time field).
fn restored_event(
    mut fields: Map<String, Value>,
    time_field: &str,
    now: i64,
    meta: &Value,
) -> Event {
    let time_ms = fields
        .get(TS_FIELD)
        .or_else(|| fields.get(time_field))
        .and_then(parse_time_ms)
        .unwrap_or(now);
    if !matches!(fields.get(ID_FIELD), Some(Value::String(s)) if !s.is_empty()) {
        fields.insert(ID_FIELD.into(), Value::String(new_id()));
    }
    fields.insert(TS_FIELD.into(), Value::String(format_time_ms(time_ms)));
    if !fields.get(META_FIELD).is_some_and(Value::is_object) {
        fields.insert(META_FIELD.into(), meta.clone());
    }
    Event::from_map(fields, time_ms)
}
