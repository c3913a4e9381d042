//! Exact de-duplication by line id within one hour, in bounded memory.
//!
//! Ids are kept as 128-bit values: a UUID id (what sediment writes) is its own
//! 128 bits, exact; any other id is its 128-bit xxh3 hash, where a collision
//! between two different ids of one hour is astronomically unlikely
//! (about n²/2¹²⁹).
//!
//! Each hour has an [`IdSet`]: a hash set in memory and, once that outgrows its
//! share of `--dedup-memory`, one sorted run file under `data_dir` that the set
//! is merged into (then emptied). A lookup checks the memory set and then the
//! run: a sparse index in memory (every [`INDEX_EVERY`]th id) narrows the run
//! to one block, read with one `pread`. Streaming order is kept, so the first
//! copy of a line is the one written, spilled or not.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Ids per entry of a run's sparse index.
const INDEX_EVERY: usize = 256;
/// Bytes of one id.
const ID_BYTES: usize = 16;
/// What one id costs in the memory set (hash table slot, control byte, growth slack).
pub const BYTES_PER_ID: usize = 40;

/// A line id as restore compares it.
pub fn id_key(id: &str) -> u128 {
    match uuid::Uuid::try_parse(id) {
        Ok(u) if id.len() == 36 => u.as_u128(),
        _ => xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
    }
}

/// The ids seen in one hour.
#[derive(Debug)]
pub struct IdSet {
    /// foldhash, randomly seeded per set: the ids are UUIDs or xxh3 hashes already, so
    /// SipHash's cost (a fifth of a restore's consumer thread) buys nothing.
    memory: HashSet<u128, foldhash::fast::RandomState>,
    capacity: usize,
    run: Option<Run>,
    dir: PathBuf,
    name: String,
}

#[derive(Debug)]
struct Run {
    path: PathBuf,
    file: File,
    len: usize,
    /// Every INDEX_EVERY-th id of the run.
    index: Vec<u128>,
}

impl IdSet {
    /// A set holding about `memory_bytes` of ids before it spills into `dir/name.run`.
    pub fn new(memory_bytes: usize, dir: &Path, name: &str) -> IdSet {
        IdSet {
            memory: HashSet::default(),
            capacity: (memory_bytes / BYTES_PER_ID).max(1024),
            run: None,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Adds `id`; `Ok(true)` if it was not in the set.
    pub fn insert(&mut self, id: u128) -> io::Result<bool> {
        if !self.memory.insert(id) {
            return Ok(false);
        }
        if let Some(run) = &self.run {
            if run.contains(id)? {
                self.memory.remove(&id);
                return Ok(false);
            }
        }
        if self.memory.len() >= self.capacity {
            self.spill()?;
        }
        Ok(true)
    }

    /// Ids in the set.
    pub fn len(&self) -> usize {
        self.memory.len() + self.run.as_ref().map_or(0, |r| r.len)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether part of the set lives on disk.
    pub fn spilled(&self) -> bool {
        self.run.is_some()
    }

    /// Merges the memory set into the run file.
    fn spill(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut fresh: Vec<u128> = self.memory.drain().collect();
        fresh.sort_unstable();
        let path = self.dir.join(format!("{}.run", self.name));
        let next = self.dir.join(format!("{}.run.next", self.name));
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&next)?);
        let mut index = Vec::new();
        let mut len = 0usize;
        let mut write = |id: u128, out: &mut BufWriter<File>| -> io::Result<()> {
            if len % INDEX_EVERY == 0 {
                index.push(id);
            }
            len += 1;
            out.write_all(&id.to_be_bytes())
        };
        let mut old = match &self.run {
            Some(run) => Some(BufReader::with_capacity(1 << 16, File::open(&run.path)?)),
            None => None,
        };
        let next_old = |r: &mut Option<BufReader<File>>| -> io::Result<Option<u128>> {
            let Some(r) = r else { return Ok(None) };
            let mut b = [0u8; ID_BYTES];
            match r.read_exact(&mut b) {
                Ok(()) => Ok(Some(u128::from_be_bytes(b))),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(e),
            }
        };
        let mut a = next_old(&mut old)?;
        let mut fresh = fresh.into_iter().peekable();
        loop {
            match (a, fresh.peek().copied()) {
                (Some(x), Some(y)) if x <= y => {
                    write(x, &mut out)?;
                    a = next_old(&mut old)?;
                }
                (_, Some(y)) => {
                    write(y, &mut out)?;
                    fresh.next();
                }
                (Some(x), None) => {
                    write(x, &mut out)?;
                    a = next_old(&mut old)?;
                }
                (None, None) => break,
            }
        }
        out.flush()?;
        drop(out);
        std::fs::rename(&next, &path)?;
        self.run = Some(Run {
            file: File::open(&path)?,
            path,
            len,
            index,
        });
        Ok(())
    }
}

impl Run {
    fn contains(&self, id: u128) -> io::Result<bool> {
        // The block whose first id is the last one <= id.
        let block = match self.index.binary_search(&id) {
            Ok(_) => return Ok(true),
            Err(0) => return Ok(false),
            Err(i) => i - 1,
        };
        let first = block * INDEX_EVERY;
        let count = INDEX_EVERY.min(self.len - first);
        let mut buf = vec![0u8; count * ID_BYTES];
        self.file
            .read_exact_at(&mut buf, (first * ID_BYTES) as u64)?;
        let found = buf
            .chunks_exact(ID_BYTES)
            .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
            .collect::<Vec<_>>()
            .binary_search(&id)
            .is_ok();
        Ok(found)
    }
}

impl Drop for IdSet {
    fn drop(&mut self) {
        if let Some(run) = &self.run {
            let _ = std::fs::remove_file(&run.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuid_ids_are_exact_and_others_hashed() {
        let id = "019aa3c4-5d16-7700-8255-7f0737951101";
        assert_eq!(id_key(id), uuid::Uuid::parse_str(id).unwrap().as_u128());
        assert_ne!(id_key("AQAAAZK"), id_key("AQAAAZL"));
        assert_eq!(id_key("AQAAAZK"), id_key("AQAAAZK"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Spilled or not, the set answers exactly as a plain set does.
        #[test]
        fn agrees_with_a_plain_set(ids in prop::collection::vec(0u128..5000, 1..6000)) {
            let dir = tempfile::tempdir().unwrap();
            let mut small = IdSet::new(0, dir.path(), "h");
            let mut plain = HashSet::new();
            for id in ids {
                prop_assert_eq!(small.insert(id).unwrap(), plain.insert(id));
            }
            prop_assert_eq!(small.len(), plain.len());
        }
    }

    #[test]
    fn a_spilled_set_keeps_every_id_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::new(1 << 16, dir.path(), "hour");
        for i in 0..100_000u128 {
            assert!(set.insert(i * 7919).unwrap());
        }
        assert!(set.spilled());
        for i in 0..100_000u128 {
            assert!(!set.insert(i * 7919).unwrap(), "{i}");
        }
        assert_eq!(set.len(), 100_000);
        drop(set);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the run file is gone"
        );
    }
}
