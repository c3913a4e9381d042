//! `type: http` options, validated into [`ClientSettings`] and [`BatchSettings`].
//!
//! Everything that can be wrong is found here, with its YAML path: the URI and
//! its scheme, header names and values, auth, TLS files, bounds. Error messages
//! never repeat a configured value that may be a secret (header values, tokens,
//! passwords, the URI's user info or query).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use sediment_core::config::{join, parse_typed, ByteSize, ConfigDuration, ConfigError};
use sediment_core::retry::Backoff;
use sediment_core::tls::{client_config, rustls, ClientTlsOptions};
use serde::Deserialize;

/// `type: http` options as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSinkOptions {
    /// Where requests go: an `http://` or `https://` URI.
    uri: String,
    /// `post` (default) or `put`.
    #[serde(default)]
    method: Method,
    /// Extra request headers; values may use `${VAR}`.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// `Authorization`: bearer token or basic user and password.
    #[serde(default)]
    auth: Option<AuthOptions>,
    /// `ndjson` (default): one event per line; `json`: one array per request.
    #[serde(default)]
    encoding: Encoding,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    compression: Compression,
    /// gzip 1–9 (default 1), zstd 1–19 (default 3).
    #[serde(default)]
    compression_level: Option<i32>,
    /// When a request is sent.
    #[serde(default)]
    batch: BatchOptions,
    /// Timeouts, concurrency and retries.
    #[serde(default)]
    request: RequestOptions,
    /// TLS for `https` URIs.
    #[serde(default)]
    tls: Option<ClientTlsOptions>,
}

/// The request method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `POST`.
    #[default]
    Post,
    /// `PUT`.
    Put,
}

/// `auth:` of the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase", deny_unknown_fields)]
enum AuthOptions {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `Authorization: Basic`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

/// How events are laid out in a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One archive line per event, each ending in `\n` (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array of the events (`application/json`).
    Json,
}

/// The default gzip level of request bodies. A transport is not an archive:
/// on 200,000 archive lines of the benchmark (84 MB), `libdeflate-gzip -1`
/// compresses 12.3× in 0.20–0.26 s and `-6` 13.9× in 0.42–0.45 s; at level 6
/// deflate was half of a forwarding sediment's CPU samples (`perf record`
/// during `FORWARD=1 scripts/bench`), at level 1 it is 31%.
pub const DEFAULT_GZIP_LEVEL: i32 = 1;
/// The default zstd level of request bodies (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// `batch:` — a request is sent when any bound is reached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOptions {
    /// Most events in one request.
    #[serde(default = "default_max_events")]
    max_events: usize,
    /// Most bytes of events in one request, before compression.
    #[serde(default = "default_max_bytes")]
    max_bytes: ByteSize,
    /// Longest an event waits for its request to fill.
    #[serde(default = "default_batch_timeout")]
    timeout: ConfigDuration,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

/// `request:` — timeouts, concurrency and retries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestOptions {
    /// Longest one attempt may take, from connecting to the whole answer.
    #[serde(default = "default_request_timeout")]
    timeout: ConfigDuration,
    /// Requests in flight (or waiting to retry) at once.
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// Ceiling of the first retry delay.
    #[serde(default = "default_initial_backoff")]
    retry_initial_backoff: ConfigDuration,
    /// Ceiling of every retry delay.
    #[serde(default = "default_max_backoff")]
    retry_max_backoff: ConfigDuration,
}

impl Default for RequestOptions {
    fn default() -> RequestOptions {
        RequestOptions {
            timeout: default_request_timeout(),
            concurrency: default_concurrency(),
            retry_initial_backoff: default_initial_backoff(),
            retry_max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_events() -> usize {
    1000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_batch_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_request_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_concurrency() -> usize {
    4
}
fn default_initial_backoff() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_max_backoff() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}

/// Largest `batch.max_bytes`: a request body is built in memory, `concurrency` at once.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Everything one request needs: where, how, and how to retry.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The receiver.
    pub uri: Url,
    /// `POST` or `PUT`.
    pub method: Method,
    /// Every request header, `Content-Type` and `Authorization` included
    /// (`Content-Encoding` is added per compression).
    pub headers: HeaderMap,
    /// Body layout.
    pub encoding: Encoding,
    /// Body compression.
    pub compression: Compression,
    /// Its level (1–9 for gzip, 1–19 for zstd; unused for `none`).
    pub compression_level: i32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retry delays.
    pub backoff: Backoff,
    /// TLS, for `https`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientSettings {
    /// Settings for `uri` with every other option at its default (restore's `--output URL`).
    pub fn for_uri(uri: &str, path: &str) -> Result<ClientSettings, Vec<ConfigError>> {
        let value = serde_yaml::to_value(std::collections::BTreeMap::from([("uri", uri)]))
            .expect("a map of strings is YAML");
        parse(path, value).map(|(client, _)| client)
    }

    /// The URI for logs and messages: the password of its user info and the
    /// values of its query are replaced by `***`.
    pub fn display_uri(&self) -> String {
        display_uri(&self.uri)
    }
}

/// When requests are sent.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most events per request.
    pub max_events: usize,
    /// Most uncompressed bytes per request (an event larger than this goes alone).
    pub max_bytes: usize,
    /// Longest an event waits for its request to fill.
    pub timeout: Duration,
}

/// The URI with secrets replaced by `***`.
pub fn display_uri(uri: &Url) -> String {
    let mut shown = uri.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "***".to_owned()))
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// Parses and validates an `http` sink's YAML (without `type` and `inputs`).
pub fn parse(
    path: &str,
    value: serde_yaml::Value,
) -> Result<(ClientSettings, BatchSettings), Vec<ConfigError>> {
    let o: HttpSinkOptions = parse_typed(path, value)?;
    let mut errors = Vec::new();
    let at = |field: &str| join(path, field);

    let uri = match Url::parse(&o.uri) {
        Ok(uri) if !matches!(uri.scheme(), "http" | "https") => {
            errors.push(ConfigError::new(
                at("uri"),
                format!(
                    "unsupported scheme `{}`: use http:// or https://",
                    uri.scheme()
                ),
            ));
            None
        }
        Ok(uri) if uri.host_str().is_none_or(str::is_empty) => {
            errors.push(ConfigError::new(at("uri"), "has no host"));
            None
        }
        Ok(uri) => Some(uri),
        Err(e) => {
            errors.push(ConfigError::new(
                at("uri"),
                format!("is not a valid URI ({e}); expected http://host:port/path or https://…"),
            ));
            None
        }
    };

    let mut headers = HeaderMap::new();
    let content_type = match o.encoding {
        Encoding::Ndjson => "application/x-ndjson",
        Encoding::Json => "application/json",
    };
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (name, value) in &o.headers {
        let field = at(&format!("headers.{name}"));
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(ConfigError::new(field, format!("`{name}` is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")));
            continue;
        };
        if RESERVED.contains(&header.as_str()) {
            errors.push(ConfigError::new(
                field,
                format!("`{name}` is set by sediment (from `compression` and the body)"),
            ));
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.insert(header, v);
            }
            Err(_) => errors.push(ConfigError::new(
                field,
                "the value may not contain control characters such as newlines",
            )),
        }
    }
    match &o.auth {
        None => {}
        Some(auth) => match authorization(auth) {
            Ok(v) => {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            Err((field, message)) => errors.push(ConfigError::new(at(field), message)),
        },
    }

    let tls = match (&o.tls, &uri) {
        (Some(_), Some(u)) if u.scheme() == "http" => {
            errors.push(ConfigError::new(at("tls"), "applies to https:// URIs only"));
            None
        }
        (tls, Some(u)) if u.scheme() == "https" => {
            match client_config(&tls.clone().unwrap_or_default(), &at("tls")) {
                Ok(mut config) => {
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Some(Arc::new(config))
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
        _ => None,
    };

    let b = &o.batch;
    if b.max_events == 0 {
        errors.push(ConfigError::new(
            at("batch.max_events"),
            "must be at least 1",
        ));
    }
    if b.max_bytes.get() == 0 || b.max_bytes.get() > MAX_BATCH_BYTES {
        errors.push(ConfigError::new(
            at("batch.max_bytes"),
            "must be between 1 byte and 64MiB",
        ));
    }
    let r = &o.request;
    if r.concurrency == 0 || r.concurrency > 1024 {
        errors.push(ConfigError::new(
            at("request.concurrency"),
            "must be between 1 and 1024",
        ));
    }
    if r.timeout.get() < Duration::from_millis(1) {
        errors.push(ConfigError::new(
            at("request.timeout"),
            "must be at least 1ms",
        ));
    }
    if r.retry_initial_backoff.get() < Duration::from_millis(1) {
        errors.push(ConfigError::new(
            at("request.retry_initial_backoff"),
            "must be at least 1ms",
        ));
    }
    if r.retry_max_backoff.get() < r.retry_initial_backoff.get() {
        errors.push(ConfigError::new(
            at("request.retry_max_backoff"),
            "must be at least request.retry_initial_backoff",
        ));
    }
    let levels = match o.compression {
        Compression::Gzip => Some((1..=9, DEFAULT_GZIP_LEVEL)),
        Compression::Zstd => Some((1..=19, DEFAULT_ZSTD_LEVEL)),
        Compression::None => None,
    };
    let compression_level = match (levels, o.compression_level) {
        (Some((_, default)), None) => default,
        (Some((range, _)), Some(level)) if range.contains(&level) => level,
        (Some((range, _)), Some(level)) => {
            errors.push(ConfigError::new(
                at("compression_level"),
                format!(
                    "must be {} to {} for compression: {}, not {level}",
                    range.start(),
                    range.end(),
                    o.compression.name()
                ),
            ));
            0
        }
        (None, Some(_)) => {
            errors.push(ConfigError::new(
                at("compression_level"),
                "has no effect with compression: none; remove it or choose gzip or zstd",
            ));
            0
        }
        (None, None) => 0,
    };
    match uri {
        Some(uri) if errors.is_empty() => Ok((
            ClientSettings {
                uri,
                method: o.method,
                headers,
                encoding: o.encoding,
                compression: o.compression,
                compression_level,
                timeout: r.timeout.get(),
                concurrency: r.concurrency,
                backoff: Backoff::new(r.retry_initial_backoff.get(), r.retry_max_backoff.get()),
                tls,
            },
            BatchSettings {
                max_events: b.max_events,
                max_bytes: b.max_bytes.get() as usize,
                timeout: b.timeout.get(),
            },
        )),
        _ => Err(errors),
    }
}

/// Headers sediment sets itself.
const RESERVED: &[&str] = &[
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
];

fn authorization(auth: &AuthOptions) -> Result<HeaderValue, (&'static str, &'static str)> {
    let (field, value) = match auth {
        AuthOptions::Bearer { token } if token.is_empty() => {
            return Err(("auth.token", "must not be empty"))
        }
        AuthOptions::Bearer { token } => ("auth.token", format!("Bearer {token}")),
        AuthOptions::Basic { username, .. } if username.is_empty() => {
            return Err(("auth.username", "must not be empty"))
        }
        AuthOptions::Basic { username, password } => (
            "auth.password",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        ),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| (field, "may not contain control characters such as newlines"))?;
    value.set_sensitive(true);
    Ok(value)
}
