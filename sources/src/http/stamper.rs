//! A body's objects → stamped events, on the text path where it can be.
//!
//! An NDJSON line already in canonical form (see `sediment_core::event::scan`)
//! becomes an event that keeps its text as a slice of the request's buffer
//! (the body, or its decompressed text), shared by all the request's events:
//! such an event costs its small header on top of the text the request holds
//! anyway. A plain-text line is written as `{"message":…}` into an arena
//! of 64 KiB blocks shared by many events. The elements of a JSON array
//! and the lines of a Mezmo body are taken the same way as NDJSON lines
//! when they are objects in canonical form (a slice of the buffer each).
//! Other objects (pretty-printed or concatenated JSON documents,
//! non-canonical lines or elements, JSON strings) are parsed into maps,
//! stamped and serialised.
//!
//! The text path and the map path give the same archive line for the same
//! object: `sediment_core::event` holds one to the other, and the property
//! tests in `props` do so for whole bodies.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use sediment_core::event::{key_is, Replaced, Scanner, Stamp};
use sediment_core::Event;
use serde_json::{Map, Value};

use super::decode::{BodyError, Objects};

/// Stamps a body's objects into events and hands them to `sink`.
pub(super) struct Stamper<'r, F> {
    /// The text being parsed, shared by the events kept as text.
    text: Bytes,
    stamp: Stamp<'r>,
    /// `stamp.meta` as JSON text, shared by the events kept as text.
    meta: Bytes,
    scanner: Scanner,
    /// Where plain-text lines are written as `{"message":…}`, in blocks
    /// shared by many events.
    arena: BytesMut,
    replaced: &'r mut Replaced,
    sink: F,
}

/// Block size of [`Stamper::arena`].
const ARENA_BLOCK: usize = 64 * 1024;

impl<'r, F: FnMut(Event) -> Result<(), BodyError>> Stamper<'r, F> {
    /// A stamper of the objects of `text` (a request's body, or its
    /// decompressed text) by `stamp`, counting what it replaces in
    /// `replaced`; each event goes to `sink`.
    pub(super) fn new(text: Bytes, stamp: Stamp<'r>, replaced: &'r mut Replaced, sink: F) -> Self {
        Stamper {
            text,
            stamp,
            meta: Bytes::from(serde_json::to_vec(stamp.meta).unwrap_or_default()),
            scanner: Scanner::default(),
            arena: BytesMut::new(),
            replaced,
            sink,
        }
    }

    /// Stamps `text` on the text path and hands the event on; `false` when the
    /// text path declines it (the caller then takes the map path).
    fn stamp_text(&mut self, text: Bytes) -> Result<bool, BodyError> {
        match Event::stamp_json(
            text,
            &self.stamp,
            &self.meta,
            &mut self.scanner,
            self.replaced,
        ) {
            Some(event) => (self.sink)(event).map(|()| true),
            None => Ok(false),
        }
    }
}

impl<F: FnMut(Event) -> Result<(), BodyError>> Objects for Stamper<'_, F> {
    fn object(&mut self, object: Map<String, Value>) -> Result<(), BodyError> {
        let event = Event::stamp_with(object, &self.stamp, self.replaced);
        (self.sink)(event)
    }

    fn line(&mut self, body: &[u8], range: Range<usize>) -> Result<bool, BodyError> {
        debug_assert_eq!(body.len(), self.text.len(), "lines of the shared text");
        self.stamp_text(self.text.slice(range))
    }

    fn element(
        &mut self,
        body: &[u8],
        start: usize,
        mezmo: bool,
    ) -> Result<Option<usize>, BodyError> {
        debug_assert_eq!(body.len(), self.text.len(), "elements of the shared text");
        // Counted only when taken: a Mezmo line without its `line` is not.
        let mut replaced = Replaced::default();
        let mut has_line = false;
        let object = &self.text[start..];
        let Some((event, end)) = Event::stamp_json_at(
            &self.text,
            start,
            &self.stamp,
            &self.meta,
            &mut self.scanner,
            &mut replaced,
            &mut |key, value| {
                // What the map path asks of a Mezmo line: a string `line`.
                if mezmo && key_is(key, "line") {
                    has_line = object[value.start] == b'"';
                }
            },
        ) else {
            return Ok(None);
        };
        if mezmo && !has_line {
            return Ok(None);
        }
        *self.replaced += replaced;
        (self.sink)(event)?;
        Ok(Some(end))
    }

    fn text_line(&mut self, line: &str) -> Result<bool, BodyError> {
        let arena = &mut self.arena;
        if arena.capacity() - arena.len() < line.len() + 16 {
            arena.reserve(ARENA_BLOCK.max(2 * line.len() + 16));
        }
        arena.extend_from_slice(b"{\"message\":");
        // serde_json's escaping, as serialising the map would write it.
        let _ = serde_json::to_writer((&mut *arena).writer(), line);
        arena.extend_from_slice(b"}");
        // What serde_json writes is canonical, so the text path takes it.
        let text = arena.split().freeze();
        self.stamp_text(text)
    }
}
