//! Parsing: the tree each syntax element gives, the canonical text, and the
//! errors with their columns.

use super::query;
use crate::ast::{Bound, CmpOp, Expr, Path, Text, Value, Wild};
use crate::parser::MAX_DEPTH;
use crate::{ParseError, Query};

fn ast(text: &str) -> Expr {
    query(text).ast().clone()
}

fn canonical(text: &str) -> String {
    query(text).to_string()
}

fn error(text: &str) -> String {
    match Query::parse(text) {
        Ok(q) => panic!("{text:?} should not parse, got {q}"),
        Err(e) => e.to_string(),
    }
}

fn field(path: &[&str], value: Value) -> Expr {
    Expr::Field(Path(path.iter().map(|s| s.to_string()).collect()), value)
}

fn term(s: &str) -> Expr {
    Expr::Text(Text::Term(s.to_string()))
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

#[test]
fn leaves() {
    assert_eq!(
        ast("level:error"),
        field(&["level"], Value::Term("error".into()))
    );
    assert_eq!(
        ast("a.b.c:x"),
        field(&["a", "b", "c"], Value::Term("x".into()))
    );
    assert_eq!(ast("a:\"x y\""), field(&["a"], Value::Phrase("x y".into())));
    assert_eq!(ast("a:/x.*/"), field(&["a"], Value::Regex("x.*".into())));
    assert_eq!(ast("a:>=4"), field(&["a"], Value::Compare(CmpOp::Ge, 4.0)));
    assert_eq!(
        ast("a:<-4.5"),
        field(&["a"], Value::Compare(CmpOp::Lt, -4.5))
    );
    let bound = |value, inclusive| Bound { value, inclusive };
    assert_eq!(
        ast("a:{1 TO *]"),
        field(
            &["a"],
            Value::Range(bound(Some(1.0), false), bound(None, true))
        )
    );
    assert_eq!(
        ast("a:[ 1   TO 2 ]"),
        field(
            &["a"],
            Value::Range(bound(Some(1.0), true), bound(Some(2.0), true))
        )
    );
    assert_eq!(
        ast("a:w?b*"),
        field(
            &["a"],
            Value::Wildcard(vec![
                Wild::Lit("w".into()),
                Wild::One,
                Wild::Lit("b".into()),
                Wild::Star
            ])
        )
    );
    assert_eq!(
        ast("_exists_:a.b"),
        Expr::Exists(Path(vec!["a".into(), "b".into()]))
    );
    assert_eq!(ast("word"), term("word"));
    assert_eq!(
        ast("\"two words\""),
        Expr::Text(Text::Phrase("two words".into()))
    );
    assert_eq!(ast("/re/"), Expr::Text(Text::Regex("re".into())));
    assert_eq!(
        ast("*x"),
        Expr::Text(Text::Wildcard(vec![Wild::Star, Wild::Lit("x".into())]))
    );
}

#[test]
fn operators_build_the_expected_tree() {
    let (a, b, c) = (term("a"), term("b"), term("c"));
    let and = |v: Vec<Expr>| Expr::And(v);
    let or = |v: Vec<Expr>| Expr::Or(v);
    assert_eq!(ast("a b c"), and(vec![a.clone(), b.clone(), c.clone()]));
    assert_eq!(
        ast("a AND b && c"),
        and(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        ast("a OR b || c"),
        or(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        ast("a b OR c"),
        or(vec![and(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        ast("a OR b c"),
        or(vec![a.clone(), and(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        ast("a (b OR c)"),
        and(vec![a.clone(), or(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        ast("(a b) c"),
        and(vec![and(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(ast("NOT a b"), and(vec![not(a.clone()), b.clone()]));
    assert_eq!(
        ast("-a !b +c"),
        and(vec![not(a.clone()), not(b.clone()), c.clone()])
    );
    assert_eq!(ast("NOT(a)"), not(a.clone()));
    assert_eq!(ast("! a"), not(a.clone()));
    assert_eq!(ast("--a"), not(not(a.clone())));
    assert_eq!(ast("((a))"), a.clone());
    assert_eq!(ast("a AND NOT b"), and(vec![a.clone(), not(b.clone())]));
    assert_eq!(
        ast("f:(x OR y z)"),
        or(vec![
            field(&["f"], Value::Term("x".into())),
            and(vec![
                field(&["f"], Value::Term("y".into())),
                field(&["f"], Value::Term("z".into()))
            ]),
        ])
    );
    assert_eq!(ast("ANDROID"), term("ANDROID"));
    assert_eq!(ast("AND:x"), field(&["AND"], Value::Term("x".into())));
    assert_eq!(ast("a&&b"), term("a&&b"));
}

#[test]
fn escapes_make_characters_literal() {
    assert_eq!(
        ast(r"path:\/api\/v1"),
        field(&["path"], Value::Term("/api/v1".into()))
    );
    assert_eq!(ast(r"msg:a\:b"), field(&["msg"], Value::Term("a:b".into())));
    assert_eq!(
        ast(r#""say \"hi\"""#),
        Expr::Text(Text::Phrase("say \"hi\"".into()))
    );
    assert_eq!(ast(r#""a\\b""#), Expr::Text(Text::Phrase("a\\b".into())));
    assert_eq!(
        ast(r"a:/x\/y\d/"),
        field(&["a"], Value::Regex(r"x/y\d".into()))
    );
    assert_eq!(ast(r"\*"), term("*"));
    assert_eq!(ast(r"\NOT"), term("NOT"));
    assert_eq!(
        ast(r"\_exists_:x"),
        field(&["_exists_"], Value::Term("x".into()))
    );
    assert_eq!(ast(r"a\.b:x"), field(&["a.b"], Value::Term("x".into())));
}

#[test]
fn canonical_text() {
    assert_eq!(canonical("level:error"), "level:error");
    assert_eq!(canonical("a b"), "a AND b");
    assert_eq!(canonical("a && b || c"), "a AND b OR c");
    assert_eq!(canonical("-a !b +c"), "NOT a AND NOT b AND c");
    assert_eq!(canonical("(a OR b) c"), "(a OR b) AND c");
    assert_eq!(canonical("(a b) c"), "(a AND b) AND c");
    assert_eq!(canonical("NOT (a OR b)"), "NOT (a OR b)");
    assert_eq!(canonical("level:(a OR b)"), "level:a OR level:b");
    assert_eq!(canonical(r"path:\/api\/v1"), r"path:\/api/v1");
    assert_eq!(canonical(r"a:/x\/y/"), r"a:/x\/y/");
    assert_eq!(canonical("s:[400   TO 499}"), "s:[400 TO 499}");
    assert_eq!(canonical("s:>=1e3"), "s:>=1000");
    assert_eq!(canonical("temp:-5"), "temp:-5");
    assert_eq!(canonical(r"\-5"), r"\-5");
    assert_eq!(canonical(r#""a \"b\"""#), r#""a \"b\"""#);
    assert_eq!(canonical(r"a\ b\:c"), r"a\ b\:c");
    assert_eq!(canonical(r"\OR"), r"\OR");
    assert_eq!(canonical("_exists_:a.b"), "_exists_:a.b");
    assert_eq!(format!("{:?}", query("a b")), "Query(\"a AND b\")");
}

#[test]
fn canonical_text_parses_back_to_the_same_query() {
    for text in [
        r#"level:error AND (app:web OR -app:db) NOT "health check" status:[400 TO 499}"#,
        r"path:\/api\/* OR k8s\.io:x OR _exists_:_meta.source OR a:/\/x\// OR e?r*",
        "a OR (b OR c) OR (d AND e) AND NOT (f g)",
    ] {
        let q = query(text);
        assert_eq!(query(&q.to_string()), q, "{text} -> {q}");
    }
}

#[test]
fn error_messages_point_at_the_column() {
    let cases = [
        ("", "column 1: empty query"),
        ("   ", "column 1: empty query"),
        ("level:", "column 7: expected a value after \"level:\""),
        ("a AND level: x", "column 13: expected a value after \"level:\""),
        ("level::x", "column 7: expected a value after \"level:\""),
        ("a )", "column 3: unbalanced \")\""),
        ("a) b", "column 2: unbalanced \")\""),
        ("(a OR b", "column 1: unbalanced \"(\""),
        ("x (a (b)", "column 3: unbalanced \"(\""),
        ("abc \"def", "column 5: unterminated quoted phrase"),
        ("a:\"x\\\"", "column 3: unterminated quoted phrase"),
        ("status:/[/", "column 8: invalid regex: unclosed character class"),
        ("status:/a)(b/", "column 8: invalid regex: unopened group"),
        ("/abc", "column 1: unterminated regex"),
        ("/abc/def", "column 6: expected a space or \")\" after the regex (escape \"/\" as \"\\/\" to match it)"),
        ("a AND", "column 6: expected a term after \"AND\""),
        ("a OR OR b", "column 6: expected a term after \"OR\""),
        ("OR a", "column 1: expected a term before \"OR\""),
        ("&& a", "column 1: expected a term before \"&&\""),
        ("NOT", "column 4: expected a term after \"NOT\""),
        ("()", "column 2: expected a term after \"(\""),
        ("- a", "column 2: expected a term right after \"-\""),
        ("a +", "column 4: expected a term right after \"+\""),
        ("status:>abc", "column 9: expected a number after \">\""),
        ("status:>=", "column 10: expected a number after \">=\""),
        ("status:<1e999", "column 9: expected a number after \"<\""),
        ("s:[1 TO", "column 8: expected a number or \"*\" in the range"),
        ("s:[a TO 2]", "column 4: expected a number or \"*\" in the range"),
        ("s:[1 2]", "column 6: expected \"TO\" in the range"),
        ("s:[1 TO 2", "column 10: expected \"]\" or \"}\" to close the range"),
        ("abc\\", "column 4: nothing to escape after \"\\\" at the end"),
        (":x", "column 1: expected a field name before \":\""),
        ("a:b:c", "column 4: unexpected \":\" (escape it as \"\\:\" to match it)"),
        ("a.*:x", "column 3: wildcards are not allowed in field names"),
        ("a..b:x", "column 1: empty segment in the field name \"a..b\""),
        ("_exists_:", "column 10: expected a field name after \"_exists_:\""),
        ("_exists_:\"a\"", "column 10: expected a field name after \"_exists_:\""),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "for {text:?}");
    }
    let e = Query::parse("level:").unwrap_err();
    assert_eq!(
        e,
        ParseError {
            column: 7,
            message: "expected a value after \"level:\"".into()
        }
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(error("été AND"), "column 8: expected a term after \"AND\"");
}

#[test]
fn nesting_is_limited() {
    let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Query::parse(&ok).is_ok());
    let deep = format!(
        "{}a{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        error(&deep),
        format!(
            "column {}: the query is nested too deeply (more than {MAX_DEPTH} levels)",
            MAX_DEPTH + 1
        )
    );
    assert!(Query::parse(&"NOT ".repeat(10_000)).is_err());
    assert!(Query::parse(&"-".repeat(10_000)).is_err());
}

#[test]
fn documented_error_examples() {
    // The table in docs/queries.md.
    for (text, expected) in [
        ("s:[1 2]", "column 6: expected \"TO\" in the range"),
        (
            "status:/[/",
            "column 8: invalid regex: unclosed character class",
        ),
    ] {
        assert_eq!(error(text), expected);
    }
    assert_eq!(
        query(r"k8s\.io/name:web").ast().clone(),
        field(&["k8s.io/name"], Value::Term("web".into()))
    );
}
