//! Prometheus metrics: one registry, label sets resolved once per component.
//!
//! Names follow Vector's conventions with a `sediment_` prefix; every component
//! metric carries `component_id`, `component_kind` and `component_type`.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const COMPONENT: &[&str] = &["component_id", "component_kind", "component_type"];

/// Every metric sediment exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received_events: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_events: IntCounterVec,
    sent_bytes: IntCounterVec,
    discarded_events: IntCounterVec,
    errors: IntCounterVec,
    http_requests: IntCounterVec,
    syslog_parse_errors: IntCounterVec,
    archive_objects: IntCounterVec,
    archive_bytes: IntCounterVec,
    upload_duration: HistogramVec,
    staged_bytes: IntGaugeVec,
    open_partitions: IntGaugeVec,
    late_events: IntCounterVec,
    upload_retries: IntCounterVec,
    damaged_members: IntCounterVec,
    http_sink_requests: IntCounterVec,
    http_sink_duration: HistogramVec,
    kafka_lag: IntGaugeVec,
    kafka_committed: IntGaugeVec,
    kafka_rebalances: IntCounterVec,
    staging_avail: IntGaugeVec,
    staging_size: IntGaugeVec,
}

fn labels(extra: &[&'static str]) -> Vec<&'static str> {
    COMPONENT.iter().chain(extra).copied().collect()
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, extra: &[&'static str]| {
            let c =
                IntCounterVec::new(Opts::new(name, help), &labels(extra)).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), COMPONENT).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ]),
                COMPONENT,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let upload_duration = histogram(
            "sediment_archive_upload_duration_seconds",
            "Time to upload one archive object.",
        );
        let http_sink_duration = histogram(
            "sediment_http_sink_request_duration_seconds",
            "Time from sending an HTTP sink request to its answer, per attempt.",
        );
        Metrics {
            received_events: counter(
                "sediment_component_received_events_total",
                "Events received by a component.",
                &[],
            ),
            received_bytes: counter(
                "sediment_component_received_bytes_total",
                "Bytes received by a component.",
                &[],
            ),
            sent_events: counter(
                "sediment_component_sent_events_total",
                "Events sent on by a component.",
                &[],
            ),
            sent_bytes: counter(
                "sediment_component_sent_bytes_total",
                "Bytes sent on by a component (for network sinks, as sent on the wire).",
                &[],
            ),
            discarded_events: counter(
                "sediment_component_discarded_events_total",
                "Events a component deliberately dropped.",
                &["reason", "rule"],
            ),
            errors: counter(
                "sediment_component_errors_total",
                "Errors met by a component.",
                &["error_type"],
            ),
            http_requests: counter(
                "sediment_http_requests_total",
                "HTTP requests answered, by status code.",
                &["code"],
            ),
            syslog_parse_errors: counter(
                "sediment_syslog_parse_errors_total",
                "Syslog messages that did not parse.",
                &[],
            ),
            archive_objects: counter(
                "sediment_archive_objects_total",
                "Archive objects finalised, by outcome.",
                &["outcome"],
            ),
            archive_bytes: counter(
                "sediment_archive_bytes_total",
                "Compressed bytes written to archive objects.",
                &[],
            ),
            upload_duration,
            staged_bytes: gauge(
                "sediment_archive_staged_bytes",
                "Compressed bytes staged locally and not yet archived.",
            ),
            open_partitions: gauge(
                "sediment_archive_open_partitions",
                "Staging segments open for appends.",
            ),
            late_events: counter(
                "sediment_late_events_total",
                "Events that arrived after their hour closed.",
                &[],
            ),
            upload_retries: counter(
                "sediment_upload_retries_total",
                "Failed uploads (archive objects, HTTP sink requests) that will be retried.",
                &[],
            ),
            damaged_members: counter(
                "sediment_archive_damaged_members_total",
                "Staged members dropped because their checksum failed (at recovery or before upload).",
                &[],
            ),
            http_sink_requests: counter(
                "sediment_http_sink_requests_total",
                "HTTP sink request attempts, by the receiver's status code (`error` when no answer came).",
                &["status"],
            ),
            http_sink_duration,
            kafka_lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "sediment_kafka_consumer_lag",
                        "Records of a partition not yet consumed (the broker's high watermark minus the position).",
                    ),
                    &labels(&["topic", "partition"]),
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            kafka_committed: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "sediment_kafka_committed_offset",
                        "The offset last committed for a partition: every record below it is in archive objects.",
                    ),
                    &labels(&["topic", "partition"]),
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            kafka_rebalances: counter(
                "sediment_kafka_rebalances_total",
                "Partitions assigned to or revoked from this replica by consumer group rebalances.",
                &["kind"],
            ),
            staging_avail: gauge(
                "sediment_staging_filesystem_avail_bytes",
                "Bytes free for sediment on the filesystem holding an archive sink's staging folder.",
            ),
            staging_size: gauge(
                "sediment_staging_filesystem_size_bytes",
                "Size in bytes of the filesystem holding an archive sink's staging folder.",
            ),
            registry,
        }
    }

    /// The process-wide metrics.
    pub fn global() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(Metrics::new)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The metric handles of one component, resolved once at build time.
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    id: String,
    kind: &'static str,
    type_name: &'static str,
    /// `sediment_component_received_events_total`.
    pub received_events: IntCounter,
    /// `sediment_component_received_bytes_total`.
    pub received_bytes: IntCounter,
    /// `sediment_component_sent_events_total`.
    pub sent_events: IntCounter,
    /// `sediment_component_sent_bytes_total`.
    pub sent_bytes: IntCounter,
}

impl ComponentMetrics {
    /// Handles for the component `id` of `kind` (`source`, `transform`, `sink`) and type.
    pub fn new(id: &str, kind: &'static str, type_name: &'static str) -> ComponentMetrics {
        let m = Metrics::global();
        let l = [id, kind, type_name];
        ComponentMetrics {
            id: id.to_owned(),
            kind,
            type_name,
            received_events: m.received_events.with_label_values(&l),
            received_bytes: m.received_bytes.with_label_values(&l),
            sent_events: m.sent_events.with_label_values(&l),
            sent_bytes: m.sent_bytes.with_label_values(&l),
        }
    }

    fn with<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut l = vec![self.id.as_str(), self.kind, self.type_name];
        l.extend_from_slice(extra);
        l
    }

    /// The component id these handles belong to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A counter of events discarded for `reason` (and exclusion `rule`, or "").
    pub fn discarded(&self, reason: &str, rule: &str) -> IntCounter {
        Metrics::global()
            .discarded_events
            .with_label_values(&self.with(&[reason, rule]))
    }

    /// A counter of errors of `error_type`.
    pub fn errors(&self, error_type: &str) -> IntCounter {
        Metrics::global()
            .errors
            .with_label_values(&self.with(&[error_type]))
    }

    /// A counter of HTTP responses with `code`.
    pub fn http_requests(&self, code: u16) -> IntCounter {
        Metrics::global()
            .http_requests
            .with_label_values(&self.with(&[&code.to_string()]))
    }

    /// `sediment_syslog_parse_errors_total`.
    pub fn syslog_parse_errors(&self) -> IntCounter {
        Metrics::global()
            .syslog_parse_errors
            .with_label_values(&self.with(&[]))
    }

    /// `sediment_upload_retries_total`: attempts that failed and will be retried.
    pub fn upload_retries(&self) -> IntCounter {
        Metrics::global()
            .upload_retries
            .with_label_values(&self.with(&[]))
    }

    /// The metrics of an HTTP sink (or of restore's HTTP output).
    pub fn http_sink(&self) -> HttpSinkMetrics {
        HttpSinkMetrics {
            component: self.clone(),
            duration: Metrics::global()
                .http_sink_duration
                .with_label_values(&self.with(&[])),
            retries: self.upload_retries(),
        }
    }

    /// `sediment_kafka_consumer_lag` of a partition.
    pub fn kafka_lag(&self, topic: &str, partition: i32) -> IntGauge {
        Metrics::global()
            .kafka_lag
            .with_label_values(&self.with(&[topic, &partition.to_string()]))
    }

    /// `sediment_kafka_committed_offset` of a partition.
    pub fn kafka_committed(&self, topic: &str, partition: i32) -> IntGauge {
        Metrics::global()
            .kafka_committed
            .with_label_values(&self.with(&[topic, &partition.to_string()]))
    }

    /// Drops the per-partition kafka series of a partition this replica no longer owns.
    pub fn forget_kafka_partition(&self, topic: &str, partition: i32) {
        let m = Metrics::global();
        let partition = partition.to_string();
        let labels = self.with(&[topic, &partition]);
        let _ = m.kafka_lag.remove_label_values(&labels);
        let _ = m.kafka_committed.remove_label_values(&labels);
    }

    /// `sediment_kafka_rebalances_total{kind}` (`assign`, `revoke`, `lost`).
    pub fn kafka_rebalances(&self, kind: &str) -> IntCounter {
        Metrics::global()
            .kafka_rebalances
            .with_label_values(&self.with(&[kind]))
    }

    /// `sediment_staging_filesystem_avail_bytes` and `..._size_bytes` of an archive sink.
    pub fn staging_filesystem(&self) -> (IntGauge, IntGauge) {
        let m = Metrics::global();
        let l = self.with(&[]);
        (
            m.staging_avail.with_label_values(&l),
            m.staging_size.with_label_values(&l),
        )
    }

    /// The archive metrics of a sink.
    pub fn archive(&self) -> ArchiveMetrics {
        let m = Metrics::global();
        let l = self.with(&[]);
        ArchiveMetrics {
            objects_created: m
                .archive_objects
                .with_label_values(&self.with(&["created"])),
            objects_already_present: m
                .archive_objects
                .with_label_values(&self.with(&["already_present"])),
            bytes: m.archive_bytes.with_label_values(&l),
            upload_duration: m.upload_duration.with_label_values(&l),
            staged_bytes: m.staged_bytes.with_label_values(&l),
            open_partitions: m.open_partitions.with_label_values(&l),
            late_events: m.late_events.with_label_values(&l),
            upload_retries: m.upload_retries.with_label_values(&l),
            damaged_members: m.damaged_members.with_label_values(&l),
        }
    }
}

/// Metric handles of one archive sink.
#[derive(Debug, Clone)]
pub struct ArchiveMetrics {
    /// Objects written by this process.
    pub objects_created: IntCounter,
    /// Objects found already written (a restart finishing an interrupted upload).
    pub objects_already_present: IntCounter,
    /// Compressed bytes archived.
    pub bytes: IntCounter,
    /// Upload durations.
    pub upload_duration: Histogram,
    /// Bytes staged and not yet archived.
    pub staged_bytes: IntGauge,
    /// Open staging segments.
    pub open_partitions: IntGauge,
    /// Events that arrived after their hour closed.
    pub late_events: IntCounter,
    /// Upload attempts that failed and will be retried.
    pub upload_retries: IntCounter,
    /// Staged members dropped as damaged.
    pub damaged_members: IntCounter,
}

/// Metric handles of one HTTP sink.
#[derive(Debug, Clone)]
pub struct HttpSinkMetrics {
    component: ComponentMetrics,
    /// `sediment_http_sink_request_duration_seconds`.
    pub duration: Histogram,
    /// `sediment_upload_retries_total`.
    pub retries: IntCounter,
}

impl HttpSinkMetrics {
    /// `sediment_http_sink_requests_total{status}`: `status` is the code, or
    /// `error` when no answer came (connection failure, timeout).
    pub fn request(&self, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        Metrics::global()
            .http_sink_requests
            .with_label_values(&self.component.with(&[&status]))
            .inc();
    }

    /// The component's own handles.
    pub fn component(&self) -> &ComponentMetrics {
        &self.component
    }
}
