//! Request bodies → events: content encodings, content types, line-numbered errors.
//!
//! Everything here is synchronous and runs on the blocking pool: decompressing and
//! parsing a large body must not stall the async runtime.

use std::io::Read;

use serde_json::{Map, Value};

/// Why a body was refused; nothing of it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// 400: malformed.
    #[error("{0}")]
    Malformed(String),
    /// 413: larger than `max_body_size` once decompressed.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type or encoding sediment does not read.
    #[error("{0}")]
    Unsupported(String),
}

/// How the events are written in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON value per line.
    Ndjson,
    /// One JSON array or object (several concatenated documents are read as NDJSON).
    Json,
    /// One event per line of text.
    Text,
    /// Decide from the first non-blank byte.
    Sniff,
    /// Mezmo's `{"lines": [...]}`.
    Mezmo,
}

/// The format named by a `Content-Type` header value.
pub fn format_of(content_type: Option<&str>) -> Result<Format, BodyError> {
    let Some(ct) = content_type else {
        return Ok(Format::Sniff);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonlines" | "application/x-jsonlines" | "application/jsonl" => Ok(Format::Ndjson),
        "application/json" => Ok(Format::Json),
        "text/plain" => Ok(Format::Text),
        "" | "application/octet-stream" => Ok(Format::Sniff),
        other => Err(BodyError::Unsupported(format!(
            "unsupported Content-Type `{other}`: send application/x-ndjson, application/json or text/plain"
        ))),
    }
}

/// Decompresses `body` per `Content-Encoding`, refusing more than `max` bytes out.
pub fn decode(body: &[u8], encoding: Option<&str>, max: u64) -> Result<Vec<u8>, BodyError> {
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // HTTP's "deflate" is zlib-wrapped; some clients send raw deflate anyway.
        "deflate" if body.first().is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(body))
        }
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(body)),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| BodyError::Malformed(format!("body is not valid zstd: {e}")))?,
        ),
        other => {
            return Err(BodyError::Unsupported(format!(
                "unsupported Content-Encoding `{other}`: send gzip, zstd, deflate or none"
            )))
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max as usize));
    reader
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Malformed(format!("body is not valid {encoding}: {e}")))?;
    if out.len() as u64 > max {
        return Err(BodyError::TooLarge(format!(
            "the decompressed body is larger than max_body_size ({max} bytes)"
        )));
    }
    Ok(out)
}

/// Parses a decoded body into JSON objects (not yet stamped).
pub fn parse(body: &[u8], format: Format) -> Result<Vec<Map<String, Value>>, BodyError> {
    match format {
        Format::Ndjson => parse_ndjson(body),
        Format::Json => parse_json(body),
        Format::Text => parse_text(body),
        Format::Mezmo => parse_mezmo(body),
        Format::Sniff => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => parse_json(body),
            Some(b'{') => parse_ndjson(body),
            _ => parse_text(body),
        },
    }
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<Map<String, Value>>, BodyError> {
    let mut events = Vec::with_capacity(body.len() / 200 + 1);
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            BodyError::Malformed(format!(
                "line {}: invalid JSON: {}",
                index + 1,
                json_reason(&e, false)
            ))
        })?;
        events.push(to_object(value).map_err(|what| {
            BodyError::Malformed(format!(
                "line {}: expected a JSON object or string, found {what}",
                index + 1
            ))
        })?);
    }
    Ok(events)
}

fn parse_json(body: &[u8]) -> Result<Vec<Map<String, Value>>, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                to_object(v).map_err(|what| {
                    BodyError::Malformed(format!(
                        "element {i} of the array: expected a JSON object or string, found {what}"
                    ))
                })
            })
            .collect(),
        Ok(value) => Ok(vec![to_object(value).map_err(|what| {
            BodyError::Malformed(format!(
                "expected a JSON object, array or string, found {what}"
            ))
        })?]),
        // Several documents one per line under `application/json`: a common NDJSON label mix-up.
        Err(e) if e.to_string().starts_with("trailing characters") => parse_ndjson(body),
        Err(e) => Err(BodyError::Malformed(format!(
            "invalid JSON: {}",
            json_reason(&e, true)
        ))),
    }
}

fn parse_text(body: &[u8]) -> Result<Vec<Map<String, Value>>, BodyError> {
    let mut events = Vec::with_capacity(body.len() / 100 + 1);
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|e| {
            BodyError::Malformed(format!(
                "line {}: not valid UTF-8 at byte {}",
                index + 1,
                e.valid_up_to() + 1
            ))
        })?;
        let mut event = Map::new();
        event.insert("message".into(), Value::String(text.to_owned()));
        events.push(event);
    }
    Ok(events)
}

fn parse_mezmo(body: &[u8]) -> Result<Vec<Map<String, Value>>, BodyError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::Malformed(format!("invalid JSON: {}", json_reason(&e, true))))?;
    let Value::Object(mut root) = value else {
        return Err(BodyError::Malformed(
            "expected an object with a `lines` array".into(),
        ));
    };
    let Some(Value::Array(lines)) = root.remove("lines") else {
        return Err(BodyError::Malformed(
            "expected an object with a `lines` array".into(),
        ));
    };
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| match line {
            Value::Object(m) if m.get("line").is_some_and(Value::is_string) => Ok(m),
            Value::Object(_) => Err(BodyError::Malformed(format!(
                "lines[{i}]: missing the string field `line`"
            ))),
            other => Err(BodyError::Malformed(format!(
                "lines[{i}]: expected an object, found {}",
                kind(&other)
            ))),
        })
        .collect()
}

fn to_object(value: Value) -> Result<Map<String, Value>, &'static str> {
    match value {
        Value::Object(m) => Ok(m),
        Value::String(s) => {
            let mut m = Map::new();
            m.insert("message".into(), Value::String(s));
            Ok(m)
        }
        other => Err(kind(&other)),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message with its position spelt for humans.
fn json_reason(e: &serde_json::Error, with_line: bool) -> String {
    let message = e.to_string();
    let reason = message.split(" at line ").next().unwrap_or(&message);
    if with_line {
        format!("{reason} (line {}, column {})", e.line(), e.column())
    } else {
        format!("{reason} (column {})", e.column())
    }
}

#[cfg(test)]
mod tests {
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
            BodyError::Malformed(
                "line 2: invalid JSON: EOF while parsing a value (column 5)".into()
            )
        );
        let e = parse(b"{\"a\":1}\n42\n", Format::Ndjson).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: expected a JSON object or string, found a number"
        );
        let e = parse(b"ok\n\xff\xfe\n", Format::Text).unwrap_err();
        assert_eq!(e.to_string(), "line 2: not valid UTF-8 at byte 1");
        assert!(parse(b"[1,", Format::Json)
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
        assert_eq!(decode(&gz, Some("gzip"), 100).unwrap(), b"hello\n");
        assert!(matches!(
            decode(&gz, Some("gzip"), 3),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            decode(&gz[..gz.len() - 4], Some("gzip"), 100),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"not gzip", Some("gzip"), 100),
            Err(BodyError::Malformed(_))
        ));
        let z = zstd::encode_all(&b"zz\n"[..], 3).unwrap();
        assert_eq!(decode(&z, Some("zstd"), 100).unwrap(), b"zz\n");
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(b"d\n").unwrap();
        assert_eq!(
            decode(&zl.finish().unwrap(), Some("deflate"), 100).unwrap(),
            b"d\n"
        );
        assert!(matches!(
            decode(b"x", Some("br"), 100),
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
}
