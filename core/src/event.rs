//! The event: a JSON object plus the few parsed values the pipeline routes on.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

/// Field holding the unique, time-ordered line id (UUIDv7 text).
pub const ID_FIELD: &str = "_id";
/// Field holding the event time, RFC 3339 UTC with milliseconds.
pub const TS_FIELD: &str = "_ts";
/// Field holding where the line came from.
pub const META_FIELD: &str = "_meta";

/// The timestamp fields tried, in order, when a source configures none.
pub const DEFAULT_TIMESTAMP_FIELDS: &[&str] = &["timestamp", "@timestamp", "time", "ts"];

/// One log line on its way through the pipeline.
///
/// `fields` is exactly what is archived: the event as received plus the reserved
/// `_id`, `_ts` and `_meta` fields. `time` mirrors `_ts` so that nothing downstream
/// re-parses it; `partition` is set by the `hour_partition` transform.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The JSON object written to the archive, reserved fields included.
    pub fields: Map<String, Value>,
    /// Event time in milliseconds since the Unix epoch (the value of `_ts`).
    pub time_ms: i64,
    /// The hour this event is filed under, once a partitioner has run.
    pub partition: Option<Partition>,
    /// Where the event sits in a replayable stream (a Kafka partition), for
    /// sources that can replay; archive sinks then store it exactly once by
    /// its position (see [`crate::stream`]).
    pub position: Option<crate::stream::Position>,
}

/// The UTC hour an event belongs to and whether it arrived after that hour closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    /// Start of the hour, in seconds since the Unix epoch.
    pub hour_start: i64,
    /// When the hour's primary object is due: hour end plus `late_after`, in seconds.
    pub close_at: i64,
    /// The event arrived after `close_at`.
    pub late: bool,
}

impl Partition {
    /// Length of one partition, in seconds.
    pub const HOUR_SECS: i64 = 3600;

    /// The hour start of a millisecond timestamp, in seconds.
    pub fn hour_of(time_ms: i64) -> i64 {
        time_ms.div_euclid(1000 * Self::HOUR_SECS) * Self::HOUR_SECS
    }
}

/// How a source stamps the objects it built: everything about the reserved
/// fields that is the same for a whole request or batch.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// Fields tried, in order, for the event time when `_ts` is absent or bad.
    pub timestamp_fields: &'a [String],
    /// The arrival time, used when no field gives an event time.
    pub now_ms: i64,
    /// sediment's `_meta` for these events.
    pub meta: &'a Value,
    /// Keep a client's `_meta` when it is an object (`trust_meta: true`, for
    /// re-ingesting restored lines); otherwise `meta` always replaces it.
    pub trust_meta: bool,
}

/// Reserved fields a client sent that stamping had to replace, counted per
/// request or batch for the source's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// `_id` values that were not a non-empty string.
    pub ids: u64,
    /// `_ts` values that did not parse as a plausible time.
    pub timestamps: u64,
    /// Client `_meta` values dropped: any, unless trusted; a non-object when trusted.
    pub metas: u64,
}

impl Event {
    /// Builds an event from a JSON object with an authoritative `_meta`; see
    /// [`Event::stamp_with`] for the rules.
    pub fn stamp(
        fields: Map<String, Value>,
        timestamp_fields: &[String],
        now_ms: i64,
        meta: &Value,
    ) -> Event {
        let stamp = Stamp {
            timestamp_fields,
            now_ms,
            meta,
            trust_meta: false,
        };
        Event::stamp_with(fields, &stamp, &mut Replaced::default())
    }

    /// Builds an event from a JSON object, setting the reserved fields:
    ///
    /// - `_id` is kept when it is a non-empty string (re-ingesting a restored line
    ///   keeps its identity); anything else is replaced by a new UUIDv7 and counted.
    /// - `_ts` is always written as RFC 3339 UTC with milliseconds: a client's `_ts`
    ///   that parses (RFC 3339 with any offset, epoch seconds or milliseconds) is
    ///   rewritten in that form; one that does not is counted and replaced by the
    ///   first of `timestamp_fields` that parses, else the arrival time. So one
    ///   column of the archive never mixes JSON types or zones.
    /// - `_meta` is sediment's: `stamp.meta` replaces whatever the client sent, unless
    ///   `trust_meta` is set and the client's `_meta` is an object. A dropped client
    ///   `_meta` is counted.
    pub fn stamp_with(
        mut fields: Map<String, Value>,
        stamp: &Stamp<'_>,
        replaced: &mut Replaced,
    ) -> Event {
        let client_ts = fields.get(TS_FIELD).map(parse_time_ms);
        if client_ts == Some(None) {
            replaced.timestamps += 1;
        }
        let time_ms = client_ts
            .flatten()
            .or_else(|| {
                stamp
                    .timestamp_fields
                    .iter()
                    .find_map(|name| fields.get(name.as_str()).and_then(parse_time_ms))
            })
            .unwrap_or(stamp.now_ms);
        match fields.get_mut(ID_FIELD) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) => {
                replaced.ids += 1;
                *other = Value::String(new_id());
            }
            None => {
                fields.insert(ID_FIELD.into(), Value::String(new_id()));
            }
        }
        let ts = Value::String(format_time_ms(time_ms));
        match fields.get_mut(TS_FIELD) {
            Some(slot) => *slot = ts,
            None => {
                fields.insert(TS_FIELD.into(), ts);
            }
        }
        match fields.get_mut(META_FIELD) {
            Some(Value::Object(_)) if stamp.trust_meta => {}
            Some(slot) => {
                replaced.metas += 1;
                *slot = stamp.meta.clone();
            }
            None => {
                fields.insert(META_FIELD.into(), stamp.meta.clone());
            }
        }
        Event {
            fields,
            time_ms,
            partition: None,
            position: None,
        }
    }

    /// The event's message text: `message`, else `line`, if it is a string.
    pub fn message(&self) -> Option<&str> {
        self.fields
            .get("message")
            .or_else(|| self.fields.get("line"))
            .and_then(Value::as_str)
    }

    /// Serialises the archived form as one NDJSON line (with the trailing newline).
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        // A Map of Values always serialises; the only error source is the writer and a Vec never fails.
        serde_json::to_writer(&mut *out, &self.fields)
            .expect("serialising JSON into a Vec cannot fail");
        out.push(b'\n');
    }
}

/// A new unique, time-ordered line id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().as_hyphenated().to_string()
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_time_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Current wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Parses an event-time value: RFC 3339 text, or epoch seconds or milliseconds
/// (as a number or numeric text). Values before 1971 or after 9999 are refused.
pub fn parse_time_ms(value: &Value) -> Option<i64> {
    let ms = match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                Some(t.timestamp_millis())
            } else if let Ok(n) = s.parse::<f64>() {
                epoch_number_to_ms(n)
            } else {
                None
            }
        }
        Value::Number(n) => n.as_f64().and_then(epoch_number_to_ms),
        _ => None,
    }?;
    // 1971-01-01 .. 9999-12-31: anything else is not a plausible event time.
    (31_536_000_000..=253_402_300_799_999)
        .contains(&ms)
        .then_some(ms)
}

/// Epoch numbers below 10^11 are seconds (until year 5138), above are milliseconds.
fn epoch_number_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if n < 1e11 { n * 1000.0 } else { n };
    Some(ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_rfc3339_and_epochs() {
        let expected = 1_700_000_000_000;
        assert_eq!(
            parse_time_ms(&json!("2023-11-14T22:13:20Z")),
            Some(expected)
        );
        assert_eq!(
            parse_time_ms(&json!("2023-11-14T23:13:20+01:00")),
            Some(expected)
        );
        assert_eq!(parse_time_ms(&json!(1_700_000_000)), Some(expected));
        assert_eq!(parse_time_ms(&json!(1_700_000_000_000i64)), Some(expected));
        assert_eq!(parse_time_ms(&json!("1700000000.5")), Some(expected + 500));
        assert_eq!(parse_time_ms(&json!("yesterday")), None);
        assert_eq!(parse_time_ms(&json!(12)), None);
        assert_eq!(parse_time_ms(&json!(true)), None);
    }

    #[test]
    fn stamp_adds_reserved_fields_and_keeps_a_restored_identity() {
        let meta = json!({"source": "in"});
        let ts_fields = vec!["time".to_string()];
        let e = Event::stamp(
            fields(json!({"msg": "a", "time": 1_700_000_000})),
            &ts_fields,
            5,
            &meta,
        );
        assert_eq!(e.time_ms, 1_700_000_000_000);
        assert_eq!(e.fields["_ts"], json!("2023-11-14T22:13:20.000Z"));
        assert_eq!(e.fields["_meta"], meta);
        assert_eq!(e.fields["_id"].as_str().unwrap().len(), 36);

        let other = json!({"source": "other"});
        let trusting = Stamp {
            timestamp_fields: &ts_fields,
            now_ms: 5,
            meta: &other,
            trust_meta: true,
        };
        let mut replaced = Replaced::default();
        let again = Event::stamp_with(e.fields.clone(), &trusting, &mut replaced);
        assert_eq!(
            again.fields, e.fields,
            "with trust_meta a restored line keeps _id, _ts and _meta"
        );
        assert_eq!(replaced, Replaced::default());

        let untrusted = Event::stamp(e.fields.clone(), &ts_fields, 5, &other);
        assert_eq!(untrusted.fields["_id"], e.fields["_id"]);
        assert_eq!(
            untrusted.fields["_meta"], other,
            "sediment's _meta wins by default"
        );

        let no_time = Event::stamp(
            fields(json!({"msg": "b"})),
            &ts_fields,
            1_700_000_000_123,
            &meta,
        );
        assert_eq!(no_time.time_ms, 1_700_000_000_123);
    }

    #[test]
    fn forged_or_malformed_meta_is_replaced_and_counted() {
        let meta = json!({"source": "in", "remote_addr": "10.0.0.1:1"});
        for (trust, client, kept) in [
            (
                false,
                json!({"source": "spoofed", "remote_addr": "1.2.3.4:5"}),
                false,
            ),
            (false, json!("a string"), false),
            (true, json!({"source": "restored"}), true),
            (true, json!("a string"), false),
            (true, Value::Null, false),
            (true, json!([1, 2]), false),
        ] {
            let stamp = Stamp {
                timestamp_fields: &[],
                now_ms: 1_700_000_000_000,
                meta: &meta,
                trust_meta: trust,
            };
            let mut replaced = Replaced::default();
            let e = Event::stamp_with(
                fields(json!({"msg": "x", "_meta": client.clone()})),
                &stamp,
                &mut replaced,
            );
            let expected = if kept { client.clone() } else { meta.clone() };
            assert_eq!(
                e.fields["_meta"], expected,
                "trust {trust}, client {client}"
            );
            assert_eq!(
                replaced.metas,
                u64::from(!kept),
                "trust {trust}, client {client}"
            );
        }
    }

    #[test]
    fn ts_is_always_rfc3339_utc_millis_and_bad_ids_and_times_are_counted() {
        let stamp = Stamp {
            timestamp_fields: &["time".to_string()],
            now_ms: 1_700_000_000_000,
            meta: &Value::Null,
            trust_meta: false,
        };
        let normalised = "2023-11-14T22:13:20.000Z";
        for client_ts in [
            json!(1_700_000_000),
            json!(1_700_000_000_000i64),
            json!("1700000000"),
            json!("2023-11-15T03:13:20+05:00"),
            json!("2023-11-14T22:13:20.000471Z"),
            json!(normalised),
        ] {
            let mut replaced = Replaced::default();
            let e = Event::stamp_with(
                fields(json!({"_ts": client_ts.clone()})),
                &stamp,
                &mut replaced,
            );
            assert_eq!(e.fields["_ts"], json!(normalised), "from {client_ts}");
            assert_eq!(e.time_ms, 1_700_000_000_000);
            assert_eq!(replaced, Replaced::default(), "from {client_ts}");
        }

        let mut replaced = Replaced::default();
        let e = Event::stamp_with(
            fields(json!({"_ts": "last tuesday", "time": 1_600_000_000, "_id": 42})),
            &stamp,
            &mut replaced,
        );
        assert_eq!(
            e.fields["_ts"],
            json!("2020-09-13T12:26:40.000Z"),
            "falls back to `time`"
        );
        assert_eq!(e.fields["_id"].as_str().map(str::len), Some(36));
        for bad in [json!(""), json!(null), json!({"a": 1})] {
            Event::stamp_with(
                fields(json!({"_ts": [], "_id": bad})),
                &stamp,
                &mut replaced,
            );
        }
        assert_eq!(
            replaced,
            Replaced {
                ids: 4,
                timestamps: 4,
                metas: 0
            }
        );
        let kept = Event::stamp_with(
            fields(json!({"_id": "01HZX-restored"})),
            &stamp,
            &mut replaced,
        );
        assert_eq!(kept.fields["_id"], "01HZX-restored");
        assert_eq!(replaced.ids, 4);
    }

    #[test]
    fn hour_of_floors_in_utc_even_before_epoch() {
        assert_eq!(Partition::hour_of(3_599_999), 0);
        assert_eq!(Partition::hour_of(3_600_000), 3600);
        assert_eq!(Partition::hour_of(-1), -3600);
    }
}
