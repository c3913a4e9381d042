//! Staging segments in `data_dir`: one open segment per hour, appended in group
//! commits, sealed when due, recovered after a crash.
//!
//! A segment is `{hour}-{deadline}-{id}.open` while it takes appends and is renamed
//! to `.sealed` (atomically, directory fsync'd) before its upload starts, so a
//! segment that may already be uploaded is never appended to again. Recovery cuts
//! an open segment back to its last intact member (see [`super::member`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::file_store::sync_dir;
use super::member;

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
    /// open segments are cut back to their last whole member and resumed; sealed
    /// ones are returned for upload.
    pub fn open(dir: &Path, max_open: usize) -> io::Result<(Staging, Vec<SealedSegment>)> {
        fs::create_dir_all(dir)?;
        let mut staging = Staging {
            dir: dir.to_owned(),
            open: HashMap::new(),
            max_open: max_open.max(1),
        };
        let mut sealed = Vec::new();
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        paths.sort();
        for path in paths {
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
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let valid = member::valid_prefix_len(&mut io::BufReader::new(&mut file))?;
            if valid <= member::head_len() {
                // Only a head member (or less) survived: nothing acknowledged lived here.
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            if valid < file.metadata()?.len() {
                tracing::warn!(segment = %path.display(), kept_bytes = valid, "cut a torn write off a staging segment");
                file.set_len(valid)?;
                file.sync_all()?;
            }
            file.seek(SeekFrom::End(0))?;
            let segment = OpenSegment {
                path,
                file,
                id: name.id,
                deadline: name.deadline,
                len: valid,
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
        Ok((staging, sealed))
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

    fn create(&mut self, hour: i64, deadline: i64) -> io::Result<()> {
        let id = Uuid::now_v7();
        let path = self
            .dir
            .join(format!("{hour}-{deadline}-{}.open", id.simple()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
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
            fs::remove_file(&path)?;
            return Ok(None);
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

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use std::io::Read;

    const HOUR: i64 = 1_763_780_400;

    fn gunzip(path: &Path) -> String {
        let mut out = String::new();
        MultiGzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    fn append(hour: i64, text: &str) -> Append {
        Append {
            hour,
            deadline_if_new: hour + 4200,
            member: member::encode_data(text.as_bytes(), 6),
        }
    }

    #[test]
    fn appends_seal_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (mut staging, sealed) = Staging::open(dir.path(), 8).unwrap();
        assert!(sealed.is_empty());
        staging
            .append(&[append(HOUR, "a\n"), append(HOUR + 3600, "b\n")])
            .unwrap();
        staging.append(&[append(HOUR, "c\n")]).unwrap();
        assert_eq!(staging.open_count(), 2);
        assert_eq!(staging.due(HOUR + 4199), Vec::<i64>::new());
        assert_eq!(staging.due(HOUR + 4200), vec![HOUR]);

        let s = staging.seal(HOUR).unwrap().unwrap();
        assert_eq!(gunzip(&s.path), "a\nc\n");
        drop(staging);

        // A torn write after the last commit is cut off at restart; the sealed segment is handed back.
        let open = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().unwrap() == "open")
            .unwrap();
        OpenOptions::new()
            .append(true)
            .open(&open)
            .unwrap()
            .write_all(&member::encode_data(b"torn\n", 6)[..20])
            .unwrap();
        let (mut staging, sealed) = Staging::open(dir.path(), 8).unwrap();
        assert_eq!(sealed, vec![s]);
        staging.append(&[append(HOUR + 3600, "d\n")]).unwrap();
        let s2 = staging.seal(HOUR + 3600).unwrap().unwrap();
        assert_eq!(gunzip(&s2.path), "b\nd\n");
    }

    #[test]
    fn bound_on_open_segments_seals_the_earliest_due() {
        let dir = tempfile::tempdir().unwrap();
        let (mut staging, _) = Staging::open(dir.path(), 2).unwrap();
        staging
            .append(&[append(HOUR, "a\n"), append(HOUR + 3600, "b\n")])
            .unwrap();
        let evicted = staging.append(&[append(HOUR + 7200, "c\n")]).unwrap();
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].hour, HOUR);
        assert_eq!(staging.open_count(), 2);
    }

    #[test]
    fn a_segment_with_only_its_head_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut staging, _) = Staging::open(dir.path(), 2).unwrap();
        staging.create(HOUR, HOUR + 1).unwrap();
        drop(staging);
        let (staging, sealed) = Staging::open(dir.path(), 2).unwrap();
        assert!(sealed.is_empty());
        assert_eq!(staging.open_count(), 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
