//! Shared set-up of the restore tests: an archive written by sediment itself
//! (two runs, so every hour has a primary object and a late `.1` part), the
//! range that cuts two hours in the middle, running `sediment restore`, and
//! what a restore of that range must give.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::{binary, loghub_lines, post_ndjson, Setup, SYSTEMS};

/// Hours of the archive.
pub const HOURS: i64 = 6;

/// An archive written by sediment, and the config that wrote it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The pipeline file: its sink `archive` is what restore reads.
    pub config: PathBuf,
    /// Start of the first hour (seconds).
    pub first_hour: i64,
}

/// `http → hour_partition → <sink>`; `sink` is the sink's YAML mapping body.
pub fn topology(sink: &str) -> String {
    format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}'}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in], late_after: 10m}}
sinks:
  archive:
{sink}"
    )
}

/// The file sink's YAML body.
pub fn file_sink() -> String {
    "    type: file\n    inputs: [hourly]\n    path: '{ROOT}/archive'\n    account_id: acme\n"
        .to_owned()
}

/// Loghub events over the six hours from `first_hour`, `seq` from `first_seq`.
pub fn events(first_hour: i64, per_system: usize, first_seq: usize) -> Vec<Value> {
    let lines: Vec<(String, &str)> = SYSTEMS
        .iter()
        .flat_map(|s| {
            loghub_lines(s, per_system)
                .into_iter()
                .map(move |l| (l, *s))
        })
        .collect();
    let n = lines.len() as i64;
    lines
        .into_iter()
        .enumerate()
        .map(|(i, (line, system))| {
            // Odd spacing so events land all over each hour, milliseconds included.
            let ts_ms = first_hour * 1000 + (i as i64 * HOURS * 3_600_000 + 7919) / n;
            json!({"message": line, "app": system.to_lowercase(), "seq": first_seq + i, "timestamp": rfc3339(ts_ms)})
        })
        .collect()
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Archives two rounds of loghub events with sediment (the second lands in `.1`
/// parts), into the sink `sink` (YAML body), under `dir`.
pub fn archive(dir: tempfile::TempDir, sink: &str, per_system: usize) -> Fixture {
    let first_hour = (Utc::now().timestamp() / 3600 - HOURS - 1) * 3600;
    let rounds = [
        events(first_hour, per_system, 0),
        events(first_hour, per_system / 4 + 1, 1_000_000),
    ];
    for round in &rounds {
        let sediment = Setup::new(dir.path()).topology(&topology(sink)).start();
        for chunk in round.chunks(500) {
            assert_eq!(post_ndjson(&sediment.url("/"), chunk), Ok(200));
        }
        sediment.stop();
    }
    Fixture {
        config: dir.path().join("pipeline.yaml"),
        dir,
        first_hour,
    }
}

impl Fixture {
    /// `--from`/`--to` cutting the second and fifth hours in the middle, and the range in ms.
    pub fn range(&self) -> (String, String, i64, i64) {
        let from = (self.first_hour + 3600 + 1800) * 1000 + 123;
        let to = (self.first_hour + 4 * 3600 + 1800) * 1000 + 456;
        (rfc3339(from), rfc3339(to), from, to)
    }

    /// `sediment restore --config <config> --sink archive <args>`.
    pub fn restore(&self, args: &[&str]) -> Restored {
        restore(&self.config, args)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// What a restore run gave.
pub struct Restored {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Restored {
    /// The JSON summary line (stderr is not a terminal).
    pub fn summary(&self) -> Value {
        self.stderr
            .lines()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("summary").cloned())
            })
            .unwrap_or_else(|| panic!("no summary in:\n{}", self.stderr))
    }

    pub fn lines(&self) -> Vec<String> {
        text_lines(&self.stdout)
    }

    pub fn ok(&self) -> &Restored {
        assert_eq!(self.status, Some(0), "restore failed:\n{}", self.stderr);
        self
    }
}

pub fn restore(config: &Path, args: &[&str]) -> Restored {
    let out: Output = Command::new(binary())
        .args(["restore", "--config"])
        .arg(config)
        .args(["--sink", "archive"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("sediment runs");
    Restored {
        status: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Non-empty lines of NDJSON bytes.
pub fn text_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every line of every object under `dir`, read with a plain gzip decoder.
pub fn file_archive_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                lines.extend(gunzip_lines(&std::fs::read(&p).unwrap()));
            }
        }
    }
    lines
}

pub fn gunzip_lines(bytes: &[u8]) -> Vec<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text_lines(text.as_bytes())
}

/// The `_ts` of an archive line, in ms.
pub fn ts_ms(line: &str) -> i64 {
    let v: Value = serde_json::from_str(line).unwrap();
    chrono::DateTime::parse_from_rfc3339(v["_ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// `restored` holds exactly the archived lines whose `_ts` is in `[from, to)`,
/// each once, byte for byte.
pub fn assert_exactly_the_range(restored: &[String], archived: &[String], from: i64, to: i64) {
    let mut expected: Vec<&String> = archived
        .iter()
        .filter(|l| (from..to).contains(&ts_ms(l)))
        .collect();
    let mut got: Vec<&String> = restored.iter().collect();
    expected.sort();
    got.sort();
    let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, 0, "{dups} lines restored twice");
    assert!(
        got == expected,
        "restored {} lines, expected {}; first difference: {:?}",
        got.len(),
        expected.len(),
        got.iter().zip(&expected).find(|(a, b)| a != b)
    );
    assert!(
        expected.len() > 100,
        "the range holds lines ({})",
        expected.len()
    );
}

/// The summary's counts add up.
pub fn assert_counts_add_up(summary: &Value) {
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(
        n("lines_read"),
        n("lines_written")
            + n("outside_range")
            + n("filtered")
            + n("duplicates")
            + n("invalid_lines")
            + n("after_limit"),
        "{summary}"
    );
}
