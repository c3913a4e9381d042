//! From one framed message to one event: its fields, `_ts` and `_meta`.

use sediment_core::event::{new_id, Replaced, Stamp, ID_FIELD, META_FIELD, TS_FIELD};
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
    source: Value,
    zone: TimeZone,
}

impl EventBuilder {
    /// A builder for the source `id`, reading zone-less timestamps in `zone`.
    pub fn new(id: &str, zone: TimeZone) -> EventBuilder {
        EventBuilder {
            source: Value::String(id.to_owned()),
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
        let severity = p.pri.map(|pri| pri & 7);
        let mut fields = Map::with_capacity(10);
        fields.insert("message".into(), Value::String(text(p.message)));
        let host = match p.hostname {
            Some(h) => text(h),
            None => arrival.origin.peer_ip.clone(),
        };
        fields.insert("host".into(), Value::String(host));
        for (name, value) in [("app", p.app), ("procid", p.procid), ("msgid", p.msgid)] {
            if let Some(value) = value {
                fields.insert(name.into(), Value::String(text(value)));
            }
        }
        if let Some(s) = severity {
            fields.insert(
                "level".into(),
                Value::String(SEVERITIES[usize::from(s)].into()),
            );
        }
        fields.insert(ID_FIELD.into(), Value::String(new_id()));
        let time_ms = p.time_ms.unwrap_or(arrival.now_ms);
        fields.insert(
            TS_FIELD.into(),
            Value::String(sediment_core::event::format_time_ms(time_ms)),
        );

        let mut syslog = Map::with_capacity(6);
        if let Some(pri) = p.pri {
            let facility = FACILITIES[usize::from(pri >> 3)];
            syslog.insert("facility".into(), Value::String(facility.into()));
            syslog.insert("severity".into(), Value::from(pri & 7));
        }
        if let Some(version) = p.version {
            syslog.insert("version".into(), Value::from(version));
        }
        if !p.structured_data.is_empty() {
            syslog.insert("structured_data".into(), structured_data(p));
        }
        syslog.insert("peer".into(), Value::String(arrival.origin.peer_ip.clone()));
        if let Some(reason) = error {
            syslog.insert("parse_error".into(), Value::String(reason.into()));
        }
        if truncated {
            syslog.insert("truncated".into(), Value::Bool(true));
        }
        let mut meta = Map::with_capacity(5);
        meta.insert("source".into(), self.source.clone());
        meta.insert("source_type".into(), Value::String("syslog".into()));
        meta.insert(
            "received_at".into(),
            Value::String(arrival.received_at.to_owned()),
        );
        meta.insert(
            "remote_addr".into(),
            Value::String(arrival.origin.remote_addr.clone()),
        );
        meta.insert("syslog".into(), Value::Object(syslog));
        fields.insert(META_FIELD.into(), Value::Object(meta));
        // `_id` and `_meta` are sediment's own here (built above, never from the
        // sender), so stamping is told to keep them; `_ts` is rewritten and an
        // implausible header time (before 1971, a device without a clock) becomes
        // the receive time, like any other source's.
        let stamp = Stamp {
            timestamp_fields: &[],
            now_ms: arrival.now_ms,
            meta: &Value::Null,
            trust_meta: true,
        };
        Event::stamp_with(fields, &stamp, &mut Replaced::default())
    }
}

/// Bytes as text; invalid UTF-8 becomes U+FFFD rather than losing the message.
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// `{"SD-ID": {"name": "value", …}, …}`; a repeated name collects its values in an array.
fn structured_data(p: &Parsed<'_>) -> Value {
    let mut out = Map::new();
    for element in &p.structured_data {
        let entry = out
            .entry(text(element.id))
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(params) = entry else {
            continue;
        };
        for (name, value) in &element.params {
            let value = Value::String(text(value));
            match params.get_mut(&text(name) as &str) {
                Some(Value::Array(values)) => values.push(value),
                Some(previous) => {
                    let first = previous.take();
                    *previous = Value::Array(vec![first, value]);
                }
                None => {
                    params.insert(text(name), value);
                }
            }
        }
    }
    Value::Object(out)
}

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
}
