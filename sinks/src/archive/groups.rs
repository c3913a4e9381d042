//! Parts of a group held back until its last part: a large request becomes
//! visible in the archive as a whole or not at all (see
//! [`sediment_core::Group`]).
//!
//! Each group's compressed members are appended to a file of its own under
//! `data_dir/<sink>/groups/`, without fsync: nothing of a group has been
//! acknowledged to its client before its last part is committed, so a crash
//! only leaves files that the next start deletes. With the last part, the
//! members are read back and committed with it in one staging round; a
//! group whose last part never comes is deleted once nobody holds it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use sediment_core::Group;

use super::compress::HourMember;

/// Header of one held member: hour, close_at, length.
const HEADER: usize = 8 + 8 + 8;

/// What a held group's parts add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldCounts {
    /// Events.
    pub events: u64,
    /// Events marked late.
    pub late_events: u64,
    /// NDJSON bytes before compression.
    pub raw_bytes: u64,
}

struct Held {
    path: PathBuf,
    file: File,
    group: Weak<Group>,
    counts: HeldCounts,
}

/// The held groups of one sink.
pub struct Groups {
    dir: PathBuf,
    held: HashMap<u64, Held>,
    /// Groups a part of which could not be held: their last part must fail too.
    broken: HashMap<u64, Weak<Group>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("dir", &self.dir)
            .field("held", &self.held.len())
            .finish()
    }
}

impl Groups {
    /// Opens (creating) the folder and deletes what a previous run left: groups
    /// that were never completed, so never acknowledged.
    pub fn open(dir: &Path) -> io::Result<Groups> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "part") {
                fs::remove_file(&path)?;
            }
        }
        Ok(Groups {
            dir: dir.to_owned(),
            held: HashMap::new(),
            broken: HashMap::new(),
        })
    }

    /// Groups held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds a part's members back. On error the group is broken: what it holds
    /// is deleted and its last part is refused by [`Groups::take`].
    pub fn hold(
        &mut self,
        group: &Arc<Group>,
        members: &[HourMember],
        counts: HeldCounts,
    ) -> io::Result<()> {
        if group.is_abandoned() {
            return Ok(()); // deleted at the next drop_abandoned, never visible
        }
        if self.broken.contains_key(&group.id) {
            return Err(io::Error::other(
                "an earlier part of this request could not be held",
            ));
        }
        let result = self.try_hold(group, members, counts);
        if result.is_err() {
            if let Some(h) = self.held.remove(&group.id) {
                let _ = fs::remove_file(&h.path);
            }
            self.broken.insert(group.id, Arc::downgrade(group));
        }
        result
    }

    fn try_hold(
        &mut self,
        group: &Arc<Group>,
        members: &[HourMember],
        counts: HeldCounts,
    ) -> io::Result<()> {
        let held = match self.held.entry(group.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let path = self.dir.join(format!("{}.part", group.id));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&path)?;
                v.insert(Held {
                    path,
                    file,
                    group: Arc::downgrade(group),
                    counts: HeldCounts::default(),
                })
            }
        };
        let mut out = Vec::with_capacity(members.iter().map(|m| HEADER + m.member.len()).sum());
        for m in members {
            out.extend_from_slice(&m.hour.to_le_bytes());
            out.extend_from_slice(&m.close_at.to_le_bytes());
            out.extend_from_slice(&(m.member.len() as u64).to_le_bytes());
            out.extend_from_slice(&m.member);
        }
        held.file.write_all(&out)?;
        held.counts.events += counts.events;
        held.counts.late_events += counts.late_events;
        held.counts.raw_bytes += counts.raw_bytes;
        Ok(())
    }

    /// Takes a group's held members (none if nothing was held) and forgets it.
    pub fn take(&mut self, group: &Group) -> io::Result<(Vec<HourMember>, HeldCounts)> {
        if self.broken.remove(&group.id).is_some() {
            return Err(io::Error::other(
                "an earlier part of this request could not be held",
            ));
        }
        let Some(held) = self.held.remove(&group.id) else {
            return Ok((Vec::new(), HeldCounts::default()));
        };
        drop(held.file);
        let mut bytes = Vec::new();
        let read = File::open(&held.path).and_then(|mut f| f.read_to_end(&mut bytes));
        let _ = fs::remove_file(&held.path);
        read?;
        let mut members = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let corrupt =
                || io::Error::new(io::ErrorKind::InvalidData, "a held group file is cut short");
            if rest.len() < HEADER {
                return Err(corrupt());
            }
            let word = |i: usize| u64::from_le_bytes(rest[i..i + 8].try_into().expect("8 bytes"));
            let (hour, close_at, len) = (word(0) as i64, word(8) as i64, word(16) as usize);
            if rest.len() < HEADER + len {
                return Err(corrupt());
            }
            members.push(HourMember {
                hour,
                close_at,
                member: rest[HEADER..HEADER + len].to_vec(),
                stream: None,
            });
            rest = &rest[HEADER + len..];
        }
        Ok((members, held.counts))
    }

    /// Deletes groups that were abandoned or that nobody holds any more (their
    /// request ended without its last part); returns how many.
    pub fn drop_abandoned(&mut self) -> usize {
        let gone: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.group.upgrade().is_none_or(|g| g.is_abandoned()))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(h) = self.held.remove(id) {
                let _ = fs::remove_file(&h.path);
            }
        }
        self.broken.retain(|_, g| g.strong_count() > 0);
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(hour: i64, data: &[u8]) -> HourMember {
        HourMember {
            hour,
            close_at: hour + 4200,
            member: data.to_vec(),
            stream: None,
        }
    }

    #[test]
    fn held_parts_come_back_in_order_and_abandoned_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut groups = Groups::open(dir.path()).unwrap();
        let (a, b) = (Group::new(), Group::new());
        let one = HeldCounts {
            events: 2,
            late_events: 1,
            raw_bytes: 10,
        };
        groups
            .hold(&a, &[member(0, b"x"), member(3600, b"yy")], one)
            .unwrap();
        groups.hold(&a, &[member(0, b"zzz")], one).unwrap();
        groups.hold(&b, &[member(7200, b"b")], one).unwrap();
        assert_eq!(groups.len(), 2);
        let (members, counts) = groups.take(&a).unwrap();
        let got: Vec<(i64, Vec<u8>)> = members.into_iter().map(|m| (m.hour, m.member)).collect();
        assert_eq!(
            got,
            vec![
                (0, b"x".to_vec()),
                (3600, b"yy".to_vec()),
                (0, b"zzz".to_vec())
            ]
        );
        assert_eq!(counts.events, 4);
        assert_eq!(groups.take(&a).unwrap().0.len(), 0, "taken once");
        assert_eq!(groups.drop_abandoned(), 0, "b is still held by its request");
        drop(b);
        assert_eq!(groups.drop_abandoned(), 1);
        let c = Group::new();
        groups.hold(&c, &[member(0, b"c")], one).unwrap();
        c.abandon();
        assert_eq!(
            groups.drop_abandoned(),
            1,
            "abandoned while still referenced"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
    }

    #[test]
    fn a_group_with_a_part_that_could_not_be_held_refuses_its_last_part() {
        let dir = tempfile::tempdir().unwrap();
        let mut groups = Groups::open(&dir.path().join("g")).unwrap();
        let a = Group::new();
        groups
            .hold(&a, &[member(0, b"x")], HeldCounts::default())
            .unwrap();
        fs::remove_dir_all(dir.path().join("g")).unwrap();
        let b = Group::new();
        assert!(groups
            .hold(&b, &[member(0, b"y")], HeldCounts::default())
            .is_err());
        assert!(groups.take(&b).is_err(), "b's last part must fail");
        assert!(
            groups.take(&a).is_err(),
            "a's held file is gone: its last part fails"
        );
    }

    #[test]
    fn leftovers_of_a_previous_run_are_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("7.part"), b"junk").unwrap();
        Groups::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
