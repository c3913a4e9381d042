//! An event kept as its received JSON text, and the archive line spliced from it.

use std::ops::Range;

use bytes::Bytes;
use chrono::{Datelike, Timelike};

/// An object's text (canonical, see [`super::scan`]) and how the reserved
/// fields go into it: a client's member keeps its place with sediment's value
/// written over its value, a missing one is appended, in the order `_id`,
/// `_ts`, `_meta` — exactly where inserting into the map puts them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonObject {
    /// The object's text, `{` to `}`: usually a slice of the request's buffer,
    /// shared by every event of the request.
    pub(crate) text: Bytes,
    /// The client's `_id` value, when it is replaced; `None` with `new_id`
    /// set means appended.
    pub(crate) id_at: Option<Span>,
    /// A fresh id, when the client's is absent or replaced; none when kept.
    pub(crate) new_id: Option<[u8; 16]>,
    /// Where `_ts` goes.
    pub(crate) ts: Ts,
    /// The client's `_meta` value, when it is replaced.
    pub(crate) meta_at: Option<Span>,
    /// sediment's `_meta` text, when written (shared per request where it
    /// can be); `None` when the client's is kept.
    pub(crate) meta: Option<Bytes>,
}

/// Where an event's `_ts` is written from its `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ts {
    /// Over the client's `_ts` value.
    Replace(Span),
    /// Appended.
    Append,
    /// Already in the text (an object serialised with its reserved fields).
    InText,
}

/// A byte range in the object's text, in 32 bits a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub(crate) fn new(r: Range<usize>) -> Span {
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Clone, Copy)]
enum Part {
    Id,
    Ts,
    Meta,
}

impl JsonObject {
    /// An object whose text already holds its reserved fields.
    pub(crate) fn complete(text: Bytes) -> JsonObject {
        JsonObject {
            text,
            id_at: None,
            new_id: None,
            ts: Ts::InText,
            meta_at: None,
            meta: None,
        }
    }

    /// Writes the archive line without its newline.
    pub(crate) fn write(&self, time_ms: i64, out: &mut Vec<u8>) {
        let text = &self.text[..];
        let mut edits: [(usize, usize, Part); 3] = [(usize::MAX, 0, Part::Id); 3];
        let mut n = 0;
        for (at, part) in [
            (self.id_at.filter(|_| self.new_id.is_some()), Part::Id),
            (
                match self.ts {
                    Ts::Replace(span) => Some(span),
                    _ => None,
                },
                Part::Ts,
            ),
            (self.meta_at.filter(|_| self.meta.is_some()), Part::Meta),
        ] {
            if let Some(span) = at {
                let r = span.range();
                edits[n] = (r.start, r.end, part);
                n += 1;
            }
        }
        edits[..n].sort_unstable_by_key(|e| e.0);
        out.reserve(text.len() + 160 + self.meta.as_ref().map_or(0, Bytes::len));
        // Everything but the closing brace, with values replaced in place.
        let body = &text[..text.len() - 1];
        let mut from = 0;
        for &(start, end, part) in &edits[..n] {
            out.extend_from_slice(&body[from..start]);
            self.value(part, time_ms, out);
            from = end;
        }
        out.extend_from_slice(&body[from..]);
        let mut empty = text.len() == 2;
        for (missing, part) in [
            (self.id_at.is_none() && self.new_id.is_some(), Part::Id),
            (self.ts == Ts::Append, Part::Ts),
            (self.meta_at.is_none() && self.meta.is_some(), Part::Meta),
        ] {
            if missing {
                if !empty {
                    out.push(b',');
                }
                empty = false;
                out.extend_from_slice(match part {
                    Part::Id => b"\"_id\":",
                    Part::Ts => b"\"_ts\":",
                    Part::Meta => b"\"_meta\":",
                });
                self.value(part, time_ms, out);
            }
        }
        out.push(b'}');
    }

    fn value(&self, part: Part, time_ms: i64, out: &mut Vec<u8>) {
        match part {
            Part::Id => {
                let id = uuid::Uuid::from_bytes(self.new_id.unwrap_or_default());
                out.push(b'"');
                out.extend_from_slice(
                    id.hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer())
                        .as_bytes(),
                );
                out.push(b'"');
            }
            Part::Ts => {
                out.push(b'"');
                write_time_ms(time_ms, out);
                out.push(b'"');
            }
            Part::Meta => out.extend_from_slice(self.meta.as_deref().unwrap_or(b"null")),
        }
    }

    /// Approximate length of the line.
    pub(crate) fn approximate_len(&self) -> usize {
        self.text.len() + 100 + self.meta.as_ref().map_or(0, Bytes::len)
    }
}

/// Writes milliseconds since the epoch as [`super::format_time_ms`] does,
/// without allocating.
pub(crate) fn write_time_ms(ms: i64, out: &mut Vec<u8>) {
    let Some(t) =
        chrono::DateTime::from_timestamp_millis(ms).filter(|t| (0..=9999).contains(&t.year()))
    else {
        out.extend_from_slice(super::format_time_ms(ms).as_bytes());
        return;
    };
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, t.timestamp_subsec_millis().min(999));
    out.extend_from_slice(&b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        for ms in [
            0,
            5,
            1_700_000_000_123,
            31_536_000_000,
            253_402_300_799_999,
            -1,
            -62_167_219_200_000,
            i64::MAX,
            i64::MIN,
            951_782_400_999,
        ] {
            let mut out = Vec::new();
            write_time_ms(ms, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                super::super::format_time_ms(ms),
                "{ms}"
            );
        }
    }
}
