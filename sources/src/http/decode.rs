//! Request bodies → events: content encodings, content types, line-numbered errors.
//!
//! Everything here is synchronous and runs on the blocking pool: decompressing and
//! parsing a large body must not stall the async runtime.

use std::borrow::Cow;
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
    /// 503: the source's memory budget has no room for it now.
    #[error("{0}")]
    Busy(String),
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

/// Decompresses `body` per `Content-Encoding`, refusing more than `max` bytes
/// out. `room` is asked before the output buffer grows by that many bytes (the
/// source's memory budget); a `false` stops with [`BodyError::Busy`]. An
/// unencoded body is returned as it is, without a copy.
pub fn decode<'a>(
    body: &'a [u8],
    encoding: Option<&str>,
    max: u64,
    room: &mut dyn FnMut(usize) -> bool,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(Cow::Borrowed(body)),
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
    let too_large = || {
        BodyError::TooLarge(format!(
            "the decompressed body is larger than max_body_size ({max} bytes)"
        ))
    };
    let mut out: Vec<u8> = Vec::new();
    let mut step = [0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut step) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BodyError::Malformed(format!(
                    "body is not valid {encoding}: {e}"
                )))
            }
        };
        if (out.len() + n) as u64 > max {
            return Err(too_large());
        }
        if out.len() + n > out.capacity() {
            let grow = out
                .capacity()
                .max(256 * 1024)
                .min(max as usize + 1 - out.len());
            let grow = grow.max(n);
            if !room(grow) {
                return Err(BodyError::Busy(
                    "sediment is holding as much request data as memory_limit allows; retry later"
                        .into(),
                ));
            }
            out.reserve_exact(grow);
        }
        out.extend_from_slice(&step[..n]);
    }
    Ok(Cow::Owned(out))
}

/// Receives a body's objects one at a time; an error stops the parse.
pub type Each<'a> = dyn Objects + 'a;

/// What [`for_each_object`] hands a body's objects to.
pub trait Objects {
    /// One parsed object.
    fn object(&mut self, object: Map<String, Value>) -> Result<(), BodyError>;

    /// One NDJSON line that starts with `{`, as the byte range of `body`,
    /// before it is parsed: `true` when the receiver took it as it is (as
    /// JSON text in canonical form, see `sediment_core::event::scan`); then
    /// it is not parsed. `false` parses it and hands it to
    /// [`Objects::object`], with the errors of a malformed line.
    fn line(&mut self, _body: &[u8], _range: std::ops::Range<usize>) -> Result<bool, BodyError> {
        Ok(false)
    }

    /// One line of a plain-text body, before it becomes `{"message": line}`:
    /// `true` when the receiver took it as it is (writing that object's text
    /// itself); `false` hands the map to [`Objects::object`].
    fn text_line(&mut self, _line: &str) -> Result<bool, BodyError> {
        Ok(false)
    }
}

impl<F: FnMut(Map<String, Value>) -> Result<(), BodyError>> Objects for F {
    fn object(&mut self, object: Map<String, Value>) -> Result<(), BodyError> {
        self(object)
    }
}

/// Notes the parsed objects that may hold a rounded integer. Lines taken as
/// text hold none: integers past 64 bits are not in canonical form.
struct Checked<'a, 'b> {
    each: &'a mut Each<'b>,
    rounded: bool,
}

impl Objects for Checked<'_, '_> {
    fn object(&mut self, o: Map<String, Value>) -> Result<(), BodyError> {
        self.rounded = self.rounded || o.values().any(maybe_rounded);
        self.each.object(o)
    }

    fn line(&mut self, body: &[u8], range: std::ops::Range<usize>) -> Result<bool, BodyError> {
        self.each.line(body, range)
    }

    fn text_line(&mut self, line: &str) -> Result<bool, BodyError> {
        self.each.text_line(line)
    }
}

/// Parses a decoded body into JSON objects (not yet stamped), all at once
/// (the unit tests and the `http_body` fuzz target).
#[allow(dead_code)]
pub fn parse(body: &[u8], format: Format) -> Result<Vec<Map<String, Value>>, BodyError> {
    let mut objects = Vec::new();
    for_each_object(body, format, &mut |o| {
        objects.push(o);
        Ok(())
    })?;
    Ok(objects)
}

/// Hands every object of a decoded body to `each`, in order, holding one at a
/// time: a large body costs the memory of its objects only as long as `each`
/// keeps them. An integer a JSON parser would have to round (beyond 64 bits)
/// refuses the body, after every object was seen, so a caller that keeps
/// nothing until the end stays all-or-nothing.
pub fn for_each_object(body: &[u8], format: Format, each: &mut Each<'_>) -> Result<(), BodyError> {
    let mut checked = Checked {
        each,
        rounded: false,
    };
    {
        match format {
            Format::Ndjson => ndjson(body, &mut checked),
            Format::Json => json(body, &mut checked),
            Format::Text => text(body, &mut checked),
            Format::Mezmo => mezmo(body, &mut checked),
            Format::Sniff => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => json(body, &mut checked),
                // A pretty-printed object spans lines: its first line is not a whole value.
                Some(b'{') if first_line_incomplete(body) => json_stream(body, &mut checked),
                Some(b'{') => ndjson(body, &mut checked),
                _ => text(body, &mut checked),
            },
        }?;
    }
    if checked.rounded {
        if let Some(e) = inexact_integer(body) {
            return Err(e);
        }
    }
    Ok(())
}

fn ndjson(body: &[u8], each: &mut Each<'_>) -> Result<(), BodyError> {
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'{') {
            let start = line.as_ptr() as usize - body.as_ptr() as usize;
            if each.line(body, start..start + line.len())? {
                continue;
            }
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            BodyError::Malformed(format!(
                "line {}: invalid JSON: {}",
                index + 1,
                json_reason(&e, false)
            ))
        })?;
        each.object(to_object(value).map_err(|what| {
            BodyError::Malformed(format!(
                "line {}: expected a JSON object or string, found {what}",
                index + 1
            ))
        })?)?;
    }
    Ok(())
}

/// `application/json`: one array, streamed element by element; anything else
/// is read as a sequence of JSON documents (one object, NDJSON sent under the
/// wrong label, pretty-printed objects one after another).
fn json(body: &[u8], each: &mut Each<'_>) -> Result<(), BodyError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return json_stream(body, each);
    }
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let elements = Elements {
        each,
        failure: &mut failure,
        what: Elements::ARRAY,
    };
    let result = serde::Deserializer::deserialize_seq(&mut de, elements).and_then(|()| de.end());
    streamed(failure, result)
}

/// The result of a streamed parse: the consumer's error if it stopped it, else
/// the parser's.
fn streamed(
    failure: Option<BodyError>,
    result: Result<(), serde_json::Error>,
) -> Result<(), BodyError> {
    match (failure, result) {
        (Some(e), _) => Err(e),
        (None, Ok(())) => Ok(()),
        (None, Err(e)) => Err(BodyError::Malformed(format!(
            "invalid JSON: {}",
            json_reason(&e, true)
        ))),
    }
}

fn json_stream(body: &[u8], each: &mut Each<'_>) -> Result<(), BodyError> {
    let documents = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (i, document) in documents.enumerate() {
        let value = document.map_err(|e| {
            BodyError::Malformed(format!("invalid JSON: {}", json_reason(&e, true)))
        })?;
        each.object(to_object(value).map_err(|what| {
            BodyError::Malformed(format!(
                "document {} of the body: expected a JSON object, array or string, found {what}",
                i + 1
            ))
        })?)?;
    }
    Ok(())
}

fn first_line_incomplete(body: &[u8]) -> bool {
    let line = body
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or_default();
    serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err_and(|e| e.is_eof())
}

fn text(body: &[u8], each: &mut Each<'_>) -> Result<(), BodyError> {
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
        if each.text_line(text)? {
            continue;
        }
        let mut event = Map::new();
        event.insert("message".into(), Value::String(text.to_owned()));
        each.object(event)?;
    }
    Ok(())
}

/// Mezmo's `{"lines": [...]}`, its lines streamed one by one.
fn mezmo(body: &[u8], each: &mut Each<'_>) -> Result<(), BodyError> {
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let root = MezmoRoot {
        each,
        failure: &mut failure,
    };
    let result = serde::Deserializer::deserialize_map(&mut de, root).and_then(|()| de.end());
    streamed(failure, result)
}

/// Visits an array, handing each element to `each` as it is parsed.
struct Elements<'a, 'b> {
    each: &'a mut Each<'b>,
    failure: &'a mut Option<BodyError>,
    what: &'static str,
}

impl Elements<'_, '_> {
    const ARRAY: &'static str = "array";
    const MEZMO: &'static str = "mezmo";

    fn take(&mut self, i: usize, value: Value) -> Result<(), BodyError> {
        let object = if self.what == Self::MEZMO {
            match value {
                Value::Object(m) if m.get("line").is_some_and(Value::is_string) => m,
                Value::Object(_) => {
                    return Err(BodyError::Malformed(format!(
                        "lines[{i}]: missing the string field `line`"
                    )))
                }
                other => {
                    return Err(BodyError::Malformed(format!(
                        "lines[{i}]: expected an object, found {}",
                        kind(&other)
                    )))
                }
            }
        } else {
            to_object(value).map_err(|what| {
                BodyError::Malformed(format!(
                    "element {i} of the array: expected a JSON object or string, found {what}"
                ))
            })?
        };
        self.each.object(object)
    }
}

impl<'de> serde::de::Visitor<'de> for Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.what == Self::MEZMO {
            "the `lines` array"
        } else {
            "a JSON array"
        })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            if let Err(e) = self.take(i, value) {
                *self.failure = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
            i += 1;
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Elements<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Visits a Mezmo body's root object, streaming its `lines`.
struct MezmoRoot<'a, 'b> {
    each: &'a mut Each<'b>,
    failure: &'a mut Option<BodyError>,
}

impl<'de> serde::de::Visitor<'de> for MezmoRoot<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with a `lines` array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "lines" && !found {
                found = true;
                map.next_value_seed(Elements {
                    each: &mut *self.each,
                    failure: &mut *self.failure,
                    what: Elements::MEZMO,
                })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if !found {
            *self.failure = Some(BodyError::Malformed(
                "expected an object with a `lines` array".into(),
            ));
            return Err(serde::de::Error::custom("stopped"));
        }
        Ok(())
    }
}

/// A number a JSON parser may have rounded: an integral float beyond `i64`.
fn maybe_rounded(value: &Value) -> bool {
    match value {
        Value::Number(n) => n
            .as_f64()
            .is_some_and(|f| n.is_f64() && f.fract() == 0.0 && f.abs() >= 9.2e18),
        Value::Array(items) => items.iter().any(maybe_rounded),
        Value::Object(m) => m.values().any(maybe_rounded),
        _ => false,
    }
}

/// The first integer literal of `body` (outside strings) that fits neither
/// `i64` nor `u64`: it would be archived rounded, so the body is refused.
fn inexact_integer(body: &[u8]) -> Option<BodyError> {
    let (mut in_string, mut escaped) = (false, false);
    let (mut line, mut line_start) = (1, 0);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < body.len()
                && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = std::str::from_utf8(&body[start..i]).unwrap_or("");
            let integral = !token.contains(['.', 'e', 'E']);
            if integral && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                let shown: String = token.chars().take(40).collect();
                return Some(BodyError::Malformed(format!(
                    "line {line}: the integer {shown} does not fit in 64 bits and would be archived rounded; send it as a string (column {})",
                    start - line_start + 1
                )));
            }
            continue;
        }
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
        i += 1;
    }
    None
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
#[path = "decode_tests.rs"]
mod tests;
