//! Tests of the whole crate: syntax and errors, matching semantics, and
//! property tests against a slow reference matcher that walks the syntax tree.

mod allocations;
mod fast_paths;
mod matching;
mod primitives;
mod props;
mod reference;
mod syntax;

use serde_json::{Map, Value};

use crate::{Fields, Query, RuleSet};

/// A [`Fields`] accessor that answers key by key, as one over raw JSON text
/// does: matching through it must agree with matching the map.
struct KeyByKey<'a>(&'a Map<String, Value>);

impl Fields for KeyByKey<'_> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

/// The object inside a `json!` value.
fn event(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Parses a query that is expected to be valid.
fn query(text: &str) -> Query {
    Query::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// Whether `text` matches `value`, checked three ways: the compiled query,
/// a one-rule `RuleSet`, and the reference matcher must all agree.
fn hit(text: &str, value: Value) -> bool {
    let q = query(text);
    let event = event(value);
    let fast = q.matches(&event);
    let slow = reference::eval(q.ast(), &event);
    assert_eq!(
        fast, slow,
        "{text:?} on {event:?}: plan says {fast}, reference says {slow}"
    );
    let set = RuleSet::new(vec![("rule".to_string(), q.clone())]);
    assert_eq!(
        set.first_match(&event).is_some(),
        fast,
        "{text:?}: RuleSet disagrees"
    );
    assert_eq!(
        q.matches(&KeyByKey(&event)),
        fast,
        "{text:?}: a key-by-key accessor disagrees"
    );
    fast
}
