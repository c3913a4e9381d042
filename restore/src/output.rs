//! Where restored lines go: standard output, a file (`.gz` → gzip), or an HTTP
//! endpoint through the `http` sink's client.
//!
//! An output takes [`Piece`]s in restore order and says which [`Position`] it
//! has *committed*: for stdout, flushed; for a file, fsync'd (with the file's
//! length then, so that a resumed restore cuts off whatever was written after
//! it); for HTTP, answered `2xx` for every request up to it. Only committed
//! positions are checkpointed, so a resumed restore writes nothing twice to a
//! file, and nothing twice to an HTTP receiver that honours `Idempotency-Key`
//! (sediment's HTTP source does): requests are cut deterministically by events
//! and bytes and keyed by where they start, so the requests a resumed restore
//! sends again carry the same keys and the same lines.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_sinks::http::{HttpClient, SendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Position;

/// Lines of one object, in order, and where they end in the restore's order.
#[derive(Debug, Default)]
pub struct Piece {
    /// The listing unit.
    pub unit: usize,
    /// The object's key.
    pub key: Arc<str>,
    /// Lines, each ending in `\n`.
    pub lines: Vec<u8>,
    /// Per line: its end in `lines` and its raw index in the object.
    pub ends: Vec<(usize, u64)>,
    /// Raw lines of the object handled once this piece is.
    pub raw_end: u64,
}

impl Piece {
    fn end(&self) -> Position {
        Position {
            unit: self.unit,
            key: self.key.to_string(),
            raw: self.raw_end,
        }
    }
}

/// What an output has made final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Everything before this position is delivered.
    pub position: Position,
    /// For a file: its length at that position.
    pub file_len: Option<u64>,
    /// Lines delivered by this output in this run.
    pub lines: u64,
}

/// Why an output stopped the restore.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing failed.
    #[error("{0}")]
    Io(String),
    /// The receiver refused a request for good.
    #[error("{0}")]
    Refused(String),
}

/// An output of a restore.
pub enum Output {
    /// Standard output.
    Stdout(StreamOutput<std::io::Stdout>),
    /// A local file.
    File(FileOutput),
    /// An HTTP endpoint.
    Http(HttpOutput),
    /// The topology of an `archive` source.
    Pipeline(crate::source::PipelineOutput),
}

impl Output {
    /// Takes a piece; returns what became committed, if anything did.
    pub async fn write(&mut self, piece: Piece) -> Result<Option<Committed>, OutputError> {
        match self {
            Output::Stdout(o) => o.write(piece),
            Output::File(o) => o.write(piece),
            Output::Http(o) => o.write(piece).await,
            Output::Pipeline(o) => {
                let end = piece.end();
                o.write(piece).await?;
                Ok(Some(Committed {
                    position: end,
                    file_len: None,
                    lines: 0,
                }))
            }
        }
    }

    /// Commits everything taken.
    pub async fn finish(&mut self) -> Result<Option<Committed>, OutputError> {
        match self {
            Output::Stdout(o) => o.commit().map(Some),
            Output::File(o) => o.commit().map(Some),
            Output::Http(o) => o.finish().await,
            Output::Pipeline(_) => Ok(None),
        }
    }

    /// Whether lines delivered by an earlier run could be delivered again here
    /// (stdout, a pipe or a device cannot be taken back).
    pub fn at_least_once(&self) -> bool {
        match self {
            Output::Stdout(_) => true,
            Output::File(f) => !f.regular,
            _ => false,
        }
    }
}

/// How often a file or stdout output commits.
const COMMIT_BYTES: usize = 8 << 20;
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Lines to a writer, flushed as they commit.
pub struct StreamOutput<W: Write> {
    out: W,
    buffer: Vec<u8>,
    pending: Option<Position>,
    lines: u64,
    last_commit: Instant,
}

impl StreamOutput<std::io::Stdout> {
    /// Standard output.
    pub fn stdout() -> StreamOutput<std::io::Stdout> {
        StreamOutput {
            out: std::io::stdout(),
            buffer: Vec::with_capacity(COMMIT_BYTES + (1 << 20)),
            pending: None,
            lines: 0,
            last_commit: Instant::now(),
        }
    }
}

impl<W: Write> StreamOutput<W> {
    fn write(&mut self, piece: Piece) -> Result<Option<Committed>, OutputError> {
        self.buffer.extend_from_slice(&piece.lines);
        self.lines += piece.ends.len() as u64;
        self.pending = Some(piece.end());
        if self.buffer.len() >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_EVERY {
            return self.commit().map(Some);
        }
        Ok(None)
    }

    fn commit(&mut self) -> Result<Committed, OutputError> {
        self.out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush())
            .map_err(|e| OutputError::Io(format!("cannot write to standard output: {e}")))?;
        self.buffer.clear();
        self.last_commit = Instant::now();
        Ok(Committed {
            position: self.pending.clone().unwrap_or_default(),
            file_len: None,
            lines: self.lines,
        })
    }
}

/// Lines to a file, fsync'd at each commit; `.gz` files get one gzip member per commit.
pub struct FileOutput {
    path: PathBuf,
    file: File,
    gzip: bool,
    buffer: Vec<u8>,
    pending: Option<Position>,
    lines: u64,
    len: u64,
    last_commit: Instant,
    /// A regular file (else a device or pipe: not synced, not cut back on resume).
    regular: bool,
}

impl FileOutput {
    /// Opens `path` for appending after byte `keep` (what the checkpoint holds;
    /// anything after it was written but never committed), creating it if needed.
    pub fn open(path: &Path, keep: u64) -> Result<FileOutput, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open the output file {}: {e}", path.display()))?;
        let mut output = FileOutput {
            gzip: path.extension().is_some_and(|e| e == "gz"),
            path: path.to_owned(),
            file,
            buffer: Vec::with_capacity(COMMIT_BYTES + (1 << 20)),
            pending: None,
            lines: 0,
            len: keep,
            last_commit: Instant::now(),
            regular: true,
        };
        let at =
            |e: std::io::Error| format!("cannot prepare the output file {}: {e}", path.display());
        // A device or a pipe (/dev/null, a FIFO) is written as a stream: nothing to cut back.
        output.regular = output.file.metadata().map_err(at)?.is_file();
        if output.regular {
            output.file.set_len(keep).map_err(at)?;
            output
                .file
                .seek(std::io::SeekFrom::Start(keep))
                .map_err(at)?;
        }
        Ok(output)
    }

    fn write(&mut self, piece: Piece) -> Result<Option<Committed>, OutputError> {
        self.buffer.extend_from_slice(&piece.lines);
        self.lines += piece.ends.len() as u64;
        self.pending = Some(piece.end());
        if self.buffer.len() >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_EVERY {
            return self.commit().map(Some);
        }
        Ok(None)
    }

    fn commit(&mut self) -> Result<Committed, OutputError> {
        // The buffer is written from where it is and kept: taking it would make
        // the next commit's buffer grow by doubling again (a realloc and fresh
        // pages every time, a tenth of the consumer's time when measured).
        let compressed;
        let bytes: &[u8] = if self.gzip && !self.buffer.is_empty() {
            compressed = sediment_sinks::deflate::gzip(&self.buffer, 6);
            &compressed
        } else {
            &self.buffer
        };
        let at = |e: std::io::Error| {
            OutputError::Io(format!(
                "cannot write the output file {}: {e}",
                self.path.display()
            ))
        };
        self.file.write_all(bytes).map_err(at)?;
        if self.regular {
            self.file.sync_data().map_err(at)?;
        }
        self.len += bytes.len() as u64;
        self.buffer.clear();
        self.last_commit = Instant::now();
        Ok(Committed {
            position: self.pending.clone().unwrap_or_default(),
            file_len: Some(self.len),
            lines: self.lines,
        })
    }
}

/// Lines POSTed in requests cut by events and bytes, several in flight.
pub struct HttpOutput {
    client: HttpClient,
    max_events: usize,
    max_bytes: usize,
    /// The restore's id: part of every request's idempotency key.
    restore_id: String,
    current: Request,
    in_flight: VecDeque<InFlight>,
    cancel: CancellationToken,
    delivered: u64,
    /// Where the current request's lines end (restore order), and the last piece's end.
    pending_end: Option<Position>,
}

/// A request sent and not yet answered.
struct InFlight {
    /// Where its lines end, in restore order.
    end: Position,
    /// Its lines.
    events: u64,
    task: JoinHandle<Result<(), SendError>>,
}

#[derive(Default)]
struct Request {
    lines: Vec<u8>,
    events: usize,
    start: Option<(usize, String, u64)>,
}

impl HttpOutput {
    /// An output sending through `client`, `max_events`/`max_bytes` per request.
    pub fn new(
        client: HttpClient,
        max_events: usize,
        max_bytes: usize,
        restore_id: String,
        cancel: CancellationToken,
    ) -> HttpOutput {
        HttpOutput {
            client,
            max_events,
            max_bytes,
            restore_id,
            current: Request::default(),
            in_flight: VecDeque::new(),
            cancel,
            delivered: 0,
            pending_end: None,
        }
    }

    async fn write(&mut self, piece: Piece) -> Result<Option<Committed>, OutputError> {
        let mut start = 0;
        for &(end, raw) in &piece.ends {
            let line = &piece.lines[start..end];
            start = end;
            if self.current.events > 0
                && (self.current.events >= self.max_events
                    || self.current.lines.len() + line.len() > self.max_bytes)
            {
                let at = Position {
                    unit: piece.unit,
                    key: piece.key.to_string(),
                    raw,
                };
                self.send(at).await?;
            }
            if self.current.start.is_none() {
                self.current.start = Some((piece.unit, piece.key.to_string(), raw));
            }
            self.current.lines.extend_from_slice(line);
            self.current.events += 1;
        }
        self.pending_end = Some(piece.end());
        self.reap(false).await
    }

    /// Sends the current request (ending before `end`) once a slot is free.
    async fn send(&mut self, end: Position) -> Result<(), OutputError> {
        while self.in_flight.len() >= self.client.concurrency() {
            self.wait_oldest().await?;
        }
        let request = std::mem::take(&mut self.current);
        let (unit, key, raw) = request.start.expect("a request has a first line");
        let idempotency_key = format!(
            "restore-{}-{unit}-{:016x}-{raw}",
            self.restore_id,
            xxhash_rust::xxh3::xxh3_64(key.as_bytes())
        );
        let (client, cancel) = (self.client.clone(), self.cancel.clone());
        let events = request.events;
        let task = tokio::spawn(async move {
            let encoder = client.clone();
            let lines = request.lines;
            let mut payload = tokio::task::spawn_blocking(move || encoder.encode(&lines, events))
                .await
                .expect("encoding does not panic");
            payload.idempotency_key = Some(idempotency_key);
            client.send(&payload, &cancel).await
        });
        self.in_flight.push_back(InFlight {
            end,
            events: events as u64,
            task,
        });
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<Option<Position>, OutputError> {
        let Some(InFlight { end, events, task }) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        match task.await {
            Ok(Ok(())) => {
                self.delivered += events;
                Ok(Some(end))
            }
            Ok(Err(SendError::Rejected { uri, status, body })) => Err(OutputError::Refused(
                format!("{uri} refused a request with {status}: {body}"),
            )),
            Ok(Err(e)) => Err(OutputError::Io(e.to_string())),
            Err(e) => Err(OutputError::Io(format!("a request task failed: {e}"))),
        }
    }

    /// Collects finished requests from the front; with `all`, waits for every one.
    async fn reap(&mut self, all: bool) -> Result<Option<Committed>, OutputError> {
        let mut committed = None;
        while let Some(oldest) = self.in_flight.front() {
            if !all && !oldest.task.is_finished() {
                break;
            }
            if let Some(position) = self.wait_oldest().await? {
                committed = Some(position);
            }
        }
        Ok(committed.map(|position| Committed {
            position,
            file_len: None,
            lines: self.delivered,
        }))
    }

    async fn finish(&mut self) -> Result<Option<Committed>, OutputError> {
        let end = self.pending_end.clone().unwrap_or_default();
        if self.current.events > 0 {
            self.send(end.clone()).await?;
        }
        self.reap(true).await?;
        Ok(Some(Committed {
            position: end,
            file_len: None,
            lines: self.delivered,
        }))
    }
}
