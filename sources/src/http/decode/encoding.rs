//! `Content-Encoding`s: a body decompressed within `max_body_size`, growing
//! its buffer only as far as the source's memory budget allows.

use std::borrow::Cow;
use std::io::Read;

use super::BodyError;

/// Decompresses `body` per `Content-Encoding`, refusing more than `max` bytes
/// out. `room` is asked before the output buffer grows by that many bytes (the
/// source's memory budget); a `false` stops with [`BodyError::Busy`]. An
/// unencoded body is returned as it is, without a copy.
pub fn decode<'a>(
    body: &'a [u8],
    encoding: Option<&str>,
    max: u64,
    room: &mut dyn FnMut(usize) -> bool,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut reader: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(Cow::Borrowed(body)),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // HTTP's "deflate" is zlib-wrapped; some clients send raw deflate anyway.
        "deflate" if body.first().is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(body))
        }
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(body)),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| BodyError::Malformed(format!("body is not valid zstd: {e}")))?,
        ),
        other => {
            return Err(BodyError::Unsupported(format!(
                "unsupported Content-Encoding `{other}`: send gzip, zstd, deflate or none"
            )))
        }
    };
    let too_large = || {
        BodyError::TooLarge(format!(
            "the decompressed body is larger than max_body_size ({max} bytes)"
        ))
    };
    let mut out: Vec<u8> = Vec::new();
    let mut step = [0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut step) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BodyError::Malformed(format!(
                    "body is not valid {encoding}: {e}"
                )))
            }
        };
        if (out.len() + n) as u64 > max {
            return Err(too_large());
        }
        if out.len() + n > out.capacity() {
            let grow = out
                .capacity()
                .max(256 * 1024)
                .min(max as usize + 1 - out.len());
            let grow = grow.max(n);
            if !room(grow) {
                return Err(BodyError::Busy(
                    "sediment is holding as much request data as memory_limit allows; retry later"
                        .into(),
                ));
            }
            out.reserve_exact(grow);
        }
        out.extend_from_slice(&step[..n]);
    }
    Ok(Cow::Owned(out))
}
