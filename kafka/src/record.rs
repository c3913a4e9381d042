//! A Kafka record as a sediment event.
//!
//! The record value is the event (`decoding: json` and a JSON object), else
//! `{"message": …}`. `_ts` comes from the timestamp fields, else the record's
//! own timestamp — never the wall clock, so a replay builds the same line.
//! `_id` is a UUIDv7 whose time is the record's timestamp and whose other bits
//! are a hash of topic, partition and offset: the same record gets the same id
//! on any replica, in any replay (an id the record already carries is kept).
//! `_meta.kafka` holds `{topic, partition, offset, key, headers}`;
//! `_meta.received_at` is the arrival time, which nothing else depends on.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::{Headers, Message};
use sediment_core::event::{
    format_time_ms, parse_time_ms, Event, Replaced, Scanner, Stamp, ID_FIELD,
};
use sediment_core::stream::{Position, StreamId};
#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Value};

use crate::config::Decoding;

/// What is kept of a record until it is turned into an event (off the runtime).
#[derive(Debug, Clone)]
pub struct Record {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch, when it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// When it was received.
    pub received_at: i64,
}

impl Record {
    /// Copies what is needed from a consumed message.
    pub fn of<M: Message>(m: &M, received_at: i64) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            received_at,
        }
    }
}

/// What turning records into events needs besides the records.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The source's id.
    pub source: String,
    /// Record values.
    pub decoding: Decoding,
    /// Event-time fields.
    pub timestamp_fields: Vec<String>,
}

/// The deterministic id of a record.
pub fn record_id(stream: &StreamId, offset: i64, timestamp_ms: i64) -> String {
    uuid::Uuid::from_bytes(record_uuid(stream, offset, timestamp_ms))
        .hyphenated()
        .to_string()
}

/// [`record_id`] as a UUID's bytes.
fn record_uuid(stream: &StreamId, offset: i64, timestamp_ms: i64) -> [u8; 16] {
    let hash = xxhash_rust::xxh3::xxh3_128(
        format!("{}\0{}\0{offset}", stream.topic, stream.partition).as_bytes(),
    );
    let bytes = hash.to_be_bytes();
    let ms = timestamp_ms.max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(ms, bytes[..10].try_into().expect("10 bytes"))
        .into_uuid()
        .into_bytes()
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// The event of one record.
///
/// Built straight as JSON text, as the HTTP source builds its events: a
/// `text` value (or a `json` one that is not an object) becomes
/// `{"message":…}` written once, a `json` object already in canonical form
/// is kept as its bytes with the reserved fields spliced in, and `_meta` is
/// written as text. Any other object goes through a `serde_json` map
/// ([`to_event_map`], the reference the text path is tested against); both
/// give the same line.
pub fn to_event(
    r: Record,
    stream: &Arc<StreamId>,
    generation: u64,
    shape: &Shape,
    replaced: &mut Replaced,
    scanner: &mut Scanner,
) -> Event {
    let record_time = r.timestamp.unwrap_or(r.received_at);
    let offset = r.offset;
    let id = record_uuid(stream, offset, record_time);
    let meta = Bytes::from(meta_json(shape, stream, &r));
    let value = r.value.unwrap_or_default();
    let mut event = match shape.decoding {
        Decoding::Json if value.first() == Some(&b'{') => {
            let stamp = Stamp {
                timestamp_fields: &shape.timestamp_fields,
                now_ms: record_time,
                meta: &Value::Null, // the text path takes `meta` as text
                trust_meta: false,
            };
            let value = Bytes::from(value);
            match Event::stamp_json_with_id(value.clone(), &stamp, &meta, scanner, replaced, || id)
            {
                Some(event) => event,
                None => match serde_json::from_slice::<Value>(&value) {
                    Ok(Value::Object(fields)) => {
                        let meta = serde_json::from_slice(&meta).expect("meta_json writes JSON");
                        to_event_map(fields, id, record_time, shape, &meta, replaced)
                    }
                    _ => message_event(&value, shape, meta, record_time, id),
                },
            }
        }
        Decoding::Json | Decoding::Text => message_event(&value, shape, meta, record_time, id),
    };
    event.position = Some(Position {
        stream: stream.clone(),
        offset,
        generation,
    });
    event
}

/// The event `{"message": value}` (the value as text, invalid UTF-8 replaced).
fn message_event(
    value: &[u8],
    shape: &Shape,
    meta: Bytes,
    record_time: i64,
    id: [u8; 16],
) -> Event {
    let message = String::from_utf8_lossy(value);
    let mut text = Vec::with_capacity(message.len() + 16);
    text.extend_from_slice(b"{\"message\":");
    serde_json::to_writer(&mut text, &*message).expect("writing JSON into a Vec cannot fail");
    text.push(b'}');
    // `message` is the only field a timestamp field can name.
    let time_ms = shape
        .timestamp_fields
        .iter()
        .any(|f| f == "message")
        .then(|| parse_time_ms(&Value::String(message.into_owned())))
        .flatten()
        .unwrap_or(record_time);
    Event::from_json_parts_with_id(Bytes::from(text), meta, time_ms, id)
}

/// `_meta` of a record as JSON text: what `serde_json` writes for
/// `{source, source_type, received_at, kafka: {topic, partition, offset, key, headers}}`.
fn meta_json(shape: &Shape, stream: &StreamId, r: &Record) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        serde_json::to_writer(&mut *out, s).expect("writing JSON into a Vec cannot fail")
    };
    let mut out = Vec::with_capacity(160 + shape.source.len() + stream.topic.len());
    out.extend_from_slice(b"{\"source\":");
    string(&mut out, &shape.source);
    out.extend_from_slice(b",\"source_type\":\"kafka\",\"received_at\":");
    string(&mut out, &format_time_ms(r.received_at));
    out.extend_from_slice(b",\"kafka\":{\"topic\":");
    string(&mut out, &stream.topic);
    write!(
        out,
        ",\"partition\":{},\"offset\":{},\"key\":",
        stream.partition, r.offset
    )
    .expect("writing into a Vec cannot fail");
    match &r.key {
        Some(key) => string(&mut out, &String::from_utf8_lossy(key)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"headers\":");
    if r.headers.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        serde_json::to_writer(&mut out, &headers(r)).expect("writing JSON into a Vec cannot fail");
    }
    out.extend_from_slice(b"}}");
    out
}

/// A record's headers as `_meta.kafka.headers`: a repeated header keeps its
/// first place and its last value; a header without a value is `null`.
fn headers(r: &Record) -> Map<String, Value> {
    r.headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_deref().map_or(Value::Null, text)))
        .collect()
}

/// `_meta` of a record as a value (the reference for [`meta_json`]).
#[cfg(test)]
fn meta_value(shape: &Shape, stream: &StreamId, r: &Record) -> Value {
    json!({
        "source": shape.source,
        "source_type": "kafka",
        "received_at": format_time_ms(r.received_at),
        "kafka": {
            "topic": stream.topic,
            "partition": stream.partition,
            "offset": r.offset,
            "key": r.key.as_deref().map_or(Value::Null, text),
            "headers": headers(r),
        },
    })
}

/// The event of a record whose value is the object `fields`, through a map:
/// an `_id` that is a non-empty string is kept, anything else is `id`.
fn to_event_map(
    mut fields: Map<String, Value>,
    id: [u8; 16],
    record_time: i64,
    shape: &Shape,
    meta: &Value,
    replaced: &mut Replaced,
) -> Event {
    if !matches!(fields.get(ID_FIELD), Some(Value::String(s)) if !s.is_empty()) {
        if fields.contains_key(ID_FIELD) {
            replaced.ids += 1;
        }
        let id = uuid::Uuid::from_bytes(id).hyphenated().to_string();
        fields.insert(ID_FIELD.into(), Value::String(id));
    }
    let stamp = Stamp {
        timestamp_fields: &shape.timestamp_fields,
        now_ms: record_time,
        meta,
        trust_meta: false,
    };
    Event::stamp_with(fields, &stamp, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, value: &str) -> Record {
        Record {
            offset,
            timestamp: Some(1_763_802_000_123),
            key: Some(b"k1".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
            received_at: 1_900_000_000_000,
        }
    }

    #[test]
    fn the_same_record_is_the_same_line_and_id_in_every_replay() {
        let stream = Arc::new(StreamId::kafka("logs", 3));
        let shape = Shape {
            source: "k".into(),
            decoding: Decoding::Json,
            timestamp_fields: vec!["timestamp".into()],
        };
        let a = to_event(
            record(42, r#"{"message":"hi","level":"info"}"#),
            &stream,
            1,
            &shape,
            &mut Replaced::default(),
            &mut Scanner::default(),
        );
        let b = to_event(
            record(42, r#"{"message":"hi","level":"info"}"#),
            &stream,
            7,
            &shape,
            &mut Replaced::default(),
            &mut Scanner::default(),
        );
        assert_eq!(a.fields()["_id"], b.fields()["_id"]);
        assert_eq!(
            a.fields()["_ts"],
            "2025-11-22T09:00:00.123Z",
            "the record's timestamp, not the wall clock"
        );
        assert_eq!(
            a.fields()["_meta"]["kafka"],
            json!({"topic": "logs", "partition": 3, "offset": 42, "key": "k1", "headers": {"trace": "abc"}})
        );
        assert_eq!(a.position.as_ref().unwrap().offset, 42);
        let other = to_event(
            record(43, "{}"),
            &stream,
            1,
            &shape,
            &mut Replaced::default(),
            &mut Scanner::default(),
        );
        assert_ne!(a.fields()["_id"], other.fields()["_id"]);
        let id = uuid::Uuid::parse_str(a.fields()["_id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let plain = to_event(
            record(44, "not json"),
            &stream,
            1,
            &shape,
            &mut Replaced::default(),
            &mut Scanner::default(),
        );
        assert_eq!(plain.fields()["message"], "not json");
    }

    /// The line the map path gives for a record (the behaviour before the text path).
    fn reference(r: Record, stream: &StreamId, shape: &Shape) -> Vec<u8> {
        let record_time = r.timestamp.unwrap_or(r.received_at);
        let id = record_uuid(stream, r.offset, record_time);
        let meta = meta_value(shape, stream, &r);
        let value = r.value.unwrap_or_default();
        let message = || Map::from_iter([("message".to_owned(), text(&value))]);
        let fields = match shape.decoding {
            Decoding::Json => match serde_json::from_slice::<Value>(&value) {
                Ok(Value::Object(map)) => map,
                _ => message(),
            },
            Decoding::Text => message(),
        };
        let mut line = Vec::new();
        to_event_map(
            fields,
            id,
            record_time,
            shape,
            &meta,
            &mut Replaced::default(),
        )
        .write_json(&mut line);
        line
    }

    #[test]
    fn the_text_path_writes_the_map_paths_line_for_every_kind_of_record() {
        let values: &[&[u8]] = &[
            br#"{"message":"hi","level":"info"}"#,
            br#"{"message":"with \"quotes\" and \u0001","n":1.5,"list":[1,{"a":null}]}"#,
            br#"{"_id":"keep-me","message":"x"}"#,
            br#"{"_id":"","message":"empty id"}"#,
            br#"{"_id":42,"message":"numeric id"}"#,
            br#"{"message":"x","_ts":"2025-11-22T10:00:00+01:00"}"#,
            br#"{"message":"x","_ts":"not a time"}"#,
            br#"{"message":"x","timestamp":1763802000}"#,
            br#"{"message":"x","@timestamp":"2025-11-22T09:30:00Z","timestamp":"bad"}"#,
            br#"{"_meta":{"forged":true},"message":"x"}"#,
            br#"{ "message" : "white space" }"#,
            br#"{"message":"\/ escaped solidus"}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"message":"truncated""#,
            br#"["an","array"]"#,
            b"\"a string\"",
            b"plain text with \"quotes\"\tand a tab",
            b"2025-11-22T09:15:00Z",
            b"invalid utf-8 \xff\xfe here",
            b"",
        ];
        let stream = Arc::new(StreamId::kafka("logs\"quoted", 3));
        let keys = [None, Some(b"k1".to_vec()), Some(b"\xffbad key".to_vec())];
        let headers = [
            vec![],
            vec![
                ("trace".to_owned(), Some(b"abc".to_vec())),
                ("empty".to_owned(), None),
            ],
            vec![
                ("dup".to_owned(), Some(b"first".to_vec())),
                ("other".to_owned(), Some(b"o".to_vec())),
                ("dup".to_owned(), Some(b"last".to_vec())),
            ],
        ];
        let mut checked = 0;
        for decoding in [Decoding::Json, Decoding::Text] {
            for timestamp_fields in [
                vec!["timestamp".to_owned(), "@timestamp".to_owned()],
                vec!["@timestamp".to_owned(), "message".to_owned()],
            ] {
                let shape = Shape {
                    source: "from \"kafka\"".into(),
                    decoding,
                    timestamp_fields,
                };
                for (i, value) in values.iter().enumerate() {
                    for (key, headers) in keys.iter().zip(&headers) {
                        let r = Record {
                            offset: 1000 + i as i64,
                            timestamp: (i % 3 != 0).then_some(1_763_802_000_123),
                            key: key.clone(),
                            value: (!value.is_empty()).then(|| value.to_vec()),
                            headers: headers.clone(),
                            received_at: 1_900_000_000_000,
                        };
                        let expected = reference(r.clone(), &stream, &shape);
                        let event = to_event(
                            r,
                            &stream,
                            1,
                            &shape,
                            &mut Replaced::default(),
                            &mut Scanner::default(),
                        );
                        if matches!(decoding, Decoding::Json) && i < 2 {
                            assert_eq!(event.text(), *value, "a canonical object keeps its bytes");
                        }
                        let mut line = Vec::new();
                        event.write_json(&mut line);
                        assert_eq!(
                            String::from_utf8_lossy(&line),
                            String::from_utf8_lossy(&expected),
                            "{decoding:?} {}",
                            String::from_utf8_lossy(value)
                        );
                        let parsed: Value = serde_json::from_slice(&line).unwrap();
                        assert_eq!(
                            event.time_ms,
                            sediment_core::event::parse_time_ms(&parsed["_ts"]).unwrap()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * values.len() * 3);
    }
}
