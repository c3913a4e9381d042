//! `sediment restore` on the local-folder backend: exact range, pruning (the
//! directories it opens, seen with strace), de-duplication (spilling too),
//! foreign layouts, query and limit, usage errors, damage, dry run, progress,
//! and the `archive` source.

mod common;
mod restore_kit;

use std::collections::HashSet;
use std::io::Write;
use std::process::Command;

use common::*;
use restore_kit::*;
use serde_json::{json, Value};

fn file_fixture(per_system: usize) -> Fixture {
    archive(tempfile::tempdir().unwrap(), &file_sink(), per_system)
}

#[test]
fn a_range_that_cuts_two_hours_restores_exactly_its_lines_once_and_byte_identical() {
    let f = file_fixture(100);
    let archive_dir = f.root().join("archive");
    let parts: Vec<_> = walk(&archive_dir)
        .into_iter()
        .filter(|k| k.contains(".1.json.gz"))
        .collect();
    assert!(!parts.is_empty(), "the fixture has late .1 parts");
    let archived = file_archive_lines(&archive_dir);
    let (from, to, from_ms, to_ms) = f.range();

    let dry = f.restore(&["--from", &from, "--to", &to, "--dry-run"]);
    dry.ok();
    let plan = String::from_utf8_lossy(&dry.stdout).into_owned();
    let total = plan
        .lines()
        .find(|l| l.starts_with("total:"))
        .unwrap_or_else(|| panic!("{plan}"));

    let out = f.root().join("out.ndjson");
    let run = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        out.to_str().unwrap(),
    ]);
    run.ok();
    let restored = text_lines(&std::fs::read(&out).unwrap());
    assert_exactly_the_range(&restored, &archived, from_ms, to_ms);
    let s = run.summary();
    assert_counts_add_up(&s);
    assert_eq!(
        s["lines_written"].as_u64().unwrap() as usize,
        restored.len()
    );
    assert_eq!(s["duplicates"], 0);
    // The dry run said what the run then did.
    let expected = format!(
        "total: {} objects, {} bytes, {} LIST requests, {} GET requests",
        s["objects_read"], s["compressed_bytes"], s["list_requests"], s["get_requests"]
    );
    assert_eq!(total, expected, "dry run vs run");
    assert_eq!(s["objects_read"], 8, "four hours, primary and .1 each");

    // The same to stdout, and gzip to a .gz file.
    let stdout = f.restore(&["--from", &from, "--to", &to, "--fresh"]);
    assert_exactly_the_range(&stdout.ok().lines(), &archived, from_ms, to_ms);
    let gz = f.root().join("out.ndjson.gz");
    f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        gz.to_str().unwrap(),
    ])
    .ok();
    let unzipped = gunzip_lines(&std::fs::read(&gz).unwrap());
    assert_exactly_the_range(&unzipped, &archived, from_ms, to_ms);
    // Run again: the checkpoint says it is done; nothing is written twice.
    let again = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        out.to_str().unwrap(),
    ]);
    again.ok();
    assert!(
        again.stderr.contains("already completed"),
        "{}",
        again.stderr
    );
    assert_eq!(
        text_lines(&std::fs::read(&out).unwrap()).len(),
        restored.len()
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                keys.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    keys.sort();
    keys
}

#[test]
fn only_the_folders_of_the_days_in_the_range_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let sediment = Setup::new(dir.path()).start();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let events: Vec<Value> = [now - 3 * day, now - 2 * day, now - day, now - 3_600_000]
        .iter()
        .enumerate()
        .flat_map(|(d, at)| {
            (0..50).map(move |i| json!({"day": d, "i": i, "timestamp": rfc3339(at + i * 1000)}))
        })
        .collect();
    assert_eq!(post_ndjson(&sediment.url("/"), &events), Ok(200));
    sediment.stop();
    let archive = dir.path().join("archive");
    let days: HashSet<String> = walk(&archive)
        .iter()
        .map(|k| k.rsplit_once('/').unwrap().0.to_owned())
        .collect();
    assert_eq!(days.len(), 4, "{days:?}");

    let (from, to) = (rfc3339(now - day - 600_000), rfc3339(now - day + 600_000));
    let trace = dir.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(binary())
        .args(["restore", "--config"])
        .arg(dir.path().join("pipeline.yaml"))
        .args(["--sink", "archive", "--from", &from, "--to", &to])
        .output()
        .expect("strace runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text_lines(&out.stdout).len(), 50);
    let root = archive.display().to_string();
    let opened: HashSet<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root) && l.contains("O_DIRECTORY"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    let expected_day = chrono::DateTime::from_timestamp_millis(now - day)
        .unwrap()
        .format("year=%Y/month=%m/day=%d")
        .to_string();
    assert_eq!(
        opened,
        HashSet::from([format!("{root}/{expected_day}")]),
        "only the day of the range is listed"
    );
}

/// Writes an object of `lines` (one gzip member per chunk of 100 lines).
fn write_object(root: &std::path::Path, key: &str, lines: &[String]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = Vec::new();
    for chunk in lines.chunks(100) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for l in chunk {
            writeln!(gz, "{l}").unwrap();
        }
        bytes.extend(gz.finish().unwrap());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A pipeline file whose `archive` sink reads `{ROOT}/archive` (nothing is run).
fn config_for(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("pipeline.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {d}/data\nsources:\n  in: {{type: http, address: '127.0.0.1:0'}}\nsinks:\n  archive: {{type: file, inputs: [in], path: {d}/archive, account_id: acme{extra}}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    config
}

fn line(id: &str, ts_ms: i64, n: usize) -> String {
    json!({"message": format!("line {n}"), "n": n, "_id": id, "_ts": rfc3339(ts_ms)}).to_string()
}

#[test]
fn copies_across_parts_and_inside_an_object_are_restored_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), "");
    let hour = (chrono::Utc::now().timestamp() / 3600 - 3) * 3600;
    let key = |part: &str| {
        let t = chrono::DateTime::from_timestamp(hour, 0).unwrap();
        t.format(&format!(
            "year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00{part}.json.gz"
        ))
        .to_string()
    };
    let id = |n: usize| format!("0190a000-0000-7000-8000-{n:012}");
    let ts = |n: usize| hour * 1000 + n as i64 * 1000;
    // 1,000 lines; about 1% copied inside the object, 10% again in .1, 5% in .2
    // (and the ids of lines without `_id` are never compared).
    let primary: Vec<String> = (0..1000)
        .chain((0..10).map(|i| i * 97))
        .map(|n| line(&id(n), ts(n), n))
        .collect();
    let part1: Vec<String> = (0..100)
        .map(|i| i * 10)
        .chain(1000..1050)
        .map(|n| line(&id(n), ts(n), n))
        .collect();
    let part2: Vec<String> = (0..50)
        .map(|i| i * 20)
        .map(|n| line(&id(n), ts(n), n))
        .collect();
    let no_id: Vec<String> = (0..3)
        .map(|i| json!({"message": "no id", "_ts": rfc3339(ts(5))}).to_string() + &" ".repeat(i))
        .collect();
    write_object(&dir.path().join("archive"), &key(""), &primary);
    write_object(
        &dir.path().join("archive"),
        &key(".1"),
        &[part1, no_id].concat(),
    );
    write_object(&dir.path().join("archive"), &key(".2"), &part2);
    let (from, to) = (rfc3339(hour * 1000), rfc3339((hour + 3600) * 1000));
    let run = restore(&config, &["--from", &from, "--to", &to]);
    let lines = run.ok().lines();
    let ids: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 1050, "each id once");
    assert_eq!(unique.len(), 1050);
    assert_eq!(lines.len(), 1053, "lines without an id are never dropped");
    let s = run.summary();
    assert_eq!(s["duplicates"], 10 + 100 + 50);
    assert_counts_add_up(&s);
    // The first copy wins: the primary object's line 0 is the one written.
    assert_eq!(lines[0], line(&id(0), ts(0), 0));
    let all = restore(&config, &["--from", &from, "--to", &to, "--no-dedup"]);
    assert_eq!(all.ok().lines().len(), 1053 + 160);
}

#[test]
fn a_two_million_line_hour_with_one_mebibyte_for_ids_spills_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), "");
    let hour = (chrono::Utc::now().timestamp() / 3600 - 2) * 3600;
    let t = chrono::DateTime::from_timestamp(hour, 0).unwrap();
    let ts = rfc3339(hour * 1000 + 1);
    // 2,000,000 lines: ids 0..1,900,000, then 100,000 copies of earlier ids.
    let path = dir.path().join("archive").join(
        t.format("year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00.json.gz")
            .to_string(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gzip = Command::new("gzip")
        .arg("-1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    {
        let mut w = std::io::BufWriter::new(gzip.stdin.take().unwrap());
        for n in (0..1_900_000u64).chain((0..100_000u64).map(|i| i * 19)) {
            writeln!(
                w,
                r#"{{"_id":"0190a000-0000-7000-8000-{n:012}","_ts":"{ts}","n":{n}}}"#
            )
            .unwrap();
        }
    }
    assert!(gzip.wait().unwrap().success());
    let (from, to) = (rfc3339(hour * 1000), rfc3339((hour + 3600) * 1000));
    let out = dir.path().join("out.ndjson");
    let run = restore(
        &config,
        &[
            "--from",
            &from,
            "--to",
            &to,
            "--dedup-memory",
            "1MiB",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    run.ok();
    let s = run.summary();
    assert_eq!(s["lines_written"], 1_900_000);
    assert_eq!(s["duplicates"], 100_000);
    assert_eq!(
        s["dedup_spilled_hours"], 1,
        "the ids did not fit in 1 MiB: {s}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen = HashSet::new();
    for l in text.lines() {
        let n: u64 = l
            .rsplit_once(":")
            .unwrap()
            .1
            .trim_end_matches('}')
            .parse()
            .unwrap();
        assert!(seen.insert(n), "{n} written twice");
    }
    assert_eq!(seen.len(), 1_900_000);
}

#[test]
fn datadog_and_mezmo_layouts_restore_with_the_documented_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), "");
    let hour = (chrono::Utc::now().timestamp() / 3600 - 5) * 3600;
    let t = chrono::DateTime::from_timestamp(hour, 0).unwrap();
    // Datadog: dt=YYYYMMDD/hour=HH/archive_<time>.<id>.json.gz, lines with `_id` and `date`.
    let dd: Vec<String> = (0..300)
        .map(|i| json!({"_id": format!("AQAAAZK{i:08}"), "date": rfc3339(hour * 1000 + i * 10_000), "service": "web", "message": format!("dd {i}")}).to_string())
        .collect();
    let dd_root = dir.path().join("archive");
    write_object(
        &dd_root,
        &t.format("dt=%Y%m%d/hour=%H/archive_091512.6a1f.json.gz")
            .to_string(),
        &dd[..200],
    );
    write_object(
        &dd_root,
        &t.format("dt=%Y%m%d/hour=%H/archive_093100.77b2.json.gz")
            .to_string(),
        &dd[150..],
    );
    let (from, to) = (
        rfc3339(hour * 1000 + 1_000_000),
        rfc3339(hour * 1000 + 2_000_000),
    );
    let run = restore(
        &config,
        &[
            "--from",
            &from,
            "--to",
            &to,
            "--layout",
            "dt=%Y%m%d/hour=%H/archive_*.json.gz",
            "--time-field",
            "date",
        ],
    );
    let got = run.ok().lines();
    let expected: Vec<&String> = dd
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(v["date"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (hour * 1000 + 1_000_000..hour * 1000 + 2_000_000).contains(&at)
        })
        .collect();
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        expected,
        "Datadog lines of the range, once each"
    );
    assert_eq!(
        run.summary()["duplicates"],
        50,
        "lines 150..199 are in both objects"
    );

    // Mezmo: sediment's layout under Mezmo's account id, `_ts` in epoch milliseconds.
    let mezmo_account = "a1b2c3d4e5";
    let mz: Vec<String> = (0..100)
        .map(|i| json!({"_id": format!("mz-{i}"), "_ts": hour * 1000 + i * 30_000, "_line": format!("mezmo {i}"), "_app": "api"}).to_string())
        .collect();
    write_object(
        &dd_root,
        &t.format(&format!(
            "year=%Y/month=%m/day=%d/{mezmo_account}.%Y-%m-%d.%H00.json.gz"
        ))
        .to_string(),
        &mz,
    );
    write_object(
        &dd_root,
        &t.format(&format!(
            "year=%Y/month=%m/day=%d/{mezmo_account}.%Y-%m-%d.%H00.1.json.gz"
        ))
        .to_string(),
        &mz[..10],
    );
    let layout = format!("year=%Y/month=%m/day=%d/{mezmo_account}.%Y-%m-%d.%H00{{part}}.json.gz");
    let (from, to) = (rfc3339(hour * 1000), rfc3339((hour + 3600) * 1000));
    let run = restore(
        &config,
        &["--from", &from, "--to", &to, "--layout", &layout],
    );
    assert_eq!(run.ok().lines(), mz, "every Mezmo line once, in order");
    assert_eq!(run.summary()["duplicates"], 10);
}

#[test]
fn query_limit_and_a_query_that_matches_nothing() {
    let f = file_fixture(40);
    let (from, to, from_ms, to_ms) = f.range();
    let archived = file_archive_lines(&f.root().join("archive"));
    let ssh = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--query",
        "app:openssh AND NOT message:*Invalid*",
    ]);
    let got = ssh.ok().lines();
    let expected: Vec<String> = archived
        .iter()
        .filter(|l| (from_ms..to_ms).contains(&ts_ms(l)))
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            // The query's wildcard ignores case.
            v["app"] == "openssh"
                && !v["message"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("invalid")
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    let s = ssh.summary();
    assert!(s["filtered"].as_u64().unwrap() > 0);
    assert_counts_add_up(&s);

    let limited = f.restore(&["--from", &from, "--to", &to, "--limit", "17"]);
    assert_eq!(limited.ok().lines().len(), 17);
    assert_eq!(limited.summary()["limit_reached"], true);
    assert_counts_add_up(&limited.summary());

    let nothing = f.restore(&["--from", &from, "--to", &to, "--query", "app:no-such-app"]);
    assert!(nothing.ok().lines().is_empty());
    assert_eq!(nothing.summary()["lines_written"], 0);
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), "");
    for (args, expected) in [
        (vec!["--from", "-1h", "--to", "-2h"], "--from"),
        (
            vec!["--from", "2999-01-01", "--to", "3000-01-01"],
            "in the future",
        ),
        (
            vec!["--from", "yesterday", "--to", "now"],
            "--from: `yesterday` is not a time",
        ),
        (
            vec!["--from", "-1h", "--to", "now", "--query", "level:(a OR"],
            "--query: column",
        ),
        (
            vec!["--from", "-1h", "--to", "now", "--parallel", "0"],
            "--parallel",
        ),
        (
            vec!["--from", "-1h", "--to", "now", "--layout", "%Y/%b/%H.gz"],
            "--layout",
        ),
    ] {
        let r = restore(&config, &args);
        assert_eq!(r.status, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one sentence: {}", r.stderr);
    }
    let r = Command::new(binary())
        .args(["restore", "--config"])
        .arg(&config)
        .args(["--sink", "nope", "--from", "-1h", "--to", "now"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("has no sink `nope` (its sinks: archive)"));
}

#[test]
fn damaged_objects_are_reported_by_key_and_line_and_the_rest_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), "");
    let hour = (chrono::Utc::now().timestamp() / 3600 - 4) * 3600;
    let t = chrono::DateTime::from_timestamp(hour, 0).unwrap();
    let key = |part: &str| {
        t.format(&format!(
            "year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00{part}.json.gz"
        ))
        .to_string()
    };
    let id = |n: usize| format!("0190a000-0000-7000-8000-{n:012}");
    let lines: Vec<String> = (0..1000)
        .map(|n| line(&id(n), hour * 1000 + n as i64, n))
        .collect();
    let root = dir.path().join("archive");
    write_object(&root, &key(""), &lines[..400]);
    // .1: truncated in its middle; .2: line 3 is not JSON.
    write_object(&root, &key(".1"), &lines[400..800]);
    let p1 = root.join(key(".1"));
    let whole = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &whole[..whole.len() / 2 + 7]).unwrap(); // inside a member
    let mut bad = lines[800..].to_vec();
    bad[2] = "{\"_id\": \"broken".into();
    write_object(&root, &key(".2"), &bad);
    let (from, to) = (rfc3339(hour * 1000), rfc3339((hour + 3600) * 1000));
    let run = restore(&config, &["--from", &from, "--to", &to]);
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    let got = run.lines();
    assert!(
        got.len() > 400 + 150 && got.len() < 999,
        "{} lines",
        got.len()
    );
    assert!(got.iter().all(|l| lines.contains(l)), "only intact lines");
    for l in lines[..400].iter().chain(&lines[801..]) {
        if l != &lines[802] {
            assert!(got.contains(l), "lost an intact line: {l}");
        }
    }
    let damaged = run.summary()["damaged"].clone();
    let text = damaged.to_string();
    assert!(
        text.contains(&key(".1")) && text.contains("restored up to line"),
        "{text}"
    );
    assert!(
        text.contains(&key(".2"))
            && text.contains(
                "1 lines are not JSON objects or are longer than 64 MiB (the first at line 3)"
            ),
        "{text}"
    );
    assert!(
        run.stderr.contains("some archive objects are damaged"),
        "{}",
        run.stderr
    );
}

#[test]
fn progress_lines_are_json_when_stderr_is_not_a_terminal() {
    let f = file_fixture(400);
    let (from, to, ..) = f.range();
    // About 2,500 lines at 400 a second: a little over 6 s.
    let run = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--rate",
        "400",
        "--output",
        "/dev/null",
    ]);
    run.ok();
    let progress: Vec<Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("progress").cloned())
        .collect();
    assert!(
        !progress.is_empty(),
        "a progress line every 5 s:\n{}",
        run.stderr
    );
    for key in [
        "objects_done",
        "objects_total",
        "bytes_done",
        "bytes_total",
        "lines_written",
        "lines_per_second",
    ] {
        assert!(progress[0].get(key).is_some(), "{key} in {}", progress[0]);
    }
    let rate = progress[0]["lines_per_second"].as_f64().unwrap();
    assert!(rate <= 480.0, "--rate 400 holds: {rate}");
    assert!(run.summary()["elapsed_seconds"].as_f64().unwrap() >= 5.0);
}

#[test]
fn the_archive_source_flows_a_range_through_a_topology_and_then_exits() {
    let f = file_fixture(30);
    let (from, to, from_ms, to_ms) = f.range();
    let archived = file_archive_lines(&f.root().join("archive"));
    let config = f.root().join("replay.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {d}/replay-data\napi: {{enabled: false}}\nsources:\n  old:\n    type: archive\n    storage: {{type: file, path: {d}/archive, account_id: acme}}\n    from: '{from}'\n    to: '{to}'\ntransforms:\n  no_ssh: {{type: exclude, inputs: [old], rules: [{{name: ssh, query: 'app:openssh'}}]}}\nsinks:\n  out: {{type: console, inputs: [no_ssh]}}\n",
            d = f.root().display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: HashSet<String> = text_lines(&out.stdout).into_iter().collect();
    let expected: HashSet<String> = archived
        .into_iter()
        .filter(|l| (from_ms..to_ms).contains(&ts_ms(l)) && !l.contains("\"app\":\"openssh\""))
        .collect();
    assert_eq!(
        got, expected,
        "the range minus the excluded lines, keeping _id, _ts and _meta"
    );
}
