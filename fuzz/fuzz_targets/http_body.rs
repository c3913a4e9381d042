//! HTTP source body decoding: every `Content-Encoding` (gzip, zstd, deflate,
//! none) with the decompressed-size limit, then every body format (NDJSON, JSON,
//! text, Mezmo, sniffed). Any bytes are decoded or refused with a reason; the
//! output never exceeds the limit; nothing panics.
#![no_main]

#[allow(dead_code)]
#[path = "../../sources/src/http/decode/mod.rs"]
mod decode;

use decode::{decode, parse, Format};
use libfuzzer_sys::fuzz_target;

const MAX: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (pick, body) = data.split_first().unwrap_or((&0, data));
    let encoding = [
        None,
        Some("gzip"),
        Some("zstd"),
        Some("deflate"),
        Some("identity"),
    ][usize::from(*pick % 5)];
    let format = [
        Format::Ndjson,
        Format::Json,
        Format::Text,
        Format::Mezmo,
        Format::Sniff,
    ][usize::from(*pick / 5 % 5)];
    if let Ok(decoded) = decode(body, encoding, MAX, &mut |_| true) {
        assert!(
            decoded.len() as u64 <= MAX,
            "{} bytes past the limit",
            decoded.len()
        );
        if let Ok(events) = parse(&decoded, format) {
            std::hint::black_box(events);
        }
    }
    // The raw bytes as each format too (the most common path: no encoding).
    let _ = parse(body, format);
});
