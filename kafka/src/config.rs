//! `type: kafka` options, validated into a librdkafka configuration.
//!
//! librdkafka itself checks every property when the configuration is built, so
//! a misspelt `librdkafka_options` key or a bad value is a `validate` error with
//! its YAML path, not a failure at start-up. Properties sediment sets for its
//! exactly-once design (offset commits, the assignor) cannot be overridden.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use sediment_core::config::{join, parse_typed, ConfigError};
use sediment_core::event::DEFAULT_TIMESTAMP_FIELDS;
use serde::Deserialize;

/// `type: kafka` options as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaOptions {
    /// `host:port` of one or more brokers, comma-separated or as a list.
    bootstrap_servers: Servers,
    /// Topics to consume.
    topics: Vec<String>,
    /// The consumer group replicas share partitions through.
    group_id: String,
    /// The client id brokers log (default `sediment`).
    #[serde(default)]
    client_id: Option<String>,
    /// Static membership: a restart within the session timeout keeps the partitions.
    #[serde(default)]
    group_instance_id: Option<String>,
    /// Where a group without a committed offset starts.
    #[serde(default)]
    auto_offset_reset: OffsetReset,
    /// SASL authentication.
    #[serde(default)]
    sasl: Option<SaslOptions>,
    /// TLS to the brokers.
    #[serde(default)]
    tls: Option<TlsOptions>,
    /// Other librdkafka properties, passed through.
    #[serde(default)]
    librdkafka_options: BTreeMap<String, String>,
    /// `json`: a record value that is a JSON object is the event (else
    /// `{"message": …}`); `text`: always `{"message": …}`.
    #[serde(default)]
    decoding: Decoding,
    /// Fields tried, in order, for the event time (else the record's timestamp).
    #[serde(default = "default_timestamp_fields")]
    timestamp_fields: Vec<String>,
    /// Records sent downstream and not yet in storage, at most (see
    /// [`KafkaSettings::max_unstored_records`]).
    #[serde(default = "default_max_unstored_records")]
    max_unstored_records: u64,
}

fn default_max_unstored_records() -> u64 {
    DEFAULT_MAX_UNSTORED_RECORDS
}

/// The default of `max_unstored_records`.
pub const DEFAULT_MAX_UNSTORED_RECORDS: u64 = 500_000;

/// Records librdkafka prefetches per replica, at most (`queued.max.messages.kbytes`;
/// librdkafka's default is 64 MiB): 1 MiB is some 7,500 loghub lines, tens of
/// milliseconds of consumption, which hides a fetch's round trip. On the bench,
/// 2 MiB read no faster and peaked at 54–62 MiB against 47–50. librdkafka
/// derives `fetch.max.bytes` from it (at least `message.max.bytes`), so a
/// fetch response is no larger.
pub const PREFETCH_KBYTES: &str = "1024";
/// How long a partition's fetching waits when the prefetch queue is full
/// (`fetch.queue.backoff.ms`). librdkafka's default, 1 s, made a replica that
/// consumes faster than that empty the queue and idle for the rest of the
/// second: consumption came in bursts, and `scripts/bench-kafka` read ~106,000
/// records/s where 10 ms gives 185,000–203,000.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Servers {
    One(String),
    Many(Vec<String>),
}

/// `auto_offset_reset`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

/// How record values become events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// JSON objects as events, anything else as `message`.
    #[default]
    Json,
    /// Always `message`.
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaslOptions {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    mechanism: SaslMechanism,
    username: String,
    password: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsOptions {
    /// CA certificates to trust for the brokers.
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// A client certificate (with `key_file`).
    #[serde(default)]
    crt_file: Option<PathBuf>,
    /// The client certificate's key.
    #[serde(default)]
    key_file: Option<PathBuf>,
}

fn default_timestamp_fields() -> Vec<String> {
    DEFAULT_TIMESTAMP_FIELDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Validated `kafka` source settings.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// The librdkafka configuration (secrets included; never printed).
    pub client: ClientConfig,
    /// Brokers, for messages.
    pub servers: String,
    /// Topics.
    pub topics: Vec<String>,
    /// The group, for messages.
    pub group_id: String,
    /// Record values.
    pub decoding: Decoding,
    /// Event-time fields.
    pub timestamp_fields: Vec<String>,
    /// Records read and sent downstream whose objects are not in storage yet,
    /// at most: at the limit the partitions pause and the archive sinks upload
    /// what they hold of them at once, instead of at `late_flush_interval`.
    /// It bounds the staging disk a stalled storage can fill.
    pub max_unstored_records: u64,
}

/// Properties sediment sets itself.
const OWN: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "group.protocol",
];

/// Parses and validates a `kafka` source's YAML.
pub fn parse(path: &str, value: serde_yaml::Value) -> Result<KafkaSettings, Vec<ConfigError>> {
    let o: KafkaOptions = parse_typed(path, value)?;
    let at = |f: &str| join(path, f);
    let mut errors = Vec::new();
    let servers = match o.bootstrap_servers {
        Servers::One(s) => s,
        Servers::Many(v) => v.join(","),
    };
    if servers.split(',').all(|s| s.trim().is_empty()) {
        errors.push(ConfigError::new(
            at("bootstrap_servers"),
            "names no broker (host:port)",
        ));
    }
    if o.topics.is_empty() || o.topics.iter().any(|t| !valid_topic(t)) {
        errors.push(ConfigError::new(
            at("topics"),
            "needs at least one topic name (letters, digits, `.`, `_` and `-`, at most 249)",
        ));
    }
    if o.group_id.trim().is_empty() {
        errors.push(ConfigError::new(at("group_id"), "must not be empty"));
    }
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &servers)
        .set("group.id", &o.group_id)
        .set("client.id", o.client_id.as_deref().unwrap_or("sediment"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match o.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("statistics.interval.ms", "5000");
    if let Some(id) = &o.group_instance_id {
        client.set("group.instance.id", id);
    }
    let mut protocol = "plaintext";
    if let Some(sasl) = &o.sasl {
        protocol = "sasl_plaintext";
        client
            .set(
                "sasl.mechanism",
                match sasl.mechanism {
                    SaslMechanism::Plain => "PLAIN",
                    SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                    SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
                },
            )
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password);
    }
    if let Some(tls) = &o.tls {
        protocol = if o.sasl.is_some() { "sasl_ssl" } else { "ssl" };
        for (field, file, property) in [
            ("tls.ca_file", &tls.ca_file, "ssl.ca.location"),
            ("tls.crt_file", &tls.crt_file, "ssl.certificate.location"),
            ("tls.key_file", &tls.key_file, "ssl.key.location"),
        ] {
            if let Some(file) = file {
                if let Err(e) = std::fs::metadata(file) {
                    errors.push(ConfigError::new(
                        at(field),
                        format!("cannot read {}: {e}", file.display()),
                    ));
                }
                client.set(property, file.display().to_string());
            }
        }
        if tls.crt_file.is_some() != tls.key_file.is_some() {
            errors.push(ConfigError::new(
                at("tls"),
                "crt_file and key_file go together",
            ));
        }
    }
    client.set("security.protocol", protocol);
    for (key, value) in &o.librdkafka_options {
        let field = at(&format!("librdkafka_options.{key}"));
        if OWN.contains(&key.as_str()) {
            errors.push(ConfigError::new(
                field,
                format!("`{key}` is set by sediment"),
            ));
            continue;
        }
        client.set(key, value);
    }
    if errors.is_empty() {
        // librdkafka checks every property name and value now.
        if let Err(e) = client.create_native_config() {
            errors.push(ConfigError::new(
                at("librdkafka_options"),
                librdkafka_error(&e),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(KafkaSettings {
        client,
        servers,
        topics: o.topics,
        group_id: o.group_id,
        decoding: o.decoding,
        timestamp_fields: o.timestamp_fields,
        max_unstored_records: o.max_unstored_records.max(1),
    })
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// librdkafka's message for a rejected property, without the value (it may be a secret).
fn librdkafka_error(e: &rdkafka::error::KafkaError) -> String {
    let text = e.to_string();
    // "Client config error: No such configuration property: \"foo\" foo bar" →
    // keep what librdkafka says is wrong, which names the property, not the value.
    let text = text.trim_start_matches("Client config error: ");
    match text.rsplit_once(' ') {
        Some((head, _)) if text.contains("Invalid value") => format!("{head} (value not shown)"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        parse("sources.k", serde_yaml::from_str(yaml).unwrap())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn prefetch_is_bounded_and_refilled_without_librdkafkas_one_second_backoff() {
        let parsed = |yaml: &str| parse("sources.k", serde_yaml::from_str(yaml).unwrap()).unwrap();
        let defaults = parsed("{bootstrap_servers: a:9092, topics: [logs], group_id: g}");
        assert_eq!(
            defaults.client.get("queued.max.messages.kbytes"),
            Some("1024")
        );
        // librdkafka sizes fetches by the prefetch; a set value could refuse a large message.max.bytes.
        assert_eq!(defaults.client.get("fetch.max.bytes"), None);
        assert_eq!(defaults.client.get("fetch.queue.backoff.ms"), Some("10"));
        // An operator with a distant broker may prefetch more.
        let tuned = parsed("{bootstrap_servers: a:9092, topics: [logs], group_id: g, librdkafka_options: {queued.max.messages.kbytes: '65536', fetch.queue.backoff.ms: '100'}}");
        assert_eq!(
            tuned.client.get("queued.max.messages.kbytes"),
            Some("65536")
        );
        assert_eq!(tuned.client.get("fetch.queue.backoff.ms"), Some("100"));
    }

    #[test]
    fn options_validate_with_yaml_paths_and_librdkafka_checks_its_own() {
        let ok = parse(
            "sources.k",
            serde_yaml::from_str("{bootstrap_servers: [a:9092, b:9092], topics: [logs], group_id: g, librdkafka_options: {session.timeout.ms: '6000'}}").unwrap(),
        )
        .unwrap();
        assert_eq!(ok.servers, "a:9092,b:9092");
        assert_eq!(
            ok.client.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(
            errors("{bootstrap_servers: a:1, topics: [], group_id: g}")[0]
                .split(':')
                .next(),
            Some("sources.k.topics")
        );
        assert!(errors("{bootstrap_servers: a:1, topics: [t], group_id: g, librdkafka_options: {enable.auto.commit: 'true'}}")[0]
            .starts_with("sources.k.librdkafka_options.enable.auto.commit: `enable.auto.commit` is set by sediment"));
        let bad = errors("{bootstrap_servers: a:1, topics: [t], group_id: g, librdkafka_options: {no.such.property: x}}");
        assert!(
            bad[0].starts_with("sources.k.librdkafka_options:")
                && bad[0].contains("no.such.property"),
            "{bad:?}"
        );
        let secret = errors("{bootstrap_servers: a:1, topics: [t], group_id: g, librdkafka_options: {session.timeout.ms: s3cr3t}}");
        assert!(!secret[0].contains("s3cr3t"), "{secret:?}");
        assert!(errors(
            "{bootstrap_servers: a:1, topics: [t], group_id: g, tls: {ca_file: /nonexistent}}"
        )[0]
        .starts_with("sources.k.tls.ca_file: cannot read /nonexistent"));
    }
}
