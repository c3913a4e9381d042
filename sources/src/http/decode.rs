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

/// [`for_each_object`], arrays walked (see [`walk_array`]) when `walk` is set.
fn objects(body: &[u8], format: Format, each: &mut Each<'_>, walk: bool) -> Result<(), BodyError> {
    let mut checked = Checked {
        each,
        rounded: false,
    };
    {
        match format {
            Format::Ndjson => ndjson(body, &mut checked),
            Format::Json => json(body, &mut checked, walk),
            Format::Text => text(body, &mut checked),
            Format::Mezmo => mezmo(body, &mut checked, walk),
            Format::Sniff => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => json(body, &mut checked, walk),
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

/// `application/json`: one array, walked element by element (objects in
/// canonical form handed over as text, see [`walk_array`]) and streamed by
/// `serde_json` from where the walk stops; anything else is read as a
/// sequence of JSON documents (one object, NDJSON sent under the wrong
/// label, pretty-printed objects one after another).
fn json(body: &[u8], each: &mut Checked<'_, '_>, walk: bool) -> Result<(), BodyError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return json_stream(body, each);
    }
    let skip = match walk {
        true => match walk_json(body, each)? {
            Walked::All => return Ok(()),
            Walked::Stopped(taken) => taken,
        },
        false => 0,
    };
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut rounded = false;
    let elements = Elements {
        each,
        failure: &mut failure,
        what: Elements::ARRAY,
        skip,
        rounded: &mut rounded,
    };
    let result = serde::Deserializer::deserialize_seq(&mut de, elements).and_then(|()| de.end());
    each.rounded |= rounded;
    streamed(failure, result)
}

/// How far a walk over a body's array got.
enum Walked {
    /// Through the whole body: every element was handed over.
    All,
    /// The body needs `serde_json`'s streaming parse for the rest (and its
    /// error messages): this many elements were handed over already.
    Stopped(usize),
}

/// A JSON body's array, walked element by element (see [`walk_array`]).
fn walk_json(body: &[u8], each: &mut Each<'_>) -> Result<Walked, BodyError> {
    let open = skip_whitespace(body, 0);
    if body.get(open) != Some(&b'[') {
        return Ok(Walked::Stopped(0));
    }
    Ok(match walk_array(body, open, each, Elements::ARRAY)? {
        Walk::Stopped(taken) => Walked::Stopped(taken),
        Walk::Closed { end, taken } if skip_whitespace(body, end) != body.len() => {
            Walked::Stopped(taken)
        }
        Walk::Closed { .. } => Walked::All,
    })
}

/// How far [`walk_array`] got.
enum Walk {
    /// The array ends before `end` (after its `]`); `taken` elements.
    Closed { end: usize, taken: usize },
    /// Stopped after `taken` elements, at something only `serde_json`'s
    /// streaming parse handles exactly (malformed JSON, deep nesting).
    Stopped(usize),
}

/// Deeper nesting than this in an element parsed on its own stops the walk:
/// the streaming parse, one or two levels deeper, then applies its own
/// recursion limit (128) and its error.
const WALK_DEPTH: usize = 100;

/// Walks the array whose `[` is at `open`, handing each element to `each`
/// as the streaming parse would (in order, numbered from 0, with the same
/// errors for elements of the wrong kind): an object first as text
/// ([`Objects::element`]), otherwise (or when declined) parsed on its own
/// and handed over as a map. Whatever the walk does not read exactly as the
/// streaming parse does — anything malformed — stops it, and the caller
/// resumes with the streaming parse, which skips the elements handed over
/// (all valid JSON) and gives today's errors.
fn walk_array(
    body: &[u8],
    open: usize,
    each: &mut Each<'_>,
    what: &'static str,
) -> Result<Walk, BodyError> {
    let mezmo = what == Elements::MEZMO;
    let mut i = skip_whitespace(body, open + 1);
    if body.get(i) == Some(&b']') {
        return Ok(Walk::Closed {
            end: i + 1,
            taken: 0,
        });
    }
    let mut taken = 0;
    loop {
        let taken_as_text = match body.get(i) {
            Some(b'{') => each.element(body, i, mezmo)?,
            _ => None,
        };
        i = match taken_as_text {
            Some(end) => end,
            None => {
                let mut alone =
                    serde_json::Deserializer::from_slice(&body[i..]).into_iter::<Value>();
                let Some(Ok(value)) = alone.next() else {
                    return Ok(Walk::Stopped(taken));
                };
                if deeper_than(&value, WALK_DEPTH) {
                    return Ok(Walk::Stopped(taken));
                }
                take(each, what, taken, value)?;
                i + alone.byte_offset()
            }
        };
        taken += 1;
        i = skip_whitespace(body, i);
        match body.get(i) {
            Some(b',') => i = skip_whitespace(body, i + 1),
            Some(b']') => return Ok(Walk::Closed { end: i + 1, taken }),
            _ => return Ok(Walk::Stopped(taken)),
        }
    }
}

/// Whether `value` nests deeper than `limit` arrays and objects (itself one).
fn deeper_than(value: &Value, limit: usize) -> bool {
    match value {
        _ if limit == 0 => matches!(value, Value::Array(_) | Value::Object(_)),
        Value::Array(items) => items.iter().any(|v| deeper_than(v, limit - 1)),
        Value::Object(m) => m.values().any(|v| deeper_than(v, limit - 1)),
        _ => false,
    }
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

/// Mezmo's `{"lines": [...]}`, its lines walked (see [`walk_mezmo`]) or
/// streamed one by one.
fn mezmo(body: &[u8], each: &mut Checked<'_, '_>, walk: bool) -> Result<(), BodyError> {
    let skip = match walk {
        true => match walk_mezmo(body, each)? {
            Walked::All => return Ok(()),
            Walked::Stopped(taken) => taken,
        },
        false => 0,
    };
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut rounded = false;
    let root = MezmoRoot {
        each,
        failure: &mut failure,
        skip,
        rounded: &mut rounded,
    };
    let result = serde::Deserializer::deserialize_map(&mut de, root).and_then(|()| de.end());
    each.rounded |= rounded;
    streamed(failure, result)
}

/// A Mezmo body as agents send it, `{"lines":[...]}`, walked element by
/// element (see [`walk_array`]); any other shape (other members, `lines`
/// not first) is left to the streaming parse.
fn walk_mezmo(body: &[u8], each: &mut Each<'_>) -> Result<Walked, BodyError> {
    let root = skip_whitespace(body, 0);
    let key = skip_whitespace(body, root + 1);
    let colon = skip_whitespace(body, key + br#""lines""#.len());
    let open = skip_whitespace(body, colon + 1);
    if body.get(root) != Some(&b'{')
        || !body[key.min(body.len())..].starts_with(br#""lines""#)
        || body.get(colon) != Some(&b':')
        || body.get(open) != Some(&b'[')
    {
        return Ok(Walked::Stopped(0));
    }
    Ok(match walk_array(body, open, each, Elements::MEZMO)? {
        Walk::Stopped(taken) => Walked::Stopped(taken),
        Walk::Closed { end, taken } => {
            let close = skip_whitespace(body, end);
            if body.get(close) == Some(&b'}') && skip_whitespace(body, close + 1) == body.len() {
                Walked::All
            } else {
                Walked::Stopped(taken)
            }
        }
    })
}

/// Visits an array, handing each element to `each` as it is parsed.
struct Elements<'a, 'b> {
    each: &'a mut Each<'b>,
    failure: &'a mut Option<BodyError>,
    what: &'static str,
    /// Leading elements handed over already (by [`walk_array`]), skipped.
    skip: usize,
    /// Set when a skipped element holds a number a parser may have rounded:
    /// those taken as text were not seen by [`Checked`], and a Mezmo body's
    /// other members can hold the integer that refuses the body.
    rounded: &'a mut bool,
}

impl Elements<'_, '_> {
    const ARRAY: &'static str = "array";
    const MEZMO: &'static str = "mezmo";
}

/// Hands element `i` of an array (`what`: [`Elements::ARRAY`] or
/// [`Elements::MEZMO`]) to `each`, or refuses it.
fn take(each: &mut Each<'_>, what: &'static str, i: usize, value: Value) -> Result<(), BodyError> {
    let object = if what == Elements::MEZMO {
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
    each.object(object)
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

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        // Valid JSON, each of them; parsed again for the rounding check only.
        while i < self.skip {
            let Some(value) = seq.next_element::<Value>()? else {
                return Ok(());
            };
            *self.rounded = *self.rounded || maybe_rounded(&value);
            i += 1;
        }
        while let Some(value) = seq.next_element::<Value>()? {
            if let Err(e) = take(self.each, self.what, i, value) {
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
    /// Leading elements of `lines` handed over already, skipped.
    skip: usize,
    /// See [`Elements::rounded`].
    rounded: &'a mut bool,
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
                    skip: self.skip,
                    rounded: &mut *self.rounded,
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
