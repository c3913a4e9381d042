//! Staging segments in `data_dir`: one open segment per hour, appended in group
//! commits, sealed when due, recovered after a crash.
//!
//! A segment is `{hour}-{deadline}-{id}.open` while it takes appends and is renamed
//! to `.sealed` (atomically, directory fsync'd) before its upload starts, so a
//! segment that may already be uploaded is never appended to again. Recovery
//! keeps every intact member of an open segment (see [`super::recovery`]): a torn
//! last write is cut, damage elsewhere is dropped member by member and the
//! segment rewritten; sealed segments are checked the same way before upload
//! ([`verify_sealed`]), so every archive object is valid gzip.
//!
//! A staging folder removed while sediment runs (`rm -rf`) leaves open segments
//! as unlinked files that still take writes: [`Staging::append`] checks after
//! its fsync that each touched segment is still linked, fails the round (its
//! senders are told to retry) and rewrites every open segment's durable bytes
//! from its still-open descriptor into a recreated folder, so nothing
//! acknowledged is lost. Files are created `0600` and the folder `0700`:
//! staged logs are nobody else's business.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::file_store::sync_dir;
use super::member;
use super::recovery::{self, Scan};

/// Mode of staging files: readable by sediment only.
const FILE_MODE: u32 = 0o600;
/// Mode of staging folders.
const DIR_MODE: u32 = 0o700;
/// Extension of a repaired copy being written; a leftover one is deleted.
const REPAIR_EXT: &str = "repair";

/// Compressed events bound for one hour, from one commit round.
#[derive(Debug)]
pub struct Append {
    /// Start of the hour, seconds.
    pub hour: i64,
    /// When a segment created for this append is due (seconds).
    pub deadline_if_new: i64,
    /// One gzip data member.
    pub member: Vec<u8>,
}

/// A sealed segment waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// The `.sealed` file.
    pub path: PathBuf,
    /// Start of its hour, seconds.
    pub hour: i64,
    /// Its id, also in its head member.
    pub id: Uuid,
    /// Bytes.
    pub size: u64,
}

impl SealedSegment {
    /// Bytes of its data members: what `sediment_archive_staged_bytes` counts.
    pub fn data_bytes(&self) -> u64 {
        self.size.saturating_sub(member::head_len())
    }
}

#[derive(Debug)]
struct OpenSegment {
    path: PathBuf,
    file: File,
    id: Uuid,
    deadline: i64,
    /// Bytes known durable.
    len: u64,
}

/// What [`Staging::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// The staging state, open segments resumed.
    pub staging: Staging,
    /// Sealed segments waiting for upload.
    pub sealed: Vec<SealedSegment>,
    /// Damaged members dropped from open segments.
    pub damaged_members: u64,
}

/// The open segments of one sink.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    open: HashMap<i64, OpenSegment>,
    max_open: usize,
}

struct Name {
    hour: i64,
    deadline: i64,
    id: Uuid,
    sealed: bool,
}

fn parse_name(path: &Path) -> Option<Name> {
    let name = path.file_name()?.to_str()?;
    let (stem, sealed) = match name.rsplit_once('.')? {
        (stem, "open") => (stem, false),
        (stem, "sealed") => (stem, true),
        _ => return None,
    };
    let mut parts = stem.splitn(3, '-');
    Some(Name {
        hour: parts.next()?.parse().ok()?,
        deadline: parts.next()?.parse().ok()?,
        id: parts.next()?.parse().ok()?,
        sealed,
    })
}

impl Staging {
    /// Opens (creating) the staging folder and recovers what a previous run left:
    /// open segments keep every intact member and are resumed; sealed ones are
    /// returned for upload (they are checked just before it).
    pub fn open(dir: &Path, max_open: usize) -> io::Result<Recovered> {
        create_dir(dir)?;
        let mut staging = Staging {
            dir: dir.to_owned(),
            open: HashMap::new(),
            max_open: max_open.max(1),
        };
        let mut sealed = Vec::new();
        let mut damaged_members = 0;
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == REPAIR_EXT) {
                fs::remove_file(&path)?; // a repair cut short; the original is intact
                continue;
            }
            let Some(name) = parse_name(&path) else {
                continue;
            };
            if name.sealed {
                let size = fs::metadata(&path)?.len();
                sealed.push(SealedSegment {
                    path,
                    hour: name.hour,
                    id: name.id,
                    size,
                });
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let scan = recovery::scan(&file)?;
            recovery::log_damage(&path, &scan);
            damaged_members += scan.dropped_members();
            if scan.data_members == 0 {
                // No intact data member: nothing acknowledged survives here.
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            let (mut file, len) = if scan.is_clean() {
                (file, scan.len)
            } else if let (true, Some(tail)) = (scan.only_torn_tail(), scan.torn_tail) {
                file.set_len(tail)?;
                file.sync_all()?;
                (file, tail)
            } else {
                repair(&path, &file, &scan, name.id)?
            };
            file.seek(SeekFrom::End(0))?;
            let segment = OpenSegment {
                path,
                file,
                id: name.id,
                deadline: name.deadline,
                len,
            };
            if let Some(previous) = staging.open.insert(name.hour, segment) {
                // Two open segments of one hour cannot come from a clean run; keep both, safely.
                sealed.push(
                    staging
                        .seal_segment(name.hour, previous)?
                        .expect("recovered segments hold data"),
                );
            }
        }
        sync_dir(dir)?;
        Ok(Recovered {
            staging,
            sealed,
            damaged_members,
        })
    }

    /// Number of open segments.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Event bytes (data members, not head members) in open segments.
    pub fn open_bytes(&self) -> u64 {
        self.open
            .values()
            .map(|s| s.len.saturating_sub(member::head_len()))
            .sum()
    }

    /// Appends every member and makes them durable together (one fsync per touched
    /// segment). On error every touched segment is rolled back to where it was, so a
    /// failed round leaves nothing behind. Returns segments sealed early to stay
    /// within the open-segment bound.
    pub fn append(&mut self, appends: &[Append]) -> io::Result<Vec<SealedSegment>> {
        let mut evicted = Vec::new();
        let mut touched: Vec<(i64, u64)> = Vec::new();
        let mut created: Vec<i64> = Vec::new();
        let result = (|| {
            for a in appends {
                if !self.open.contains_key(&a.hour) {
                    if self.open.len() >= self.max_open {
                        let oldest = *self
                            .open
                            .iter()
                            .filter(|(h, _)| !touched.iter().any(|t| t.0 == **h))
                            .min_by_key(|(_, s)| s.deadline)
                            .map(|(h, _)| h)
                            .unwrap_or(&a.hour);
                        if oldest != a.hour {
                            evicted.extend(self.seal(oldest)?);
                        }
                    }
                    self.create(a.hour, a.deadline_if_new)?;
                    created.push(a.hour);
                }
                let segment = self.open.get_mut(&a.hour).expect("just ensured");
                if !touched.iter().any(|t| t.0 == a.hour) {
                    touched.push((a.hour, segment.len));
                }
                segment.file.write_all(&a.member)?;
            }
            for (hour, _) in &touched {
                self.open[hour].file.sync_data()?;
            }
            if !created.is_empty() {
                sync_dir(&self.dir)?;
            }
            // Durable only if still linked: a removed folder takes writes silently.
            for (hour, _) in &touched {
                let segment = &self.open[hour];
                if !is_linked(segment)? {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "the staging segment {} was removed while in use",
                            segment.path.display()
                        ),
                    ));
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                for (hour, _) in &touched {
                    let segment = self.open.get_mut(hour).expect("touched segments are open");
                    segment.len = segment.file.stream_position()?;
                }
                Ok(evicted)
            }
            Err(e) => {
                for (hour, len) in touched {
                    if created.contains(&hour) {
                        if let Some(s) = self.open.remove(&hour) {
                            let _ = fs::remove_file(&s.path);
                        }
                    } else if let Some(s) = self.open.get_mut(&hour) {
                        let undo = s
                            .file
                            .set_len(len)
                            .and_then(|_| s.file.seek(SeekFrom::Start(len)))
                            .and_then(|_| s.file.sync_data());
                        if let Err(undo) = undo {
                            tracing::error!(segment = %s.path.display(), error = %undo, "cannot roll back a failed staging write");
                        }
                    }
                }
                if let Err(restore) = self.restore_unlinked() {
                    tracing::error!(folder = %self.dir.display(), error = %restore, "cannot restore removed staging segments; will try again");
                }
                // Evicted segments were sealed durably; the caller still uploads them.
                if !evicted.is_empty() {
                    tracing::debug!(
                        count = evicted.len(),
                        "segments sealed before a failed round"
                    );
                }
                Err(e)
            }
        }
    }

    /// Rewrites every open segment that is no longer linked (its folder or file
    /// was removed) from its open descriptor, recreating the folder. Returns how
    /// many were restored.
    pub fn restore_unlinked(&mut self) -> io::Result<usize> {
        let mut restored = 0;
        for segment in self.open.values_mut() {
            if is_linked(segment)? {
                continue;
            }
            create_dir(&self.dir)?;
            let tmp = segment.path.with_extension(REPAIR_EXT);
            let mut copy = create_file(&tmp)?;
            let mut chunk = vec![0u8; recovery::CHUNK];
            let mut at = 0u64;
            while at < segment.len {
                let n = (segment.len - at).min(chunk.len() as u64) as usize;
                let got = recovery::Source::read_at(&segment.file, &mut chunk[..n], at)?;
                if got == 0 {
                    break;
                }
                copy.write_all(&chunk[..got])?;
                at += got as u64;
            }
            copy.sync_all()?;
            fs::rename(&tmp, &segment.path)?;
            sync_dir(&self.dir)?;
            tracing::warn!(segment = %segment.path.display(), bytes = at, "a staging segment was removed while in use; rewrote its durable data");
            segment.file = copy;
            segment.len = at;
            restored += 1;
        }
        Ok(restored)
    }

    fn create(&mut self, hour: i64, deadline: i64) -> io::Result<()> {
        let id = Uuid::now_v7();
        let path = self
            .dir
            .join(format!("{hour}-{deadline}-{}.open", id.simple()));
        if !self.dir.is_dir() {
            create_dir(&self.dir)?;
        }
        let mut file = create_file(&path)?;
        file.write_all(&member::encode_head(*id.as_bytes()))?;
        self.open.insert(
            hour,
            OpenSegment {
                path,
                file,
                id,
                deadline,
                len: 0,
            },
        );
        Ok(())
    }

    /// Hours whose open segment is due at `now` (seconds), earliest first.
    pub fn due(&self, now: i64) -> Vec<i64> {
        let mut due: Vec<(i64, i64)> = self
            .open
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(h, s)| (s.deadline, *h))
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, h)| h).collect()
    }

    /// Hours whose open segment reached `max_bytes`.
    pub fn oversized(&self, max_bytes: u64) -> Vec<i64> {
        self.open
            .iter()
            .filter(|(_, s)| s.len >= max_bytes)
            .map(|(h, _)| *h)
            .collect()
    }

    /// Every open hour.
    pub fn hours(&self) -> Vec<i64> {
        self.open.keys().copied().collect()
    }

    /// Seals the open segment of `hour` for upload (`None` if it holds no data).
    pub fn seal(&mut self, hour: i64) -> io::Result<Option<SealedSegment>> {
        if self
            .open
            .get(&hour)
            .is_some_and(|s| !is_linked(s).unwrap_or(true))
        {
            self.restore_unlinked()?;
        }
        match self.open.remove(&hour) {
            Some(segment) => self.seal_segment(hour, segment),
            None => Ok(None),
        }
    }

    fn seal_segment(
        &mut self,
        hour: i64,
        segment: OpenSegment,
    ) -> io::Result<Option<SealedSegment>> {
        let OpenSegment {
            path,
            file,
            id,
            len,
            ..
        } = segment;
        drop(file);
        if len <= member::head_len() {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => return Ok(None),
            }
        }
        let sealed = path.with_extension("sealed");
        fs::rename(&path, &sealed)?;
        sync_dir(&self.dir)?;
        Ok(Some(SealedSegment {
            path: sealed,
            hour,
            id,
            size: len,
        }))
    }
}

/// Whether `segment`'s descriptor is still the file at its path.
fn is_linked(segment: &OpenSegment) -> io::Result<bool> {
    let open = segment.file.metadata()?;
    if open.nlink() == 0 {
        return Ok(false);
    }
    match fs::metadata(&segment.path) {
        Ok(at_path) => Ok(at_path.ino() == open.ino() && at_path.dev() == open.dev()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and missing parents) readable by sediment only.
fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates (or truncates) a staging file readable by sediment only.
fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Replaces the segment at `path` by its repaired copy (see [`recovery::rewrite`]).
fn repair(path: &Path, file: &File, scan: &Scan, id: Uuid) -> io::Result<(File, u64)> {
    let tmp = path.with_extension(REPAIR_EXT);
    let mut copy = create_file(&tmp)?;
    let len = recovery::rewrite(file, scan, *id.as_bytes(), &mut copy)?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok((copy, len))
}

/// What [`verify_sealed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every member intact; upload as is.
    Intact,
    /// Damaged members were dropped and the segment rewritten; upload the rest.
    Repaired {
        /// Members dropped.
        dropped: u64,
    },
    /// No intact data member survives: the file is deleted, nothing to upload.
    Empty {
        /// Members dropped.
        dropped: u64,
    },
}

/// Checks every member of a sealed segment before its upload; a damaged one is
/// rewritten with its intact members only (each loss logged), so the object
/// made from it is valid gzip. Updates `segment.size`.
pub fn verify_sealed(segment: &mut SealedSegment) -> io::Result<Verified> {
    let file = File::open(&segment.path)?;
    let scan = recovery::scan(&file)?;
    if scan.is_clean() {
        segment.size = scan.len;
        return Ok(Verified::Intact);
    }
    recovery::log_damage(&segment.path, &scan);
    // In a sealed segment even a torn tail is damage: it was fsync'd whole.
    let dropped = scan.dropped_members() + u64::from(scan.torn_tail.is_some());
    if scan.data_members == 0 {
        drop(file);
        fs::remove_file(&segment.path)?;
        return Ok(Verified::Empty { dropped });
    }
    let (_, len) = repair(&segment.path, &file, &scan, segment.id)?;
    segment.size = len;
    Ok(Verified::Repaired { dropped })
}

#[cfg(test)]
mod tests;
