//! Measures the per-line cost of the ways to validate and stamp an NDJSON
//! line (the numbers quoted in `event::scan`'s docs):
//! `cargo run --release -p sediment-core --example scan_bench`.
//!
//! The lines are the benchmark's (`examples/loadgen.rs`): loghub lines as
//! `{"timestamp","app","level","message"}`.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use sediment_core::event::{Replaced, Scanner, Stamp};
use sediment_core::Event;
use serde_json::{Map, Value};

fn lines() -> Vec<Bytes> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut out = Vec::new();
    let levels = ["INFO", "WARN", "ERROR", "DEBUG"];
    for entry in std::fs::read_dir(&dir).expect("loghub samples") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let app = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .split('_')
            .next()
            .unwrap()
            .to_lowercase();
        for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            let ts = chrono::DateTime::from_timestamp(1_764_000_000 + n as i64, 0)
                .unwrap()
                .to_rfc3339();
            let event = serde_json::json!({"timestamp": ts, "app": app, "level": levels[n % 4], "message": line});
            out.push(Bytes::from(serde_json::to_vec(&event).unwrap()));
        }
    }
    out
}

fn time(name: &str, lines: &[Bytes], mut f: impl FnMut(&Bytes)) {
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        lines.iter().for_each(&mut f);
    }
    let per = start.elapsed().as_secs_f64() / (rounds * lines.len()) as f64;
    println!("{name:<44} {:>7.3} µs/line", per * 1e6);
}

fn main() {
    let lines = lines();
    let bytes: usize = lines.iter().map(Bytes::len).sum();
    println!(
        "{} lines, {} bytes on average",
        lines.len(),
        bytes / lines.len()
    );
    let mut scanner = Scanner::default();
    time("Scanner::canonical_object", &lines, |l| {
        black_box(scanner.canonical_object(l, &mut |k, r| {
            black_box((k, r));
        }));
    });
    time("serde_json::from_slice::<IgnoredAny>", &lines, |l| {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
    });
    time("serde_json::from_slice::<Map>", &lines, |l| {
        black_box(serde_json::from_slice::<Map<String, Value>>(l).is_ok());
    });
    let names = [
        "timestamp".to_string(),
        "@timestamp".into(),
        "time".into(),
        "ts".into(),
    ];
    let meta = serde_json::json!({"source": "http_in", "source_type": "http", "remote_addr": "127.0.0.1:40000"});
    let meta_text = Bytes::from(serde_json::to_vec(&meta).unwrap());
    let stamp = Stamp {
        timestamp_fields: &names,
        now_ms: 1_764_000_000_000,
        meta: &meta,
        trust_meta: false,
    };
    let mut out = Vec::with_capacity(1 << 20);
    time("map path: parse, stamp_with, write_ndjson", &lines, |l| {
        let map: Map<String, Value> = serde_json::from_slice(l).unwrap();
        let e = Event::stamp_with(map, &stamp, &mut Replaced::default());
        out.clear();
        e.write_ndjson(&mut out);
        black_box(&out);
    });
    time("text path: stamp_json, write_ndjson", &lines, |l| {
        let e = Event::stamp_json(
            l.clone(),
            &stamp,
            &meta_text,
            &mut scanner,
            &mut Replaced::default(),
        )
        .expect("canonical");
        out.clear();
        e.write_ndjson(&mut out);
        black_box(&out);
    });
}
