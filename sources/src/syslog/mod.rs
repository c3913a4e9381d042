//! The `syslog` source: RFC 5424 and RFC 3164 messages over UDP, TCP or TLS.
//!
//! # What an event looks like
//! `message`; `host` (the header's HOSTNAME, else the peer's IP); `app`, `procid`
//! and `msgid` when the header has them; `level` when the message has a PRI: the
//! severity's name, one of `emerg`, `alert`, `crit`, `err`, `warning`, `notice`,
//! `info`, `debug` (as syslog(3) and rsyslog spell them). `_ts` is the header time:
//! a BSD timestamp gets its year inferred from the receive time and its zone from
//! `timezone`; without a (plausible) header time it is the receive time. `_meta` =
//! `{source, source_type: "syslog", received_at, remote_addr, syslog: {facility,
//! severity, version, structured_data, peer}}`: `facility` is a name (`kern` …
//! `local7`, see [`FACILITIES`]) and `severity` the numeric code 0–7 (both only
//! with a PRI), `version` is 1 for RFC 5424 (absent for RFC 3164),
//! `structured_data` maps each SD-ID to its unescaped parameters (a repeated name
//! gives an array; absent when there is none) and `peer` is the sender's IP. Parts
//! a message does not have are left out rather than written as `null`: query
//! engines read a missing key as NULL, and the archive stays smaller.
//!
//! A message that does not parse is kept whole as `message`, with
//! `syslog.parse_error` giving the reason, and counted in
//! `sediment_syslog_parse_errors_total`; a cut one has `syslog.truncated: true`.
//! Invalid UTF-8 becomes U+FFFD: no byte sequence drops a message.
//!
//! # Framing, limits, back-pressure
//! UDP: one datagram is one message. TCP/TLS: octet counting and newlines,
//! detected per frame ([`framing`]). Messages longer than `max_message_size` are
//! cut and counted in `errors_total{error_type="truncated"}`. Each connection (or
//! the UDP socket) fills its own batch and sends it at [`pending::MAX_BATCH_EVENTS`]
//! messages, [`pending::MAX_BATCH_BYTES`] or after [`pending::BATCH_LINGER`]. A
//! source has at most [`pending::MAX_IN_FLIGHT_BATCHES`] batches sent and not yet
//! durable (their acknowledgements free the slots), which bounds memory whatever
//! the queue sizes downstream. A TCP/TLS connection waits for a slot and for room
//! in the pipeline, and does not read its socket while it waits (TCP
//! back-pressure). UDP cannot push back: a batch that finds no slot or no room is
//! dropped and counted in `discarded_events_total{reason="queue_full"}`. Senders
//! outside `permit_origin` are refused (TCP) or ignored (UDP) and counted in
//! `errors_total{error_type="origin_refused"}`.
//!
//! # Connections
//! At most `connection_limit` TCP/TLS connections are served; more wait in the
//! listen backlog. A connection that sends nothing for `idle_timeout` is closed,
//! so idle senders cannot hold the slots for ever. In tls mode a connection still
//! in its handshake gives way when every slot is taken: a new connection closes
//! the oldest handshake in progress (counted in
//! `errors_total{error_type="connection_limit"}`) rather than wait out its
//! timeout, so clients that never handshake cannot hold up real ones.
//!
//! # Durability window
//! Syslog has no acknowledgement. A message read from a socket is in a batch
//! within [`pending::BATCH_LINGER`] (20 ms), and durable once the archive sink's
//! next group commit (one fsync per round, shared by every batch in it) has taken
//! that batch: the linger plus one commit when the pipeline keeps up. At most
//! [`pending::MAX_IN_FLIGHT_BATCHES`] batches plus each connection's filling batch
//! are ever read and not yet durable. A `kill -9` loses only that tail (and what
//! sat unread in kernel socket buffers), never a message in the middle: batches
//! keep their order through the pipeline and staging appends them in order, so what
//! survives of a stream is a gap-free, duplicate-free prefix.
//!
//! # Parsing
//! [`parse`] explains why the parser is our own rather than `syslog_loose`.

mod framing;
mod parse;
mod pending;
mod record;
mod tcp;
mod time;
mod tls;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Source, Validated, ValidatedSource,
};
use sediment_core::config::{
    join, parse_typed, ByteSize, ConfigDuration, ConfigError, ListenAddress,
};
use serde::Deserialize;
use tokio_rustls::rustls::ServerConfig;

pub use framing::{Frame, Framer};
pub use parse::{parse as parse_message, ParseError, Parsed, SdElement};
pub use record::{FACILITIES, SEVERITIES};
pub use time::TimeZone;
pub use tls::TlsOptions;

/// Largest `max_message_size` accepted.
const MAX_MESSAGE_SIZE_LIMIT: u64 = 16 << 20;

/// How the source listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One message per datagram.
    Udp,
    /// Plain TCP (RFC 6587).
    Tcp,
    /// TCP with TLS (RFC 5425).
    Tls,
}

/// `type: syslog` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogOptions {
    /// `udp`, `tcp` or `tls`.
    mode: Mode,
    /// Where to listen, `host:port`; default `0.0.0.0:514`, `0.0.0.0:6514` in tls mode.
    #[serde(default)]
    address: Option<ListenAddress>,
    /// Longest message kept whole (default 64KiB); longer ones are cut and counted.
    #[serde(default = "default_max_message_size")]
    max_message_size: ByteSize,
    /// TCP/TLS connections served at once (default 256); more wait in the listen backlog.
    #[serde(default)]
    connection_limit: Option<usize>,
    /// TCP keepalive idle time (default: off).
    #[serde(default)]
    keepalive: Option<ConfigDuration>,
    /// SO_RCVBUF of the socket (default: the OS's; Linux caps it at `net.core.rmem_max`).
    #[serde(default)]
    receive_buffer_bytes: Option<ByteSize>,
    /// Addresses or CIDRs allowed to send (default: everyone).
    #[serde(default)]
    permit_origin: Vec<String>,
    /// Zone of RFC 3164 timestamps: `UTC` (default), `local` or an offset like `+02:00`.
    #[serde(default = "default_timezone")]
    timezone: String,
    /// Certificate, key and optional client CA; required in tls mode.
    #[serde(default)]
    tls: Option<TlsOptions>,

    // Connections (see `tcp`).
    /// A TCP/TLS connection that sends nothing for this long is closed (default 5m).
    #[serde(default)]
    idle_timeout: Option<ConfigDuration>,
}

fn default_max_message_size() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_timezone() -> String {
    "UTC".into()
}

/// The default `connection_limit`.
pub const DEFAULT_CONNECTION_LIMIT: usize = 256;
/// The default `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Validated `syslog` source settings.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    /// UDP, TCP or TLS.
    pub mode: Mode,
    /// Listen address.
    pub address: SocketAddr,
    /// Longest message kept whole, in bytes.
    pub max_message_size: usize,
    /// Concurrent TCP/TLS connections.
    pub connection_limit: usize,
    /// TCP keepalive idle time.
    pub keepalive: Option<Duration>,
    /// SO_RCVBUF.
    pub receive_buffer_bytes: Option<usize>,
    /// Allowed senders; empty allows everyone.
    pub permit_origin: Vec<IpNet>,
    /// Zone of RFC 3164 timestamps.
    pub timezone: TimeZone,
    /// The TLS server configuration (tls mode).
    pub tls: Option<Arc<ServerConfig>>,

    // Connections.
    /// A TCP/TLS connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl SyslogSettings {
    /// Whether `ip` may send.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.permit_origin.is_empty() || self.permit_origin.iter().any(|net| net.contains(&ip))
    }
}

/// Registry entry for `type: syslog`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Source,
        type_name: "syslog",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let o: SyslogOptions = parse_typed(&cx.path, value)?;
    validate(&cx.path, o).map(|s| Validated::Source(Box::new(s)))
}

/// Turns options into settings, collecting every problem with its YAML path.
fn validate(path: &str, o: SyslogOptions) -> Result<SyslogSettings, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut error =
        |field: &str, message: String| errors.push(ConfigError::new(join(path, field), message));
    let stream = o.mode != Mode::Udp;
    if !(1..=MAX_MESSAGE_SIZE_LIMIT).contains(&o.max_message_size.get()) {
        error(
            "max_message_size",
            "must be between 1 byte and 16MiB".into(),
        );
    }
    if !stream && o.connection_limit.is_some() {
        error(
            "connection_limit",
            "applies to tcp and tls modes only".into(),
        );
    }
    if o.connection_limit == Some(0) {
        error("connection_limit", "must be at least 1".into());
    }
    match o.keepalive {
        Some(_) if !stream => error("keepalive", "applies to tcp and tls modes only".into()),
        Some(k) if k.get() < Duration::from_secs(1) => {
            error("keepalive", "must be at least 1s".into())
        }
        _ => {}
    }
    match o.idle_timeout {
        Some(_) if !stream => error("idle_timeout", "applies to tcp and tls modes only".into()),
        Some(t) if t.get() < Duration::from_millis(1) => {
            error("idle_timeout", "must be at least 1ms".into())
        }
        _ => {}
    }
    if o.receive_buffer_bytes
        .is_some_and(|b| b.get() == 0 || b.get() > i32::MAX as u64)
    {
        error(
            "receive_buffer_bytes",
            "must be between 1 byte and 2GiB".into(),
        );
    }
    let mut permit_origin = Vec::new();
    for (i, text) in o.permit_origin.iter().enumerate() {
        match parse_cidr(text) {
            Some(net) => permit_origin.push(net),
            None => error(
                &format!("permit_origin[{i}]"),
                format!("invalid address or CIDR `{text}`: expected e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8"),
            ),
        }
    }
    let timezone = TimeZone::parse(&o.timezone).unwrap_or_else(|e| {
        error("timezone", e);
        TimeZone::Utc
    });
    let tls = match (&o.tls, o.mode) {
        (None, Mode::Tls) => {
            error(
                "tls",
                "is required in tls mode: set crt_file and key_file".into(),
            );
            None
        }
        (Some(_), Mode::Udp | Mode::Tcp) => {
            error("tls", "applies to tls mode only".into());
            None
        }
        (Some(t), Mode::Tls) => match tls::server_config(t, &join(path, "tls")) {
            Ok(config) => Some(config),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        (None, _) => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let default_port = if o.mode == Mode::Tls { 6514 } else { 514 };
    Ok(SyslogSettings {
        mode: o.mode,
        address: o
            .address
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], default_port)), |a| a.0),
        max_message_size: o.max_message_size.get() as usize,
        connection_limit: o.connection_limit.unwrap_or(DEFAULT_CONNECTION_LIMIT),
        keepalive: o.keepalive.map(ConfigDuration::get),
        receive_buffer_bytes: o.receive_buffer_bytes.map(|b| b.get() as usize),
        permit_origin,
        timezone,
        tls,
        idle_timeout: o
            .idle_timeout
            .map_or(DEFAULT_IDLE_TIMEOUT, ConfigDuration::get),
    })
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address.
fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

#[async_trait]
impl ValidatedSource for SyslogSettings {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(match self.mode {
            Mode::Udp => Box::new(udp::UdpSource::bind(*self, cx)?),
            Mode::Tcp | Mode::Tls => Box::new(tcp::TcpSource::bind(*self, cx)?),
        })
    }
}

#[cfg(test)]
mod tests;
