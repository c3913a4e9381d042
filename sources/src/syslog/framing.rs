//! Splitting a TCP or TLS byte stream into syslog messages (RFC 6587).
//!
//! Two framings exist and senders mix them, so the choice is made *per frame*, not
//! per connection: a frame that starts with a length (a non-zero digit, at most
//! nine digits, then a space) is octet-counted (RFC 6587 §3.4.1, what RFC 5425
//! mandates for TLS); anything else runs to the next `\n` (§3.4.2). Line feeds,
//! carriage returns and NUL bytes between frames are separators, never messages.
//!
//! Memory is bounded by `max`: a frame longer than `max` bytes is cut to its first
//! `max` bytes (marked [`Frame::truncated`]) and the rest of it is skipped as it
//! arrives. At end of stream, a partial frame is returned as it is: bytes that
//! were read are never thrown away silently.

use bytes::{Buf, Bytes, BytesMut};

/// Longest length prefix: nine digits, so a declared length stays under 1 GB.
const MAX_LENGTH_DIGITS: usize = 9;

/// One message's bytes as framed, without the length prefix or the line feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message (the first `max` bytes of it when truncated).
    pub bytes: Bytes,
    /// The message was longer than `max` bytes.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Start,
    /// Inside an octet-counted frame whose body is `len` bytes long.
    Counted { len: usize },
    /// Inside a newline-delimited frame; the first `scanned` bytes hold no `\n`.
    Line { scanned: usize },
    /// Skipping the `remaining` bytes of an over-long octet-counted frame.
    SkipCounted { remaining: usize },
    /// Skipping an over-long line up to its `\n`.
    SkipLine,
}

/// What starts a frame.
enum Prefix {
    /// An octet count: the body length and the bytes the prefix takes.
    Length(usize, usize),
    /// Only digits so far: cannot tell yet.
    NeedMore,
    /// Not an octet count: a newline-delimited frame.
    Line,
}

/// An incremental decoder of mixed octet-counted and newline-delimited frames.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    state: State,
}

impl Framer {
    /// A decoder that cuts frames at `max` bytes (at least 1).
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            state: State::Start,
        }
    }

    /// The next complete frame in `buf`, consuming it; `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            match self.state {
                State::Start => {
                    let separators = buf
                        .iter()
                        .take_while(|b| matches!(b, b'\n' | b'\r' | 0))
                        .count();
                    buf.advance(separators);
                    if buf.is_empty() {
                        return None;
                    }
                    match prefix(buf) {
                        Prefix::Length(len, header) => {
                            buf.advance(header);
                            self.state = State::Counted { len };
                        }
                        Prefix::NeedMore => return None,
                        Prefix::Line => self.state = State::Line { scanned: 0 },
                    }
                }
                State::Counted { len } => {
                    if len <= self.max {
                        if buf.len() < len {
                            return None;
                        }
                        self.state = State::Start;
                        return Some(frame(buf.split_to(len), false));
                    }
                    if buf.len() < self.max {
                        return None;
                    }
                    self.state = State::SkipCounted {
                        remaining: len - self.max,
                    };
                    return Some(frame(buf.split_to(self.max), true));
                }
                State::Line { scanned } => {
                    // A line of exactly `max` bytes is whole: look one byte further for its `\n`.
                    let window = buf.len().min(self.max + 1);
                    if let Some(pos) = memchr::memchr(b'\n', &buf[scanned..window]) {
                        let line = buf.split_to(scanned + pos);
                        buf.advance(1);
                        self.state = State::Start;
                        return Some(frame(line, false));
                    }
                    if buf.len() > self.max {
                        self.state = State::SkipLine;
                        return Some(frame(buf.split_to(self.max), true));
                    }
                    self.state = State::Line { scanned: buf.len() };
                    return None;
                }
                State::SkipCounted { remaining } => {
                    let n = remaining.min(buf.len());
                    buf.advance(n);
                    if n < remaining {
                        self.state = State::SkipCounted {
                            remaining: remaining - n,
                        };
                        return None;
                    }
                    self.state = State::Start;
                }
                State::SkipLine => match memchr::memchr(b'\n', buf) {
                    Some(pos) => {
                        buf.advance(pos + 1);
                        self.state = State::Start;
                    }
                    None => {
                        buf.clear();
                        return None;
                    }
                },
            }
        }
    }

    /// Like [`Framer::decode`] at the end of the stream: complete frames first, then
    /// whatever partial frame is left (a cut-off message is still a message).
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if let Some(f) = self.decode(buf) {
            return Some(f);
        }
        let state = std::mem::replace(&mut self.state, State::Start);
        let rest = buf.split();
        match state {
            State::SkipCounted { .. } | State::SkipLine => None,
            _ if rest.is_empty() => None,
            _ => Some(frame(rest, false)),
        }
    }
}

fn frame(bytes: BytesMut, truncated: bool) -> Frame {
    Frame {
        bytes: bytes.freeze(),
        truncated,
    }
}

fn prefix(buf: &[u8]) -> Prefix {
    if !matches!(buf.first(), Some(b'1'..=b'9')) {
        return Prefix::Line;
    }
    let digits = buf
        .iter()
        .take(MAX_LENGTH_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > MAX_LENGTH_DIGITS {
        return Prefix::Line;
    }
    match buf.get(digits) {
        None => Prefix::NeedMore,
        Some(b' ') => {
            let len = buf[..digits]
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            Prefix::Length(len, digits + 1)
        }
        Some(_) => Prefix::Line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one after another, then ends the stream.
    fn run(max: usize, chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut framer = Framer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = framer.decode(&mut buf) {
                out.push((f.bytes.to_vec(), f.truncated));
            }
        }
        while let Some(f) = framer.decode_eof(&mut buf) {
            out.push((f.bytes.to_vec(), f.truncated));
        }
        out
    }

    fn whole(frames: &[&str]) -> Vec<(Vec<u8>, bool)> {
        frames
            .iter()
            .map(|f| (f.as_bytes().to_vec(), false))
            .collect()
    }

    #[test]
    fn mixed_framings_on_one_connection() {
        let stream = b"11 <13>1 - a b\n<13>plain line\r\n\n5 hello12 <14>x y\nz w\n";
        assert_eq!(
            run(1024, &[stream]),
            whole(&["<13>1 - a b", "<13>plain line\r", "hello", "<14>x y\nz w\n",])
        );
    }

    #[test]
    fn digits_without_a_space_start_a_line() {
        assert_eq!(
            run(1024, &[b"2024-01-01 text\n0 zero\n1234567890 ten digits\n"]),
            whole(&["2024-01-01 text", "0 zero", "1234567890 ten digits"])
        );
    }

    #[test]
    fn partial_frames_at_end_of_stream_are_kept() {
        assert_eq!(run(1024, &[b"a\nno newline"]), whole(&["a", "no newline"]));
        assert_eq!(run(1024, &[b"20 <13>cut sho"]), whole(&["<13>cut sho"]));
        assert_eq!(run(1024, &[b"a\n42"]), whole(&["a", "42"]));
        assert_eq!(run(1024, &[b"\n\r\n"]), whole(&[]));
    }

    #[test]
    fn long_frames_are_cut_at_max_and_the_stream_continues() {
        let max = 8;
        assert_eq!(
            run(max, &[b"0123456789abcdef\nnext\n"]),
            vec![(b"01234567".to_vec(), true), (b"next".to_vec(), false)]
        );
        assert_eq!(
            run(max, &[b"16 0123456789abcdef", b"4 next"]),
            vec![(b"01234567".to_vec(), true), (b"next".to_vec(), false)]
        );
        // A counted frame cut short by the end of the stream is kept as it is.
        assert_eq!(
            run(max, &[b"exactly8\n", b"8 octets"]),
            whole(&["exactly8", "octets"])
        );
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_whole() {
        assert_eq!(
            run(8, &[b"exactly8\n8 octets!!"]),
            whole(&["exactly8", "octets!!"])
        );
        // Truncated lines are skipped to their end even across reads.
        assert_eq!(
            run(4, &[b"abcdef", b"ghij", b"kl\nok\n"]),
            vec![(b"abcd".to_vec(), true), (b"ok".to_vec(), false)]
        );
    }

    /// A frame the generator can write in either framing.
    fn frames() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
        let counted = proptest::collection::vec(any::<u8>(), 1..40).prop_map(|b| (true, b));
        // A line: no `\n`, and it must not itself look like a separator or a length.
        let line = (
            any::<u8>().prop_filter("first byte of a line", |b| {
                !matches!(b, b'\n' | b'\r' | 0 | b'1'..=b'9')
            }),
            proptest::collection::vec(
                any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
                0..40,
            ),
        )
            .prop_map(|(first, rest)| {
                let mut b = vec![first];
                b.extend(rest);
                (false, b)
            });
        proptest::collection::vec(prop_oneof![counted, line], 0..12)
    }

    fn encode(frames: &[(bool, Vec<u8>)]) -> Vec<u8> {
        let mut stream = Vec::new();
        for (counted, body) in frames {
            if *counted {
                stream.extend_from_slice(format!("{} ", body.len()).as_bytes());
                stream.extend_from_slice(body);
            } else {
                stream.extend_from_slice(body);
                stream.push(b'\n');
            }
        }
        stream
    }

    proptest! {
        #[test]
        fn any_split_point_yields_the_same_frames(frames in frames()) {
            let stream = encode(&frames);
            let expected: Vec<(Vec<u8>, bool)> =
                frames.iter().map(|(_, b)| (b.clone(), false)).collect();
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                prop_assert_eq!(run(64, &[a, b]), expected.clone(), "cut at {}", cut);
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(run(64, &bytes), expected);
        }

        #[test]
        fn random_bytes_never_panic_and_frames_stay_bounded(
            stream in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
        ) {
            let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
            for (bytes, _) in run(16, &chunks) {
                prop_assert!(bytes.len() <= 16);
            }
        }
    }
}
