//! The matcher's building blocks, tested directly.

use serde_json::json;

use crate::ast::Wild;
use crate::text::{
    compile_regex, eq_lower, lower, parse_number, regex_required_literal, with_scalar_text, Glob,
};

#[test]
fn number_syntax() {
    for (text, value) in [
        ("0", 0.0),
        ("-12", -12.0),
        ("1.5", 1.5),
        ("2e2", 200.0),
        ("1E-2", 0.01),
    ] {
        assert_eq!(parse_number(text), Some(value), "{text}");
    }
    for text in [
        "", "-", "+1", ".5", "5.", "1e", "1e+", "0x10", " 1", "1 ", "inf", "NaN", "1e999",
    ] {
        assert_eq!(parse_number(text), None, "{text:?}");
    }
}

#[test]
fn case_insensitive_equality() {
    assert!(eq_lower("ERROR", "error"));
    assert!(!eq_lower("ERRORS", "error"));
    assert!(!eq_lower("error", "errorx"));
    assert!(eq_lower("ÉCOLE", "école"));
    assert!(
        eq_lower("\u{212A}", "k"),
        "Kelvin sign, 3 bytes, equals 1-byte k"
    );
    assert!(eq_lower("İ", "i\u{307}"), "2 bytes lower-case to 3");
    assert!(!eq_lower("k", "\u{212A}"), "patterns are lower-cased first");
    assert_eq!(lower("ΣΑΣ"), "σασ", "char by char: no final sigma");
}

fn glob(parts: &[Wild], substring: bool) -> Glob {
    Glob::new(parts, substring)
}

#[test]
fn wildcard_matching() {
    let lit = |s: &str| Wild::Lit(s.to_string());
    let mut scratch = Vec::new();
    let g = glob(&[lit("a"), Wild::Star, lit("b"), Wild::One], false);
    assert!(g.matches("AxxBc", &mut scratch));
    assert!(g.matches("ab!", &mut scratch));
    assert!(!g.matches("ab", &mut scratch));
    assert!(!g.matches("xab!", &mut scratch));
    assert!(g.matches("aÉbé", &mut scratch));
    let any = glob(&[Wild::One], false);
    assert!(
        any.matches("é", &mut scratch),
        "? is one character, not one byte"
    );
    assert!(!any.matches("", &mut scratch));
    let search = glob(&[lit("time"), Wild::Star, lit("out")], true);
    assert!(search.matches("a TIME-OUT b", &mut scratch));
    assert!(!search.matches("out of time", &mut scratch));
    assert_eq!(search.longest_literal(), "time");
    // Backtracking past several stars.
    let g = glob(
        &[Wild::Star, lit("ab"), Wild::Star, lit("ab"), Wild::Star],
        false,
    );
    assert!(g.matches("aaabaaabaa", &mut scratch));
    assert!(!g.matches("aaabaaa", &mut scratch));
}

#[test]
fn scalar_text() {
    let text = |v| with_scalar_text(&v, str::to_string);
    assert_eq!(text(json!("s")), Some("s".to_string()));
    assert_eq!(text(json!(404)), Some("404".to_string()));
    assert_eq!(text(json!(-1.5)), Some("-1.5".to_string()));
    assert_eq!(text(json!(u64::MAX)), Some(u64::MAX.to_string()));
    assert_eq!(text(json!(1e300)), Some("1e+300".to_string()));
    assert_eq!(text(json!(true)), Some("true".to_string()));
    assert_eq!(text(json!(null)), None);
    assert_eq!(text(json!([1])), None);
    assert_eq!(text(json!({})), None);
}

#[test]
fn regexes_are_anchored() {
    let re = compile_regex("a|b").unwrap();
    assert!(re.is_match("a") && re.is_match("b") && !re.is_match("ab"));
    assert_eq!(compile_regex("(").unwrap_err(), "unclosed group");
    assert_eq!(compile_regex("a)(b").unwrap_err(), "unopened group");
}

#[test]
fn literals_every_regex_match_contains() {
    let required = |source| regex_required_literal(source, 3);
    assert_eq!(
        required(".*blk_-?[0-9]+ corrupt.*").as_deref(),
        Some(" corrupt")
    );
    assert_eq!(required("(timeout)+ x").as_deref(), Some("timeout"));
    assert_eq!(required("abc|abd"), None, "alternatives promise nothing");
    assert_eq!(
        required("(?i)timeout"),
        None,
        "case-insensitive letters are classes"
    );
    assert_eq!(required("(abc)?"), None, "optional");
    assert_eq!(required("(abc)*"), None);
    assert_eq!(required("ab"), None, "too short");
    assert_eq!(required("x{2}abc").as_deref(), Some("abc"));
}
