//! Reading one archive object: download (streamed, resumed at the byte where a
//! transfer broke) → gunzip (every member) → lines → the id and time of each
//! line → range and query filters → [`Chunk`]s for the consumer.
//!
//! Each object gets a download task on the runtime and an inflating thread on
//! the blocking pool, joined by a small bounded channel; its chunks go out on
//! another bounded channel, so an object read ahead of its turn holds at most
//! [`CHUNKS_AHEAD`] chunks of [`CHUNK_BYTES`] in memory.
//!
//! Damage is reported, not fatal: a gzip stream that breaks ends the object at
//! the last whole line before the break; a line that is not a JSON object is
//! skipped and counted. Both are reported with the key and line number.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sediment_core::retry::Backoff;
use sediment_core::storage::{ObjectStore, StorageError};
use sediment_query::Query;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::dedup::id_key;
use crate::time::{line_time_ms, TimeRange};

/// Bytes of kept lines per chunk.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Chunks an object may have ready before its consumer takes them.
pub const CHUNKS_AHEAD: usize = 4;
/// Downloaded pieces waiting to be inflated.
const PIECES_AHEAD: usize = 8;
/// Line numbers kept per damaged object for the report.
const BAD_LINES_REPORTED: usize = 5;
/// Storage retries: as uploads do, from 200 ms up to 30 s between attempts.
const READ_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(30),
};
/// A permanent storage error (denied, missing) is tried this many times.
const PERMANENT_ATTEMPTS: u32 = 3;

/// What a line is judged by.
#[derive(Debug, Clone)]
pub struct Filters {
    /// The range lines must be in.
    pub range: TimeRange,
    /// The field holding the line id (`_id`).
    pub id_field: String,
    /// The field holding the event time (`_ts`).
    pub time_field: String,
    /// Only matching lines are kept.
    pub query: Option<Query>,
}

/// An object to read.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its key.
    pub key: Arc<str>,
    /// Its size in bytes.
    pub size: u64,
    /// The hour its key names (seconds), used for lines without a readable time.
    pub hour: i64,
}

impl Chunk {
    /// An empty chunk with room for a full one, so that filling it never
    /// reallocates (growing by doubling copied each chunk up to three times).
    fn sized() -> Chunk {
        Chunk {
            lines: Vec::with_capacity(CHUNK_BYTES + (16 << 10)),
            records: Vec::with_capacity(1024),
            ..Chunk::default()
        }
    }
}

/// Kept lines of one object, in order, with the raw line count reached.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The lines, each ending in `\n`.
    pub lines: Vec<u8>,
    /// Per line: where it ends in `lines`, its id key, its raw line index in the object.
    pub records: Vec<Record>,
    /// Raw lines of the object consumed once this chunk is handled.
    pub raw_end: u64,
    /// What this chunk's raw lines came to.
    pub counts: LineCounts,
}

/// One kept line.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// End offset in [`Chunk::lines`].
    pub end: usize,
    /// Its id as compared for de-duplication, if it has one.
    pub id: Option<u128>,
    /// Its index among the object's non-empty lines (0-based).
    pub raw: u64,
    /// Delivered by an earlier run: only its id matters (for de-duplication); its
    /// text is not in the chunk and it is not counted.
    pub replay: bool,
}

/// Per-category line counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineCounts {
    /// Non-empty lines read.
    pub read: u64,
    /// Lines whose time is outside the range.
    pub outside_range: u64,
    /// Lines the query did not match.
    pub filtered: u64,
    /// Lines that are not JSON objects.
    pub invalid: u64,
}

impl LineCounts {
    /// Adds `other`.
    pub fn add(&mut self, other: &LineCounts) {
        self.read += other.read;
        self.outside_range += other.outside_range;
        self.filtered += other.filtered;
        self.invalid += other.invalid;
    }
}

/// What a reader sends.
#[derive(Debug)]
pub enum ReadEvent {
    /// Lines.
    Chunk(Chunk),
    /// The object ended, possibly damaged.
    Done(ObjectEnd),
}

/// How an object ended.
#[derive(Debug, Default)]
pub struct ObjectEnd {
    /// Compressed bytes read (from offset 0, counting what a resume skipped).
    pub bytes: u64,
    /// GET requests made, retries included.
    pub requests: u64,
    /// Lines that were not JSON objects (1-based line numbers, the first few).
    pub bad_lines: Vec<u64>,
    /// How many lines were not JSON objects.
    pub invalid: u64,
    /// What broke the object, if anything did.
    pub damage: Option<String>,
}

/// Starts reading `object`. Its first `replay` raw lines were delivered by an
/// earlier run: they come back as id-only records, uncounted, so that the
/// de-duplication of a resumed restore knows them. Returns the receiver of its
/// events.
pub fn start(
    store: Arc<dyn ObjectStore>,
    object: Object,
    filters: Arc<Filters>,
    replay: u64,
) -> mpsc::Receiver<ReadEvent> {
    let (pieces_tx, pieces_rx) = mpsc::channel::<Result<Bytes, String>>(PIECES_AHEAD);
    let (events_tx, events_rx) = mpsc::channel(CHUNKS_AHEAD);
    let key = object.key.clone();
    let download = tokio::spawn(download(store, key.clone(), pieces_tx));
    let events = events_tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut end = inflate(pieces_rx, &object, &filters, replay, &events);
        let requests = futures::executor::block_on(download).unwrap_or(0);
        end.requests = requests;
        let _ = events.blocking_send(ReadEvent::Done(end));
    });
    events_rx
}

/// Streams the object into `pieces`, resuming at the byte reached when a
/// transfer breaks. Returns the GET requests made.
async fn download(
    store: Arc<dyn ObjectStore>,
    key: Arc<str>,
    pieces: mpsc::Sender<Result<Bytes, String>>,
) -> u64 {
    let (mut offset, mut attempt, mut permanent, mut requests) = (0u64, 0u32, 0u32, 0u64);
    loop {
        requests += 1;
        let failure = match store.get_stream(&key, offset).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(piece)) => {
                        offset += piece.len() as u64;
                        attempt = 0;
                        if pieces.send(Ok(piece)).await.is_err() {
                            return requests; // the reader stopped (limit reached, damage)
                        }
                    }
                    Some(Err(e)) => break e,
                    None => return requests,
                }
            },
            Err(e) => e,
        };
        if matches!(failure, StorageError::Permanent(_)) {
            permanent += 1;
            if permanent >= PERMANENT_ATTEMPTS {
                let _ = pieces.send(Err(format!("cannot read it: {failure}"))).await;
                return requests;
            }
        }
        let delay = READ_BACKOFF.delay(attempt);
        attempt = attempt.saturating_add(1);
        tracing::warn!(key = %key, offset, error = %failure, retry_in = ?delay, "reading an archive object failed, will retry");
        tokio::time::sleep(delay).await;
    }
}

/// Reads pieces as one byte stream.
struct Pieces {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    /// Compressed bytes taken.
    taken: u64,
    failure: Option<String>,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(e)) => {
                    self.failure = Some(e.clone());
                    return Err(std::io::Error::other(e));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.taken += n as u64;
        Ok(n)
    }
}

fn inflate(
    rx: mpsc::Receiver<Result<Bytes, String>>,
    object: &Object,
    filters: &Filters,
    replay: u64,
    events: &mpsc::Sender<ReadEvent>,
) -> ObjectEnd {
    let pieces = Pieces {
        rx,
        current: Bytes::new(),
        taken: 0,
        failure: None,
    };
    let mut gz =
        flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 << 10, pieces));
    let mut end = ObjectEnd::default();
    let mut buf: Vec<u8> = Vec::with_capacity(512 << 10);
    let mut chunk = Chunk::sized();
    let mut raw: u64 = 0;
    let mut filled = 0usize;
    loop {
        if buf.len() - filled < 128 << 10 {
            buf.resize(filled + (256 << 10), 0);
        }
        let n = match gz.read(&mut buf[filled..]) {
            Ok(0) => {
                // A last line without its newline is still a whole line at a clean end.
                if filled > 0 {
                    line(
                        &buf[..filled],
                        object,
                        filters,
                        replay,
                        &mut raw,
                        &mut chunk,
                        &mut end,
                    );
                }
                break;
            }
            Ok(n) => n,
            Err(e) => {
                let reader = gz.get_ref().get_ref();
                let why = reader
                    .failure
                    .clone()
                    .unwrap_or_else(|| format!("the gzip data is damaged ({e})"));
                end.damage = Some(format!("{why}; restored up to line {raw}"));
                break;
            }
        };
        filled += n;
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..filled]) {
            let l = &buf[start..start + pos];
            line(l, object, filters, replay, &mut raw, &mut chunk, &mut end);
            start += pos + 1;
            if chunk.lines.len() >= CHUNK_BYTES || chunk.records.len() >= CHUNK_BYTES / 16 {
                chunk.raw_end = raw;
                if events
                    .blocking_send(ReadEvent::Chunk(std::mem::replace(
                        &mut chunk,
                        Chunk::sized(),
                    )))
                    .is_err()
                {
                    return end;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    end.bytes = gz.get_ref().get_ref().taken;
    chunk.raw_end = raw;
    let _ = events.blocking_send(ReadEvent::Chunk(chunk));
    end
}

/// Judges one line; empty lines do not count.
fn line(
    text: &[u8],
    object: &Object,
    filters: &Filters,
    replay: u64,
    raw: &mut u64,
    chunk: &mut Chunk,
    end: &mut ObjectEnd,
) {
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let index = *raw;
    *raw += 1;
    let replayed = index < replay;
    let mut scratch = LineCounts::default();
    let c = if replayed {
        &mut scratch
    } else {
        &mut chunk.counts
    };
    c.read += 1;
    let fields = match scan(text, &filters.id_field, &filters.time_field) {
        Ok(f) => f,
        Err(_) => {
            c.invalid += 1;
            if !replayed {
                end.invalid += 1;
                if end.bad_lines.len() < BAD_LINES_REPORTED {
                    end.bad_lines.push(index + 1);
                }
            }
            return;
        }
    };
    let in_range = match fields.time.as_deref().and_then(line_time_ms) {
        Some(ms) => filters.range.contains(ms),
        // No readable time: the hour its object is filed under decides.
        None => filters.range.contains(object.hour * 1000),
    };
    if !in_range {
        c.outside_range += 1;
        return;
    }
    if let Some(query) = &filters.query {
        let matched = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text)
            .is_ok_and(|event| query.matches(&event));
        if !matched {
            c.filtered += 1;
            return;
        }
    }
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
