//! The `http` source: `POST` logs to `path` (NDJSON, JSON, text) or Mezmo-style
//! to `/logs/ingest`; answers 200 only once every event is durable in every sink.

#[cfg(test)]
mod allocations;
mod auth;
mod body;
mod budget;
mod chunks;
mod deadline;
mod decode;
pub mod idempotency;
mod listener;
#[cfg(test)]
mod props;
mod respond;
mod send;
mod server;
mod stamper;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Source, Validated, ValidatedSource,
};
use sediment_core::config::{
    join, parse_typed, ByteSize, ConfigDuration, ConfigError, ListenAddress,
};
use sediment_core::event::DEFAULT_TIMESTAMP_FIELDS;
use sediment_core::tls::rustls::ServerConfig;
use sediment_core::tls::{server_config, ServerTlsOptions};
use serde::Deserialize;

pub use decode::{BodyError, Format};

/// The Mezmo-compatible ingestion path.
pub const MEZMO_PATH: &str = "/logs/ingest";

/// `type: http` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpOptions {
    /// Where to listen, `host:port`.
    address: ListenAddress,
    /// The path that takes NDJSON, JSON and text bodies.
    #[serde(default = "default_path")]
    path: String,
    /// Largest body accepted, after decompression; larger gets 413.
    #[serde(default = "default_max_body_size")]
    max_body_size: ByteSize,
    /// Requests processed at once; beyond, requests wait up to `queue_timeout`.
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    /// How long a request may wait for room in the pipeline before a 503.
    #[serde(default = "default_queue_timeout")]
    queue_timeout: ConfigDuration,
    /// Optional authentication.
    #[serde(default)]
    auth: Option<AuthOptions>,
    /// Request headers copied into `_meta.headers`.
    #[serde(default)]
    headers: Vec<String>,
    /// Fields tried, in order, for the event time.
    #[serde(default = "default_timestamp_fields")]
    timestamp_fields: Vec<String>,
    /// Keep a client's `_meta` object instead of replacing it with sediment's
    /// (for re-ingesting restored lines); never on `/logs/ingest`.
    #[serde(default)]
    trust_meta: bool,
    /// What request bodies and their events may hold in memory at once.
    #[serde(default = "default_memory_limit")]
    memory_limit: ByteSize,
    /// How long a client may take to send its body.
    #[serde(default = "default_request_timeout")]
    request_timeout: ConfigDuration,
    /// Most distinct event hours in one request.
    #[serde(default = "default_max_hours_per_request")]
    max_hours_per_request: usize,
    /// Most events (or lines) in one request; more gets 413.
    #[serde(default = "default_max_events_per_request")]
    max_events_per_request: usize,

    // Connections (see `listener`).
    /// Time a client has, from connecting (TLS handshake included) or from the
    /// first byte of a later request on the connection, to send a whole request head.
    #[serde(default = "default_header_timeout")]
    header_timeout: ConfigDuration,
    /// How long a keep-alive connection may wait for its next request.
    #[serde(default = "default_idle_timeout")]
    idle_timeout: ConfigDuration,
    /// Connections open at once (default: half the process's file-descriptor
    /// limit, at most [`listener::DEFAULT_MAX_CONNECTIONS`]).
    #[serde(default)]
    max_connections: Option<usize>,
    /// Serve HTTPS with this certificate; `ca_file` requires client certificates.
    #[serde(default)]
    tls: Option<ServerTlsOptions>,
}

/// `auth:` — bearer tokens or one basic-auth user.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthOptions {
    /// `Authorization: Bearer <token>` with any of `tokens`.
    Bearer {
        /// Accepted tokens.
        tokens: Vec<String>,
    },
    /// `Authorization: Basic` with this user and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

fn default_path() -> String {
    "/".into()
}
fn default_max_body_size() -> ByteSize {
    ByteSize(10 << 20)
}
fn default_max_in_flight() -> usize {
    16
}
fn default_queue_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_memory_limit() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_request_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_max_hours_per_request() -> usize {
    48
}
fn default_max_events_per_request() -> usize {
    1_000_000
}
fn default_header_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_timestamp_fields() -> Vec<String> {
    DEFAULT_TIMESTAMP_FIELDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Validated `http` source settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub address: std::net::SocketAddr,
    /// Ingestion path.
    pub path: String,
    /// Body limit in bytes.
    pub max_body_size: u64,
    /// Concurrent requests.
    pub max_in_flight: usize,
    /// Wait for pipeline room.
    pub queue_timeout: Duration,
    /// Authentication.
    pub auth: Option<AuthOptions>,
    /// Header names to keep, lowercased.
    pub headers: Vec<String>,
    /// Event-time fields.
    pub timestamp_fields: Vec<String>,
    /// Keep a client's `_meta` object on `path` (never on `/logs/ingest`).
    pub trust_meta: bool,
    /// Bytes request bodies and their events may hold at once.
    pub memory_limit: u64,
    /// Time allowed for a body to arrive.
    pub request_timeout: Duration,
    /// Most distinct event hours in one request.
    pub max_hours_per_request: usize,
    /// Most events in one request.
    pub max_events_per_request: usize,

    // Connections.
    /// Time for a whole request head (and the TLS handshake on a new connection).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once; `None`: derived from the fd limit at start.
    pub max_connections: Option<usize>,
    /// The TLS server configuration (HTTPS), loaded at validation.
    pub tls: Option<Arc<ServerConfig>>,
}

/// Registry entry for `type: http`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Source,
        type_name: "http",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let o: HttpOptions = parse_typed(&cx.path, value)?;
    let mut errors = Vec::new();
    if !o.path.starts_with('/') || o.path == MEZMO_PATH {
        errors.push(ConfigError::new(
            join(&cx.path, "path"),
            format!("must start with `/` and differ from `{MEZMO_PATH}`"),
        ));
    }
    if o.max_in_flight == 0 {
        errors.push(ConfigError::new(
            join(&cx.path, "max_in_flight"),
            "must be at least 1",
        ));
    }
    if o.memory_limit.get() < o.max_body_size.get() {
        errors.push(ConfigError::new(
            join(&cx.path, "memory_limit"),
            format!(
                "must be at least max_body_size ({} bytes), or a body of that size could never be accepted",
                o.max_body_size.get()
            ),
        ));
    }
    if o.max_events_per_request == 0 {
        errors.push(ConfigError::new(
            join(&cx.path, "max_events_per_request"),
            "must be at least 1",
        ));
    }
    if o.max_hours_per_request == 0 {
        errors.push(ConfigError::new(
            join(&cx.path, "max_hours_per_request"),
            "must be at least 1",
        ));
    }
    if o.request_timeout.get().is_zero() {
        errors.push(ConfigError::new(
            join(&cx.path, "request_timeout"),
            "must be more than 0s",
        ));
    }
    match &o.auth {
        Some(AuthOptions::Bearer { tokens })
            if tokens.is_empty() || tokens.iter().any(String::is_empty) =>
        {
            errors.push(ConfigError::new(
                join(&cx.path, "auth.tokens"),
                "needs at least one non-empty token",
            ));
        }
        Some(AuthOptions::Basic { username, .. }) if username.is_empty() => {
            errors.push(ConfigError::new(
                join(&cx.path, "auth.username"),
                "must not be empty",
            ));
        }
        _ => {}
    }
    for (field, value) in [
        ("header_timeout", o.header_timeout.get()),
        ("idle_timeout", o.idle_timeout.get()),
    ] {
        if value < Duration::from_millis(1) {
            errors.push(ConfigError::new(
                join(&cx.path, field),
                "must be at least 1ms",
            ));
        }
    }
    if o.max_connections == Some(0) {
        errors.push(ConfigError::new(
            join(&cx.path, "max_connections"),
            "must be at least 1",
        ));
    }
    let tls = match &o.tls {
        Some(t) => match server_config(t, &join(&cx.path, "tls")) {
            Ok(config) => Some(config),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated::Source(Box::new(HttpSettings {
        address: o.address.0,
        path: o.path,
        max_body_size: o.max_body_size.get(),
        max_in_flight: o.max_in_flight,
        queue_timeout: o.queue_timeout.get(),
        auth: o.auth,
        headers: o.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        timestamp_fields: o.timestamp_fields,
        trust_meta: o.trust_meta,
        memory_limit: o.memory_limit.get(),
        request_timeout: o.request_timeout.get(),
        max_hours_per_request: o.max_hours_per_request,
        max_events_per_request: o.max_events_per_request,
        header_timeout: o.header_timeout.get(),
        idle_timeout: o.idle_timeout.get(),
        max_connections: o.max_connections,
        tls,
    })))
}

#[async_trait]
impl ValidatedSource for HttpSettings {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(server::HttpSource::bind(*self, cx).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let cx = ParseContext {
            id: "http_in".into(),
            path: "sources.http_in".into(),
        };
        match parse(&cx, serde_yaml::from_str(yaml).unwrap()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn connection_options_are_validated_with_their_yaml_paths() {
        let base = "address: 127.0.0.1:0\n";
        assert!(errors(&format!(
            "{base}header_timeout: 2s\nidle_timeout: 90s\nmax_connections: 10"
        ))
        .is_empty());
        assert_eq!(
            errors(&format!(
                "{base}header_timeout: 0s\nidle_timeout: 0ms\nmax_connections: 0"
            )),
            [
                "sources.http_in.header_timeout: must be at least 1ms",
                "sources.http_in.idle_timeout: must be at least 1ms",
                "sources.http_in.max_connections: must be at least 1",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{base}tls: {{crt_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}}"
            )),
            ["sources.http_in.tls.crt_file: cannot read /nonexistent/c.pem: No such file or directory (os error 2)"]
        );
        assert!(
            errors(&format!("{base}tls: {{crt_file: a, key_file: b, ca: c}}"))[0]
                .starts_with("sources.http_in.tls.ca: unknown field `ca`")
        );
    }
}
