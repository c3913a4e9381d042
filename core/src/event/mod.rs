//! The event: a JSON object plus the few parsed values the pipeline routes on.
//!
//! An event holds its object as JSON text in canonical form (as `serde_json`
//! writes it) plus how its reserved fields go in; its archive line is that
//! text with `_id`, `_ts` and `_meta` spliced in ([`line`]), and nothing on
//! the way parses it into a map. Most events keep the text they were
//! received as (a slice of the request's buffer, shared by the whole
//! request) when [`scan`] found it already canonical; the syslog source
//! writes its events' text directly ([`Event::from_json_parts`]). Any other
//! object (white space, non-canonical escapes or numbers, duplicate keys, a
//! Kafka record, a restored line) is parsed into a `serde_json` map,
//! stamped, and serialised once into text of its own ([`Event::stamp_with`],
//! [`Event::from_map`]). Both give the same line for the same object: the
//! map path is the reference, and a property test holds the text path to it.

use std::borrow::Cow;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

mod line;
pub mod scan;

pub use scan::Scanner;

use line::{JsonObject, Span, Ts};

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
/// Its object is exactly what is archived: the event as received plus the
/// reserved `_id`, `_ts` and `_meta` fields (see the module docs for the two
/// forms it is kept in). `time_ms` mirrors `_ts` so that nothing downstream
/// re-parses it; `partition` is set by the `hour_partition` transform.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The JSON object written to the archive, and its reserved fields.
    body: JsonObject,
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

impl std::ops::AddAssign for Replaced {
    fn add_assign(&mut self, other: Replaced) {
        self.ids += other.ids;
        self.timestamps += other.timestamps;
        self.metas += other.metas;
    }
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
        Event::from_map(fields, time_ms)
    }

    /// An event of a map that already holds its reserved fields, `_ts`
    /// being `time_ms` (a restored line): nothing is stamped; the map is
    /// serialised into the event's text.
    pub fn from_map(fields: Map<String, Value>, time_ms: i64) -> Event {
        // A Map of Values always serialises; the only error source is the writer and a Vec never fails.
        let text = serde_json::to_vec(&fields).expect("serialising JSON into a Vec cannot fail");
        Event::from_body(JsonObject::complete(Bytes::from(text)), time_ms)
    }

    fn from_body(body: JsonObject, time_ms: i64) -> Event {
        Event {
            body,
            time_ms,
            partition: None,
            position: None,
        }
    }

    /// Builds an event from the text of one JSON object, stamped by the rules
    /// of [`Event::stamp_with`], when the text is in canonical form (see
    /// [`scan`]); `None` otherwise, and then nothing was counted in
    /// `replaced`: parse the text into a map and stamp that instead.
    ///
    /// `meta` is `stamp.meta` as JSON text (written once per request and
    /// shared by its events). The event keeps `text` (a cheap slice of a
    /// shared buffer, usually) and writes its line by splicing; the line is
    /// the one the map path gives, byte for byte.
    pub fn stamp_json(
        text: Bytes,
        stamp: &Stamp<'_>,
        meta: &Bytes,
        scanner: &mut Scanner,
        replaced: &mut Replaced,
    ) -> Option<Event> {
        Event::stamp_json_with_id(text, stamp, meta, scanner, replaced, new_id_bytes)
    }

    /// [`Event::stamp_json`], where an object without a usable `_id` gets
    /// `id()` instead of a new random one (a Kafka record's id, derived from
    /// where it is in its topic, so that a replay gives the same line).
    pub fn stamp_json_with_id(
        text: Bytes,
        stamp: &Stamp<'_>,
        meta: &Bytes,
        scanner: &mut Scanner,
        replaced: &mut Replaced,
        id: impl FnOnce() -> [u8; 16],
    ) -> Option<Event> {
        let scanned = Scanned::of(&text, stamp, scanner, &mut |_, _| {})?;
        if scanned.len != text.len() {
            return None;
        }
        Some(scanned.stamp(text, stamp, meta, replaced, id))
    }

    /// [`Event::stamp_json`] of the object in canonical form that starts at
    /// `start` in `buf` (an element of a JSON array, the rest of the array
    /// after it): the event, its text a slice of `buf`, and where the object
    /// ends in `buf`; `None` when no object in canonical form starts there,
    /// and then nothing was counted. `top` is told each of the object's
    /// top-level members as [`Scanner::canonical_object`] tells them (the
    /// value's range within the object), for a caller that needs more of the
    /// object than the reserved fields.
    pub fn stamp_json_at(
        buf: &Bytes,
        start: usize,
        stamp: &Stamp<'_>,
        meta: &Bytes,
        scanner: &mut Scanner,
        replaced: &mut Replaced,
        top: &mut scan::TopMember<'_>,
    ) -> Option<(Event, usize)> {
        let scanned = Scanned::of(buf.get(start..)?, stamp, scanner, top)?;
        let end = start + scanned.len;
        Some((
            scanned.stamp(buf.slice(start..end), stamp, meta, replaced, new_id_bytes),
            end,
        ))
    }

    /// An event of sediment's own making, written straight as JSON text (the
    /// syslog source): `text` is an object in canonical form (see [`scan`],
    /// as `serde_json` writes it) without reserved fields, `meta` its `_meta`
    /// as JSON text; the event gets a fresh `_id`, and `_ts` from `time_ms`.
    /// Both may be slices of one shared buffer.
    pub fn from_json_parts(text: Bytes, meta: Bytes, time_ms: i64) -> Event {
        Event::from_json_parts_with_id(text, meta, time_ms, new_id_bytes())
    }

    /// [`Event::from_json_parts`] with the given `_id` (a UUID's bytes).
    pub fn from_json_parts_with_id(text: Bytes, meta: Bytes, time_ms: i64, id: [u8; 16]) -> Event {
        debug_assert!(
            Scanner::default().canonical_object(&text, &mut |key, _| debug_assert!(
                !matches!(key, b"_id" | b"_ts" | b"_meta"),
                "reserved fields are sediment's"
            )),
            "canonical text"
        );
        let object = JsonObject {
            text,
            id_at: None,
            new_id: Some(id),
            ts: Ts::Append,
            meta_at: None,
            meta: Some(meta),
        };
        Event::from_body(object, time_ms)
    }

    /// The event's object, reserved fields included, parsed from its line
    /// (for tests and rare callers; the data path never needs it). Always
    /// owned; a `Cow` so that callers need not care.
    pub fn fields(&self) -> Cow<'_, Map<String, Value>> {
        let mut line = Vec::new();
        self.write_json(&mut line);
        Cow::Owned(serde_json::from_slice(&line).expect("an archive line is a JSON object"))
    }

    /// Approximate size of the event's line, without writing it.
    pub(crate) fn approximate_json_len(&self) -> usize {
        self.body.approximate_len()
    }

    /// The object's own text, before the reserved fields are spliced in:
    /// its members other than `_id`, `_ts` and `_meta` are exactly the
    /// line's (canonical, each key once); what it holds of the reserved
    /// fields may be stale (read those from [`Event::write_json`]).
    pub fn text(&self) -> &[u8] {
        &self.body.text
    }

    /// Writes the archived form: one JSON object, no newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.body.write(self.time_ms, out);
    }

    /// Serialises the archived form as one NDJSON line (with the trailing newline).
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        self.write_json(out);
        out.push(b'\n');
    }
}

/// What the scan of an object in canonical form found of its reserved
/// fields and event time, before anything is counted.
struct Scanned {
    /// The object's length.
    len: usize,
    id_at: Option<std::ops::Range<usize>>,
    ts_at: Option<std::ops::Range<usize>>,
    meta_at: Option<std::ops::Range<usize>>,
    /// The client's `_ts`, `None` inside when it does not parse.
    client_ts: Option<Option<i64>>,
    /// The first of the timestamp fields that parses.
    best: Option<i64>,
}

impl Scanned {
    /// Scans the object in canonical form that `text` starts with.
    fn of(
        text: &[u8],
        stamp: &Stamp<'_>,
        scanner: &mut Scanner,
        top: &mut scan::TopMember<'_>,
    ) -> Option<Scanned> {
        let (mut id_at, mut ts_at, mut meta_at) = (None, None, None);
        let names = stamp.timestamp_fields;
        // The first of `names` (by its place in `names`) whose value parses.
        let mut best: Option<(usize, i64)> = None;
        let len = scanner.leading_object(text, &mut |key, value| {
            match key {
                b"_id" => id_at = Some(value.clone()),
                b"_ts" => ts_at = Some(value.clone()),
                b"_meta" => meta_at = Some(value.clone()),
                _ => {}
            }
            if let Some(i) = names.iter().position(|n| key_is(key, n)) {
                if best.is_none_or(|(b, _)| i < b) {
                    if let Some(ms) = json_time_ms(&text[value.clone()]) {
                        best = Some((i, ms));
                    }
                }
            }
            top(key, value);
        })?;
        let client_ts = ts_at.clone().map(|r| json_time_ms(&text[r]));
        Some(Scanned {
            len,
            id_at,
            ts_at,
            meta_at,
            client_ts,
            best: best.map(|(_, ms)| ms),
        })
    }

    /// The event of `text` (the object scanned), counting what is replaced.
    fn stamp(
        self,
        text: Bytes,
        stamp: &Stamp<'_>,
        meta: &Bytes,
        replaced: &mut Replaced,
        id: impl FnOnce() -> [u8; 16],
    ) -> Event {
        if self.client_ts == Some(None) {
            replaced.timestamps += 1;
        }
        let time_ms = self
            .client_ts
            .flatten()
            .or(self.best)
            .unwrap_or(stamp.now_ms);
        let new_id = match &self.id_at {
            // A non-empty string: `""` is the only empty one in canonical form.
            Some(r) if text[r.clone()].starts_with(b"\"") && r.len() > 2 => None,
            Some(_) => {
                replaced.ids += 1;
                Some(id())
            }
            None => Some(id()),
        };
        let meta = match &self.meta_at {
            Some(r) if stamp.trust_meta && text[r.start] == b'{' => None,
            Some(_) => {
                replaced.metas += 1;
                Some(meta.clone())
            }
            None => Some(meta.clone()),
        };
        let object = JsonObject {
            id_at: self.id_at.map(Span::new),
            new_id,
            ts: self.ts_at.map_or(Ts::Append, |r| Ts::Replace(Span::new(r))),
            meta_at: self.meta_at.map(Span::new),
            meta,
            text,
        };
        Event::from_body(object, time_ms)
    }
}

/// Whether a key's text between its quotes (as in [`scan::members`]) is `name`.
pub fn key_is(key: &[u8], name: &str) -> bool {
    if key.len() == name.len() && key == name.as_bytes() {
        return true;
    }
    // A key with escapes is longer than its value: decode it (rare).
    key.contains(&b'\\') && {
        let mut quoted = Vec::with_capacity(key.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(key);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == name)
    }
}

/// [`parse_time_ms`] of the value whose JSON text is `value`.
fn json_time_ms(value: &[u8]) -> Option<i64> {
    match value.first()? {
        b'"' if !value.contains(&b'\\') => std::str::from_utf8(&value[1..value.len() - 1])
            .ok()
            .and_then(parse_time_text),
        b'"' | b'-' | b'0'..=b'9' => serde_json::from_slice::<Value>(value)
            .ok()
            .and_then(|v| parse_time_ms(&v)),
        _ => None,
    }
}

/// The bytes of a new unique, time-ordered line id (a UUIDv7).
fn new_id_bytes() -> [u8; 16] {
    uuid::Uuid::now_v7().into_bytes()
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
    match value {
        Value::String(s) => parse_time_text(s),
        Value::Number(n) => n.as_f64().and_then(epoch_number_to_ms).and_then(plausible),
        _ => None,
    }
}

/// [`parse_time_ms`] of a string value.
fn parse_time_text(s: &str) -> Option<i64> {
    let s = s.trim();
    let ms = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        Some(t.timestamp_millis())
    } else if let Ok(n) = s.parse::<f64>() {
        epoch_number_to_ms(n)
    } else {
        None
    }?;
    plausible(ms)
}

/// `ms` when it is a plausible event time (1971-01-01 .. 9999-12-31), as
/// [`parse_time_ms`] requires.
pub fn plausible(ms: i64) -> Option<i64> {
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
mod tests;

#[cfg(test)]
mod props;
