//! The HTTP source's text path against its map path, body by body: for
//! arbitrary JSON objects (nested, unicode, escapes, numbers at the edges,
//! duplicate keys, client reserved fields, some spelt so that they are not
//! in canonical form) sent as a JSON array, as a Mezmo body and as NDJSON
//! lines with white space around them, the events [`prepare`] gives write
//! the lines that parsing every object into a map and stamping it
//! ([`Event::stamp_with`], fed by the streaming parse alone) writes, byte for
//! byte (fresh `_id`s aside), with the same times and counts; or both refuse
//! the body with the same error.

use bytes::Bytes;
use proptest::prelude::*;
use sediment_core::event::{Replaced, Stamp};
use sediment_core::testing::{json, key, text, write_object, Json};
use sediment_core::Event;
use serde_json::{json, Map, Value};

use super::budget::MemoryBudget;
use super::chunks::{prepare, Prepared, Request};
use super::decode::{for_each_object_streamed, BodyError, Format};

/// An object: its members, whether to put white space in it, and (for
/// Mezmo) its `line` first, if any.
fn object() -> impl Strategy<Value = (Vec<(String, Json)>, bool)> {
    (
        prop::option::weighted(0.9, (text(), prop::bool::weighted(0.05))),
        prop::collection::vec((key(), json(3)), 0..6),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(line, mut members, spaced)| {
            if let Some((s, e)) = line {
                members.insert(0, ("line".into(), Json::Str(s, e)));
            }
            (members, spaced)
        })
}

fn request(body: Vec<u8>, format: Format, trust_meta: bool) -> Request {
    Request {
        body: Bytes::from(body),
        encoding: None,
        format,
        max_body_size: 64 << 20,
        timestamp_fields: ["timestamp", "ts"].map(String::from).to_vec(),
        meta: json!({"source": "in", "remote_addr": "1.2.3.4:5"}),
        trust_meta,
        now_ms: 1_764_000_000_000,
        max_hours: 10_000,
        max_events: 100_000,
    }
}

/// The events of a body as the source makes them, with what was replaced.
fn by_source(request: Request) -> Result<(Vec<Event>, Replaced), BodyError> {
    let budget = MemoryBudget::new(64 << 20);
    let mut reservation = budget.reserve();
    match prepare(request, &mut reservation)? {
        Prepared::Whole(events, replaced) => Ok((events, replaced)),
        Prepared::Chunked(..) => panic!("a small body is one batch"),
    }
}

/// The events of a body by the map path alone.
fn by_maps(request: &Request) -> Result<(Vec<Event>, Replaced), BodyError> {
    let stamp = Stamp {
        timestamp_fields: &request.timestamp_fields,
        now_ms: request.now_ms,
        meta: &request.meta,
        trust_meta: request.trust_meta,
    };
    let mut replaced = Replaced::default();
    let mut events = Vec::new();
    for_each_object_streamed(&request.body, request.format, &mut |map: Map<
        String,
        Value,
    >| {
        events.push(Event::stamp_with(map, &stamp, &mut replaced));
        Ok(())
    })?;
    Ok((events, replaced))
}

/// An event's line, and its `_id`.
fn line(event: &Event) -> (String, String) {
    let mut out = Vec::new();
    event.write_json(&mut out);
    let line = String::from_utf8(out).unwrap();
    let id = event.fields()["_id"].as_str().unwrap().to_owned();
    (line, id)
}

/// Checks a body both ways; returns how many events took the text path.
fn check(body: Vec<u8>, format: Format, trust_meta: bool) -> Result<usize, TestCaseError> {
    let request = request(body, format, trust_meta);
    let shown = String::from_utf8_lossy(&request.body).into_owned();
    let reference = by_maps(&request);
    let body = request.body.clone();
    let events = match (by_source(request), reference) {
        (Ok(got), Ok(want)) => {
            prop_assert_eq!(got.1, want.1, "counts of {}", shown);
            prop_assert_eq!(got.0.len(), want.0.len(), "{}", shown);
            got.0.into_iter().zip(want.0).collect::<Vec<_>>()
        }
        (got, want) => {
            prop_assert_eq!(got.map(|_| ()), want.map(|_| ()), "{}", shown);
            return Ok(0);
        }
    };
    let mut as_text = 0;
    for (got, want) in events {
        prop_assert_eq!(got.time_ms, want.time_ms, "{}", &shown);
        let ((got_line, got_id), (want_line, want_id)) = (line(&got), line(&want));
        // A fresh id each way; a kept one is the same.
        let got_line = if got_id != want_id {
            prop_assert_eq!((got_id.len(), want_id.len()), (36, 36), "{}", &shown);
            got_line.replacen(&got_id, &want_id, 1)
        } else {
            got_line
        };
        prop_assert_eq!(got_line, want_line, "from {}", &shown);
        // Kept as a slice of the body: the text path.
        let text = got.text();
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        if range.contains(&(text.as_ptr() as usize)) {
            as_text += 1;
        }
    }
    Ok(as_text)
}

fn array(objects: &[(Vec<(String, Json)>, bool)], glue: &str) -> String {
    let items: Vec<String> = objects
        .iter()
        .map(|(members, spaced)| {
            let mut o = String::new();
            write_object(members, *spaced, &mut o);
            o
        })
        .collect();
    format!("[{glue}{}{glue}]", items.join(&format!(",{glue}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arrays_mezmo_bodies_and_ndjson_lines_are_archived_as_maps_would_be(
        objects in prop::collection::vec(object(), 0..6),
        glue in prop_oneof![Just(""), Just("\n  "), Just(" \t")],
        around in prop_oneof![Just(("", "")), Just(("  ", "\r")), Just(("\t", " \r"))],
        trust in any::<bool>(),
    ) {
        let json_array = array(&objects, glue);
        check(json_array.clone().into_bytes(), Format::Json, trust)?;
        check(json_array.clone().into_bytes(), Format::Sniff, trust)?;
        // The server never trusts a Mezmo line's `_meta`.
        check(format!(r#"{{"lines":{json_array}}}"#).into_bytes(), Format::Mezmo, false)?;
        let ndjson: String = objects
            .iter()
            .map(|(members, spaced)| {
                let mut o = String::new();
                write_object(members, *spaced, &mut o);
                format!("{}{o}{}\n", around.0, around.1)
            })
            .collect();
        check(ndjson.into_bytes(), Format::Ndjson, trust)?;
    }
}

#[test]
fn canonical_elements_and_lines_take_the_text_path() {
    let objects = [
        r#"{"line":"a","app":"web","level":"INFO","timestamp":1700000000000}"#,
        r#"{"line":"b","_id":"abc","_ts":"2023-11-14T23:13:20+01:00","_meta":{"x":1}}"#,
        r#"{"line":"c","_id":7,"ts":"junk","n":[1,2.5,{"é":"\u0000"}]}"#,
    ];
    let array = format!("[\n{}\n]", objects.join(",\n"));
    let taken = |body: String, format| check(body.into_bytes(), format, false).unwrap();
    assert_eq!(taken(array.clone(), Format::Json), 3);
    assert_eq!(taken(format!(r#"{{"lines":{array}}}"#), Format::Mezmo), 3);
    let ndjson: String = objects.iter().map(|o| format!("  {o} \r\n")).collect();
    assert_eq!(taken(ndjson, Format::Ndjson), 3);
    // One not in canonical form among them: the others still take the text path.
    let mixed = format!(r#"[{},{{"line": "spaced"}},{}]"#, objects[0], objects[1]);
    assert_eq!(taken(mixed, Format::Json), 2);
    // A Mezmo line without its `line` refuses the body, as the map path does.
    let body = br#"{"lines":[{"line":"a"},{"app":"x"}]}"#.to_vec();
    let e = by_source(request(body, Format::Mezmo, false)).unwrap_err();
    assert_eq!(e.to_string(), "lines[1]: missing the string field `line`");
}
