//! The line stage of reading one object: blocks of whole inflated lines →
//! the id and time of each line → range and query filters → [`Chunk`]s.
//!
//! Restore consumes objects strictly in plan order, so the object being
//! consumed sets the pace, and its lines are what costs (validating each as a
//! JSON object is about half of a restore's CPU): with one thread per object,
//! only one core worked once the objects behind it had filled their small
//! read-ahead. So an object's work is spread over threads of the blocking
//! pool: one inflates and cuts the text into blocks of whole lines, numbering
//! them ([`crate::read`]); [`WORKERS`] judge alternate blocks ([`work`]); one
//! puts the judged blocks back in order and sends them on ([`sequence`]).
//! Blocks go to the workers in turn and come back in the same turn, so the
//! order needs no numbering.

use std::borrow::Cow;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::dedup::id_key;
use crate::read::{Chunk, Filters, LineCounts, Object, ObjectEnd, ReadEvent, Record};
use crate::time::line_time_ms;

/// Threads judging one object's blocks.
pub(crate) const WORKERS: usize = 2;
/// Line numbers kept per damaged object for the report.
const BAD_LINES_REPORTED: usize = 5;

/// What the inflating thread sends a worker.
#[derive(Debug)]
pub(crate) enum Block {
    /// Whole lines (each ending in `\n`, but for an object's last line).
    Lines {
        /// The text.
        text: Vec<u8>,
        /// The index of its first non-empty line among the object's.
        first_raw: u64,
    },
    /// The object ended; nothing follows.
    Last(Finish),
}

/// How the inflated text of an object ended.
#[derive(Debug)]
pub(crate) struct Finish {
    /// Compressed bytes taken.
    pub taken: u64,
    /// Non-empty lines in the blocks sent.
    pub raw: u64,
    /// What broke the gzip stream, if it broke (one clause).
    pub broken: Option<String>,
}

/// What a worker sends the sequencer.
pub(crate) enum Judged {
    /// A judged block.
    Block {
        /// Its kept lines.
        chunk: Chunk,
        /// Lines that are not JSON objects.
        invalid: u64,
        /// The first few of their numbers.
        bad_lines: Vec<u64>,
    },
    /// The object ended.
    Last(Finish),
}

/// The sending ends of a worker: where its judged blocks go, where the
/// block buffers go back for reuse.
pub(crate) struct Worker {
    /// To the sequencer.
    judged: SyncSender<Judged>,
    /// To the inflating thread.
    pub spare: Sender<Vec<u8>>,
}

/// The channels joining [`WORKERS`] workers to the sequencer: the workers'
/// ends, and the sequencer's.
pub(crate) fn channels(spare: &Sender<Vec<u8>>) -> (Vec<Worker>, Vec<Receiver<Judged>>) {
    (0..WORKERS)
        .map(|_| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let worker = Worker {
                judged: tx,
                spare: spare.clone(),
            };
            (worker, rx)
        })
        .unzip()
}

/// Judges the lines of every block it is given, in order, until the last.
pub(crate) fn work(
    blocks: Receiver<Block>,
    to: Worker,
    object: &Object,
    filters: &Filters,
    replay: u64,
) {
    while let Ok(block) = blocks.recv() {
        let judged = match block {
            Block::Lines { text, first_raw } => {
                let mut stage = Lines {
                    object,
                    filters,
                    replay,
                    raw: first_raw,
                    chunk: Chunk::with_room(text.len()),
                    invalid: 0,
                    bad_lines: Vec::new(),
                };
                let mut start = 0;
                for newline in memchr::memchr_iter(b'\n', &text) {
                    stage.judge(&text[start..newline]);
                    start = newline + 1;
                }
                if start < text.len() {
                    // A last line without its newline is still a whole line at a clean end.
                    stage.judge(&text[start..]);
                }
                let _ = to.spare.send(text);
                stage.chunk.raw_end = stage.raw;
                Judged::Block {
                    chunk: stage.chunk,
                    invalid: stage.invalid,
                    bad_lines: stage.bad_lines,
                }
            }
            Block::Last(finish) => Judged::Last(finish),
        };
        let last = matches!(judged, Judged::Last(_));
        if to.judged.send(judged).is_err() || last {
            return;
        }
    }
}

/// Sends the judged blocks on in their order until the object's end; returns
/// how it ended (without its request count).
pub(crate) fn sequence(judged: &[Receiver<Judged>], events: &mpsc::Sender<ReadEvent>) -> ObjectEnd {
    let mut end = ObjectEnd::default();
    let mut raw = 0;
    for turn in 0.. {
        let Ok(next) = judged[turn % judged.len()].recv() else {
            end.damage = Some(format!(
                "reading it stopped unexpectedly; restored up to line {raw}"
            ));
            return end;
        };
        match next {
            Judged::Block {
                chunk,
                invalid,
                bad_lines,
            } => {
                end.invalid += invalid;
                let room = BAD_LINES_REPORTED.saturating_sub(end.bad_lines.len());
                end.bad_lines.extend(bad_lines.into_iter().take(room));
                raw = chunk.raw_end;
                if events.blocking_send(ReadEvent::Chunk(chunk)).is_err() {
                    return end; // the consumer has gone (limit reached)
                }
            }
            Judged::Last(finish) => {
                end.bytes = finish.taken;
                if let Some(why) = finish.broken {
                    end.damage = Some(format!("{why}; restored up to line {}", finish.raw));
                }
                return end;
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

/// A worker's state for one block.
struct Lines<'a> {
    object: &'a Object,
    filters: &'a Filters,
    /// Raw lines delivered by an earlier run (id-only records).
    replay: u64,
    /// The index of the next non-empty line.
    raw: u64,
    chunk: Chunk,
    invalid: u64,
    bad_lines: Vec<u64>,
}

impl Lines<'_> {
    /// Judges one line; empty ones do not count.
    fn judge(&mut self, text: &[u8]) {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if is_blank(text) {
            return;
        }
        let index = self.raw;
        self.raw += 1;
        let replayed = index < self.replay;
        let mut scratch = LineCounts::default();
        let c = if replayed {
            &mut scratch
        } else {
            &mut self.chunk.counts
        };
        c.read += 1;
        let filters = self.filters;
        let Ok(fields) = scan(text, &filters.id_field, &filters.time_field) else {
            c.invalid += 1;
            if !replayed {
                self.invalid += 1;
                if self.bad_lines.len() < BAD_LINES_REPORTED {
                    self.bad_lines.push(index + 1);
                }
            }
            return;
        };
        let in_range = match fields.time.as_deref().and_then(line_time_ms) {
            Some(ms) => filters.range.contains(ms),
            // No readable time: the hour its object is filed under decides.
            None => filters.range.contains(self.object.hour * 1000),
        };
        if !in_range {
            c.outside_range += 1;
            return;
        }
        if let Some(query) = &filters.query {
            let matched =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text)
                    .is_ok_and(|event| query.matches(&event));
            if !matched {
                c.filtered += 1;
                return;
            }
        }
        let chunk = &mut self.chunk;
        if !replayed {
            chunk.lines.extend_from_slice(text);
            chunk.lines.push(b'\n');
        }
        chunk.records.push(Record {
            end: chunk.lines.len(),
            id: fields.id.as_deref().map(id_key),
            raw: index,
            replay: replayed,
        });
    }
}

/// Whether a line counts as empty (white space only; `\r` is white space).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The id (as text) and the raw time value of a line, found in one pass that
/// checks the whole line is a JSON object without building it.
#[derive(Debug, Default)]
struct Fields<'a> {
    id: Option<Cow<'a, str>>,
    time: Option<Cow<'a, str>>,
}

fn scan<'a>(
    line: &'a [u8],
    id_field: &str,
    time_field: &str,
) -> Result<Fields<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let fields = FieldsSeed {
        id_field,
        time_field,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(fields)
}

struct FieldsSeed<'f> {
    id_field: &'f str,
    time_field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            if key == self.id_field {
                let raw: &'de RawValue = map.next_value()?;
                fields.id = Some(text_of(raw));
            } else if key == self.time_field {
                let raw: &'de RawValue = map.next_value()?;
                fields.time = Some(Cow::Borrowed(raw.get()));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(fields)
    }
}

/// A JSON string's content, or another value's JSON text (a numeric id).
fn text_of(raw: &RawValue) -> Cow<'_, str> {
    let text = raw.get();
    if text.starts_with('"') {
        match serde_json::from_str::<Cow<'_, str>>(text) {
            Ok(Cow::Owned(s)) => Cow::Owned(s),
            _ if !text.contains('\\') => Cow::Borrowed(&text[1..text.len() - 1]),
            _ => Cow::Owned(text.to_owned()),
        }
    } else {
        Cow::Borrowed(text)
    }
}

/// An object key, borrowed from the line when it has no escapes.
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_id_and_time_and_rejects_what_is_not_an_object() {
        let f = scan(
            br#"{"a":{"_id":"inner"},"_id":"x1","_ts":"2025-11-22T09:00:00.000Z","n":[1,2]}"#,
            "_id",
            "_ts",
        )
        .unwrap();
        assert_eq!(
            f.id.as_deref(),
            Some("x1"),
            "the top-level id, not a nested one"
        );
        assert_eq!(f.time.as_deref(), Some("\"2025-11-22T09:00:00.000Z\""));
        assert_eq!(
            line_time_ms(f.time.as_deref().unwrap()),
            Some(1_763_802_000_000)
        );
        let escaped = scan(br#"{"_i\u0064":"e\"1","date":1763802000}"#, "_id", "date").unwrap();
        assert_eq!(escaped.id.as_deref(), Some("e\"1"));
        assert_eq!(
            line_time_ms(escaped.time.as_deref().unwrap()),
            Some(1_763_802_000_000)
        );
        let numeric = scan(br#"{"_id":42}"#, "_id", "_ts").unwrap();
        assert_eq!(numeric.id.as_deref(), Some("42"));
        for bad in [
            &b"[1,2]"[..],
            b"{\"a\":1",
            b"{\"a\":1} x",
            b"not json",
            b"\"s\"",
        ] {
            assert!(
                scan(bad, "_id", "_ts").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
