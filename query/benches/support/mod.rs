//! The events and rules of the matcher benchmark, shared by the criterion
//! bench (`benches/matcher.rs`) and the instruction-count driver
//! (`examples/matcher_profile.rs`).
//!
//! Events are shaped like the ones the `exclude` transform sees in the
//! pipeline: what `examples/loadgen.rs` sends (`timestamp`, `app`, `level`,
//! `message`) followed by the fields the http source stamps on (`_id`,
//! `_ts`, and a four-key `_meta`), so that key lookups cost what they cost
//! there.

use std::path::PathBuf;

use sediment_query::Query;
use serde_json::{json, Map, Value};

/// How many events each benchmark runs over.
pub const EVENTS: usize = 100_000;
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
const STATUSES: [u16; 12] = [200, 200, 200, 200, 201, 204, 301, 304, 404, 403, 500, 503];

/// The ten rules of `scripts/bench` (EXCLUDE=1), verbatim.
pub const PIPELINE_RULES: [(&str, &str); 10] = [
    ("health", r#"app:healthcheck OR "GET /health""#),
    ("debug-batch", "level:debug AND app:spark"),
    ("ssh-closed", r#"app:openssh AND "connection closed by""#),
    (
        "zk-info",
        r#"app:zookeeper AND level:info AND "NIOServerCnxn""#,
    ),
    ("bots", "user_agent:*bot*"),
    ("server-errors", "status:>=500"),
    ("hdfs-blocks", "app:hdfs AND /.*blk_-?[0-9]+ terminating.*/"),
    (
        "android-wifi",
        "app:android AND (WifiService OR WifiStateMachine)",
    ),
    ("noisy-apps", "app:(healthapp OR probe)"),
    (
        "kube",
        "_exists_:kubernetes.namespace AND NOT kubernetes.namespace:prod",
    ),
];

/// Every line of every LogHub sample, with its app (the file name's first
/// word, lower-cased, as the load generator names it).
fn lines() -> Vec<(String, String)> {
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
    lines
}

/// The level named in a line, else `fallback`.
fn level_of(line: &str, fallback: usize) -> &'static str {
    let upper = line.to_ascii_uppercase();
    LEVELS
        .iter()
        .find(|level| upper.contains(&format!(" {level}")) || upper.contains(&format!("[{level}")))
        .copied()
        .unwrap_or(LEVELS[fallback % LEVELS.len()])
}

/// An RFC 3339 UTC time `seconds` into a fixed hour, as `_ts` is written.
fn time(seconds: usize) -> String {
    format!(
        "2024-05-01T10:{:02}:{:02}.000Z",
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Appends what the http source stamps on an event.
fn stamp(mut fields: Map<String, Value>, i: usize) -> Map<String, Value> {
    let id = format!(
        "018f2a3b-{:04x}-7{:03x}-8{:03x}-{:012x}",
        i % 0x10000,
        i % 0x1000,
        (i * 7) % 0x1000,
        i * 2_654_435_761 % (1 << 48)
    );
    fields.insert("_id".into(), Value::String(id));
    fields.insert("_ts".into(), Value::String(time(i)));
    fields.insert(
        "_meta".into(),
        json!({
            "source": "http_in",
            "source_type": "http",
            "received_at": time(i + 1),
            "remote_addr": format!("127.0.0.1:{}", 40_000 + i % 4),
        }),
    );
    fields
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! object"),
    }
}

/// 100,000 events from `event(i, app, line)`, stamped as the http source
/// stamps them, cycling through every line of every sample.
fn generate(event: impl Fn(usize, &str, &str) -> Value) -> Vec<Map<String, Value>> {
    let lines = lines();
    (0..EVENTS)
        .map(|i| {
            let (app, line) = &lines[i % lines.len()];
            stamp(object(event(i, app, line)), i)
        })
        .collect()
}

/// The events as the load generator sends them.
pub fn pipeline_events() -> Vec<Map<String, Value>> {
    generate(|i, app, line| {
        json!({
            "timestamp": time(i),
            "app": app,
            "level": LEVELS[i % LEVELS.len()],
            "message": line,
        })
    })
}

/// The same events with the level the line names and an HTTP status, for
/// the mixed rules of [`rules`].
pub fn events() -> Vec<Map<String, Value>> {
    generate(|i, app, line| {
        json!({
            "timestamp": time(i),
            "app": app,
            "level": level_of(line, i),
            "status": STATUSES[i % STATUSES.len()],
            "message": line,
        })
    })
}

/// The rules of `scripts/bench`.
pub fn pipeline_rules() -> Vec<(String, Query)> {
    PIPELINE_RULES
        .iter()
        .map(|(name, text)| {
            let query = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            (name.to_string(), query)
        })
        .collect()
}

/// 100 distinct rules of mixed kinds, the kind of list an `exclude`
/// transform carries: mostly narrow, so most events are tried against many.
pub fn rules() -> Vec<(String, Query)> {
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
