//! deploy/prometheus/alerts.yml and deploy/grafana/sediment.json, statically:
//! `promtool check rules` and `promtool test rules` pass, every alert is
//! unit-tested both firing and not firing, and the dashboard has its variables,
//! plain titles and descriptions, and charts every metric sediment exports.
//! (tests/production.rs evaluates every expression in a real Prometheus.)

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool runs (scripts/test installs Debian's prometheus)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn yaml(file: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(deploy(file)).unwrap()).unwrap()
}

fn alert_names() -> BTreeSet<String> {
    yaml("prometheus/alerts.yml")["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_is_unit_tested_both_ways() {
    let check = promtool(&["check", "rules", "alerts.yml"]);
    let alerts = alert_names();
    assert!(
        check.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{check}"
    );
    promtool(&["test", "rules", "alerts_test.yml"]);

    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in yaml("prometheus/alerts_test.yml")["tests"]
        .as_sequence()
        .unwrap()
    {
        for case in test["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            assert!(
                alerts.contains(&name),
                "alerts_test.yml tests unknown alert {name}"
            );
            if case["exp_alerts"].as_sequence().unwrap().is_empty() {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    assert_eq!(firing, alerts, "alerts without a firing case");
    assert_eq!(quiet, alerts, "alerts without a not-firing case");
    for rule in yaml("prometheus/alerts.yml")["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
    {
        let name = rule["alert"].as_str().unwrap();
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or("");
            assert!(text.len() > 20, "{name} has no {annotation}");
        }
        assert!(
            rule["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("First"),
            "{name}'s description does not say what to do first"
        );
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(deploy("grafana/sediment.json")).unwrap())
        .unwrap()
}

#[test]
fn the_dashboard_has_its_variables_titles_and_descriptions() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let component = var("component_id");
    assert_eq!(component["type"], "query");
    assert!(component["definition"]
        .as_str()
        .unwrap()
        .contains("component_id"));
    assert_eq!(component["includeAll"], true);

    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert!(
            !title.is_empty() && !title.contains("sediment_"),
            "title {title:?} is not plain words"
        );
        let description = panel["description"].as_str().unwrap_or("");
        assert!(
            description.len() > 20 && !description.contains('\n'),
            "{title}: one-line description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            if !expr.starts_with("sum(up{") {
                assert!(
                    expr.contains(r#"component_id=~"$component_id""#),
                    "{title}: `{expr}` ignores $component_id"
                );
            }
        }
    }
}

#[test]
fn the_dashboard_charts_every_metric_sediment_exports() {
    // The metric families a running sediment exports (its HELP lines).
    let dir = tempfile::tempdir().unwrap();
    let sediment = common::Setup::new(dir.path()).start();
    let exported: BTreeSet<String> = sediment
        .metrics()
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    sediment.stop();
    // Families that appear only once a component of that type exists.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src/metrics.rs"))
            .unwrap();
    let declared: BTreeSet<String> = text
        .split('"')
        .filter(|s| s.starts_with("sediment_") && !s.contains(' '))
        .map(str::to_owned)
        .collect();
    assert!(
        exported.is_subset(&declared),
        "{exported:?} vs {declared:?}"
    );
    let charted = dashboard().to_string();
    // Committed offsets are for debugging a consumer group, not for a board.
    let not_charted = ["sediment_kafka_committed_offset"];
    for family in &declared {
        assert!(
            charted.contains(family.as_str()) || not_charted.contains(&family.as_str()),
            "the dashboard does not chart {family}"
        );
    }
}
