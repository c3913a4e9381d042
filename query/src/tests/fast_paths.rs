//! The shortcuts of the plan that the property tests may rarely reach:
//! equality tables (small and hashed), rule guards, key fingerprints and
//! the literal search that starts at the pre-filter's first match. Each case
//! holds a `RuleSet` to the reference matcher.

use serde_json::{json, Value};

use super::{event, query, reference};
use crate::RuleSet;

/// Checks that `rules` as one `RuleSet`, and each rule alone, agree with the
/// reference matcher on every event.
fn agree(rules: &[String], events: &[Value]) {
    let queries: Vec<_> = rules.iter().map(|r| query(r)).collect();
    let asts: Vec<_> = queries.iter().map(|q| q.ast().clone()).collect();
    let set = RuleSet::new(
        queries
            .iter()
            .enumerate()
            .map(|(i, q)| (i.to_string(), q.clone()))
            .collect(),
    );
    for value in events {
        let e = event(value.clone());
        assert_eq!(
            set.first_match(&e),
            reference::first_match(&asts, &e),
            "rule set on {value}"
        );
        for (q, ast) in queries.iter().zip(&asts) {
            assert_eq!(q.matches(&e), reference::eval(ast, &e), "{q} on {value}");
        }
    }
}

/// Values of `app` that equality tests and guards must treat like the
/// reference: mixed case, non-ASCII case folding (the Kelvin sign folds to
/// `k`, `İ` grows when lower-cased), numbers, booleans, arrays, null.
fn app_values() -> Vec<Value> {
    let apps = [
        json!("web"),
        json!("WEB"),
        json!("wEb"),
        json!("\u{212A}ube"),
        json!("kube"),
        json!("İstanbul"),
        json!("i\u{307}stanbul"),
        json!("Évry"),
        json!("évry"),
        json!(200),
        json!(200.0),
        json!("200"),
        json!(true),
        json!("TRUE"),
        json!(["db", "WEB"]),
        json!([]),
        json!({"web": 1}),
        json!(null),
        json!(""),
        json!("app17"),
        json!("APP3"),
        json!("unknown"),
    ];
    let mut events: Vec<Value> = apps
        .iter()
        .flat_map(|app| {
            [
                json!({"app": app, "level": "ERROR", "message": "timeout"}),
                json!({"level": "info", "app": app, "message": "ok", "status": 503}),
            ]
        })
        .collect();
    events.push(json!({"level": "error", "message": "no app"}));
    events
}

#[test]
fn equality_tables_and_guards_agree_with_the_reference() {
    let small: Vec<String> = [
        "app:web AND level:error",
        "app:(kube OR db) AND NOT level:info",
        "app:İstanbul OR app:évry",
        "app:200 AND level:info",
        "app:true",
        "app:\"\" OR status:>=500",
        "NOT app:web AND level:error",
        "app:web OR timeout",
        "level:info AND (app:kube OR app:db OR app:200)",
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    agree(&small, &app_values());
    // Past the size at which a key's table is hashed.
    let mut large: Vec<String> = (0..40)
        .map(|i| format!("app:app{i} AND level:error"))
        .collect();
    large.extend(small);
    agree(&large, &app_values());
}

#[test]
fn key_fingerprints_tell_close_keys_apart() {
    // Every length around the fingerprint's loads, with keys that share
    // their first and last bytes (and, past 16 bytes, their first and last 8).
    let keys: Vec<String> = (1..=20)
        .flat_map(|n| {
            let same = "a".repeat(n);
            let mut middle = same.clone().into_bytes();
            middle[n / 2] = b'b';
            [same, String::from_utf8(middle).expect("ASCII")]
        })
        .collect();
    let rules: Vec<String> = keys.iter().step_by(2).map(|k| format!("{k}:x")).collect();
    let events: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut e = serde_json::Map::new();
            e.insert("other".into(), json!("x"));
            e.insert(k.clone(), json!("X"));
            Value::Object(e)
        })
        .collect();
    agree(&rules, &events);
}

#[test]
fn literal_search_finds_every_literal_after_the_first() {
    let rules: Vec<String> = [
        "\"connection closed\" AND \"by peer\"",
        "closed AND NOT opened",
        "\"closed by\"",
        "by",
        "/.*blk_[0-9]+ terminating.*/",
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    let events: Vec<Value> = [
        "Connection CLOSED by peer",
        "by the way, the connection closed",
        "opened then closed by admin",
        "blk_42 terminating",
        "BLK_42 TERMINATING",
        "nothing here",
        "ÉCHEC: connection closed by peer",
    ]
    .iter()
    .map(|m| json!({"message": m, "app": "x", "level": "info"}))
    .collect();
    agree(&rules, &events);
}
