//! A slow matcher that follows the documented semantics as literally as
//! possible: it walks the syntax tree, allocates freely and builds regexes
//! on the spot. The compiled plan must always agree with it.

use regex::Regex;
use serde_json::{Map, Value};

use crate::ast::{CmpOp, Expr, Text, Value as V, Wild};

/// Whether `expr` matches `event`.
pub(super) fn eval(expr: &Expr, event: &Map<String, Value>) -> bool {
    match expr {
        Expr::And(children) => children.iter().all(|c| eval(c, event)),
        Expr::Or(children) => children.iter().any(|c| eval(c, event)),
        Expr::Not(child) => !eval(child, event),
        Expr::Exists(path) => !values(event, &path.0).is_empty(),
        Expr::Field(path, value) => values(event, &path.0)
            .iter()
            .any(|v| value_matches(value, v)),
        Expr::Text(text) => message(event).is_some_and(|m| text_matches(text, &m)),
    }
}

/// The first rule matching, by evaluating each in turn.
pub(super) fn first_match(rules: &[Expr], event: &Map<String, Value>) -> Option<usize> {
    rules.iter().position(|r| eval(r, event))
}

fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// The query language's numbers, written as a regex.
fn number(s: &str) -> Option<f64> {
    let syntax = Regex::new(r"\A-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\z").unwrap();
    if !syntax.is_match(s) {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => number(s),
        _ => None,
    }
}

/// Every non-null value at `path`, arrays flattened at every level.
fn values<'a>(event: &'a Map<String, Value>, path: &[String]) -> Vec<&'a Value> {
    fn walk<'a>(v: &'a Value, rest: &[String], out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| walk(x, rest, out)),
            Value::Null => {}
            _ if rest.is_empty() => out.push(v),
            Value::Object(map) => {
                if let Some(x) = map.get(&rest[0]) {
                    walk(x, &rest[1..], out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(v) = event.get(&path[0]) {
        walk(v, &path[1..], &mut out);
    }
    out
}

fn message(event: &Map<String, Value>) -> Option<String> {
    match event.get("message") {
        None | Some(Value::Null) => event.get("line").and_then(scalar_text),
        Some(v) => scalar_text(v),
    }
}

/// A wildcard as a regex over lower-cased text.
fn wildcard_regex(parts: &[Wild], anchored: bool) -> Regex {
    let mut re = String::from("(?s)");
    if anchored {
        re.push_str(r"\A");
    }
    for part in parts {
        match part {
            Wild::Lit(s) => re.push_str(&regex::escape(&lower(s))),
            Wild::Star => re.push_str(".*"),
            Wild::One => re.push('.'),
        }
    }
    if anchored {
        re.push_str(r"\z");
    }
    Regex::new(&re).unwrap()
}

fn anchored(source: &str) -> Regex {
    Regex::new(&format!(r"\A(?:{source})\z")).unwrap()
}

fn value_matches(value: &V, v: &Value) -> bool {
    let text = scalar_text(v);
    let in_range = |lo: Option<(f64, bool)>, hi: Option<(f64, bool)>| {
        numeric(v).is_some_and(|n| {
            lo.is_none_or(|(b, inc)| n > b || (inc && n == b))
                && hi.is_none_or(|(b, inc)| n < b || (inc && n == b))
        })
    };
    match value {
        V::Term(t) => {
            let numeric_equal =
                matches!(v, Value::Number(n) if number(t).is_some() && n.as_f64() == number(t));
            numeric_equal || text.is_some_and(|s| lower(&s) == lower(t))
        }
        V::Phrase(t) => text.is_some_and(|s| lower(&s) == lower(t)),
        V::Wildcard(parts) => {
            text.is_some_and(|s| wildcard_regex(parts, true).is_match(&lower(&s)))
        }
        V::Regex(source) => text.is_some_and(|s| anchored(source).is_match(&s)),
        V::Compare(op, n) => match op {
            CmpOp::Gt => in_range(Some((*n, false)), None),
            CmpOp::Ge => in_range(Some((*n, true)), None),
            CmpOp::Lt => in_range(None, Some((*n, false))),
            CmpOp::Le => in_range(None, Some((*n, true))),
        },
        V::Range(lo, hi) => in_range(
            lo.value.map(|b| (b, lo.inclusive)),
            hi.value.map(|b| (b, hi.inclusive)),
        ),
    }
}

fn text_matches(text: &Text, message: &str) -> bool {
    match text {
        Text::Term(t) | Text::Phrase(t) => lower(message).contains(&lower(t)),
        Text::Wildcard(parts) => wildcard_regex(parts, false).is_match(&lower(message)),
        Text::Regex(source) => anchored(source).is_match(message),
    }
}
