//! Reading one archive object: download (streamed, resumed at the byte where a
//! transfer broke) → gunzip (every member) → lines → the id and time of each
//! line → range and query filters → [`Chunk`]s for the consumer.
//!
//! Each object gets a download task on the runtime and, on the blocking pool,
//! an inflating thread that cuts the text into blocks of whole lines, workers
//! that judge the lines of alternate blocks and a thread that puts the judged
//! blocks back in order ([`crate::lines`] says why), joined by bounded
//! channels: an object read ahead of its turn holds a few blocks of
//! [`BLOCK_BYTES`] and at most [`CHUNKS_AHEAD`] chunks in memory.
//!
//! Damage is reported, not fatal: a gzip stream that breaks ends the object at
//! the last whole line before the break; a line that is not a JSON object, or
//! is longer than [`MAX_LINE_BYTES`], is skipped and counted. Both are
//! reported with the key and line number.

use std::io::Read;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sediment_core::retry::Backoff;
use sediment_core::storage::{ObjectStore, StorageError};
use sediment_query::Query;
use tokio::sync::mpsc;

use crate::lines::{self, Block, Finish};
use crate::time::TimeRange;

/// Chunks an object may have ready before its consumer takes them.
pub const CHUNKS_AHEAD: usize = 2;
/// Downloaded pieces waiting to be inflated.
const PIECES_AHEAD: usize = 8;
/// Bytes of inflated text per block (a block is cut after the last whole
/// line within this many bytes; a longer line makes a longer block).
pub const BLOCK_BYTES: usize = 128 << 10;
/// Longest line read (64 MiB, over six times the HTTP source's default
/// `max_body_size`): a longer one is skipped without being held, and counted
/// and reported as a bad line, so that a damaged or hostile object cannot make
/// a restore hold it whole.
pub const MAX_LINE_BYTES: usize = 64 << 20;
/// What an overlong line is judged as (not JSON, so it counts as a bad line).
const OVERLONG_LINE: &[u8] = b"\0 a line longer than MAX_LINE_BYTES\n";
/// Blocks waiting for each worker.
const BLOCKS_AHEAD: usize = 1;
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
    /// An empty chunk with room for the kept lines of a block of `bytes`, so
    /// that filling it never reallocates.
    pub(crate) fn with_room(bytes: usize) -> Chunk {
        Chunk {
            lines: Vec::with_capacity(bytes + 1),
            records: Vec::with_capacity(bytes / 128),
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
    let (spare_tx, spare_rx) = std::sync::mpsc::channel();
    let (events_tx, events_rx) = mpsc::channel(CHUNKS_AHEAD);
    let download = tokio::spawn(download(store, object.key.clone(), pieces_tx));
    let (workers, judged) = lines::channels(&spare_tx);
    let mut blocks = Vec::with_capacity(lines::WORKERS);
    for worker in workers {
        let (tx, rx) = std::sync::mpsc::sync_channel(BLOCKS_AHEAD);
        blocks.push(tx);
        let (object, filters) = (object.clone(), filters.clone());
        tokio::task::spawn_blocking(move || lines::work(rx, worker, &object, &filters, replay));
    }
    tokio::task::spawn_blocking(move || inflate(pieces_rx, &blocks, &spare_rx));
    tokio::task::spawn_blocking(move || {
        let mut end = lines::sequence(&judged, &events_tx);
        // The sequencer stops early when the consumer has gone (limit
        // reached): the workers then stop at their next block, the inflating
        // thread at its next send, the download at its next piece.
        drop(judged);
        end.requests = futures::executor::block_on(download).unwrap_or(0);
        let _ = events_tx.blocking_send(ReadEvent::Done(end));
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

/// Why the gzip stream of `gz` stopped: the download's failure, else the damage.
fn failure(gz: &Gz, e: &std::io::Error) -> String {
    let reader = gz.get_ref().get_ref();
    reader
        .failure
        .clone()
        .unwrap_or_else(|| format!("the gzip data is damaged ({e})"))
}

/// Reads past the end of the line being read (into `buf`, as scratch): the
/// text after its newline, or `None` when the object ends first.
fn skip_line<'b>(gz: &mut Gz, buf: &'b mut [u8]) -> std::io::Result<Option<&'b [u8]>> {
    loop {
        let n = gz.read(buf)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(newline) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(Some(&buf[newline + 1..n]));
        }
    }
}

/// The gunzipping reader of an object's pieces.
type Gz = flate2::bufread::MultiGzDecoder<std::io::BufReader<Pieces>>;

/// How many lines of `text` are not blank ([`lines::is_blank`]), found with
/// `memchr` (a byte-by-byte `split` was an eighth of a restore's CPU).
fn non_blank_lines(text: &[u8]) -> u64 {
    let mut start = 0;
    let mut count = 0;
    for end in memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len())) {
        count += u64::from(!lines::is_blank(&text[start..end]));
        start = end + 1;
    }
    count
}

/// Inflates every gzip member of the object and cuts the text into blocks of
/// whole lines, numbered by their first non-empty line, for the workers in
/// turn; the last message says how the text ended. When the stream breaks,
/// the whole lines before the break are sent and the partial one is not. A
/// line longer than [`MAX_LINE_BYTES`] is read past, and [`OVERLONG_LINE`] is
/// sent in its place.
fn inflate(
    rx: mpsc::Receiver<Result<Bytes, String>>,
    workers: &[SyncSender<Block>],
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let pieces = Pieces {
        rx,
        current: Bytes::new(),
        taken: 0,
        failure: None,
    };
    let mut gz =
        flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 << 10, pieces));
    let fresh = || {
        let mut buf = spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_BYTES + (64 << 10)));
        buf.clear();
        buf
    };
    let (mut raw, mut turn) = (0u64, 0usize);
    // Sends `text` as the next block; `false` when the workers have gone.
    let mut send = |text: Vec<u8>, raw: &mut u64| {
        let first_raw = *raw;
        *raw += non_blank_lines(&text);
        let sent = workers[turn % workers.len()]
            .send(Block::Lines { text, first_raw })
            .is_ok();
        turn += 1;
        sent
    };
    let mut buf = fresh();
    let mut filled = 0;
    // `buf[..searched]` holds no newline: a long line is searched once, not at every read.
    let mut searched = 0;
    let broken = loop {
        if buf.len() - filled < 64 << 10 {
            let grown = (buf.len() * 2).max(BLOCK_BYTES + (64 << 10));
            buf.resize(grown, 0);
        }
        match gz.read(&mut buf[filled..]) {
            Ok(0) => {
                buf.truncate(filled);
                if filled > 0 && !send(buf, &mut raw) {
                    return;
                }
                break None;
            }
            Ok(n) => {
                filled += n;
                if filled < BLOCK_BYTES {
                    continue;
                }
                // Cut after the last whole line; a longer line makes a longer block.
                let Some(at) = memchr::memrchr(b'\n', &buf[searched..filled]) else {
                    searched = filled;
                    if filled <= MAX_LINE_BYTES {
                        continue;
                    }
                    // All of `buf` is the start of one overlong line: skip to its
                    // end and judge a stand-in, so that it counts as a bad line.
                    let rest = match skip_line(&mut gz, &mut buf) {
                        Ok(rest) => rest,
                        Err(e) => break Some(failure(&gz, &e)),
                    };
                    let mut stand_in = fresh();
                    stand_in.extend_from_slice(OVERLONG_LINE);
                    if !send(stand_in, &mut raw) {
                        return;
                    }
                    let Some(rest) = rest else { break None };
                    let mut next = fresh();
                    next.extend_from_slice(rest);
                    (buf, filled, searched) = (next, rest.len(), 0);
                    continue;
                };
                let newline = searched + at;
                let mut next = fresh();
                next.extend_from_slice(&buf[newline + 1..filled]);
                (filled, searched) = (next.len(), next.len());
                buf.truncate(newline + 1);
                if !send(std::mem::replace(&mut buf, next), &mut raw) {
                    return;
                }
            }
            Err(e) => {
                if let Some(newline) = memchr::memrchr(b'\n', &buf[..filled]) {
                    buf.truncate(newline + 1);
                    if !send(buf, &mut raw) {
                        return;
                    }
                }
                break Some(failure(&gz, &e));
            }
        }
    };
    let finish = Finish {
        taken: gz.get_ref().get_ref().taken,
        raw,
        broken,
    };
    let _ = workers[turn % workers.len()].send(Block::Last(finish));
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
