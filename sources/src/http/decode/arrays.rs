//! JSON arrays (`application/json`, sniffed) and Mezmo's `{"lines": [...]}`,
//! element by element.
//!
//! The elements are walked here, without `serde_json`: an object is offered
//! to the receiver as text ([`Objects::element`]; the HTTP source keeps it
//! as a slice of the body when it is in canonical form), anything else (or
//! an object declined) is parsed on its own by `serde_json` and handed over
//! as a map. The walk only reads what it can read exactly as `serde_json`'s
//! streaming parse of the whole body would (the same elements, numbered the
//! same, with the same errors for elements of the wrong kind); at anything
//! else — malformed JSON, an element nested deeper than [`WALK_DEPTH`], text
//! after the array, a Mezmo body with other members or `lines` not first —
//! it stops, and the streaming parse runs from the start, skipping the
//! elements handed over already, so that errors, their line and column and
//! the 64-bit integer check are exactly what the streaming parse alone gives.
//!
//! [`Objects::element`]: super::Objects::element

use serde_json::Value;

use super::{json_reason, json_stream, kind, maybe_rounded, skip_whitespace, to_object};
use super::{BodyError, Checked, Each};

/// `application/json`: one array, walked element by element (objects in
/// canonical form handed over as text, see [`walk_array`]) and streamed by
/// `serde_json` from where the walk stops; anything else is read as a
/// sequence of JSON documents (one object, NDJSON sent under the wrong
/// label, pretty-printed objects one after another).
pub(super) fn json(body: &[u8], each: &mut Checked<'_, '_>, walk: bool) -> Result<(), BodyError> {
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
/// ([`Objects::element`](super::Objects::element)), otherwise (or when
/// declined) parsed on its own and handed over as a map. Whatever the walk does not read exactly as the
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

/// Mezmo's `{"lines": [...]}`, its lines walked (see [`walk_mezmo`]) or
/// streamed one by one.
pub(super) fn mezmo(body: &[u8], each: &mut Checked<'_, '_>, walk: bool) -> Result<(), BodyError> {
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
