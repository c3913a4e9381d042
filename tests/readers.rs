//! The archive is readable without sediment: Python's gzip module and DuckDB's
//! `read_json` with Hive partitioning read exactly what was sent.

mod common;

use std::process::Command;

use chrono::Utc;
use common::*;
use serde_json::json;

#[test]
fn python_gzip_and_duckdb_read_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let sediment = Setup::new(dir.path()).start();
    let base = (Utc::now().timestamp() / 3600 - 3) * 3600;
    let mut expected = std::collections::BTreeMap::new();
    for (i, system) in SYSTEMS.iter().enumerate() {
        let lines = loghub_lines(system, 300);
        // Three past hours; several requests per hour, so objects hold several gzip members.
        let events: Vec<_> = lines
            .iter()
            .enumerate()
            .map(|(n, l)| json!({"message": l, "app": system.to_lowercase(), "time": base + ((i + n) % 3) as i64 * 3600 + 60}))
            .collect();
        for chunk in events.chunks(100) {
            assert_eq!(post_ndjson(&sediment.url("/"), chunk), Ok(200));
        }
        for (n, _) in lines.iter().enumerate() {
            *expected.entry((i + n) % 3).or_insert(0u64) += 1;
        }
    }
    sediment.stop();

    let archive = dir.path().join("archive");
    let script = r#"
import duckdb, glob, gzip, json, sys
root = sys.argv[1]
files = sorted(glob.glob(root + '/**/*.json.gz', recursive=True))
by_file = {f[len(root) + 1:]: sum(1 for line in gzip.open(f) if json.loads(line)['_id']) for f in files}
rows = duckdb.sql(f"SELECT year, month, day, hour(_ts::TIMESTAMPTZ AT TIME ZONE 'UTC') AS h, count(*) AS n, count(DISTINCT _id) AS ids FROM read_json('{root}/**/*.json.gz', hive_partitioning = true) GROUP BY ALL ORDER BY year, month, day, h").fetchall()
print(json.dumps({"gzip": by_file, "duckdb": [list(r) for r in rows]}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let gzip_counts: Vec<u64> = report["gzip"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        gzip_counts,
        expected.values().copied().collect::<Vec<_>>(),
        "Python's gzip reads every line of every object"
    );
    let duck = report["duckdb"].as_array().unwrap();
    assert_eq!(duck.len(), 3, "{duck:?}");
    for (row, (offset, count)) in duck.iter().zip(&expected) {
        let hour = chrono::DateTime::from_timestamp(base + *offset as i64 * 3600, 0).unwrap();
        let year: i64 = hour.format("%Y").to_string().parse().unwrap();
        assert_eq!(row[0].as_i64(), Some(year), "hive partition column year");
        assert_eq!(
            row[3].as_i64(),
            Some(hour.format("%H").to_string().parse().unwrap())
        );
        assert_eq!(
            (row[4].as_u64(), row[5].as_u64()),
            (Some(*count), Some(*count)),
            "rows and distinct _id"
        );
    }
}
