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

use std::sync::Arc;

use rdkafka::message::{Headers, Message};
use sediment_core::event::{format_time_ms, Event, Replaced, Stamp, ID_FIELD};
use sediment_core::stream::{Position, StreamId};
use serde_json::{json, Map, Value};

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
    let hash = xxhash_rust::xxh3::xxh3_128(
        format!("{}\0{}\0{offset}", stream.topic, stream.partition).as_bytes(),
    );
    let bytes = hash.to_be_bytes();
    let ms = timestamp_ms.max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(ms, bytes[..10].try_into().expect("10 bytes"))
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// The event of one record.
pub fn to_event(
    r: Record,
    stream: &Arc<StreamId>,
    generation: u64,
    shape: &Shape,
    replaced: &mut Replaced,
) -> Event {
    let value = r.value.unwrap_or_default();
    let mut fields = match shape.decoding {
        Decoding::Json => match serde_json::from_slice::<Value>(&value) {
            Ok(Value::Object(map)) => map,
            _ => Map::from_iter([("message".to_owned(), text(&value))]),
        },
        Decoding::Text => Map::from_iter([("message".to_owned(), text(&value))]),
    };
    let record_time = r.timestamp.unwrap_or(r.received_at);
    if !matches!(fields.get(ID_FIELD), Some(Value::String(s)) if !s.is_empty()) {
        fields.insert(
            ID_FIELD.into(),
            Value::String(record_id(stream, r.offset, record_time)),
        );
    }
    let headers: Map<String, Value> = r
        .headers
        .into_iter()
        .map(|(k, v)| (k, v.map_or(Value::Null, |v| text(&v))))
        .collect();
    let meta = json!({
        "source": shape.source,
        "source_type": "kafka",
        "received_at": format_time_ms(r.received_at),
        "kafka": {
            "topic": stream.topic,
            "partition": stream.partition,
            "offset": r.offset,
            "key": r.key.map_or(Value::Null, |k| text(&k)),
            "headers": headers,
        },
    });
    let stamp = Stamp {
        timestamp_fields: &shape.timestamp_fields,
        now_ms: record_time,
        meta: &meta,
        trust_meta: false,
    };
    let mut event = Event::stamp_with(fields, &stamp, replaced);
    event.position = Some(Position {
        stream: stream.clone(),
        offset: r.offset,
        generation,
    });
    event
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
        );
        let b = to_event(
            record(42, r#"{"message":"hi","level":"info"}"#),
            &stream,
            7,
            &shape,
            &mut Replaced::default(),
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
        );
        assert_eq!(plain.fields()["message"], "not json");
    }
}
