//! Reading objects of many blocks: lines across block boundaries, the order
//! the workers' blocks come back in, line numbers, damage and replay.

use std::io::Write;
use std::sync::Arc;

use sediment_sinks::archive::file_store::FileStore;

use super::*;
use crate::time::TimeRange;

const HOUR_MS: i64 = 1_763_802_000_000;

/// One archive line: a JSON object with `_id` and `_ts`, `pad` bytes of message.
fn archive_line(i: usize, pad: usize) -> String {
    format!(
        r#"{{"_id":"0193f9a0-0000-7000-8000-{i:012}","_ts":"2025-11-22T09:00:00.000Z","n":{i},"message":"{}"}}"#,
        "x".repeat(pad)
    )
}

/// What an object is made of, and what reading it must give.
struct Case {
    /// The inflated text.
    text: Vec<u8>,
    /// The lines that must come out, in order, with their raw index.
    kept: Vec<(String, u64)>,
    /// 1-based numbers of the lines that are not JSON objects.
    bad: Vec<u64>,
    /// Non-empty lines.
    raw: u64,
}

/// Lines of varied length (some far longer than a block), blank lines, CRLF
/// endings, a few lines that are not JSON, and a last line without its newline.
fn case(lines: usize) -> Case {
    let mut c = Case {
        text: Vec::new(),
        kept: Vec::new(),
        bad: Vec::new(),
        raw: 0,
    };
    for i in 0..lines {
        if i % 97 == 5 {
            c.text.extend_from_slice(b"  \r\n\n");
        }
        if i % 613 == 7 {
            c.text.extend_from_slice(b"{\"broken\":\n");
            c.raw += 1;
            c.bad.push(c.raw);
        }
        let pad = match i {
            1500 => 300 << 10, // longer than a block
            _ => (i * 37) % 900,
        };
        let line = archive_line(i, pad);
        c.text.extend_from_slice(line.as_bytes());
        if i + 1 < lines {
            c.text
                .extend_from_slice(if i % 3 == 0 { &b"\r\n"[..] } else { b"\n" });
        }
        c.kept.push((line, c.raw));
        c.raw += 1;
    }
    c
}

/// The text gzipped as members of about `member` bytes each.
fn gzip(text: &[u8], member: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in text.chunks(member) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).unwrap();
        out.extend(gz.finish().unwrap());
    }
    out
}

/// Reads `compressed` as an object; returns the kept lines with their raw
/// index and replay flag, the last chunk's `raw_end` and the end.
async fn read_object(compressed: &[u8], replay: u64) -> (Vec<(String, u64, bool)>, u64, ObjectEnd) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("object.json.gz"), compressed).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FileStore::new(dir.path().to_owned()));
    let filters = Arc::new(Filters {
        range: TimeRange {
            from_ms: HOUR_MS,
            to_ms: HOUR_MS + 3_600_000,
        },
        id_field: "_id".into(),
        time_field: "_ts".into(),
        query: None,
    });
    let object = Object {
        key: "object.json.gz".into(),
        size: compressed.len() as u64,
        hour: HOUR_MS / 1000,
    };
    let mut rx = start(store, object, filters, replay);
    let (mut kept, mut raw_end) = (Vec::new(), 0);
    loop {
        match rx.recv().await.expect("the reader ends with Done") {
            ReadEvent::Chunk(chunk) => {
                assert!(chunk.raw_end >= raw_end, "chunks come in order");
                raw_end = chunk.raw_end;
                let mut start = 0;
                for r in &chunk.records {
                    let text = String::from_utf8(chunk.lines[start..r.end].to_vec()).unwrap();
                    start = r.end;
                    kept.push((text.trim_end_matches('\n').to_owned(), r.raw, r.replay));
                }
            }
            ReadEvent::Done(end) => return (kept, raw_end, end),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_many_blocks_comes_back_whole_and_in_order() {
    let c = case(4000);
    assert!(c.text.len() > 10 * BLOCK_BYTES, "{} bytes", c.text.len());
    let compressed = gzip(&c.text, 300_000);
    let (kept, raw_end, end) = read_object(&compressed, 0).await;
    let expected: Vec<(String, u64, bool)> =
        c.kept.iter().map(|(l, r)| (l.clone(), *r, false)).collect();
    assert_eq!(kept.len(), expected.len());
    assert!(kept == expected, "lines, their order and their raw indexes");
    assert_eq!(raw_end, c.raw);
    assert_eq!(end.damage, None);
    assert_eq!(end.invalid, c.bad.len() as u64);
    assert_eq!(end.bad_lines, c.bad[..5]);
    assert_eq!(end.bytes, compressed.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_lines_come_back_as_ids_only() {
    let c = case(3000);
    let compressed = gzip(&c.text, 1 << 20);
    let (kept, _, end) = read_object(&compressed, 1000).await;
    assert_eq!(kept.len(), c.kept.len());
    for ((text, raw, replay), (line, want_raw)) in kept.iter().zip(&c.kept) {
        assert_eq!(raw, want_raw);
        assert_eq!(*replay, *raw < 1000, "line {raw}");
        if !replay {
            assert_eq!(text, line);
        }
    }
    // Bad lines among the replayed ones are not reported again.
    let reported: Vec<u64> = c.bad.iter().copied().filter(|&n| n > 1000).collect();
    assert_eq!(end.invalid, reported.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_keeps_the_whole_lines_before_the_break() {
    let c = case(4000);
    let mut compressed = gzip(&c.text, 200_000);
    let cut = compressed.len() * 2 / 3;
    compressed.truncate(cut);
    let (kept, raw_end, end) = read_object(&compressed, 0).await;
    assert!(!kept.is_empty() && kept.len() < c.kept.len());
    let expected: Vec<(String, u64, bool)> = c.kept[..kept.len()]
        .iter()
        .map(|(l, r)| (l.clone(), *r, false))
        .collect();
    assert!(kept == expected, "a prefix of the lines, in order");
    let damage = end.damage.expect("the break is reported");
    assert!(
        damage.ends_with(&format!("; restored up to line {raw_end}")),
        "{damage}"
    );
    assert!(raw_end > kept.last().unwrap().1);
}

#[test]
fn non_blank_lines_counts_what_judging_counts() {
    let by_split = |t: &[u8]| {
        t.split(|&b| b == b'\n')
            .filter(|line| !lines::is_blank(line))
            .count() as u64
    };
    let cases: [&[u8]; 9] = [
        b"",
        b"\n",
        b"{}",
        b"{}\n",
        b"{}\n\n \n\t\r\n{}",
        b"\r\n{}\r\n{}\r\n",
        b" {}\n",
        b"\n\n\n{}\n\n",
        b"a\nb\nc",
    ];
    for text in cases {
        assert_eq!(
            non_blank_lines(text),
            by_split(text),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    let many: Vec<u8> = (0..10_000)
        .flat_map(|i| {
            archive_line(i, i % 7)
                .into_bytes()
                .into_iter()
                .chain(*b"\n\n")
        })
        .collect();
    assert_eq!(non_blank_lines(&many), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_longer_than_the_limit_is_skipped_and_reported_not_held() {
    let mut text = Vec::new();
    for i in 0..3 {
        text.extend_from_slice(archive_line(i, 10).as_bytes());
        text.push(b'\n');
    }
    // A line of MAX_LINE_BYTES + 1 MiB, then two more lines: the first of them
    // starts in the same read as the overlong line's end.
    text.extend_from_slice(br#"{"message":""#);
    text.resize(text.len() + MAX_LINE_BYTES + (1 << 20), b'x');
    text.extend_from_slice(b"\"}\n");
    for i in 3..5 {
        text.extend_from_slice(archive_line(i, 10).as_bytes());
        text.push(b'\n');
    }
    let compressed = gzip(&text, 8 << 20);
    let (kept, raw_end, end) = read_object(&compressed, 0).await;
    let expected: Vec<(String, u64, bool)> = [(0, 0), (1, 1), (2, 2), (3, 4), (4, 5)]
        .iter()
        .map(|&(i, raw)| (archive_line(i, 10), raw, false))
        .collect();
    assert!(
        kept == expected,
        "the lines around it, with their raw indexes"
    );
    assert_eq!(raw_end, 6);
    assert_eq!((end.invalid, end.bad_lines.as_slice()), (1, &[4][..]));
    assert_eq!(end.damage, None);
}
