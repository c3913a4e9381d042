//! Recovery against damage of every kind: truncation at every offset, garbage,
//! corrupted bytes in any one member (its header, length field, payload or
//! trailer), and the head member; every intact member must survive.

use super::*;
use flate2::read::MultiGzDecoder;
use proptest::prelude::*;
use std::io::Read;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if !bytes.is_empty() {
        MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    }
    out
}

/// A segment of `chunks` and the end offset of each member (head first).
fn segment(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = member::encode_head([7; 16]);
    let mut ends = vec![bytes.len()];
    for c in chunks {
        bytes.extend(member::encode_data(c, 6));
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// The segment `scan` keeps, rewritten, and decoded by a standard gzip reader.
fn kept(bytes: &[u8], scan: &Scan) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut file = File::create(&path).unwrap();
    let n = rewrite(bytes, scan, [7; 16], &mut file).unwrap();
    let out = std::fs::read(&path).unwrap();
    assert_eq!(out.len() as u64, n);
    let again = scan_bytes(&out);
    assert!(again.is_clean(), "a rewritten segment is clean: {again:?}");
    gunzip(&out)
}

fn scan_bytes(bytes: &[u8]) -> Scan {
    scan(bytes).unwrap()
}

fn lines(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut member = Vec::new();
            for j in 0..60 {
                member.extend(format!("{{\"member\":{i},\"event\":{j}}}\n").as_bytes());
            }
            member
        })
        .collect()
}

#[test]
fn four_flipped_bytes_in_the_fifth_of_ten_members_cost_that_member_only() {
    let chunks = lines(10);
    let (mut bytes, ends) = segment(&chunks);
    let (start, end) = (ends[4], ends[5]); // the 5th data member
    for b in &mut bytes[(start + end) / 2..(start + end) / 2 + 4] {
        *b ^= 0xa5;
    }
    let scan = scan_bytes(&bytes);
    assert_eq!(scan.data_members, 9);
    assert_eq!(
        scan.losses,
        vec![Loss {
            offset: start as u64,
            bytes: (end - start) as u64,
            members: 1
        }]
    );
    assert_eq!(scan.torn_tail, None);
    let expected: Vec<u8> = chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .flat_map(|(_, c)| c.clone())
        .collect();
    assert_eq!(kept(&bytes, &scan), expected);
}

#[test]
fn a_flipped_bit_in_the_head_member_keeps_every_data_member() {
    let chunks = lines(3);
    let (mut bytes, ends) = segment(&chunks);
    bytes[ends[0] / 2] ^= 0x01;
    let scan = scan_bytes(&bytes);
    assert_eq!(scan.head, None);
    assert_eq!(scan.data_members, 3);
    assert!(!scan.is_clean());
    assert_eq!(kept(&bytes, &scan), chunks.concat());
}

#[test]
fn a_huge_length_field_is_not_believed() {
    let chunks = lines(4);
    let (mut bytes, ends) = segment(&chunks);
    // The length field of the 2nd data member: 0xFFFFFFF0.
    bytes[ends[1] + 34..ends[1] + 38].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let scan = scan_bytes(&bytes);
    assert_eq!(scan.data_members, 3);
    assert_eq!(scan.losses.len(), 1);
    assert_eq!(scan.losses[0].offset, ends[1] as u64);
}

#[test]
fn a_torn_last_member_is_a_torn_tail_not_a_loss() {
    let (bytes, ends) = segment(&lines(3));
    for cut in [ends[3] - 1, ends[2] + HEADER_LEN + 3, ends[2] + 5] {
        let scan = scan_bytes(&bytes[..cut]);
        assert_eq!(scan.torn_tail, Some(ends[2] as u64), "cut at {cut}");
        assert!(scan.losses.is_empty());
        assert!(scan.only_torn_tail());
    }
}

#[test]
fn empty_and_garbage_files() {
    assert_eq!(scan_bytes(&[]), Scan::default());
    let scan = scan_bytes(&[0u8; 100_000]);
    assert_eq!(scan.data_members, 0);
    assert_eq!(scan.losses.len(), 1);
}

proptest! {
    /// Cut a small segment at every byte offset: exactly the whole members before
    /// the cut are kept, the rest is a torn tail, never a loss.
    #[test]
    fn truncation_at_every_offset_keeps_whole_members(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5)
    ) {
        let (bytes, ends) = segment(&chunks);
        for cut in 0..=bytes.len() {
            let scan = scan_bytes(&bytes[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            prop_assert!(scan.losses.is_empty(), "cut {}: {:?}", cut, scan);
            prop_assert_eq!(scan.data_members as usize, whole.saturating_sub(1));
            prop_assert_eq!(scan.torn_tail.is_some(), !ends.contains(&cut) && cut > 0);
        }
    }

    /// Any damage confined to one data member (any bytes of its header, length,
    /// payload or trailer) drops that member only; every other is kept intact.
    #[test]
    fn damage_to_one_member_drops_only_that_member(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 2..8),
        victim in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let (mut bytes, ends) = segment(&chunks);
        let k = victim.index(chunks.len());
        let (start, end) = (ends[k], ends[k + 1]);
        for (at, mask) in &flips {
            bytes[start + at.index(end - start)] ^= mask;
        }
        let scan = scan_bytes(&bytes);
        let last = k + 1 == chunks.len();
        prop_assert_eq!(scan.data_members as usize, chunks.len() - 1, "{:?}", scan);
        if !(last && scan.torn_tail.is_some()) {
            prop_assert_eq!(scan.dropped_members(), 1);
            prop_assert_eq!(scan.losses[0].offset, start as u64);
        }
        let expected: Vec<u8> = chunks.iter().enumerate().filter(|(i, _)| *i != k).flat_map(|(_, c)| c.clone()).collect();
        prop_assert_eq!(kept(&bytes, &scan), expected);
    }

    /// Garbage after whole members is dropped, whatever it is; the members stay.
    #[test]
    fn garbage_tail_is_dropped(tail in proptest::collection::vec(any::<u8>(), 1..100)) {
        let chunks = vec![b"line\n".to_vec()];
        let (mut bytes, _) = segment(&chunks);
        bytes.extend(&tail);
        let scan = scan_bytes(&bytes);
        prop_assert_eq!(scan.data_members, 1);
        prop_assert_eq!(kept(&bytes, &scan), b"line\n".to_vec());
    }
}
