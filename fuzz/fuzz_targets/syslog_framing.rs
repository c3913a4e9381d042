//! TCP framing (RFC 6587 octet counting and newline-delimited, auto-detected):
//! any byte stream, cut into any reads, yields frames no longer than `max`, the
//! same frames however it is cut, and never panics or buffers without bound.
#![no_main]

#[allow(dead_code)]
#[path = "../../sources/src/syslog/framing.rs"]
mod framing;

use bytes::BytesMut;
use framing::Framer;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

/// Every frame of `stream` fed in reads of `step` bytes, then end of stream.
fn frames(stream: &[u8], step: usize) -> Vec<(Vec<u8>, bool)> {
    let mut framer = Framer::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        while let Some(f) = framer.decode(&mut buf) {
            out.push((f.bytes.to_vec(), f.truncated));
        }
        // The buffer holds at most one frame's worth plus a length prefix.
        assert!(buf.len() <= MAX + step + 16, "buffer grew to {}", buf.len());
    }
    while let Some(f) = framer.decode_eof(&mut buf) {
        out.push((f.bytes.to_vec(), f.truncated));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (step, stream) = data.split_first().unwrap_or((&1, data));
    let whole = frames(stream, stream.len());
    for (bytes, _) in &whole {
        assert!(bytes.len() <= MAX, "a frame of {} bytes", bytes.len());
    }
    assert_eq!(
        frames(stream, usize::from(*step % 17) + 1),
        whole,
        "depends on read sizes"
    );
});
