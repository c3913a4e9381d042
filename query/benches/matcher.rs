//! `RuleSet::first_match` over 100,000 events built from the real LogHub
//! samples, with 1, 10 and 100 rules of mixed kinds, plus a single
//! `Query::matches` for comparison.
//!
//! Run: `cargo bench -p sediment-query -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sediment_query::{Query, RuleSet};
use serde_json::{json, Map, Value};

const EVENTS: usize = 100_000;
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
const STATUSES: [u16; 12] = [200, 200, 200, 200, 201, 204, 301, 304, 404, 403, 500, 503];

/// The level named in a line, else `fallback`.
fn level_of(line: &str, fallback: usize) -> &'static str {
    let upper = line.to_ascii_uppercase();
    LEVELS
        .iter()
        .find(|level| upper.contains(&format!(" {level}")) || upper.contains(&format!("[{level}")))
        .copied()
        .unwrap_or(LEVELS[fallback % LEVELS.len()])
}

/// 100,000 events cycling through every line of every sample.
fn events() -> Vec<Map<String, Value>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("unknown");
        let app = name.split('_').next().unwrap_or(name).to_lowercase();
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        lines.extend(text.lines().map(|line| (app.clone(), line.to_string())));
    }
    assert!(!lines.is_empty(), "no .log files in {}", dir.display());
    (0..EVENTS)
        .map(|i| {
            let (app, line) = &lines[i % lines.len()];
            let event = json!({
                "message": line,
                "app": app,
                "level": level_of(line, i),
                "status": STATUSES[i % STATUSES.len()],
                "_meta": {"source": "http_in"},
            });
            match event {
                Value::Object(map) => map,
                _ => unreachable!("json! object"),
            }
        })
        .collect()
}

/// 100 distinct rules of mixed kinds, the kind of list an `exclude`
/// transform carries: mostly narrow, so most events are tried against many.
fn rules() -> Vec<(String, Query)> {
    let apps = [
        "hdfs",
        "spark",
        "zookeeper",
        "openstack",
        "android",
        "apache",
        "linux",
        "openssh",
        "hadoop",
        "healthapp",
    ];
    let phrases = [
        "connection refused",
        "session opened for user",
        "authentication failure",
        "received block",
        "invalid user",
        "possible break-in attempt",
        "no such file or directory",
        "deleting block",
        "broken pipe",
    ];
    let words = [
        "timeout",
        "deprecated",
        "heartbeat",
        "exception",
        "refused",
        "shutdown",
        "retrying",
        "unreachable",
        "fatal",
    ];
    let wildcards = [
        "fail*ed",
        "time?out",
        "conn*lost",
        "blk_*corrupt",
        "out*of*memory",
        "err*disk",
        "unexpect*eof",
        "retr?ing",
        "denied*root",
    ];
    (0..100)
        .map(|i| {
            let n = i / 12;
            let app = apps[(i + n) % apps.len()];
            let text = match i % 12 {
                0 => format!("level:debug AND app:{app}"),
                1 => format!("app:{}* AND level:debug", &app[..3]),
                2 => format!("\"{}\"", phrases[n % phrases.len()]),
                3 => words[n % words.len()].to_string(),
                4 => format!("status:[{} TO 599] AND level:error AND app:{app}", 500 + n),
                5 => format!(
                    "status:>=400 AND NOT app:{app} AND {}",
                    words[(n + 3) % words.len()]
                ),
                6 => format!(
                    "message:/.*blk_-?[0-9]+ {}.*/",
                    ["corrupt", "lost", "missing"][n % 3]
                ),
                7 => format!("app:/({app}|x{n})/ AND level:(warn OR fatal)"),
                8 => format!("_meta.source:syslog_{n} OR _exists_:kubernetes.namespace"),
                9 => format!(
                    "(level:warn OR level:error) AND \"{}\" AND -app:{app}",
                    phrases[(n + 4) % phrases.len()]
                ),
                10 => wildcards[n % wildcards.len()].to_string(),
                _ => format!("app:{app} AND status:{} AND NOT level:info", 300 + n),
            };
            let query = Query::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            (format!("rule_{i}"), query)
        })
        .collect()
}

fn first_match(c: &mut Criterion) {
    let events = events();
    let rules = rules();
    let mut group = c.benchmark_group("ruleset_first_match");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    for count in [1, 10, 100] {
        let set = RuleSet::new(rules[..count].to_vec());
        let matched = events
            .iter()
            .filter(|e| set.first_match(e).is_some())
            .count();
        println!(
            "{count} rules: {matched} of {} events match a rule",
            events.len()
        );
        group.bench_with_input(BenchmarkId::from_parameter(count), &set, |b, set| {
            b.iter(|| {
                events
                    .iter()
                    .filter(|e| set.first_match(black_box(e)).is_some())
                    .count()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("query_matches");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    let query = Query::parse("level:error AND NOT app:apache OR \"connection refused\"")
        .expect("valid query");
    group.bench_function("one_query", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| query.matches(black_box(e)))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, first_match);
criterion_main!(benches);
