//! Tests of body decoding and parsing.

use super::*;
use std::io::Write;

fn messages(events: &[Map<String, Value>]) -> Vec<String> {
    events
        .iter()
        .map(|e| Value::Object(e.clone()).to_string())
        .collect()
}

#[test]
fn ndjson_json_and_text() {
    let ndjson = parse(b"{\"a\":1}\r\n\n\"plain\"\n{\"b\":2}", Format::Ndjson).unwrap();
    assert_eq!(
        messages(&ndjson),
        vec![r#"{"a":1}"#, r#"{"message":"plain"}"#, r#"{"b":2}"#]
    );
    assert_eq!(parse(br#"[{"a":1},"x"]"#, Format::Json).unwrap().len(), 2);
    assert_eq!(parse(br#"{"a":1}"#, Format::Json).unwrap().len(), 1);
    assert_eq!(
        parse(b"{\"a\":1}\n{\"a\":2}\n", Format::Json)
            .unwrap()
            .len(),
        2,
        "NDJSON sent as application/json"
    );
    assert_eq!(
        messages(&parse(b"one\r\ntwo\n\n", Format::Text).unwrap()),
        vec![r#"{"message":"one"}"#, r#"{"message":"two"}"#]
    );
    assert_eq!(parse(b"  [{\"a\":1}]", Format::Sniff).unwrap().len(), 1);
    assert_eq!(parse(b"hello", Format::Sniff).unwrap().len(), 1);
}

#[test]
fn malformed_bodies_name_the_line() {
    let e = parse(b"{\"a\":1}\n{\"b\":\n{\"c\":3}", Format::Ndjson).unwrap_err();
    assert_eq!(
        e,
        BodyError::Malformed("line 2: invalid JSON: EOF while parsing a value (column 5)".into())
    );
    let e = parse(b"{\"a\":1}\n42\n", Format::Ndjson).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: expected a JSON object or string, found a number"
    );
    let e = parse(b"ok\n\xff\xfe\n", Format::Text).unwrap_err();
    assert_eq!(e.to_string(), "line 2: not valid UTF-8 at byte 1");
    assert!(parse(b"[{},", Format::Json)
        .unwrap_err()
        .to_string()
        .starts_with("invalid JSON: "));
    let deep = "[".repeat(10_000);
    assert!(
        parse(deep.as_bytes(), Format::Json).is_err(),
        "deep nesting is refused, not a stack overflow"
    );
}

#[test]
fn mezmo_lines() {
    let body = br#"{"lines":[{"line":"hi","app":"web","timestamp":1700000000000}]}"#;
    let events = parse(body, Format::Mezmo).unwrap();
    assert_eq!(events[0]["app"], "web");
    assert!(parse(br#"{"lines":[{"app":"x"}]}"#, Format::Mezmo)
        .unwrap_err()
        .to_string()
        .contains("lines[0]: missing the string field `line`"));
    assert!(parse(br#"{"nope":1}"#, Format::Mezmo).is_err());
}

#[test]
fn encodings_and_limits() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"hello\n").unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        decode(&gz, Some("gzip"), 100, &mut |_| true)
            .unwrap()
            .as_ref(),
        b"hello\n"
    );
    assert!(matches!(
        decode(&gz, Some("gzip"), 3, &mut |_| true),
        Err(BodyError::TooLarge(_))
    ));
    assert!(matches!(
        decode(&gz[..gz.len() - 4], Some("gzip"), 100, &mut |_| true),
        Err(BodyError::Malformed(_))
    ));
    assert!(matches!(
        decode(b"not gzip", Some("gzip"), 100, &mut |_| true),
        Err(BodyError::Malformed(_))
    ));
    let z = zstd::encode_all(&b"zz\n"[..], 3).unwrap();
    assert_eq!(
        decode(&z, Some("zstd"), 100, &mut |_| true)
            .unwrap()
            .as_ref(),
        b"zz\n"
    );
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zl.write_all(b"d\n").unwrap();
    assert_eq!(
        decode(&zl.finish().unwrap(), Some("deflate"), 100, &mut |_| true)
            .unwrap()
            .as_ref(),
        b"d\n"
    );
    assert!(matches!(
        decode(b"x", Some("br"), 100, &mut |_| true),
        Err(BodyError::Unsupported(_))
    ));
    assert!(matches!(
        format_of(Some("application/xml")),
        Err(BodyError::Unsupported(_))
    ));
    assert_eq!(
        format_of(Some("application/x-ndjson; charset=utf-8")),
        Ok(Format::Ndjson)
    );
}

#[test]
fn a_pretty_printed_object_without_content_type_is_one_event() {
    let body = b"{\n  \"level\": \"info\",\n  \"nested\": {\"a\": [1, 2]}\n}\n";
    let events = parse(body, Format::Sniff).unwrap();
    assert_eq!(
        messages(&events),
        vec![r#"{"level":"info","nested":{"a":[1,2]}}"#]
    );
    let two = b"{\n \"a\": 1\n}\n{\n \"b\": 2\n}\n";
    assert_eq!(parse(two, Format::Sniff).unwrap().len(), 2);
    assert_eq!(parse(two, Format::Json).unwrap().len(), 2);
    // One object per line stays NDJSON, with NDJSON's line-numbered errors.
    let e = parse(b"{\"a\":1}\n{\"b\":\n", Format::Sniff).unwrap_err();
    assert!(e.to_string().starts_with("line 2: invalid JSON"), "{e}");
}

#[test]
fn integers_beyond_64_bits_are_refused_with_their_line_not_rounded() {
    let body = b"{\"ok\":18446744073709551615,\"neg\":-9223372036854775808}\n{\"s\":\"123456789012345678901234567890\",\"big\":123456789012345678901234567890}\n";
    let e = parse(body, Format::Ndjson).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: the integer 123456789012345678901234567890 does not fit in 64 bits and would be archived rounded; send it as a string (column 45)"
    );
    let e = parse(b"[{\"x\":-99999999999999999999}]", Format::Json).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("line 1: the integer -99999999999999999999"),
        "{e}"
    );
    // Floats, large ones included, and digits inside strings are fine.
    let fine = b"{\"f\":1.5e300,\"g\":2e20,\"s\":\"99999999999999999999999\"}\n";
    assert_eq!(parse(fine, Format::Ndjson).unwrap().len(), 1);
    let e = parse(b"{\"inf\":1e400}\n", Format::Ndjson).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("line 1: invalid JSON: number out of range"),
        "{e}"
    );
}

#[test]
fn arrays_and_mezmo_lines_are_streamed_one_object_at_a_time() {
    let mut seen = 0;
    let mut stop_at_two = |_o: Map<String, Value>| {
        seen += 1;
        if seen == 2 {
            Err(BodyError::Malformed("stop".into()))
        } else {
            Ok(())
        }
    };
    let e = for_each_object(
        br#"[{"a":1},{"a":2},{"a":3}]"#,
        Format::Json,
        &mut stop_at_two,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "stop", "the consumer's error is the parse's");
    assert_eq!(seen, 2);
    let body = br#"{"other":{"x":[1]},"lines":[{"line":"a"},{"line":"b"}],"after":true}"#;
    assert_eq!(parse(body, Format::Mezmo).unwrap().len(), 2);
    let e = parse(br#"{"lines":[{"line":"a"}]} trailing"#, Format::Mezmo).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid JSON: trailing characters"),
        "{e}"
    );
}

/// What a body handed over, in order (each object as the map it parses to,
/// whether it came as text or as a map), and how it ended.
type Outcome = (Vec<Map<String, Value>>, Result<(), BodyError>);

/// Takes the objects in canonical form as text, the way the source does
/// (for Mezmo, those with a string `line`), and the rest as maps.
struct AsText(Vec<Map<String, Value>>);

impl Objects for AsText {
    fn object(&mut self, object: Map<String, Value>) -> Result<(), BodyError> {
        self.0.push(object);
        Ok(())
    }

    fn element(
        &mut self,
        body: &[u8],
        start: usize,
        mezmo: bool,
    ) -> Result<Option<usize>, BodyError> {
        let scanner = &mut sediment_core::event::Scanner::default();
        let Some(len) = scanner.leading_object(&body[start..], &mut |_, _| {}) else {
            return Ok(None);
        };
        let object: Map<String, Value> = serde_json::from_slice(&body[start..start + len])
            .expect("an object in canonical form parses");
        if mezmo && !object.get("line").is_some_and(Value::is_string) {
            return Ok(None);
        }
        self.0.push(object);
        Ok(Some(start + len))
    }
}

fn walked(body: &[u8], format: Format, as_text: bool) -> Outcome {
    if as_text {
        let mut each = AsText(Vec::new());
        let result = for_each_object(body, format, &mut each);
        return (each.0, result);
    }
    let mut objects = Vec::new();
    let result = for_each_object(body, format, &mut |o| {
        objects.push(o);
        Ok(())
    });
    (objects, result)
}

fn streamed_only(body: &[u8], format: Format) -> Outcome {
    let mut objects = Vec::new();
    let result = for_each_object_streamed(body, format, &mut |o| {
        objects.push(o);
        Ok(())
    });
    (objects, result)
}

#[test]
fn the_walk_over_arrays_hands_over_what_streaming_does() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    for body in [
        r#"[]"#.to_string(),
        " [ ] ".into(),
        r#"[{"a":1},{"b":2}]"#.into(),
        "[\n  {\"a\":1},\n  {\"a\": 2} ,\"s\", 3 ]\n".into(),
        r#"[{"a":1},]"#.into(),
        r#"[{"a":1}"#.into(),
        r#"[{"a":1}] x"#.into(),
        r#"[{"a":1}] [{"a":2}]"#.into(),
        r#"[{"a":1} {"a":2}]"#.into(),
        r#"[{"a":"\ud800"},{"a":1}]"#.into(),
        r#"[{"a":1e999}]"#.into(),
        r#"[{"a":1,"a":2},null]"#.into(),
        r#"[{"f":1e19},{"a":"x"},{"b":123456789012345678901234567890}]"#.into(),
        format!(r#"[{{"a":1}},{{"d":{}}}]"#, deep(125)),
        format!(r#"[{{"a":1}},{{"d":{}}}]"#, deep(126)),
        format!(r#"[{{"d":{}}},{{"a":1}}]"#, deep(99)),
        "\x0c[{\"a\":1}]".into(),
    ]
    .map(String::into_bytes)
    .into_iter()
    .chain([b"[{\"a\":1},{\"a\":\"\xff\"}]".to_vec()])
    {
        for as_text in [false, true] {
            assert_eq!(
                walked(&body, Format::Json, as_text),
                streamed_only(&body, Format::Json),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    for body in [
        r#"{"lines":[{"line":"a"},{"line":"b","app":"x"}]}"#.to_string(),
        r#" { "lines" : [ {"line":"a"} ] } "#.into(),
        r#"{"lines":[]}"#.into(),
        r#"{"lines":[{"line":"a"}],"other":1}"#.into(),
        r#"{"lines":[{"line":"a"}],"lines":[{"line":"b"}]}"#.into(),
        r#"{"other":1,"lines":[{"line":"a"}]}"#.into(),
        r#"{"line\u0073":[{"line":"a"}]}"#.into(),
        r#"{"lines":[{"line":"a"},{"line":1}]}"#.into(),
        r#"{"lines":[{"line":"a"},{"app":"x"}]}"#.into(),
        r#"{"lines":[{"line":"a"},"x"]}"#.into(),
        r#"{"lines":[{"line":"a"}]"#.into(),
        r#"{"lines":[{"line":"a"}]} x"#.into(),
        r#"{"lines":{"line":"a"}}"#.into(),
        r#"{"lines":[{"line":"a"}],}"#.into(),
        r#"[{"line":"a"}]"#.into(),
        // A number that may be rounded in a line taken as text, and the
        // integer that refuses the body outside the lines.
        r#"{"lines":[{"line":"a","f":1e19}],"x":123456789012345678901234567890}"#.into(),
        r#"{"lines":[{"line":"a","f":1.5}],"x":123456789012345678901234567890}"#.into(),
        r#"{"lines":[{"line":"a","f":1e19}],"x":1}"#.into(),
        format!(r#"{{"lines":[{{"line":"a"}},{{"d":{}}}]}}"#, deep(124)),
        format!(r#"{{"lines":[{{"line":"a"}},{{"d":{}}}]}}"#, deep(125)),
    ] {
        for as_text in [false, true] {
            assert_eq!(
                walked(body.as_bytes(), Format::Mezmo, as_text),
                streamed_only(body.as_bytes(), Format::Mezmo),
                "{body}"
            );
        }
    }
}

#[test]
fn ndjson_lines_are_offered_as_text_without_the_white_space_around_them() {
    struct Lines(Vec<Vec<u8>>);
    impl Objects for Lines {
        fn object(&mut self, o: Map<String, Value>) -> Result<(), BodyError> {
            self.0.push(Value::Object(o).to_string().into_bytes());
            Ok(())
        }
        fn line(&mut self, body: &[u8], range: std::ops::Range<usize>) -> Result<bool, BodyError> {
            self.0.push(body[range].to_vec());
            Ok(true)
        }
    }
    let mut lines = Lines(Vec::new());
    for_each_object(
        b" \t{\"a\":1} \r\n{\"b\":2}\r\r\n\x0c{\"c\":3}\n",
        Format::Ndjson,
        &mut lines,
    )
    .unwrap_err();
    assert_eq!(lines.0, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
}

mod walk_props {
    //! The walk against the streaming parse on arbitrary (often broken)
    //! array and Mezmo bodies: the same objects, in the same order, and
    //! the same error.

    use super::*;
    use proptest::prelude::*;

    fn element() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0..4u8, "[a-z]{0,3}").prop_map(|(n, s)| format!(r#"{{"line":"{s}","n":{n}}}"#)),
            1 => Just(r#"{"line": "spaced"}"#.to_string()),
            1 => Just(r#"{"line":"\u00e9"}"#.to_string()),
            1 => Just(r#"{"app":"no line"}"#.to_string()),
            1 => Just(r#"{"line":7}"#.to_string()),
            1 => Just(r#"{"a":[1,{"b":null}],"line":"x","a":2}"#.to_string()),
            1 => Just(r#""text""#.to_string()),
            1 => Just("12".to_string()),
            1 => Just("[true]".to_string()),
            1 => Just(r#"{"big":123456789012345678901234567890}"#.to_string()),
            1 => Just(r#"{"line":"f","f":1e19}"#.to_string()),
        ]
    }

    fn glue() -> impl Strategy<Value = String> {
        prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
    }

    /// An array body, maybe wrapped as Mezmo's, maybe damaged at one place.
    fn body() -> impl Strategy<Value = (Vec<u8>, bool)> {
        (
            prop::collection::vec((glue(), element(), glue()), 0..6),
            any::<bool>(),
            prop_oneof![
                Just(""),
                Just(r#","x":123456789012345678901234567890"#),
                Just(r#","x":1"#)
            ],
            prop::option::weighted(0.4, (any::<prop::sample::Index>(), 0..6u8)),
        )
            .prop_map(|(elements, mezmo, other, damage)| {
                let items: Vec<String> = elements
                    .iter()
                    .map(|(a, e, b)| format!("{a}{e}{b}"))
                    .collect();
                let array = format!("[{}]", items.join(","));
                let mut body = if mezmo {
                    format!(r#"{{"lines":{array}{other}}}"#).into_bytes()
                } else {
                    array.into_bytes()
                };
                if let Some((at, what)) = damage {
                    let at = at.index(body.len() + 1);
                    match what {
                        0 => body.truncate(at),
                        1 if at < body.len() => {
                            body.remove(at);
                        }
                        _ => body.insert(at, [b',', b']', b'}', b'"', 0xff][what as usize - 1]),
                    }
                }
                (body, mezmo)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn the_walk_is_the_streaming_parse((body, mezmo) in body(), as_text in any::<bool>()) {
            let format = if mezmo { Format::Mezmo } else { Format::Json };
            prop_assert_eq!(
                walked(&body, format, as_text),
                streamed_only(&body, format),
                "{}", String::from_utf8_lossy(&body)
            );
        }
    }
}
