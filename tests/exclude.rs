//! Exclusion rules end to end: http → exclude → hour_partition → file with real
//! loghub lines; the archive holds exactly what no rule matches, and /metrics
//! counts each drop under the first rule that matched. The expected set is computed
//! here with plain Rust predicates, independently of the query engine.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const TOPOLOGY: &str = r#"
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}'}
transforms:
  drop_noise:
    type: exclude
    inputs: [http_in]
    rules:
      - name: healthchecks
        query: 'app:healthcheck OR "GET /health"'
      - name: debug-except-payments
        query: 'level:debug AND NOT app:payments'
      - name: ssh-closed
        query: 'app:openssh AND "connection closed"'
      - name: server-errors
        query: 'status:>=500 AND _meta.source:http_in'
      - name: disabled
        query: 'app:*'
        enabled: false
  hourly: {type: hour_partition, inputs: [drop_noise]}
sinks:
  archive: {type: file, inputs: [hourly], path: '{ROOT}/archive', account_id: acme}
"#;

fn rule_of(e: &Value) -> Option<&'static str> {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_lowercase();
    let message = s("message");
    if s("app") == "healthcheck" || message.contains("get /health") {
        Some("healthchecks")
    } else if s("level") == "debug" && s("app") != "payments" {
        Some("debug-except-payments")
    } else if s("app") == "openssh" && message.contains("connection closed") {
        Some("ssh-closed")
    } else if e["status"].as_i64().is_some_and(|st| st >= 500) {
        Some("server-errors")
    } else {
        None
    }
}

#[test]
fn exclusion_rules_drop_exactly_what_they_match() {
    let dir = tempfile::tempdir().unwrap();
    let sediment = Setup::new(dir.path()).topology(TOPOLOGY).start();
    let levels = ["INFO", "DEBUG", "WARN", "ERROR", "debug"];
    let mut apps: Vec<String> = SYSTEMS.iter().map(|s| s.to_lowercase()).collect();
    apps.extend(["payments".into(), "healthcheck".into()]);
    let mut events = Vec::new();
    for (i, system) in SYSTEMS.iter().enumerate() {
        for (n, line) in loghub_lines(system, 300).into_iter().enumerate() {
            let app = if n % 7 == 0 {
                apps[(i + n) % apps.len()].clone()
            } else {
                system.to_lowercase()
            };
            let message = if n % 53 == 0 {
                format!("GET /health 200 {line}")
            } else {
                line
            };
            events.push(json!({"seq": events.len(), "app": app, "level": levels[n % levels.len()], "status": 200 + (n % 4) * 100, "message": message}));
        }
    }
    for chunk in events.chunks(400) {
        assert_eq!(post_ndjson(&sediment.url("/"), chunk), Ok(200));
    }
    let metrics = sediment.metrics();
    sediment.stop();

    let mut expected_drops: HashMap<&str, u64> = HashMap::new();
    let kept: Vec<u64> = events
        .iter()
        .filter(|e| match rule_of(e) {
            Some(rule) => {
                *expected_drops.entry(rule).or_default() += 1;
                false
            }
            None => true,
        })
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let mut archived: Vec<u64> = read_archive(&dir.path().join("archive"))
        .into_iter()
        .flat_map(|a| a.1)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    archived.sort_unstable();
    assert_eq!(
        archived, kept,
        "the archive holds exactly the events no rule matches"
    );
    assert!(
        expected_drops.len() == 4 && !kept.is_empty(),
        "every rule dropped something: {expected_drops:?}"
    );
    for (rule, n) in expected_drops {
        let line = format!(
            "sediment_component_discarded_events_total{{component_id=\"drop_noise\",component_kind=\"transform\",component_type=\"exclude\",reason=\"excluded\",rule=\"{rule}\"}} {n}"
        );
        assert!(metrics.contains(&line), "missing `{line}` in\n{metrics}");
    }
    assert!(
        !metrics.contains("rule=\"disabled\"} 1"),
        "a disabled rule drops nothing"
    );
}

#[test]
fn a_broken_query_fails_validation_naming_rule_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let text = TOPOLOGY
        .replace("{HTTP}", "8080")
        .replace("{ROOT}", "/tmp")
        .replace(
            "'level:debug AND NOT app:payments'",
            "'level:debug AND level:'",
        );
    std::fs::write(dir.path().join("pipeline.yaml"), text).unwrap();
    let out = Command::new(binary())
        .args(["validate", "--config", "pipeline.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pipeline.yaml: transforms.drop_noise.rules[1].query: column 23: expected a value after \"level:\""), "{stdout}");
}
