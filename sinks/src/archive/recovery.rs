//! Walking a staging segment member by member, to keep every intact member
//! whatever happened to the others.
//!
//! Why: a staging segment holds many acknowledged batches, one gzip member each,
//! and each member carries its own length and checksum (see [`super::member`]).
//! Damage to one member — a flipped bit, a bad sector, a corrupted length — must
//! cost that member only, as Kafka and PostgreSQL salvage every record whose CRC
//! holds. So [`scan`] checks every member, and after damage it resynchronises
//! on the next position where an intact member starts. Lengths are believed
//! only after they pass [`member::MAX_PAYLOAD_LEN`] and fit in the file, and
//! checksums are computed in fixed-size chunks, so a damaged length never makes
//! recovery allocate more than [`CHUNK`] bytes.
//!
//! The outcome separates a *torn tail* (the last member was being written when
//! the process died: never acknowledged, cut silently) from *losses* (damage
//! somewhere else, or a complete member whose checksum fails: logged as a
//! warning each and counted).

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

use super::member::{self, MemberHeader, MemberKind, HEADER_LEN, MAGIC, TRAILER_LEN};

/// Bytes read at a time while checking a member or looking for the next one.
pub const CHUNK: usize = 64 * 1024;

/// What [`scan`] reads: a file or, in tests and fuzzing, bytes in memory.
pub trait Source {
    /// Total bytes.
    fn size(&self) -> io::Result<u64>;
    /// Reads at `offset` into `buf`; fewer bytes only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl Source for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl Source for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// Fills `buf` from `offset`; `false` if the source ends first.
fn read_exact_at<S: Source + ?Sized>(src: &S, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A damaged stretch of a segment that recovery drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Where the damage starts (a member boundary, unless the file starts with garbage).
    pub offset: u64,
    /// Bytes dropped.
    pub bytes: u64,
    /// Members dropped: the one at `offset` and every other member header inside.
    pub members: u64,
}

/// What a segment holds, member by member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Bytes of the segment.
    pub len: u64,
    /// The segment id, when an intact head member opens the file.
    pub head: Option<[u8; 16]>,
    /// Byte ranges of intact data members, adjacent ones merged, in file order.
    pub data: Vec<Range<u64>>,
    /// Intact data members.
    pub data_members: u64,
    /// Damage outside the tail, one entry per damaged stretch.
    pub losses: Vec<Loss>,
    /// Where a torn last member starts (a write cut short by a crash).
    pub torn_tail: Option<u64>,
}

impl Scan {
    /// Nothing to repair: an intact head, then intact members to the end.
    pub fn is_clean(&self) -> bool {
        self.losses.is_empty() && self.torn_tail.is_none() && self.head_is_first()
    }

    /// Only a torn tail to cut: everything before it is intact.
    pub fn only_torn_tail(&self) -> bool {
        self.losses.is_empty() && self.torn_tail.is_some() && self.head_is_first()
    }

    fn head_is_first(&self) -> bool {
        self.head.is_some()
            && self
                .data
                .first()
                .is_none_or(|r| r.start == member::head_len())
    }

    /// Members dropped by damage (a torn tail not counted).
    pub fn dropped_members(&self) -> u64 {
        self.losses.iter().map(|l| l.members).sum()
    }

    /// Bytes of intact data members.
    pub fn data_bytes(&self) -> u64 {
        self.data.iter().map(|r| r.end - r.start).sum()
    }
}

/// Checks every member of `src` (see the module docs).
pub fn scan<S: Source + ?Sized>(src: &S) -> io::Result<Scan> {
    let len = src.size()?;
    let mut out = Scan {
        len,
        ..Scan::default()
    };
    let mut chunk = vec![0u8; CHUNK];
    let mut pos = 0u64;
    // Start of the damaged stretch being crossed, and member headers seen in it.
    let mut damage: Option<(u64, u64)> = None;
    while pos < len {
        if let Some(h) = intact_at(src, pos, len, &mut chunk)? {
            if let Some((start, members)) = damage.take() {
                out.losses.push(Loss {
                    offset: start,
                    bytes: pos - start,
                    members,
                });
            }
            let end = pos + h.total_len();
            match h.kind {
                MemberKind::Head(id) if pos == 0 => out.head = Some(id),
                // A head anywhere else carries no data: skipped.
                MemberKind::Head(_) => {}
                MemberKind::Data => {
                    out.data_members += 1;
                    match out.data.last_mut() {
                        Some(last) if last.end == pos => last.end = end,
                        _ => out.data.push(pos..end),
                    }
                }
            }
            pos = end;
            continue;
        }
        match &mut damage {
            None => damage = Some((pos, 1)),
            Some((_, members)) if header_at(src, pos, len)?.is_some() => *members += 1,
            Some(_) => {}
        }
        pos = next_magic(src, pos + 1, len, &mut chunk)?;
    }
    if let Some((start, members)) = damage {
        let torn = len - start < HEADER_LEN as u64
            || header_at(src, start, len)?.is_some_and(|h| start + h.total_len() > len);
        if torn && members == 1 {
            out.torn_tail = Some(start);
        } else {
            out.losses.push(Loss {
                offset: start,
                bytes: len - start,
                members,
            });
        }
    }
    Ok(out)
}

/// The header at `pos`, if one parses there (its length within the maximum).
fn header_at<S: Source + ?Sized>(src: &S, pos: u64, len: u64) -> io::Result<Option<MemberHeader>> {
    if len - pos < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    if !read_exact_at(src, &mut header, pos)? {
        return Ok(None);
    }
    Ok(member::parse_header(&header))
}

/// The member at `pos` if it is whole and its checksum holds.
fn intact_at<S: Source + ?Sized>(
    src: &S,
    pos: u64,
    len: u64,
    chunk: &mut [u8],
) -> io::Result<Option<MemberHeader>> {
    if len - pos < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    if !read_exact_at(src, &mut header, pos)? {
        return Ok(None);
    }
    let Some(h) = member::parse_header(&header) else {
        return Ok(None);
    };
    if h.total_len() > len - pos {
        return Ok(None);
    }
    let mut crc = member::body_hasher(&header);
    let mut at = pos + HEADER_LEN as u64;
    let mut left = u64::from(h.payload_len) + TRAILER_LEN as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if !read_exact_at(src, &mut chunk[..n], at)? {
            return Ok(None);
        }
        crc.update(&chunk[..n]);
        at += n as u64;
        left -= n as u64;
    }
    Ok((crc.finalize() == h.body_crc).then_some(h))
}

/// The first position at or after `from` where the member magic starts, else `len`.
fn next_magic<S: Source + ?Sized>(
    src: &S,
    from: u64,
    len: u64,
    chunk: &mut [u8],
) -> io::Result<u64> {
    let mut at = from;
    while at < len {
        let n = (len - at).min(chunk.len() as u64) as usize;
        if !read_exact_at(src, &mut chunk[..n], at)? {
            return Ok(len);
        }
        if let Some(i) = chunk[..n].windows(MAGIC.len()).position(|w| w == MAGIC) {
            return Ok(at + i as u64);
        }
        if n < MAGIC.len() {
            return Ok(len);
        }
        // Overlap by the magic's length minus one, so a magic across chunks is found.
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(len)
}

/// Writes segment `id`'s repaired copy to `dest`: a fresh head member, then every
/// intact data member of `scan` copied from `src`; fsync'd. Returns its length.
pub fn rewrite<S: Source + ?Sized>(
    src: &S,
    scan: &Scan,
    id: [u8; 16],
    dest: &mut File,
) -> io::Result<u64> {
    let head = member::encode_head(id);
    dest.write_all(&head)?;
    let mut written = head.len() as u64;
    let mut chunk = vec![0u8; CHUNK];
    for range in &scan.data {
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(CHUNK as u64) as usize;
            if !read_exact_at(src, &mut chunk[..n], at)? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment shrank while being repaired",
                ));
            }
            dest.write_all(&chunk[..n])?;
            at += n as u64;
            written += n as u64;
        }
    }
    dest.sync_all()?;
    Ok(written)
}

/// Logs what recovery dropped from `segment`: one warning per damaged stretch,
/// and the torn tail (never acknowledged) at info level.
pub fn log_damage(segment: &Path, scan: &Scan) {
    if scan.head.is_none() && !scan.data.is_empty() {
        tracing::warn!(segment = %segment.display(), "the head member of a staging segment is damaged; rewrote it from the file name");
    }
    for loss in &scan.losses {
        tracing::warn!(
            segment = %segment.display(),
            offset = loss.offset,
            bytes = loss.bytes,
            members = loss.members,
            "dropped damaged members of a staging segment (checksum failed); every intact member is kept"
        );
    }
    if let Some(at) = scan.torn_tail {
        tracing::info!(segment = %segment.display(), offset = at, bytes = scan.len - at, "cut a torn last write off a staging segment");
    }
}

#[cfg(test)]
mod tests;
