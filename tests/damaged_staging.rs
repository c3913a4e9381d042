//! Damaged staging against the real binary (issue 12, items 1–4): staging
//! segments damaged on disk before a start, and the staging folder removed
//! while sediment runs. Whatever happens, every intact acknowledged member is
//! archived, every object is valid gzip for `zcat`, and each loss is logged
//! with its segment, offset and member count and counted in
//! `sediment_archive_damaged_members_total`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sediment_sinks::archive::member;
use serde_json::{json, Value};

const MEMBERS: usize = 10;
const EVENTS_PER_MEMBER: usize = 60;

/// The staging folder of the default topology's sink `archive`.
fn staging_dir(root: &Path) -> PathBuf {
    root.join("data/archive/staging")
}

/// Start of the hour three hours ago: its segments are due at once.
fn past_hour() -> i64 {
    let now = chrono::Utc::now().timestamp();
    now - now.rem_euclid(3600) - 3 * 3600
}

/// A segment of ten members (60 events each) named as staging names them;
/// returns its path and each member's byte span.
fn write_segment(
    root: &Path,
    hour: i64,
    sealed: bool,
    tag: &str,
) -> (PathBuf, Vec<(usize, usize)>) {
    let id = uuid::Uuid::now_v7();
    let mut bytes = member::encode_head(*id.as_bytes());
    let mut spans = Vec::new();
    for m in 0..MEMBERS {
        let mut ndjson = Vec::new();
        for e in 0..EVENTS_PER_MEMBER {
            let event = json!({
                "_id": format!("{tag}-{m}-{e}"),
                "_ts": chrono::DateTime::from_timestamp(hour + 60, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "message": format!("{tag} member {m} event {e}"),
                "tag": tag, "m": m, "e": e,
            });
            serde_json::to_writer(&mut ndjson, &event).unwrap();
            ndjson.push(b'\n');
        }
        let start = bytes.len();
        bytes.extend(member::encode_data(&ndjson, 6));
        spans.push((start, bytes.len()));
    }
    let dir = staging_dir(root);
    std::fs::create_dir_all(&dir).unwrap();
    let ext = if sealed { "sealed" } else { "open" };
    let path = dir.join(format!("{hour}-{}-{}.{ext}", hour + 4200, id.simple()));
    std::fs::write(&path, bytes).unwrap();
    (path, spans)
}

fn corrupt(path: &Path, at: usize, with: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at..at + with.len()].copy_from_slice(with);
    std::fs::write(path, bytes).unwrap();
}

/// Every archive object passes `zcat -t` (an independent gzip reader).
fn assert_zcat_accepts_every_object(archive: &Path) -> usize {
    let mut objects = 0;
    let mut stack = vec![archive.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let out = Command::new("zcat").arg("-t").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "zcat -t {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            objects += 1;
        }
    }
    objects
}

/// (tag, member) of every archived event, and the events' count.
fn archived_members(root: &Path) -> (HashSet<(String, u64)>, usize) {
    let mut members = HashSet::new();
    let mut count = 0;
    for (_, events) in read_archive(&root.join("archive")) {
        for e in events {
            members.insert((
                e["tag"].as_str().unwrap().to_owned(),
                e["m"].as_u64().unwrap(),
            ));
            count += 1;
        }
    }
    (members, count)
}

fn damaged_metric(s: &Sediment) -> Option<u64> {
    metric(
        &s.metrics(),
        "sediment_archive_damaged_members_total",
        "component_id=\"archive\",component_kind=\"sink\",component_type=\"file\"",
    )
}

fn wait_for(what: &str, s: &Sediment, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Items 1 and 3: 4 bytes flipped inside the 5th of 10 members of an open
/// segment, and inside the 3rd member and the head member of a sealed one.
/// Before, recovery cut the open segment's members 5–10 (360 of 600 events
/// lost) and the sealed one was uploaded as is (`zcat` failed with a CRC error).
#[test]
fn intact_members_of_damaged_segments_are_all_archived_as_valid_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let hour = past_hour();
    let (open, open_spans) = write_segment(root, hour, false, "open");
    let (start, end) = open_spans[4];
    corrupt(&open, (start + end) / 2, &[0xde, 0xad, 0xbe, 0xef]);
    let (sealed, sealed_spans) = write_segment(root, hour, true, "sealed");
    let (start, end) = sealed_spans[2];
    corrupt(&sealed, (start + end) / 2, &[0xde, 0xad, 0xbe, 0xef]);
    corrupt(&sealed, 20, &[0xff]); // inside the head member

    let s = Setup::new(root).start();
    wait_for("both segments uploaded", &s, || {
        std::fs::read_dir(staging_dir(root)).is_ok_and(|d| d.count() == 0)
    });
    let damaged = damaged_metric(&s);
    let log = s.log();
    s.stop();

    let (members, count) = archived_members(root);
    eprintln!("archived {count} of the 1080 intact events");
    assert_eq!(
        count,
        2 * 9 * EVENTS_PER_MEMBER,
        "540 events of each segment kept"
    );
    assert_eq!(assert_zcat_accepts_every_object(&root.join("archive")), 2);
    assert_eq!(damaged, Some(3), "two data members and one head member");
    for (tag, lost) in [("open", 4), ("sealed", 2)] {
        for m in 0..MEMBERS as u64 {
            assert_eq!(
                members.contains(&(tag.to_owned(), m)),
                m != lost,
                "{tag} member {m}"
            );
        }
    }
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropped damaged members"))
        .collect();
    assert_eq!(warnings.len(), 3, "one warning per damaged stretch:\n{log}");
    let at = open_spans[4].0;
    assert!(
        warnings.iter().any(|w| w.contains(&format!("offset={at}"))
            && w.contains("members=1")
            && w.contains(&open.file_name().unwrap().to_string_lossy().into_owned())),
        "the warning names the segment, offset and count:\n{log}"
    );
}

/// Item 2: a member length field set to 0xFFFFFFF0 made start-up allocate 4 GiB
/// (4.2 GB RSS). Now the length is checked against the file and a maximum, the
/// member is dropped as damaged, and peak RSS stays that of an idle sediment.
#[test]
fn a_corrupted_member_length_neither_allocates_nor_loses_the_other_members() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (open, spans) = write_segment(root, past_hour(), false, "open");
    let at = spans[4].0 + 34; // the payload length field of the 5th member
    corrupt(&open, at, &0xFFFF_FFF0u32.to_le_bytes());

    let s = Setup::new(root).start();
    wait_for("the segment uploaded", &s, || {
        std::fs::read_dir(staging_dir(root)).is_ok_and(|d| d.count() == 0)
    });
    let peak_kib = s.peak_rss_kib();
    eprintln!("peak RSS after recovering a 0xFFFFFFF0 member length: {peak_kib} KiB");
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB");
    assert_eq!(damaged_metric(&s), Some(1));
    s.stop();
    let (members, count) = archived_members(root);
    assert_eq!(count, 9 * EVENTS_PER_MEMBER);
    assert!(!members.contains(&("open".to_owned(), 4)));
}

/// Item 4: `rm -rf data_dir/<sink>/staging` while running. Before, requests for
/// the open hour still got 200 (written to an unlinked file, then lost) and
/// shutdown failed with "No such file or directory". Now the loss is noticed
/// before acknowledging, the folder is recreated with the open segment's
/// durable data, and every event answered 200 is archived exactly once.
#[test]
fn removing_the_staging_folder_while_running_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = Setup::new(root).start();
    let url = s.url("/");
    let mut accepted: Vec<u64> = Vec::new();
    let mut refused = 0;
    let mut post = |first: u64, accepted: &mut Vec<u64>| {
        let events: Vec<Value> = (first..first + 20)
            .map(|i| json!({"seq": i, "message": format!("event {i}")}))
            .collect();
        match post_ndjson(&url, &events) {
            Ok(200) => accepted.extend(first..first + 20),
            Ok(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    };
    post(0, &mut accepted);
    post(20, &mut accepted);
    std::fs::remove_dir_all(staging_dir(root)).unwrap();
    for round in 2..40 {
        post(round * 20, &mut accepted);
        std::thread::sleep(Duration::from_millis(50));
    }
    let recreated = staging_dir(root).is_dir();
    let log = s.log();
    s.stop(); // exits 0: sealing finds its files again
    eprintln!(
        "{} events accepted, {refused} requests refused with 503",
        accepted.len()
    );
    let archived: Vec<u64> = read_archive(&root.join("archive"))
        .into_iter()
        .flat_map(|(_, events)| events)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let unique: HashSet<u64> = archived.iter().copied().collect();
    assert_eq!(unique.len(), archived.len(), "nothing archived twice");
    let missing: Vec<u64> = accepted
        .iter()
        .filter(|s| !unique.contains(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events not archived: {missing:?}",
        missing.len()
    );
    assert!(recreated, "the staging folder is recreated");
    assert!(log.contains("removed while in use"), "{log}");
    assert!(
        accepted.len() >= 39 * 20,
        "only the round that met the removal is refused"
    );
}
