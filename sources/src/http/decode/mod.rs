//! Request bodies → objects: content types, the body formats, line-numbered
//! errors. Everything here is synchronous and runs on the blocking pool:
//! decompressing and parsing a large body must not stall the async runtime.
//!
//! Layout:
//! - this module: the formats ([`format_of`]), the receiver of a body's
//!   objects ([`Objects`]) and [`for_each_object`], which reads NDJSON, plain
//!   text and streams of JSON documents itself, and refuses integers that do
//!   not fit in 64 bits;
//! - [`encoding`]: `Content-Encoding`s, decompressed within `max_body_size`
//!   and the memory budget;
//! - [`arrays`]: JSON arrays and Mezmo's `{"lines": [...]}`, walked
//!   element by element so that objects in canonical form reach the
//!   receiver as text, with `serde_json`'s streaming parse (and its errors)
//!   wherever the walk stops.
//!
//! A receiver may take an NDJSON line, an array element or a text line as it
//! is (the HTTP source keeps the text of objects already in canonical form,
//! see `sediment_core::event::scan`); whatever it declines is parsed into a
//! `serde_json` map. Both ways give the same objects, in the same order, and
//! the same errors.

mod arrays;
mod encoding;

use serde_json::{Map, Value};

pub use encoding::decode;

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

    /// One element of a JSON array (a JSON body's, or a Mezmo body's
    /// `lines`, `mezmo` set) that starts with `{` at `start` of `body`,
    /// before it is parsed: `Some(end)` when the receiver took
    /// `body[start..end]` as it is (an object in canonical form, see
    /// `sediment_core::event::scan`; for Mezmo, one with a string `line`);
    /// then it is not parsed. `None` parses it and hands it to
    /// [`Objects::object`], with the errors of a malformed element.
    fn element(
        &mut self,
        _body: &[u8],
        _start: usize,
        _mezmo: bool,
    ) -> Result<Option<usize>, BodyError> {
        Ok(None)
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

/// Notes the parsed objects that may hold a rounded integer. Lines and
/// elements taken as text hold no integer past 64 bits (it is not in
/// canonical form); a float there that may be rounded only matters for the
/// integers of a Mezmo body outside its lines, and the streaming parse
/// checks the elements it skips for it (see [`arrays`]).
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

    fn element(
        &mut self,
        body: &[u8],
        start: usize,
        mezmo: bool,
    ) -> Result<Option<usize>, BodyError> {
        self.each.element(body, start, mezmo)
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
    objects(body, format, each, true)
}

/// [`for_each_object`] without the walk over arrays: a JSON array or a Mezmo
/// body streamed by `serde_json` alone, every element handed over as a map
/// (the reference that tests hold the walk to).
#[cfg(test)]
pub fn for_each_object_streamed(
    body: &[u8],
    format: Format,
    each: &mut Each<'_>,
) -> Result<(), BodyError> {
    objects(body, format, each, false)
}

/// [`for_each_object`], arrays walked (see [`arrays`]) when `walk` is set.
fn objects(body: &[u8], format: Format, each: &mut Each<'_>, walk: bool) -> Result<(), BodyError> {
    let mut checked = Checked {
        each,
        rounded: false,
    };
    {
        match format {
            Format::Ndjson => ndjson(body, &mut checked),
            Format::Json => arrays::json(body, &mut checked, walk),
            Format::Text => text(body, &mut checked),
            Format::Mezmo => arrays::mezmo(body, &mut checked, walk),
            Format::Sniff => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => arrays::json(body, &mut checked, walk),
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
        // White space around the object is JSON's to skip: the object parses
        // to the same map with or without it.
        let object = trim_json_whitespace(line);
        if object.first() == Some(&b'{') {
            let start = object.as_ptr() as usize - body.as_ptr() as usize;
            if each.line(body, start..start + object.len())? {
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

/// The first index from `i` that is not JSON white space (what `serde_json`
/// skips: space, tab, line feed, carriage return).
fn skip_whitespace(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `line` without the JSON white space around it.
fn trim_json_whitespace(line: &[u8]) -> &[u8] {
    let start = skip_whitespace(line, 0);
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(start, |i| i + 1);
    &line[start..end.max(start)]
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
mod tests;
