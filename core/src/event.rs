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

impl Event {
    /// Builds an event from a JSON object, stamping the reserved fields.
    ///
    /// `_id` and a parseable `_ts` are kept when present (so re-ingesting a restored
    /// line keeps its identity); otherwise `_id` is a new UUIDv7 and `_ts` comes from
    /// the first of `timestamp_fields` that parses, else `now_ms`. `_meta` is set to
    /// `meta` unless the object already carries one.
    pub fn stamp(
        mut fields: Map<String, Value>,
        timestamp_fields: &[String],
        now_ms: i64,
        meta: &Value,
    ) -> Event {
        let existing_ts = fields.get(TS_FIELD).and_then(parse_time_ms);
        let time_ms = existing_ts
            .or_else(|| {
                timestamp_fields
                    .iter()
                    .find_map(|name| fields.get(name.as_str()).and_then(parse_time_ms))
            })
            .unwrap_or(now_ms);
        let has_id = matches!(fields.get(ID_FIELD), Some(Value::String(s)) if !s.is_empty());
        if !has_id {
            fields.insert(ID_FIELD.into(), Value::String(new_id()));
        }
        if existing_ts.is_none() {
            fields.insert(TS_FIELD.into(), Value::String(format_time_ms(time_ms)));
        }
        if !fields.contains_key(META_FIELD) {
            fields.insert(META_FIELD.into(), meta.clone());
        }
        Event {
            fields,
            time_ms,
            partition: None,
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
    fn stamp_adds_reserved_fields_and_keeps_existing_ones() {
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

        let again = Event::stamp(e.fields.clone(), &ts_fields, 5, &json!({"source": "other"}));
        assert_eq!(
            again.fields, e.fields,
            "a restored line keeps _id, _ts and _meta"
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
    fn hour_of_floors_in_utc_even_before_epoch() {
        assert_eq!(Partition::hour_of(3_599_999), 0);
        assert_eq!(Partition::hour_of(3_600_000), 3600);
        assert_eq!(Partition::hour_of(-1), -3600);
    }
}
