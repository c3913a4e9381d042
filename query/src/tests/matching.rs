//! What matches what: every kind of term, case rules, numbers, paths,
//! arrays, absent fields, operators, and `RuleSet` ordering.

use serde_json::json;

use super::{event, hit, query};
use crate::{Query, RuleSet};

#[test]
fn field_equality_ignores_case() {
    assert!(hit("level:error", json!({"level": "ERROR"})));
    assert!(hit("level:ERROR", json!({"level": "error"})));
    assert!(hit("LEVEL:error", json!({"LEVEL": "Error"})));
    assert!(
        !hit("LEVEL:error", json!({"level": "error"})),
        "field names are exact"
    );
    assert!(
        !hit("level:error", json!({"level": "errors"})),
        "whole value"
    );
    assert!(!hit("level:error", json!({"level": "an error"})));
}

#[test]
fn unicode_case_folding() {
    assert!(hit("city:ÉCOLE", json!({"city": "école"})));
    assert!(hit("city:école", json!({"city": "ÉCOLE"})));
    assert!(hit("word:straße", json!({"word": "STRAßE"})));
    assert!(hit("ÉCHEC", json!({"message": "un échec total"})));
    assert!(hit("\"ÉCHEC TOTAL\"", json!({"message": "un échec total"})));
    assert!(hit("éch*tot?l", json!({"message": "UN ÉCHEC TOTAL!"})));
    assert!(hit("city:é*", json!({"city": "Éa"})));
    // The Kelvin sign lower-cases to an ASCII `k`.
    assert!(hit("k", json!({"message": "\u{212A}"})));
    assert!(!hit("\u{212A}", json!({"message": "x"})));
}

#[test]
fn quoted_values_are_exact_phrases() {
    assert!(hit(
        "level:\"fatal error\"",
        json!({"level": "Fatal Error"})
    ));
    assert!(!hit(
        "level:\"fatal error\"",
        json!({"level": "fatal error!"})
    ));
    assert!(hit("level:\"\"", json!({"level": ""})));
    assert!(hit("status:\"200\"", json!({"status": 200})));
    assert!(
        !hit("status:\"200.0\"", json!({"status": 200})),
        "quoted values compare as text"
    );
}

#[test]
fn nested_paths() {
    assert!(hit(
        "_meta.source:http_in",
        json!({"_meta": {"source": "http_in"}})
    ));
    let k8s = json!({"kubernetes": {"namespace": "prod", "labels": {"app": "web"}}});
    assert!(hit("kubernetes.namespace:prod", k8s.clone()));
    assert!(hit("kubernetes.labels.app:WEB", k8s.clone()));
    assert!(
        !hit("kubernetes.labels:web", k8s.clone()),
        "objects match nothing"
    );
    assert!(!hit("kubernetes.namespace.x:prod", k8s.clone()));
    assert!(!hit("kubernetes.pod:x", k8s));
    assert!(!hit("a.b:c", json!({"a": "b"})));
    assert!(
        hit(r"k8s\.io:x", json!({"k8s.io": "x"})),
        "escaped dot is part of the key"
    );
    assert!(!hit("k8s.io:x", json!({"k8s.io": "x"})));
}

#[test]
fn arrays_match_any_element() {
    assert!(hit("tags:urgent", json!({"tags": ["a", "URGENT"]})));
    assert!(!hit("tags:urgent", json!({"tags": ["a", "b"]})));
    assert!(hit("tags:[1 TO 2]", json!({"tags": ["x", 2]})));
    assert!(
        hit("tags:x", json!({"tags": [["y"], ["x"]]})),
        "nested arrays"
    );
    let users = json!({"users": [{"name": "ann"}, {"name": "Bob"}]});
    assert!(hit("users.name:bob", users.clone()), "arrays inside a path");
    assert!(hit("_exists_:users.name", users));
    assert!(!hit("NOT tags:urgent", json!({"tags": ["urgent", "b"]})));
}

#[test]
fn numbers_and_strings() {
    assert!(hit("status:200", json!({"status": 200})));
    assert!(hit("status:200", json!({"status": "200"})));
    assert!(hit("status:200", json!({"status": 200.0})));
    assert!(hit("status:200.0", json!({"status": 200})));
    assert!(hit("status:2e2", json!({"status": 200})));
    assert!(
        !hit("status:200", json!({"status": "200.0"})),
        "strings compare as text"
    );
    assert!(!hit("status:200", json!({"status": 201})));
    assert!(
        hit("temp:-5", json!({"temp": -5})),
        "a leading - in a value is literal"
    );
    assert!(hit("ratio:0.25", json!({"ratio": 0.25})));
    assert!(hit("id:abc", json!({"id": "ABC"})));
    assert!(!hit("id:abc", json!({"id": 5})));
}

#[test]
fn booleans() {
    assert!(hit("ok:true", json!({"ok": true})));
    assert!(hit("ok:TRUE", json!({"ok": true})));
    assert!(hit("ok:true", json!({"ok": "True"})));
    assert!(!hit("ok:true", json!({"ok": false})));
    assert!(hit("ok:false", json!({"ok": false})));
    assert!(!hit("ok:>0", json!({"ok": true})));
}

#[test]
fn absent_and_null_fields() {
    assert!(!hit("level:error", json!({})));
    assert!(!hit("level:error", json!({"level": null})));
    assert!(!hit("level:null", json!({"level": null})));
    assert!(hit("NOT level:error", json!({})));
    assert!(!hit("level:*", json!({})));
    assert!(hit("level:*", json!({"level": ""})));
    assert!(!hit("level:/.*/", json!({"level": null})));
    assert!(!hit("level:>1", json!({})));
}

#[test]
fn exists() {
    assert!(hit("_exists_:level", json!({"level": "x"})));
    assert!(hit("_exists_:level", json!({"level": {}})));
    assert!(hit("_exists_:level", json!({"level": false})));
    assert!(!hit("_exists_:level", json!({"level": null})));
    assert!(!hit("_exists_:level", json!({"level": []})));
    assert!(!hit("_exists_:level", json!({"level": [null]})));
    assert!(!hit("_exists_:level", json!({"other": 1})));
    assert!(hit(
        "_exists_:_meta.source",
        json!({"_meta": {"source": 1}})
    ));
    assert!(!hit("_exists_:_meta.host", json!({"_meta": {"source": 1}})));
    assert!(hit("_exists_:(a OR b)", json!({"b": 1})));
    assert!(hit("NOT _exists_:a", json!({"b": 1})));
}

#[test]
fn wildcards_on_fields() {
    assert!(hit("host:web-*", json!({"host": "WEB-01"})));
    assert!(
        !hit("host:web-*", json!({"host": "my-web-01"})),
        "whole value"
    );
    assert!(hit("host:*prod*", json!({"host": "eu-PROD-1"})));
    assert!(hit("code:E?1", json!({"code": "e01"})));
    assert!(!hit("code:E?1", json!({"code": "E001"})));
    assert!(hit("status:4??", json!({"status": 404})));
    assert!(!hit("status:4??", json!({"status": 4040})));
    assert!(hit("ok:t*", json!({"ok": true})));
    assert!(
        hit(r"file:\*.log", json!({"file": "*.log"})),
        "escaped star is literal"
    );
    assert!(!hit(r"file:\*.log", json!({"file": "a.log"})));
    assert!(hit("a:*b*c*", json!({"a": "xxbyyczz"})));
    assert!(hit("a:**", json!({"a": ""})));
}

#[test]
fn regexes_are_anchored_and_case_sensitive() {
    assert!(hit(
        r"path:/\/api\/v[12]\/.*/",
        json!({"path": "/api/v2/users"})
    ));
    assert!(!hit(
        r"path:/\/api\/v[12]\/.*/",
        json!({"path": "/old/api/v2/users"})
    ));
    assert!(hit("level:/err.*/", json!({"level": "error"})));
    assert!(
        !hit("level:/err.*/", json!({"level": "an error"})),
        "anchored to the whole value"
    );
    assert!(
        !hit("level:/err.*/", json!({"level": "ERROR"})),
        "case-sensitive"
    );
    assert!(hit("level:/(?i)err.*/", json!({"level": "ERROR"})));
    assert!(hit("status:/4\\d\\d/", json!({"status": 404})));
    assert!(
        hit("a:/x|y/", json!({"a": "y"})),
        "alternation stays inside the anchors"
    );
    assert!(!hit("a:/x|y/", json!({"a": "xy"})));
    assert!(hit(
        "/.*timed? ?out.*/",
        json!({"message": "request timed out"})
    ));
    assert!(!hit("/timeout/", json!({"message": "a timeout"})));
}

#[test]
fn comparisons_and_ranges() {
    let e = |v| json!({ "status": v });
    assert!(hit("status:>400", e(json!(404))));
    assert!(!hit("status:>400", e(json!(400))));
    assert!(hit("status:>=400", e(json!(400))));
    assert!(hit("status:<400", e(json!(399.5))));
    assert!(hit("status:<=400", e(json!("400"))));
    assert!(
        hit("status:>400", e(json!("404"))),
        "numeric strings compare as numbers"
    );
    assert!(!hit("status:>400", e(json!("abc"))));
    assert!(
        !hit("status:>400", e(json!(" 404"))),
        "only the number syntax is numeric"
    );
    assert!(!hit("status:>0", e(json!(true))));
    assert!(hit("status:>-1.5", e(json!(-1))));
    assert!(hit("status:[400 TO 499]", e(json!(400))));
    assert!(hit("status:[400 TO 499]", e(json!(499))));
    assert!(!hit("status:[400 TO 499]", e(json!(500))));
    assert!(!hit("status:{400 TO 499}", e(json!(400))));
    assert!(!hit("status:{400 TO 499}", e(json!(499))));
    assert!(hit("status:{400 TO 499}", e(json!(450))));
    assert!(hit("status:[400 TO 500}", e(json!(400))));
    assert!(!hit("status:[400 TO 500}", e(json!(500))));
    assert!(hit("status:[400 TO *]", e(json!(1e9))));
    assert!(hit("status:{* TO 0]", e(json!(-3))));
    assert!(hit("status:[* TO *]", e(json!(1))));
    assert!(!hit("status:[* TO *]", e(json!("x"))));
    assert!(hit("status:[1e2 TO 2.5e2]", e(json!(200))));
}

#[test]
fn message_text_search() {
    assert!(hit(
        "timeout",
        json!({"message": "Connection TIMEOUT after 3s"})
    ));
    assert!(hit("time", json!({"message": "timeout"})), "substring");
    assert!(!hit("timeout", json!({"message": "time out"})));
    assert!(hit(
        "\"connection refused\"",
        json!({"message": "error: Connection Refused (111)"})
    ));
    assert!(!hit(
        "\"connection refused\"",
        json!({"message": "connection was refused"})
    ));
    assert!(hit(
        "conn*refused",
        json!({"message": "x connection was refused y"})
    ));
    assert!(hit("err?r", json!({"message": "an ERROR here"})));
    assert!(!hit("err?r", json!({"message": "an err here"})));
    assert!(hit("*", json!({"message": ""})));
    assert!(hit("\"\"", json!({"message": "x"})));
    assert!(!hit("\"\"", json!({"level": "x"})));
    assert!(hit("say \"hi\"", json!({"message": "I SAY HI"})));
}

#[test]
fn message_falls_back_to_line() {
    assert!(hit("boom", json!({"line": "BOOM"})));
    assert!(hit("boom", json!({"message": null, "line": "boom"})));
    assert!(!hit("boom", json!({"message": "quiet", "line": "boom"})));
    assert!(!hit(
        "boom",
        json!({"message": {"text": "boom"}, "line": "boom"})
    ));
    assert!(!hit("boom", json!({"msg": "boom"})));
    assert!(hit("404", json!({"message": 404})));
    assert!(hit("tru*", json!({"line": true})));
    assert!(!hit("a", json!({})));
    assert!(hit("NOT a", json!({})));
}

#[test]
fn boolean_operators() {
    let e = json!({"level": "error", "app": "web", "message": "disk full"});
    assert!(hit("level:error AND app:web", e.clone()));
    assert!(hit("level:error && app:web", e.clone()));
    assert!(hit("level:error app:web", e.clone()));
    assert!(!hit("level:error AND app:db", e.clone()));
    assert!(hit("level:warn OR app:web", e.clone()));
    assert!(hit("level:warn || app:web", e.clone()));
    assert!(!hit("level:warn OR app:db", e.clone()));
    assert!(hit("NOT level:warn", e.clone()));
    assert!(hit("!level:warn", e.clone()));
    assert!(hit("-level:warn", e.clone()));
    assert!(!hit("-level:error", e.clone()));
    assert!(hit("+level:error +disk", e.clone()));
    assert!(hit("disk -empty", e.clone()));
    assert!(!hit("disk -full", e.clone()));
    assert!(hit("NOT NOT disk", e.clone()));
    assert!(hit("level:(warn OR error)", e.clone()));
    assert!(!hit("level:(warn OR fatal)", e.clone()));
    assert!(hit("level:(-warn)", e.clone()));
    assert!(hit("app:(web AND NOT db)", e));
    assert!(
        hit("and", json!({"message": "this and that"})),
        "lower-case keywords are words"
    );
}

#[test]
fn precedence() {
    // NOT > AND > OR: `a AND b OR c` is `(a AND b) OR c`.
    let only_c = json!({"message": "c"});
    assert!(hit("a AND b OR c", only_c.clone()));
    assert!(hit("c OR a AND b", only_c.clone()));
    assert!(!hit("a AND (b OR c)", only_c.clone()));
    assert!(
        hit("a b OR c", only_c.clone()),
        "implicit AND binds tighter than OR"
    );
    // `NOT a AND b` is `(NOT a) AND b`.
    let only_b = json!({"message": "b"});
    assert!(hit("NOT a AND b", only_b.clone()));
    assert!(!hit("NOT (a OR b)", only_b.clone()));
    assert!(hit("NOT a OR x", only_b.clone()));
    assert!(!hit("-b OR x", only_b));
}

#[test]
fn escaping() {
    assert!(hit(r"path:\/api\/v1", json!({"path": "/api/v1"})));
    assert!(hit(r"path:\/api/v1", json!({"path": "/API/V1"})));
    assert!(hit(r"msg:a\:b", json!({"msg": "a:b"})));
    assert!(hit(
        r#""say \"hi\"""#,
        json!({"message": "they say \"HI\" twice"})
    ));
    assert!(hit(r"\-1", json!({"message": "code -1"})));
    assert!(hit(r"\AND", json!({"message": "AND"})));
    assert!(hit(r"a\ b", json!({"message": "xa by"})));
    assert!(hit(r"\(x\)", json!({"message": "f(x)"})));
    assert!(hit(r"field\ name:v", json!({"field name": "v"})));
}

#[test]
fn rule_set_returns_the_first_matching_rule() {
    let rules = vec![
        ("health".to_string(), query("path:\\/health*")),
        ("debug".to_string(), query("level:debug")),
        ("noisy".to_string(), query("\"GET /\" OR level:debug")),
    ];
    let set = RuleSet::new(rules);
    assert_eq!(set.len(), 3);
    assert_eq!(set.name(1), Some("debug"));
    assert_eq!(set.name(3), None);
    assert_eq!(
        set.first_match(&event(json!({"path": "/healthz"}))),
        Some(0)
    );
    assert_eq!(set.first_match(&event(json!({"level": "DEBUG"}))), Some(1));
    assert_eq!(
        set.first_match(&event(json!({"message": "get /x"}))),
        Some(2)
    );
    assert_eq!(set.first_match(&event(json!({"message": "post /x"}))), None);
    let empty = RuleSet::new(Vec::new());
    assert!(empty.is_empty());
    assert_eq!(empty.first_match(&event(json!({"a": 1}))), None);
}

#[test]
fn rule_set_shares_literals_between_rules() {
    let set = RuleSet::new(vec![
        ("a".to_string(), query("error AND app:x")),
        ("b".to_string(), query("err")),
        ("c".to_string(), query("ERROR")),
        ("d".to_string(), query("rror*disk")),
    ]);
    assert_eq!(
        set.first_match(&event(json!({"message": "an Error"}))),
        Some(1)
    );
    assert_eq!(
        set.first_match(&event(json!({"message": "ERROR", "app": "X"}))),
        Some(0)
    );
    assert_eq!(
        set.first_match(&event(json!({"message": "rror disk"}))),
        Some(3)
    );
    assert_eq!(
        set.first_match(&event(json!({"message": "ÉRROR DISK"}))),
        Some(3)
    );
}

#[test]
fn many_keys_and_literals() {
    // More top-level keys than the per-event cache holds, more literals
    // than one bit-set word, and a big object that is looked up by hash.
    let mut text = Vec::new();
    let mut big = serde_json::Map::new();
    for i in 0..100 {
        text.push(format!("k{i}:v{i} OR word{i}"));
        big.insert(format!("k{i}"), json!(format!("v{i}")));
    }
    let q = query(&text.join(" OR "));
    let rule = |i: usize| (format!("r{i}"), query(&format!("k{i}:v{i} OR word{i}x")));
    let set = RuleSet::new((0..100).map(rule).collect());
    for i in [0, 31, 32, 63, 64, 99] {
        let only = event(json!({ format!("k{i}"): format!("V{i}") }));
        assert!(q.matches(&only));
        assert_eq!(set.first_match(&only), Some(i));
        let word = event(json!({ "message": format!("... WORD{i}X ...") }));
        assert_eq!(set.first_match(&word), Some(i));
    }
    assert_eq!(set.first_match(&big), Some(0));
}

#[test]
fn queries_are_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Query>();
    assert_traits::<RuleSet>();
    let q = query("level:error");
    let e = event(json!({"level": "error"}));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (q, e) = (q.clone(), e.clone());
            std::thread::spawn(move || q.matches(&e))
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn shared_leaves_are_remembered_for_one_event_only() {
    let rule = |name: &str, text: &str| (name.to_string(), query(text));
    let set = RuleSet::new(vec![
        rule("a", "level:x AND alpha"),
        rule("b", "level:x AND beta"),
        rule("c", "NOT level:x AND (gamma OR level:x)"),
    ]);
    let first = |value| set.first_match(&event(value));
    assert_eq!(first(json!({"level": "x", "message": "beta"})), Some(1));
    assert_eq!(first(json!({"level": "y", "message": "beta"})), None);
    assert_eq!(first(json!({"level": "y", "message": "gamma"})), Some(2));
    assert_eq!(first(json!({"level": "X", "message": "alpha"})), Some(0));
    assert_eq!(first(json!({"message": "gamma"})), Some(2));
}
