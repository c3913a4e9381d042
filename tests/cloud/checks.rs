//! What every cloud sink test checks, whatever the backend.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::S3Object;
use crate::common::{loghub_lines, SYSTEMS};

/// Loghub lines as events spread over `hours` past hours; `seq` from `first_seq`.
pub fn corpus(per_system: usize, hours: i64, first_seq: usize) -> Vec<Value> {
    let first_hour = (Utc::now().timestamp() / 3600 - hours - 1) * 3600;
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
            let ts_ms = first_hour * 1000 + (i as i64) * hours * 3_600_000 / n;
            let ts = Utc
                .timestamp_millis_opt(ts_ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({"message": line, "app": system.to_lowercase(), "seq": first_seq + i, "timestamp": ts})
        })
        .collect()
}

/// `{prefix}year=…/acme.YYYY-MM-DD.HH00` of an event (without part and suffix).
pub fn hour_stem(prefix: &str, ts: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .with_timezone(&Utc);
    format!(
        "{prefix}{}",
        t.format("year=%Y/month=%m/day=%d/acme.%Y-%m-%d.%H00")
    )
}

/// Every event of `sent` is in exactly one object, under its hour's key.
pub fn assert_exactly_once(objects: &[S3Object], sent: &[Value], prefix: &str) {
    let mut seen: HashMap<i64, String> = HashMap::new();
    for o in objects {
        assert!(
            // `sediment-segment-id` (S3, GCS) or `sediment_segment_id` (Azure).
            o.metadata
                .keys()
                .any(|k| k.replace('_', "-") == "sediment-segment-id"),
            "{} lacks its segment id",
            o.key
        );
        for line in &o.lines {
            let seq = line["seq"].as_i64().unwrap();
            if let Some(other) = seen.insert(seq, o.key.clone()) {
                panic!("seq {seq} archived twice: {other} and {}", o.key);
            }
        }
    }
    for e in sent {
        let seq = e["seq"].as_i64().unwrap();
        let key = seen.get(&seq).unwrap_or_else(|| panic!("seq {seq} lost"));
        let stem = hour_stem(prefix, e["timestamp"].as_str().unwrap());
        let rest = key
            .strip_prefix(&stem)
            .unwrap_or_else(|| panic!("{key} is not under {stem}"));
        let part_ok = rest == ".json.gz"
            || rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix(".json.gz"))
                .is_some_and(|n| n.parse::<u32>().is_ok());
        assert!(part_ok, "unexpected key {key}");
    }
    assert_eq!(seen.len(), sent.len(), "only the events sent are archived");
}

/// Sum of a metric's samples whose labels contain every `labels` fragment.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
