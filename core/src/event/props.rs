//! The text path against the map path: for arbitrary JSON objects (nested,
//! unicode, escapes, numbers at the edges, duplicate keys, client reserved
//! fields of every type), an event built from the text writes the line that
//! `serde_json`'s map round trip plus stamping writes, byte for byte (the
//! fresh `_id`s aside), with the same time and the same counts; or it
//! declines, and then the map path is used. (About a third of the
//! generated objects are canonical and take the text path.)

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;
use crate::testing::{json, key, write_object, Json};

/// An object, and whether to put white space in it.
fn object() -> impl Strategy<Value = (Vec<(String, Json)>, bool)> {
    (
        prop::collection::vec((key(), json(4)), 0..8),
        prop::bool::weighted(0.1),
    )
}

/// The line with the value of `_id` replaced, when it is a fresh one.
fn without_fresh_id(line: &[u8], fresh: bool) -> String {
    let line = String::from_utf8(line.to_vec()).unwrap();
    if !fresh {
        return line;
    }
    let v: Map<String, Value> = serde_json::from_str(&line).unwrap();
    let id = v["_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a fresh id: {line}");
    line.replacen(&format!("\"_id\":\"{id}\""), "\"_id\":\"ID\"", 1)
}

/// Checks one object text both ways; returns whether the text path took it.
fn check(text: &str, trust_meta: bool) -> bool {
    let names = ["time".to_string(), "ts".to_string(), "t\\ime".to_string()];
    let meta = serde_json::json!({"source": "in", "remote_addr": "1.2.3.4:5"});
    let stamp = Stamp {
        timestamp_fields: &names,
        now_ms: 1_764_000_000_000,
        meta: &meta,
        trust_meta,
    };
    let map: Map<String, Value> = match serde_json::from_str(text) {
        Ok(m) => m,
        // Out-of-range floats: the map path refuses the line, and so must the text path.
        Err(_) => {
            let mut r = Replaced::default();
            let meta_text = Bytes::from(serde_json::to_vec(&meta).unwrap());
            let json = Event::stamp_json(
                Bytes::from(text.to_owned()),
                &stamp,
                &meta_text,
                &mut Scanner::default(),
                &mut r,
            );
            assert!(json.is_none(), "{text}");
            return false;
        }
    };
    let client_id_kept = matches!(map.get("_id"), Some(Value::String(s)) if !s.is_empty());
    let mut by_map = Replaced::default();
    let reference = Event::stamp_with(map, &stamp, &mut by_map);
    let meta_text = Bytes::from(serde_json::to_vec(&meta).unwrap());
    let mut by_text = Replaced::default();
    let Some(event) = Event::stamp_json(
        Bytes::from(text.to_owned()),
        &stamp,
        &meta_text,
        &mut Scanner::default(),
        &mut by_text,
    ) else {
        assert_eq!(by_text, Replaced::default(), "declined, nothing counted");
        return false;
    };
    assert_eq!(event.time_ms, reference.time_ms, "{text}");
    assert_eq!(by_text, by_map, "{text}");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    reference.write_ndjson(&mut a);
    event.write_ndjson(&mut b);
    assert_eq!(
        without_fresh_id(&b, !client_id_kept),
        without_fresh_id(&a, !client_id_kept),
        "from {text}"
    );
    let fields = |e: &Event| {
        let mut f = e.fields().into_owned();
        if !client_id_kept {
            f.insert("_id".into(), Value::Null);
        }
        f
    };
    assert_eq!(fields(&event), fields(&reference), "{text}");
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_text_path_writes_the_map_paths_line((members, spaced) in object(), trust in any::<bool>()) {
        let mut text = String::new();
        write_object(&members, spaced, &mut text);
        check(&text, trust);
    }
}

#[test]
fn canonical_objects_take_the_text_path() {
    for (text, trust) in [
        (r#"{}"#, false),
        (r#"{"message":"hi","level":"info"}"#, false),
        (
            r#"{"_id":"abc","_ts":"2023-11-14T23:13:20+01:00","x":1}"#,
            false,
        ),
        (
            r#"{"_id":"","_ts":"junk","time":1700000000,"_meta":"x"}"#,
            false,
        ),
        (
            r#"{"_meta":{"source":"restored"},"ts":"1700000000.5"}"#,
            true,
        ),
        (r#"{"_meta":[1],"ts":"\n2023-11-14T22:13:20Z"}"#, true),
        (
            r#"{"t\\ime":1700000000123,"a":{"b":[1,2.5,-3,"é\u0000"]}}"#,
            false,
        ),
        (
            r#"{"_id":7,"time":"yesterday","ts":1000000000000.0}"#,
            false,
        ),
    ] {
        assert!(check(text, trust), "{text}");
    }
}
