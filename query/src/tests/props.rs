//! Property tests: the parser never panics, printing round-trips, and the
//! compiled plan agrees with the reference matcher.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value as Json};

use super::reference;
use crate::ast::{Bound, CmpOp, Expr, Path, Text, Value, Wild};
use crate::{Query, RuleSet};

/// Every character the syntax gives a meaning to, plus case-folding traps.
const WIDE: &[char] = &[
    'a', 'b', 'A', 'é', 'É', 'k', '\u{212A}', 'ß', 'ς', 'Σ', 'İ', '0', '1', '5', ' ', '\t', '.',
    '-', '+', '!', ':', '*', '?', '\\', '/', '"', '(', ')', '[', ']', '{', '}', '&', '|', '>', '<',
    '=', '_', '\n',
];
/// A small alphabet, so that random queries and events often meet.
const NARROW: &[char] = &['a', 'b', 'A', 'é', 'É', '\u{212A}', 'k', 'ß', 'İ', '1', ' '];
const KEYS: &[&str] = &["a", "b", "n", "message", "line", "_meta", "x.y"];
const NUMBERS: &[f64] = &[-1.5, -1.0, 0.0, 1.0, 2.0, 12.0, 200.0, 1e3, 0.5];
const NUMERIC_TEXT: &[&str] = &[
    "200", "1.5", "-1", "0", "2e2", "true", "false", "12", "200.0",
];
const REGEXES: &[&str] = &[
    "a.*", ".*b.*", "[ab]+", "(?i)A.*", r"\d+", "a|b", "x/y", "", ".", "é.*", r"1\.5",
];
/// Values shared by random queries and random events, so that they meet.
const POOL: &[&str] = &[
    "a", "aB", "É", "é", "\u{212A}", "k", "İ", "i\u{307}", "1.5", "200", "true", "",
];
const OPERATOR_WORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "TO",
    "_exists_:",
    "&&",
    "||",
    "a:",
    "[1 TO 2]",
    "\"",
    "/",
];

/// A value from the pool, or a random word.
fn pooled(
    alphabet: &'static [char],
    len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = String> {
    prop_oneof![4 => select(POOL).prop_map(String::from), 1 => word(alphabet, len)]
}

fn word(
    alphabet: &'static [char],
    len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = String> {
    vec(select(alphabet), len).prop_map(|chars| chars.into_iter().collect())
}

fn number(wide: bool) -> BoxedStrategy<f64> {
    if wide {
        prop_oneof![
            select(NUMBERS),
            any::<f64>().prop_filter("finite", |n| n.is_finite())
        ]
        .boxed()
    } else {
        select(NUMBERS).boxed()
    }
}

/// Wildcard pieces as the parser makes them: adjacent literals merged, and
/// at least one `*` or `?`.
fn wildcard(alphabet: &'static [char]) -> impl Strategy<Value = Vec<Wild>> {
    let piece = prop_oneof![
        word(alphabet, 1..=2).prop_map(Wild::Lit),
        Just(Wild::Star),
        Just(Wild::One)
    ];
    vec(piece, 1..=4).prop_filter_map("needs a wildcard", |pieces| {
        let mut out: Vec<Wild> = Vec::new();
        for piece in pieces {
            match (out.last_mut(), piece) {
                (Some(Wild::Lit(prev)), Wild::Lit(next)) => prev.push_str(&next),
                (_, piece) => out.push(piece),
            }
        }
        out.iter()
            .any(|p| !matches!(p, Wild::Lit(_)))
            .then_some(out)
    })
}

fn path(alphabet: &'static [char]) -> impl Strategy<Value = Path> {
    let segment = prop_oneof![
        4 => select(&["a", "b"][..]).prop_map(String::from),
        3 => select(KEYS).prop_map(String::from),
        1 => word(alphabet, 1..=2),
    ];
    prop_oneof![3 => vec(segment.clone(), 1..=1), 1 => vec(segment, 2..=2)].prop_map(Path)
}

fn leaf(alphabet: &'static [char], wide: bool) -> BoxedStrategy<Expr> {
    let term = prop_oneof![
        pooled(alphabet, 1..=2),
        select(NUMERIC_TEXT).prop_map(String::from)
    ]
    .prop_filter("terms are not empty", |t| !t.is_empty());
    let bound = (proptest::option::of(number(wide)), any::<bool>())
        .prop_map(|(value, inclusive)| Bound { value, inclusive });
    let op = select(&[CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le][..]);
    let value = prop_oneof![
        term.clone().prop_map(Value::Term),
        pooled(alphabet, 0..=2).prop_map(Value::Phrase),
        wildcard(alphabet).prop_map(Value::Wildcard),
        select(REGEXES).prop_map(|r| Value::Regex(r.to_string())),
        (op, number(wide)).prop_map(|(op, n)| Value::Compare(op, n)),
        (bound.clone(), bound).prop_map(|(lo, hi)| Value::Range(lo, hi)),
    ];
    let text = prop_oneof![
        term.prop_map(Text::Term),
        pooled(alphabet, 0..=3).prop_map(Text::Phrase),
        wildcard(alphabet).prop_map(Text::Wildcard),
        select(REGEXES).prop_map(|r| Text::Regex(r.to_string())),
    ];
    prop_oneof![
        (path(alphabet), value).prop_map(|(p, v)| Expr::Field(p, v)),
        path(alphabet).prop_map(Expr::Exists),
        text.prop_map(Expr::Text),
    ]
    .boxed()
}

fn expr(alphabet: &'static [char], wide: bool) -> impl Strategy<Value = Expr> {
    leaf(alphabet, wide).prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 2..=3).prop_map(Expr::And),
            vec(inner.clone(), 2..=3).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn json() -> impl Strategy<Value = Json> {
    let scalar = prop_oneof![
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::Bool),
        1 => select(NUMBERS).prop_map(|n| serde_json::json!(n)),
        1 => select(&[200i64, 12, -1, 0, 2][..]).prop_map(|n| serde_json::json!(n)),
        5 => pooled(NARROW, 0..=2).prop_map(Json::String),
        1 => select(NUMERIC_TEXT).prop_map(|s| Json::String(s.to_string())),
    ]
    .boxed();
    let object = |values: BoxedStrategy<Json>| {
        vec((select(KEYS), values), 0..3)
            .prop_map(|kv| Json::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    };
    let nested = |values: BoxedStrategy<Json>| {
        prop_oneof![
            4 => values.clone(),
            1 => vec(values.clone(), 0..3).prop_map(Json::Array),
            1 => object(values),
        ]
        .boxed()
    };
    nested(nested(scalar))
}

fn event() -> impl Strategy<Value = Map<String, Json>> {
    let message = proptest::option::of(
        vec(pooled(NARROW, 0..=3), 0..4).prop_map(|w| Json::String(w.join(" "))),
    );
    let fields = vec((select(KEYS), json()), 0..5);
    let shape = (json(), json(), fields, message, any::<bool>());
    shape.prop_map(|(a, b, fields, message, wide)| {
        let mut map: Map<String, Json> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        map.insert("a".to_string(), a);
        map.insert("b".to_string(), b);
        if let Some(m) = message {
            map.insert("message".to_string(), m);
        }
        if wide {
            // Past the size up to which keys are found by a linear pass.
            for i in 0..16 {
                map.insert(format!("filler{i}"), Json::from(i));
            }
        }
        map
    })
}

fn query_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(WIDE).prop_map(String::from),
        select(OPERATOR_WORDS).prop_map(String::from),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// 512 cases, unless `PROPTEST_CASES` asks for another number.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = Query::parse(&text);
    }

    /// Query-shaped noise: when it parses, it also prints and re-parses to
    /// the same tree, and can be matched.
    #[test]
    fn parsed_noise_round_trips(text in query_like(), event in event()) {
        if let Ok(q) = Query::parse(&text) {
            let printed = q.to_string();
            let again = Query::parse(&printed);
            prop_assert_eq!(again.as_ref(), Ok(&q), "{:?} printed as {:?}", text, printed);
            prop_assert_eq!(q.matches(&event), reference::eval(q.ast(), &event));
        }
    }

    #[test]
    fn display_round_trips(ast in expr(WIDE, true)) {
        let q = Query::from_ast(ast);
        let printed = q.to_string();
        match Query::parse(&printed) {
            Ok(again) => prop_assert_eq!(again.ast(), q.ast(), "printed as {:?}", printed),
            Err(e) => prop_assert!(false, "{:?} does not parse: {}", printed, e),
        }
    }

    #[test]
    fn matching_agrees_with_the_reference(
        asts in vec(expr(NARROW, false), 1..5),
        events in vec(event(), 1..8),
    ) {
        let queries: Vec<Query> = asts.iter().cloned().map(Query::from_ast).collect();
        let rules = RuleSet::new(queries.iter().enumerate().map(|(i, q)| (i.to_string(), q.clone())).collect());
        for event in &events {
            for q in &queries {
                prop_assert_eq!(q.matches(event), reference::eval(q.ast(), event), "{} on {:?}", q, event);
            }
            prop_assert_eq!(rules.first_match(event), reference::first_match(&asts, event), "on {:?}", event);
        }
    }
}
