//! Staging: appends, seals, recovery of damaged segments, a removed folder.

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
    let Recovered {
        mut staging,
        sealed,
        ..
    } = Staging::open(dir.path(), 8).unwrap();
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
    let Recovered {
        mut staging,
        sealed,
        ..
    } = Staging::open(dir.path(), 8).unwrap();
    assert_eq!(sealed, vec![s]);
    staging.append(&[append(HOUR + 3600, "d\n")]).unwrap();
    let s2 = staging.seal(HOUR + 3600).unwrap().unwrap();
    assert_eq!(gunzip(&s2.path), "b\nd\n");
}

#[test]
fn bound_on_open_segments_seals_the_earliest_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut staging = Staging::open(dir.path(), 2).unwrap().staging;
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
    let mut staging = Staging::open(dir.path(), 2).unwrap().staging;
    staging.create(HOUR, HOUR + 1).unwrap();
    drop(staging);
    let Recovered {
        staging, sealed, ..
    } = Staging::open(dir.path(), 2).unwrap();
    assert!(sealed.is_empty());
    assert_eq!(staging.open_count(), 0);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Ten members of 60 events each in one open segment; returns the segment's
/// path and where each member starts and ends.
fn ten_members(dir: &Path) -> (PathBuf, Vec<(u64, u64)>) {
    let mut staging = Staging::open(dir, 8).unwrap().staging;
    let mut spans = Vec::new();
    let mut at = member::head_len();
    for m in 0..10 {
        let text: String = (0..60)
            .map(|e| format!("{{\"m\":{m},\"e\":{e}}}\n"))
            .collect();
        let a = append(HOUR, &text);
        spans.push((at, at + a.member.len() as u64));
        at += a.member.len() as u64;
        staging.append(&[a]).unwrap();
    }
    let path = staging.open[&HOUR].path.clone();
    (path, spans)
}

fn flip(path: &Path, at: u64, n: usize) {
    let mut bytes = fs::read(path).unwrap();
    for b in &mut bytes[at as usize..at as usize + n] {
        *b ^= 0x5a;
    }
    fs::write(path, bytes).unwrap();
}

fn events_of(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["m"].as_u64().unwrap(), v["e"].as_u64().unwrap())
        })
        .collect()
}

/// Issue 12.1: 4 flipped bytes inside the 5th of 10 members used to cut members
/// 5–10 (600 events) as a "torn write"; now only the 5th is dropped, counted, and
/// the segment keeps taking appends.
#[test]
fn recovery_keeps_every_intact_member_of_a_damaged_open_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (path, spans) = ten_members(dir.path());
    let (start, end) = spans[4];
    flip(&path, (start + end) / 2, 4);

    let Recovered {
        mut staging,
        sealed,
        damaged_members,
    } = Staging::open(dir.path(), 8).unwrap();
    assert!(sealed.is_empty());
    assert_eq!(damaged_members, 1);
    staging
        .append(&[append(HOUR, "{\"m\":10,\"e\":0}\n")])
        .unwrap();
    let s = staging.seal(HOUR).unwrap().unwrap();
    let kept = events_of(&gunzip(&s.path));
    assert_eq!(kept.len(), 9 * 60 + 1, "540 events kept, then the new one");
    assert!(kept.iter().all(|(m, _)| *m != 4));
    assert!(recovery::scan(&File::open(&s.path).unwrap())
        .unwrap()
        .is_clean());
}

/// Issue 12.1: one flipped bit in the head member deleted the whole segment.
#[test]
fn a_damaged_head_member_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = ten_members(dir.path());
    flip(&path, 20, 1);
    let Recovered {
        mut staging,
        damaged_members,
        ..
    } = Staging::open(dir.path(), 8).unwrap();
    assert_eq!(damaged_members, 1, "the head member itself");
    let s = staging.seal(HOUR).unwrap().unwrap();
    assert_eq!(events_of(&gunzip(&s.path)).len(), 600);
}

/// Issue 12.3: a sealed segment damaged while waiting for its upload is
/// rewritten with its intact members only, so its object is valid gzip.
#[test]
fn a_damaged_sealed_segment_is_verified_and_rewritten_before_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, spans) = ten_members(dir.path());
    let mut staging = Staging::open(dir.path(), 8).unwrap().staging;
    let mut sealed = staging.seal(HOUR).unwrap().unwrap();
    assert_eq!(verify_sealed(&mut sealed).unwrap(), Verified::Intact);
    flip(&sealed.path, spans[2].0 + 40, 4);
    flip(&sealed.path, spans[7].0 + 60, 1);
    assert_eq!(
        verify_sealed(&mut sealed).unwrap(),
        Verified::Repaired { dropped: 2 }
    );
    assert_eq!(sealed.size, fs::metadata(&sealed.path).unwrap().len());
    let kept = events_of(&gunzip(&sealed.path)); // a CRC error would panic here
    assert_eq!(kept.len(), 8 * 60);
    assert_eq!(verify_sealed(&mut sealed).unwrap(), Verified::Intact);
}

/// Issue 12.4: after `rm -rf` of the staging folder, the next round fails (its
/// senders get 503) instead of being acknowledged into an unlinked file; the
/// folder is recreated with the open segments' durable data, and appends go on.
#[test]
fn a_removed_staging_folder_fails_the_round_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let staging_dir = dir.path().join("sink/staging");
    let mut staging = Staging::open(&staging_dir, 8).unwrap().staging;
    staging.append(&[append(HOUR, "acked 1\n")]).unwrap();
    staging.append(&[append(HOUR + 3600, "acked 2\n")]).unwrap();
    fs::remove_dir_all(dir.path().join("sink")).unwrap();

    let e = staging
        .append(&[append(HOUR, "refused\n")])
        .expect_err("an unlinked segment is not durable");
    assert!(e.to_string().contains("removed while in use"), "{e}");
    assert!(staging_dir.is_dir(), "the folder is recreated");
    staging.append(&[append(HOUR, "acked 3\n")]).unwrap();
    let mut texts: Vec<String> = [HOUR, HOUR + 3600]
        .iter()
        .map(|h| gunzip(&staging.seal(*h).unwrap().unwrap().path))
        .collect();
    texts.sort();
    assert_eq!(texts, vec!["acked 1\nacked 3\n", "acked 2\n"]);
}

/// Issue 12.4: a folder removed between rounds is noticed when sealing too.
#[test]
fn a_segment_removed_before_sealing_is_restored_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut staging = Staging::open(dir.path(), 8).unwrap().staging;
    staging.append(&[append(HOUR, "acked\n")]).unwrap();
    fs::remove_file(&staging.open[&HOUR].path).unwrap();
    let s = staging.seal(HOUR).unwrap().unwrap();
    assert_eq!(gunzip(&s.path), "acked\n");
}

/// Issue 12.9: staged logs are readable by sediment's user only.
#[test]
fn staging_files_are_0600_and_folders_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let staging_dir = dir.path().join("sink/staging");
    let mut staging = Staging::open(&staging_dir, 8).unwrap().staging;
    staging.append(&[append(HOUR, "a\n")]).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&staging_dir), 0o700);
    assert_eq!(mode(&dir.path().join("sink")), 0o700);
    assert_eq!(mode(&staging.open[&HOUR].path), 0o600);
    let s = staging.seal(HOUR).unwrap().unwrap();
    assert_eq!(mode(&s.path), 0o600);
}
