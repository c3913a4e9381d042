//! From one framed message to one event: its fields, `_ts` and `_meta`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use sediment_core::Event;
use serde_json::{Map, Value};

use super::parse::{self, ParseContext, Parsed};
use super::time::TimeZone;

/// `level` names by severity code (RFC 5424 §6.2.1, as syslog(3) and rsyslog spell them).
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// `_meta.syslog.facility` names by facility code (RFC 5424 §6.2.1, rsyslog's names).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// The peer a message came from: fixed per connection, or per datagram.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `ip:port`, for `_meta.remote_addr`.
    pub remote_addr: String,
    /// The IP alone, for `_meta.syslog.peer` and `host` when the message names none.
    pub peer_ip: String,
}

impl Origin {
    /// The origin of a socket peer.
    pub fn of(peer: std::net::SocketAddr) -> Origin {
        Origin {
            remote_addr: peer.to_string(),
            peer_ip: peer.ip().to_canonical().to_string(),
        }
    }
}

/// What the messages of one read (or one datagram) share.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// Who sent them.
    pub origin: &'a Origin,
    /// When they were read, milliseconds since the epoch.
    pub now_ms: i64,
    /// `now_ms` as RFC 3339, formatted once per read.
    pub received_at: &'a str,
}

/// One built event and what it costs in metrics.
#[derive(Debug)]
pub struct Built {
    /// The event.
    pub event: Event,
    /// The message did not parse (it is kept whole in `message`).
    pub parse_error: bool,
}

/// Builds the events of one source.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    /// The source id as a JSON string, written into every `_meta`.
    source: String,
    zone: TimeZone,
}

impl EventBuilder {
    /// A builder for the source `id`, reading zone-less timestamps in `zone`.
    pub fn new(id: &str, zone: TimeZone) -> EventBuilder {
        EventBuilder {
            source: serde_json::to_string(id).unwrap_or_default(),
            zone,
        }
    }

    /// The event for one message; `None` for a message that is empty once its
    /// trailing line end is removed (a blank line carries nothing to keep).
    pub fn build(&self, raw: &[u8], truncated: bool, arrival: &Arrival<'_>) -> Option<Built> {
        let end = raw
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
            .map_or(0, |i| i + 1);
        let line = &raw[..end];
        if line.is_empty() {
            return None;
        }
        let cx = ParseContext {
            now_ms: arrival.now_ms,
            zone: self.zone,
        };
        let (parsed, error) = match parse::parse(line, &cx) {
            Ok(p) => (p, None),
            Err(e) => (
                Parsed {
                    pri: e.pri,
                    message: line,
                    ..Parsed::default()
                },
                Some(e.reason),
            ),
        };
        let event = self.event(&parsed, error, truncated, arrival);
        Some(Built {
            event,
            parse_error: error.is_some(),
        })
    }

    fn event(
        &self,
        p: &Parsed<'_>,
        error: Option<&'static str>,
        truncated: bool,
        arrival: &Arrival<'_>,
    ) -> Event {
        // An implausible header time (before 1971, a device without a clock)
        // becomes the receive time, as for any other source.
        let time_ms = p
            .time_ms
            .and_then(sediment_core::event::plausible)
            .unwrap_or(arrival.now_ms);
        ARENA.with(|arena| {
            let mut buf = arena.borrow_mut();
            if buf.capacity() - buf.len() < MAX_EVENT_GUESS {
                buf.reserve(ARENA_BLOCK);
            }
            let text = self.fields(p, arrival, &mut buf);
            let meta = self.meta(p, error, truncated, arrival, &mut buf);
            Event::from_json_parts(text, meta, time_ms)
        })
    }

    /// `{"message":…,"host":…,"app":…,"procid":…,"msgid":…,"level":…}`, the
    /// absent parts left out.
    fn fields(&self, p: &Parsed<'_>, arrival: &Arrival<'_>, buf: &mut BytesMut) -> Bytes {
        buf.put_slice(b"{\"message\":");
        string(buf, &text(p.message));
        buf.put_slice(b",\"host\":");
        match p.hostname {
            Some(h) => string(buf, &text(h)),
            None => string(buf, &arrival.origin.peer_ip),
        }
        for (name, value) in [
            (&b",\"app\":"[..], p.app),
            (b",\"procid\":", p.procid),
            (b",\"msgid\":", p.msgid),
        ] {
            if let Some(value) = value {
                buf.put_slice(name);
                string(buf, &text(value));
            }
        }
        if let Some(pri) = p.pri {
            buf.put_slice(b",\"level\":\"");
            buf.put_slice(SEVERITIES[usize::from(pri & 7)].as_bytes());
            buf.put_u8(b'"');
        }
        buf.put_u8(b'}');
        buf.split().freeze()
    }

    /// `_meta`: `{"source","source_type","received_at","remote_addr","syslog":{…}}`.
    fn meta(
        &self,
        p: &Parsed<'_>,
        error: Option<&'static str>,
        truncated: bool,
        arrival: &Arrival<'_>,
        buf: &mut BytesMut,
    ) -> Bytes {
        buf.put_slice(b"{\"source\":");
        buf.put_slice(self.source.as_bytes());
        buf.put_slice(b",\"source_type\":\"syslog\",\"received_at\":");
        string(buf, arrival.received_at);
        buf.put_slice(b",\"remote_addr\":");
        string(buf, &arrival.origin.remote_addr);
        buf.put_slice(b",\"syslog\":{");
        if let Some(pri) = p.pri {
            buf.put_slice(b"\"facility\":\"");
            buf.put_slice(FACILITIES[usize::from(pri >> 3)].as_bytes());
            buf.put_slice(b"\",\"severity\":");
            let _ = write!(buf, "{}", pri & 7);
            buf.put_u8(b',');
        }
        if let Some(version) = p.version {
            buf.put_slice(b"\"version\":");
            let _ = write!(buf, "{version}");
            buf.put_u8(b',');
        }
        if !p.structured_data.is_empty() {
            buf.put_slice(b"\"structured_data\":");
            // Rare enough, and merging repeated names needs the map.
            let sd = structured_data(p);
            let _ = serde_json::to_writer((&mut *buf).writer(), &sd);
            buf.put_u8(b',');
        }
        buf.put_slice(b"\"peer\":");
        string(buf, &arrival.origin.peer_ip);
        if let Some(reason) = error {
            buf.put_slice(b",\"parse_error\":");
            string(buf, reason);
        }
        if truncated {
            buf.put_slice(b",\"truncated\":true");
        }
        buf.put_slice(b"}}");
        buf.split().freeze()
    }
}

/// The buffer events are written into, one block shared by many events
/// (each holds a slice of it): no allocation per event.
const ARENA_BLOCK: usize = 64 * 1024;
/// Room to leave for one event before writing it (a larger one grows the block).
const MAX_EVENT_GUESS: usize = 4096;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it.
fn string(buf: &mut BytesMut, s: &str) {
    let _ = serde_json::to_writer((&mut *buf).writer(), s);
}

/// Bytes as text; invalid UTF-8 becomes U+FFFD rather than losing the message.
fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// `{"SD-ID": {"name": "value", …}, …}`; a repeated name collects its values in an array.
fn structured_data(p: &Parsed<'_>) -> Value {
    let mut out = Map::new();
    for element in &p.structured_data {
        let entry = out
            .entry(text(element.id).into_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(params) = entry else {
            continue;
        };
        for (name, value) in &element.params {
            let value = Value::String(text(value).into_owned());
            match params.get_mut(&*text(name)) {
                Some(Value::Array(values)) => values.push(value),
                Some(previous) => {
                    let first = previous.take();
                    *previous = Value::Array(vec![first, value]);
                }
                None => {
                    params.insert(text(name).into_owned(), value);
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[path = "record_reference.rs"]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(raw: &[u8]) -> Option<Built> {
        let origin = Origin::of("10.1.2.3:5140".parse().unwrap());
        let arrival = Arrival {
            origin: &origin,
            now_ms: 1_718_452_800_000,
            received_at: "2024-06-15T12:00:00.000Z",
        };
        EventBuilder::new("syslog_in", TimeZone::Utc).build(raw, false, &arrival)
    }

    #[test]
    fn rfc5424_event_fields() {
        let built = build(br#"<165>1 2003-10-11T22:14:15.003Z web01 app 42 ID7 [a@1 x="1" x="2"][b@2 y="\]"] hi there"#).unwrap();
        let f = &built.event.fields();
        assert!(!built.parse_error);
        assert_eq!(f["message"], "hi there");
        assert_eq!(
            (
                &f["host"],
                &f["app"],
                &f["procid"],
                &f["msgid"],
                &f["level"]
            ),
            (
                &json!("web01"),
                &json!("app"),
                &json!("42"),
                &json!("ID7"),
                &json!("notice")
            )
        );
        assert_eq!(f["_ts"], "2003-10-11T22:14:15.003Z");
        assert_eq!(built.event.time_ms, 1_065_910_455_003);
        assert_eq!(
            f["_meta"],
            json!({"source": "syslog_in", "source_type": "syslog", "received_at": "2024-06-15T12:00:00.000Z",
                   "remote_addr": "10.1.2.3:5140",
                   "syslog": {"facility": "local4", "severity": 5, "version": 1,
                              "structured_data": {"a@1": {"x": ["1", "2"]}, "b@2": {"y": "]"}}, "peer": "10.1.2.3"}})
        );
        assert_eq!(f["_id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn unparsed_lines_are_kept_whole_with_the_reason() {
        let built = build(b"not syslog \xff at all\r\n").unwrap();
        let f = &built.event.fields();
        assert!(built.parse_error);
        assert_eq!(f["message"], "not syslog \u{fffd} at all");
        assert_eq!(
            f["host"], "10.1.2.3",
            "the peer stands in for the missing host name"
        );
        assert_eq!(f["_ts"], "2024-06-15T12:00:00.000Z", "receive time");
        assert_eq!(
            f["_meta"]["syslog"],
            json!({"peer": "10.1.2.3", "parse_error": "no PRI and no timestamp: not a syslog message"})
        );
        let absent: Vec<&str> = ["app", "procid", "msgid", "level"]
            .into_iter()
            .filter(|k| !f.contains_key(*k))
            .collect();
        assert_eq!(
            absent,
            ["app", "procid", "msgid", "level"],
            "absent parts are left out"
        );
        let built = build(b"<13>1 2003-99-11T22:14:15Z h a - - - x").unwrap();
        assert_eq!(
            built.event.fields()["level"],
            "notice",
            "a valid PRI is still used"
        );
        assert_eq!(
            built.event.fields()["message"],
            "<13>1 2003-99-11T22:14:15Z h a - - - x"
        );
    }

    #[test]
    fn rfc3164_event_fields() {
        let built = build(b"<38>Jun 15 11:59:00 web01 sshd[42]: Accepted key").unwrap();
        let f = &built.event.fields();
        let keys: Vec<&str> = f.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["message", "host", "app", "procid", "level", "_id", "_ts", "_meta"]
        );
        assert_eq!(
            (&f["app"], &f["procid"], &f["level"]),
            (&json!("sshd"), &json!("42"), &json!("info"))
        );
        assert_eq!(f["_ts"], "2024-06-15T11:59:00.000Z");
        assert_eq!(
            f["_meta"]["syslog"],
            json!({"facility": "auth", "severity": 6, "peer": "10.1.2.3"})
        );
    }

    #[test]
    fn blank_messages_are_skipped_and_implausible_times_replaced() {
        assert!(build(b"\r\n").is_none());
        let built = build(b"<13>1 1970-01-01T00:00:01Z h a - - - boot").unwrap();
        assert_eq!(built.event.fields()["_ts"], "2024-06-15T12:00:00.000Z");
    }

    #[test]
    fn text_events_write_the_lines_the_map_built() {
        let origin = Origin::of("[::ffff:10.1.2.3]:5140".parse().unwrap());
        let arrival = Arrival {
            origin: &origin,
            now_ms: 1_718_452_800_000,
            received_at: "2024-06-15T12:00:00.000Z",
        };
        let builder = EventBuilder::new("sys\"log", TimeZone::Utc);
        let messages: [&[u8]; 9] = [
            br#"<165>1 2003-10-11T22:14:15.003Z web01 app 42 ID7 [a@1 x="1" x="2" x="3"][b@2 y="\]"][a@1 z="q"] hi there"#,
            b"<38>Jun 15 11:59:00 web01 sshd[42]: Accepted key",
            b"not syslog \xff at all\r\n",
            b"<13>1 2003-99-11T22:14:15Z h a - - - x",
            b"<13>1 1970-01-01T00:00:01Z h a - - - boot",
            b"<191>1 - - - - - - \"quoted\" \\ tab\there \x01\x1f\x7f \xc3\xa9",
            b"<0>Jan  1 00:00:00 host: message",
            b"<13>1 2024-06-15T12:00:00+02:00 h\xffost a\\pp p\"id m - body",
            b"<999>nonsense",
        ];
        for raw in messages {
            for truncated in [false, true] {
                let built = builder.build(raw, truncated, &arrival).unwrap();
                let line = raw
                    .iter()
                    .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
                    .map_or(0, |i| i + 1);
                let cx = ParseContext {
                    now_ms: arrival.now_ms,
                    zone: TimeZone::Utc,
                };
                let (parsed, error) = match parse::parse(&raw[..line], &cx) {
                    Ok(p) => (p, None),
                    Err(e) => (
                        Parsed {
                            pri: e.pri,
                            message: &raw[..line],
                            ..Parsed::default()
                        },
                        Some(e.reason),
                    ),
                };
                let expected = reference::event("sys\"log", &parsed, error, truncated, &arrival);
                assert_eq!(built.event.time_ms, expected.time_ms);
                let mut fields = built.event.fields().into_owned();
                fields.insert("_id".into(), expected.fields()["_id"].clone());
                let (mut a, mut b) = (Vec::new(), Vec::new());
                Event::from_map(fields, 0).write_ndjson(&mut a);
                expected.write_ndjson(&mut b);
                assert_eq!(
                    String::from_utf8(a).unwrap(),
                    String::from_utf8(b).unwrap(),
                    "{}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }
}
