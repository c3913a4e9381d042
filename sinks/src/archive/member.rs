//! Staging files are sequences of gzip members (RFC 1952) that any gzip reader
//! decodes as one stream. sediment's members carry an `FEXTRA` subfield `SD`:
//!
//! ```text
//! version u8 = 1 | kind u8 (0 head, 1 data) | segment id [16] | payload length u32 LE | body crc32 u32 LE
//! ```
//!
//! `body crc32` covers the deflate payload and the 8-byte gzip trailer, so recovery
//! can check a member without inflating it: the file is walked header to header
//! and cut at the first member that is short or whose checksum fails (a torn write).
//! The *head* member opens every segment: it has an empty payload and names the
//! segment, so an uploaded object says which segment it came from — that is how a
//! restart recognises an upload it already made.

use std::io::Read;

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor};

/// Bytes of a sediment member header.
pub const HEADER_LEN: usize = 10 + 2 + 4 + SD_LEN;
const SD_LEN: usize = 1 + 1 + 16 + 4 + 4;
const TRAILER_LEN: usize = 8;
const FLG_FEXTRA: u8 = 0x04;
/// Where the checksum field starts; it covers everything before it and the body.
const CRC_AT: usize = HEADER_LEN - 4;

fn member_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(body);
    crc.finalize()
}
const OS_UNKNOWN: u8 = 255;

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// Opens a segment and carries its id; no data.
    Head([u8; 16]),
    /// Events.
    Data,
}

/// A parsed sediment member header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHeader {
    /// Head or data.
    pub kind: MemberKind,
    /// Length of the deflate payload.
    pub payload_len: u32,
    /// crc32 of the header before this field, the payload and the trailer.
    pub body_crc: u32,
}

impl MemberHeader {
    /// Total bytes of the member, header to trailer.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_len as u64 + TRAILER_LEN as u64
    }
}

/// Compresses `data` into one data member.
pub fn encode_data(data: &[u8], level: u32) -> Vec<u8> {
    encode(MemberKind::Data, data, level)
}

/// The head member of segment `id`.
pub fn encode_head(id: [u8; 16]) -> Vec<u8> {
    encode(MemberKind::Head(id), &[], 0)
}

/// Deflates `data` after `HEADER_LEN` reserved bytes.
///
/// libdeflate rather than a streaming zlib: a member is always compressed whole
/// from memory, which is the case libdeflate is built for. On loghub NDJSON at
/// level 6 it ran 372 MiB/s against zlib-rs's 256, with a better ratio (14.6x
/// against 14.2x). Compressors are kept per thread: creating one allocates.
fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<(u32, Compressor)>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let lvl =
                CompressionLvl::new(level.clamp(0, 12) as i32).expect("levels 0 to 12 are valid");
            *cell = Some((level, Compressor::new(lvl)));
        }
        let (_, compressor) = cell.as_mut().expect("just set");
        let mut out = vec![0; HEADER_LEN + compressor.deflate_compress_bound(data.len())];
        let n = compressor
            .deflate_compress(data, &mut out[HEADER_LEN..])
            .expect("the output buffer has the compress bound");
        out.truncate(HEADER_LEN + n);
        out.reserve_exact(TRAILER_LEN);
        out
    })
}

fn encode(kind: MemberKind, data: &[u8], level: u32) -> Vec<u8> {
    let mut out = deflate(data, level);
    let payload_len = (out.len() - HEADER_LEN) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let (kind_byte, id) = match kind {
        MemberKind::Head(id) => (0u8, id),
        MemberKind::Data => (1u8, [0; 16]),
    };
    let h = &mut out[..HEADER_LEN];
    h[..10].copy_from_slice(&[0x1f, 0x8b, 8, FLG_FEXTRA, 0, 0, 0, 0, 0, OS_UNKNOWN]);
    h[10..12].copy_from_slice(&((4 + SD_LEN) as u16).to_le_bytes());
    h[12..16].copy_from_slice(&[b'S', b'D', SD_LEN as u8, 0]);
    h[16] = 1;
    h[17] = kind_byte;
    h[18..34].copy_from_slice(&id);
    h[34..38].copy_from_slice(&payload_len.to_le_bytes());
    let body_crc = member_crc(&out[..CRC_AT], &out[HEADER_LEN..]);
    out[CRC_AT..HEADER_LEN].copy_from_slice(&body_crc.to_le_bytes());
    out
}

/// Bytes of a head member (all head members have the same length).
pub fn head_len() -> u64 {
    static LEN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| encode_head([0; 16]).len() as u64)
}

/// Parses a sediment member header; `None` when `bytes` does not start with one.
pub fn parse_header(bytes: &[u8]) -> Option<MemberHeader> {
    let h = bytes.get(..HEADER_LEN)?;
    let fixed = h[0] == 0x1f && h[1] == 0x8b && h[2] == 8 && h[3] == FLG_FEXTRA;
    let sd = h[10..12] == ((4 + SD_LEN) as u16).to_le_bytes()
        && h[12..16] == [b'S', b'D', SD_LEN as u8, 0]
        && h[16] == 1;
    if !fixed || !sd {
        return None;
    }
    let kind = match h[17] {
        0 => MemberKind::Head(h[18..34].try_into().expect("16 bytes")),
        1 => MemberKind::Data,
        _ => return None,
    };
    Some(MemberHeader {
        kind,
        payload_len: u32::from_le_bytes(h[34..38].try_into().expect("4 bytes")),
        body_crc: u32::from_le_bytes(h[38..42].try_into().expect("4 bytes")),
    })
}

/// The length of the longest prefix of `reader` made of whole, intact members.
///
/// Reads the stream once; never inflates.
pub fn valid_prefix_len(reader: &mut impl Read) -> std::io::Result<u64> {
    let mut valid = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut body = Vec::new();
    loop {
        if !read_full(reader, &mut header)? {
            return Ok(valid);
        }
        let Some(h) = parse_header(&header) else {
            return Ok(valid);
        };
        body.resize(h.payload_len as usize + TRAILER_LEN, 0);
        if !read_full(reader, &mut body)? || member_crc(&header[..CRC_AT], &body) != h.body_crc {
            return Ok(valid);
        }
        valid += h.total_len();
    }
}

/// Fills `buf`; `false` if the stream ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use proptest::prelude::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if bytes.is_empty() {
            return out; // nothing survived: not even a gzip stream
        }
        MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn file(chunks: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = encode_head([7; 16]);
        let mut ends = vec![bytes.len()];
        for c in chunks {
            bytes.extend(encode_data(c, 6));
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    #[test]
    fn standard_gzip_readers_decode_concatenated_members() {
        let (bytes, _) = file(&[b"{\"a\":1}\n", b"{\"b\":2}\n{\"c\":3}\n"]);
        assert_eq!(gunzip(&bytes), b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(
            parse_header(&bytes).unwrap().kind,
            MemberKind::Head([7; 16])
        );
    }

    #[test]
    fn detects_corruption_inside_a_member() {
        let (mut bytes, ends) = file(&[b"first line\n", b"second line\n"]);
        let mid = (ends[1] + ends[2]) / 2;
        bytes[mid] ^= 0xff;
        assert_eq!(valid_prefix_len(&mut &bytes[..]).unwrap(), ends[1] as u64);
    }

    proptest! {
        /// Cut a small staging file at every byte offset: recovery keeps exactly the
        /// whole members before the cut, and they decode to the matching prefix.
        #[test]
        fn truncation_at_every_offset_keeps_whole_members(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5)
        ) {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let (bytes, ends) = file(&refs);
            for cut in 0..=bytes.len() {
                let valid = valid_prefix_len(&mut &bytes[..cut]).unwrap() as usize;
                let whole = ends.iter().copied().filter(|e| *e <= cut).max().unwrap_or(0);
                prop_assert_eq!(valid, whole);
                let members = ends.iter().filter(|e| **e <= cut).count();
                let expected: Vec<u8> = chunks.iter().take(members.saturating_sub(1)).flatten().copied().collect();
                prop_assert_eq!(gunzip(&bytes[..valid]), expected);
            }
        }

        /// Garbage after whole members is cut off, whatever it is.
        #[test]
        fn garbage_tail_is_cut(tail in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (mut bytes, ends) = file(&[b"line\n"]);
            bytes.extend(&tail);
            let valid = valid_prefix_len(&mut &bytes[..]).unwrap() as usize;
            prop_assert!(valid >= ends[1]);
            prop_assert_eq!(gunzip(&bytes[..valid]), b"line\n".to_vec());
        }
    }
}
