//! A request body → batches of bounded size, all or nothing.
//!
//! A body is decoded and parsed in a first pass that keeps at most one
//! chunk's events ([`CHUNK_EVENTS`], about [`CHUNK_BYTES`] of memory). When
//! the whole body fits in that chunk — nearly every request — it is sent as
//! one batch. Otherwise the first pass has validated every line (JSON, UTF-8,
//! exact numbers, the hours it spans) while keeping nothing, and a second pass
//! turns the body into chunks that are sent one after another, at most
//! [`OUTSTANDING`] in the pipeline at once, as the parts of one
//! [`sediment_core::Group`]: archive sinks hold them back and make them
//! visible with the last one. So a malformed line anywhere in a large body
//! refuses it before anything was staged, a failure part-way leaves nothing in
//! the archive, and memory per request is its body plus a few chunks, whatever
//! the number of lines.
//!
//! Both passes run on the blocking pool. How objects become events (most of
//! them kept as slices of the request's buffer) is [`super::stamper`]'s.

use bytes::Bytes;
use sediment_core::event::{Replaced, Stamp};
use sediment_core::{Event, Partition};
use serde_json::Value;
use tokio::sync::mpsc;

use super::budget::{Reservation, Shortfall};
use super::decode::{self, BodyError, Format};
use super::stamper::Stamper;

/// Most events in one batch.
pub const CHUNK_EVENTS: usize = 1000;
/// Most estimated memory of the events of one batch.
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Chunks of one request in the pipeline at once.
pub const OUTSTANDING: usize = 2;
/// What a chunked request reserves for its events: those in the pipeline,
/// one waiting to be sent and one being built.
pub const CHUNKED_ALLOWANCE: u64 = (OUTSTANDING as u64 + 2) * CHUNK_BYTES;

/// Estimated heap of one event: its header and its text. (The text of an
/// event kept as a slice of the body is counted twice, with the body and
/// here: an over-estimate, and simpler than telling slices from copies.)
pub fn heap_estimate(event: &Event) -> u64 {
    (std::mem::size_of::<Event>() + event.estimated_json_bytes()) as u64
}

/// One request's body and how to stamp its events.
#[derive(Debug, Clone)]
pub struct Request {
    /// The body as received.
    pub body: Bytes,
    /// Its `Content-Encoding`.
    pub encoding: Option<String>,
    /// Its format.
    pub format: Format,
    /// `max_body_size`, for the decompressed text.
    pub max_body_size: u64,
    /// Fields tried for the event time.
    pub timestamp_fields: Vec<String>,
    /// sediment's `_meta` for these events.
    pub meta: Value,
    /// Keep a client's `_meta`.
    pub trust_meta: bool,
    /// Arrival time.
    pub now_ms: i64,
    /// Most distinct event hours.
    pub max_hours: usize,
    /// Most events.
    pub max_events: usize,
}

impl Request {
    fn stamp(&self) -> Stamp<'_> {
        Stamp {
            timestamp_fields: &self.timestamp_fields,
            now_ms: self.now_ms,
            meta: &self.meta,
            trust_meta: self.trust_meta,
        }
    }
}

/// What the first pass found.
#[derive(Debug)]
pub enum Prepared {
    /// Every event, in one batch.
    Whole(Vec<Event>, Replaced),
    /// Too many for one batch; validated, to be streamed by [`Chunker::run`].
    Chunked(Box<Chunker>, Replaced),
}

/// The second pass over a validated body.
#[derive(Debug)]
pub struct Chunker {
    request: Request,
    /// The decompressed text, when the body was encoded.
    inflated: Option<Bytes>,
    /// Events the first pass counted.
    pub events: usize,
}

/// Distinct hours seen, refused past the limit.
struct Hours {
    seen: Vec<i64>,
    max: usize,
}

impl Hours {
    fn add(&mut self, time_ms: i64) -> Result<(), BodyError> {
        let hour = Partition::hour_of(time_ms);
        if self.seen.contains(&hour) {
            return Ok(());
        }
        if self.seen.len() == self.max {
            return Err(BodyError::Malformed(format!(
                "the events of this request fall in more than {} distinct hours (max_hours_per_request); send events of fewer hours per request",
                self.max
            )));
        }
        self.seen.push(hour);
        Ok(())
    }
}

/// Collects events into chunks.
struct Chunk {
    events: Vec<Event>,
    cost: u64,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk::with_capacity(0)
    }

    fn with_capacity(events: usize) -> Chunk {
        Chunk {
            events: Vec::with_capacity(events),
            cost: 0,
        }
    }

    /// Whether `cost` more still fits (a chunk always takes its first event).
    fn fits(&self, cost: u64) -> bool {
        self.events.is_empty()
            || (self.events.len() < CHUNK_EVENTS && self.cost + cost <= CHUNK_BYTES)
    }

    fn push(&mut self, event: Event, cost: u64) {
        self.cost += cost;
        self.events.push(event);
    }
}

fn too_many(max: usize) -> BodyError {
    BodyError::TooLarge(format!(
        "the body holds more than {max} events or lines (max_events_per_request); send fewer per request"
    ))
}

fn busy() -> BodyError {
    BodyError::Busy(
        "sediment is holding as much request data as memory_limit allows; retry later".into(),
    )
}

fn over_budget(what: &str) -> BodyError {
    BodyError::TooLarge(format!("{what} needs more memory than memory_limit allows"))
}

/// Holds `bytes` more in `reservation`, naming what for the error.
fn hold(reservation: &mut Reservation, bytes: u64, what: &str) -> Result<(), BodyError> {
    match reservation.try_grow(bytes) {
        Ok(()) => Ok(()),
        Err(Shortfall::Busy) => Err(busy()),
        Err(Shortfall::TooLarge) => Err(over_budget(what)),
    }
}

/// The first pass: decode, parse, stamp and validate; keep the events if they
/// fit one chunk. Memory it comes to hold is reserved in `reservation`.
pub fn prepare(request: Request, reservation: &mut Reservation) -> Result<Prepared, BodyError> {
    let inflated = {
        let mut short = None;
        let decoded = decode::decode(
            &request.body,
            request.encoding.as_deref(),
            request.max_body_size,
            &mut |n| match reservation.try_grow(n as u64) {
                Ok(()) => true,
                Err(s) => {
                    short = Some(s);
                    false
                }
            },
        );
        match (decoded, short) {
            (Err(BodyError::Busy(_)), Some(Shortfall::TooLarge)) => {
                return Err(over_budget("the decompressed body"))
            }
            (Err(e), _) => return Err(e),
            (Ok(std::borrow::Cow::Borrowed(_)), _) => None,
            (Ok(std::borrow::Cow::Owned(v)), _) => Some(Bytes::from(v)),
        }
    };
    let shared = inflated.clone().unwrap_or_else(|| request.body.clone());
    let text: &[u8] = &shared;
    // Counting lines is cheap: a body of far too many lines is refused before
    // any of them is parsed.
    let line_based = match request.format {
        Format::Ndjson | Format::Text => true,
        Format::Sniff => text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'['),
        Format::Json | Format::Mezmo => false,
    };
    let lines = if line_based {
        memchr::memchr_iter(b'\n', text).count()
    } else {
        0
    };
    if lines > request.max_events {
        return Err(too_many(request.max_events));
    }
    let mut replaced = Replaced::default();
    let mut hours = Hours {
        seen: Vec::new(),
        max: request.max_hours,
    };
    // Room for every line (a last one without its newline grows it once).
    let mut first = Some(Chunk::with_capacity(lines.min(CHUNK_EVENTS)));
    let mut events = 0usize;
    let mut held_for_events = 0u64;
    let mut stamper = Stamper::new(
        shared.clone(),
        request.stamp(),
        &mut replaced,
        |event: Event| {
            hours.add(event.time_ms)?;
            events += 1;
            if events > request.max_events {
                return Err(too_many(request.max_events));
            }
            if let Some(chunk) = &mut first {
                let cost = heap_estimate(&event);
                if chunk.fits(cost) {
                    if chunk.cost + cost > held_for_events {
                        let step = (chunk.cost + cost - held_for_events).max(64 * 1024);
                        hold(reservation, step, "one event of this request")?;
                        held_for_events += step;
                    }
                    chunk.push(event, cost);
                } else {
                    // More than one chunk: from here on, only validate.
                    first = None;
                }
            }
            Ok(())
        },
    );
    decode::for_each_object(text, request.format, &mut stamper)?;
    drop(stamper);
    drop(shared);
    match first {
        Some(chunk) => Ok(Prepared::Whole(chunk.events, replaced)),
        None => {
            let text_bytes =
                request.body.len() as u64 + inflated.as_ref().map_or(0, |v| v.len() as u64);
            reservation.shrink_to(text_bytes);
            Ok(Prepared::Chunked(
                Box::new(Chunker {
                    request,
                    inflated,
                    events,
                }),
                replaced,
            ))
        }
    }
}

impl Chunker {
    /// The second pass: sends the body's events in chunks until done or until
    /// the receiver is gone. The last chunk is marked, so that the request's group can complete.
    pub fn run(self, chunks: mpsc::Sender<(Vec<Event>, bool)>) {
        let request = &self.request;
        let shared = self
            .inflated
            .clone()
            .unwrap_or_else(|| request.body.clone());
        // Counted in the first pass already.
        let mut replaced = Replaced::default();
        let mut chunk = Chunk::new();
        let mut stamper = Stamper::new(
            shared.clone(),
            request.stamp(),
            &mut replaced,
            |event: Event| {
                let cost = heap_estimate(&event);
                if !chunk.fits(cost) {
                    let full = std::mem::replace(&mut chunk, Chunk::new());
                    chunks
                        .blocking_send((full.events, false))
                        .map_err(|_| BodyError::Busy("the request ended".into()))?;
                }
                chunk.push(event, cost);
                Ok(())
            },
        );
        let sent = decode::for_each_object(&shared, request.format, &mut stamper);
        drop(stamper);
        if sent.is_ok() {
            let _ = chunks.blocking_send((chunk.events, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::budget::MemoryBudget;
    use serde_json::json;

    fn request(body: String, max_hours: usize) -> Request {
        Request {
            body: Bytes::from(body),
            encoding: None,
            format: Format::Ndjson,
            max_body_size: 64 << 20,
            timestamp_fields: vec!["ts".into()],
            meta: json!({"source": "t"}),
            trust_meta: false,
            now_ms: 1_764_000_000_000,
            max_hours,
            max_events: 100_000,
        }
    }

    #[test]
    fn a_small_body_is_one_batch() {
        let budget = MemoryBudget::new(64 << 20);
        let mut r = budget.reserve();
        let body = (0..10).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        match prepare(request(body, 48), &mut r).unwrap() {
            Prepared::Whole(events, _) => assert_eq!(events.len(), 10),
            other => panic!("expected one batch, got {other:?}"),
        }
        assert!(r.held() > 0, "the events are reserved");
    }

    #[test]
    fn a_large_body_streams_in_bounded_chunks_in_order() {
        let budget = MemoryBudget::new(64 << 20);
        let mut r = budget.reserve();
        let n = 2 * CHUNK_EVENTS + 17;
        let body = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        let Prepared::Chunked(chunker, _) = prepare(request(body, 48), &mut r).unwrap() else {
            panic!("expected chunks");
        };
        assert_eq!(chunker.events, n);
        let (tx, mut rx) = mpsc::channel(1);
        let producer = std::thread::spawn(move || chunker.run(tx));
        let mut seen = Vec::new();
        let mut lasts = Vec::new();
        while let Some((chunk, last)) = rx.blocking_recv() {
            assert!(chunk.len() <= CHUNK_EVENTS);
            lasts.push(last);
            seen.extend(chunk.into_iter().map(|e| e.fields()["n"].as_u64().unwrap()));
        }
        producer.join().unwrap();
        assert_eq!(seen, (0..n as u64).collect::<Vec<_>>());
        assert_eq!(
            lasts,
            vec![false, false, true],
            "only the last chunk is marked"
        );
    }

    #[test]
    fn a_bad_line_late_in_a_large_body_refuses_it_before_any_chunk() {
        let budget = MemoryBudget::new(64 << 20);
        let mut r = budget.reserve();
        let mut body: String = (0..5000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        body.push_str("{\"broken\":\n");
        let e = prepare(request(body, 48), &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 5001: invalid JSON: EOF while parsing a value (column 10)"
        );
    }

    #[test]
    fn too_many_events_are_refused_before_parsing() {
        let budget = MemoryBudget::new(64 << 20);
        let mut r = budget.reserve();
        let mut req = request("a\n".repeat(100_001), 48);
        req.format = Format::Text;
        let e = prepare(req, &mut r).unwrap_err();
        assert!(matches!(e, BodyError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("max_events_per_request"), "{e}");
    }

    #[test]
    fn too_many_hours_are_refused_with_the_reason() {
        let budget = MemoryBudget::new(64 << 20);
        let mut r = budget.reserve();
        let body = (0..5)
            .map(|h| format!("{{\"ts\":{}}}\n", 1_764_000_000 + h * 3600))
            .collect();
        let e = prepare(request(body, 4), &mut r).unwrap_err();
        assert!(e.to_string().contains("more than 4 distinct hours"), "{e}");
    }
}
