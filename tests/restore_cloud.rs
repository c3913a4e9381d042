//! `sediment restore` from S3 (moto), GCS (fake-gcs-server) and Azure
//! (Azurite): an archive written by sediment, a range that cuts two hours,
//! exactly its lines once and byte-identical (read back with each provider's
//! own client); the emulators' request logs show that only the range's day
//! prefixes were listed and only its objects fetched. Cold storage on S3.

mod cloud;
mod common;
mod restore_kit;

use std::collections::HashSet;

use cloud::{Azurite, FakeGcs, Moto};
use restore_kit::*;

const BUCKET: &str = "archive";

fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The day prefixes (under `logs/`) a restore of `[from, to)` may list.
fn day_prefixes(from_ms: i64, to_ms: i64) -> HashSet<String> {
    (from_ms / 3_600_000..=(to_ms - 1) / 3_600_000)
        .map(|h| {
            let t = chrono::DateTime::from_timestamp(h * 3600, 0).unwrap();
            t.format("logs/year=%Y/month=%m/day=%d/acme.%Y-%m-%d.")
                .to_string()
        })
        .collect()
}

/// The hour (seconds) a key of the default layout names.
fn hour_of(key: &str) -> i64 {
    let stem = key.rsplit('/').next().unwrap();
    let date_hour = &stem["acme.".len().."acme.".len() + 15];
    chrono::NaiveDateTime::parse_from_str(&format!("{date_hour}:00"), "%Y-%m-%d.%H%M:%S")
        .unwrap()
        .and_utc()
        .timestamp()
}

/// The common scenario: archive, restore the range, check lines and requests.
fn range_scenario(
    sink: &str,
    raw_archive: impl Fn() -> Vec<String>,
    requests: impl Fn() -> Vec<String>,
    is_list: impl Fn(&str) -> bool,
) {
    let f = archive(tempfile::tempdir().unwrap(), sink, 60);
    let archived = raw_archive();
    let (from, to, from_ms, to_ms) = f.range();
    let before = requests().len();
    let run = f.restore(&["--from", &from, "--to", &to, "--parallel", "4"]);
    assert_exactly_the_range(&run.ok().lines(), &archived, from_ms, to_ms);
    let summary = run.summary();
    assert_counts_add_up(&summary);
    let made: Vec<String> = requests()[before..]
        .iter()
        .map(|r| percent_decoded(r))
        .collect();
    let lists: Vec<&String> = made.iter().filter(|r| is_list(r)).collect();
    let allowed = day_prefixes(from_ms, to_ms);
    assert!(!lists.is_empty(), "no listing in {made:?}");
    for l in &lists {
        let prefix = l
            .split("prefix=")
            .nth(1)
            .unwrap_or_else(|| panic!("unprefixed listing {l}"));
        let prefix = prefix.split('&').next().unwrap();
        assert!(
            allowed.contains(prefix),
            "listed {prefix}, only {allowed:?} allowed"
        );
    }
    assert_eq!(
        lists.len() as u64,
        summary["list_requests"].as_u64().unwrap()
    );
    let fetched: Vec<&String> = made
        .iter()
        .filter(|r| !is_list(r) && r.contains(".json.gz"))
        .collect();
    assert_eq!(
        fetched.len() as u64,
        summary["get_requests"].as_u64().unwrap(),
        "{fetched:?}"
    );
    for g in &fetched {
        let key = g
            .split("logs/")
            .nth(1)
            .map(|k| k.split(['?', ' ']).next().unwrap())
            .unwrap();
        let hour = hour_of(key);
        assert!(
            hour * 1000 < to_ms && (hour + 3600) * 1000 > from_ms,
            "fetched {key}, outside the range"
        );
    }
    assert_eq!(
        fetched.len(),
        8,
        "four hours of the range, primary and .1 each"
    );
}

fn s3_sink(moto: &Moto) -> String {
    format!(
        "    type: s3\n    inputs: [hourly]\n    bucket: {BUCKET}\n    prefix: logs\n    account_id: acme\n    endpoint: '{}'\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n",
        moto.endpoint()
    )
}

#[test]
fn from_s3_only_the_range_is_listed_and_fetched_and_restored_once() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    range_scenario(
        &s3_sink(&moto),
        || {
            moto.download(BUCKET, "logs/")
                .into_iter()
                .flat_map(|o| o.raw)
                .collect()
        },
        || moto.requests(),
        |r| r.contains("list-type=2"),
    );
}

#[test]
fn from_gcs_only_the_range_is_listed_and_fetched_and_restored_once() {
    let gcs = FakeGcs::start();
    gcs.create_bucket(BUCKET);
    let sink = format!(
        "    type: gcs\n    inputs: [hourly]\n    bucket: {BUCKET}\n    prefix: logs\n    account_id: acme\n    endpoint: '{}'\n    anonymous: true\n",
        gcs.endpoint()
    );
    range_scenario(
        &sink,
        || {
            gcs.download(BUCKET, "logs/")
                .into_iter()
                .flat_map(|o| o.raw)
                .collect()
        },
        || gcs.requests(),
        |r| r.starts_with("GET") && r.contains("/o?") && !r.contains("alt=media"),
    );
}

#[test]
fn from_azure_only_the_range_is_listed_and_fetched_and_restored_once() {
    let azurite = Azurite::start();
    azurite.create_container(BUCKET);
    let sink = format!(
        "    type: azure_blob\n    inputs: [hourly]\n    container: {BUCKET}\n    prefix: logs\n    account_id: acme\n    connection_string: '{}'\n",
        azurite.connection_string()
    );
    range_scenario(
        &sink,
        || {
            azurite
                .download(BUCKET, "logs/")
                .into_iter()
                .flat_map(|o| o.raw)
                .collect()
        },
        || azurite.requests(),
        |r| r.contains("comp=list"),
    );
}

#[test]
fn an_object_in_glacier_makes_the_restore_refuse_before_writing_unless_skip_cold() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let f = archive(tempfile::tempdir().unwrap(), &s3_sink(&moto), 30);
    let archived: Vec<String> = moto
        .download(BUCKET, "logs/")
        .into_iter()
        .flat_map(|o| o.raw)
        .collect();
    let (from, to, from_ms, to_ms) = f.range();
    let hour = (from_ms / 3_600_000 + 1) * 3600;
    let t = chrono::DateTime::from_timestamp(hour, 0).unwrap();
    let cold_key = t
        .format("logs/year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00.7.json.gz")
        .to_string();
    moto.python(
        "import gzip\ns3.put_object(Bucket=sys.argv[1], Key=sys.argv[2], StorageClass='GLACIER', Body=gzip.compress(b'{\"_ts\":\"x\"}\\n'))",
        &[BUCKET, &cold_key],
    );
    let out = f.root().join("out.ndjson");
    let refused = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(refused.status, Some(1), "{}", refused.stderr);
    let message = refused
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_owned();
    for part in [
        "1 of the",
        "cold storage (GLACIER",
        &cold_key["logs/".len()..],
        "--skip-cold",
        "nothing was written",
    ] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
    assert!(
        !out.exists() || std::fs::metadata(&out).unwrap().len() == 0,
        "nothing written"
    );
    let skipping = f.restore(&[
        "--from",
        &from,
        "--to",
        &to,
        "--output",
        out.to_str().unwrap(),
        "--skip-cold",
    ]);
    skipping.ok();
    assert_eq!(skipping.summary()["cold_skipped"], 1);
    assert_exactly_the_range(
        &text_lines(&std::fs::read(&out).unwrap()),
        &archived,
        from_ms,
        to_ms,
    );
}
