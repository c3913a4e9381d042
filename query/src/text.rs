//! Text primitives of the matcher: case folding, number syntax, wildcard
//! patterns and the text form of JSON scalars — all without allocating on
//! the per-event path.
//!
//! "Case-insensitive" means: both sides lower-cased character by character
//! with [`char::to_lowercase`], then compared. Patterns are lower-cased once
//! when the query is compiled. ASCII values are compared byte by byte with
//! ASCII lower-casing, which gives the same answer; only non-ASCII values go
//! through the Unicode mapping.

use std::fmt::{self, Write};

use regex::Regex;
use serde_json::{Number, Value};

/// `text` lower-cased character by character.
pub(crate) fn lower(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// Whether `value`, lower-cased, equals `pattern` (already lower-cased).
pub(crate) fn eq_lower(value: &str, pattern: &str) -> bool {
    if value.is_ascii() {
        value.len() == pattern.len()
            && value
                .bytes()
                .zip(pattern.bytes())
                .all(|(v, p)| v.to_ascii_lowercase() == p)
    } else {
        value
            .chars()
            .flat_map(char::to_lowercase)
            .eq(pattern.chars())
    }
}

/// Parses the query language's number syntax, which is also what makes a
/// string value "numeric": `-?digits(.digits)?([eE][+-]?digits)?`, finite.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The numeric reading of a JSON value: numbers, and strings in the number
/// syntax. Everything else has none.
pub(crate) fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// Compiles a user regex anchored to the whole value (Lucene's rule), and
/// returns the regex crate's error reduced to one line.
pub(crate) fn compile_regex(source: &str) -> Result<Regex, String> {
    // Checked alone first, so that `a)(b` is refused rather than being
    // balanced by the anchoring group.
    Regex::new(source)
        .and_then(|_| Regex::new(&format!(r"\A(?:{source})\z")))
        .map_err(|e| {
            let text = e.to_string();
            match text.lines().find_map(|l| l.strip_prefix("error: ")) {
                Some(reason) => reason.to_string(),
                None => text.lines().last().unwrap_or_default().trim().to_string(),
            }
        })
}

/// The longest literal text that every match of the regex `source` contains
/// (case-sensitive), if there is one of at least `min_len` bytes. A value
/// without it cannot match, which a substring search finds out much faster
/// than the regex engine can.
pub(crate) fn regex_required_literal(source: &str, min_len: usize) -> Option<String> {
    use regex_syntax::hir::{Hir, HirKind};
    fn required(hir: &Hir) -> Option<Vec<u8>> {
        match hir.kind() {
            HirKind::Literal(literal) => Some(literal.0.to_vec()),
            HirKind::Capture(capture) => required(&capture.sub),
            HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
            HirKind::Concat(items) => items.iter().filter_map(required).max_by_key(Vec::len),
            // Alternations, classes (including case-insensitive letters),
            // optional parts and assertions promise nothing.
            _ => None,
        }
    }
    let hir = regex_syntax::Parser::new().parse(source).ok()?;
    required(&hir)
        .filter(|literal| literal.len() >= min_len)
        .and_then(|literal| String::from_utf8(literal).ok())
}

/// A JSON number written into a stack buffer, so that wildcards and regexes
/// can look at `404` as the text "404" without a heap allocation.
pub(crate) struct NumText {
    buf: [u8; 40],
    len: usize,
}

impl NumText {
    /// `None` when the text does not fit (only possible with serde_json's
    /// `arbitrary_precision`).
    pub(crate) fn new(n: &Number) -> Option<NumText> {
        let mut out = NumText {
            buf: [0; 40],
            len: 0,
        };
        write!(out, "{n}").ok()?;
        Some(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this cannot fail.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for NumText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Calls `f` with the text of a scalar (strings as they are, numbers as
/// JSON writes them, `true`/`false`); objects, arrays and null have none.
pub(crate) fn with_scalar_text<R>(value: &Value, f: impl FnOnce(&str) -> R) -> Option<R> {
    match value {
        Value::String(s) => Some(f(s)),
        Value::Bool(b) => Some(f(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(match NumText::new(n) {
            Some(text) => f(text.as_str()),
            None => f(&n.to_string()),
        }),
        _ => None,
    }
}

/// One step of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    /// This (lower-case) character.
    Char(char),
    /// Any one character.
    One,
    /// Any run of characters.
    Star,
}

/// A compiled, lower-cased `*`/`?` pattern matched against a whole value.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Box<[Tok]>,
}

impl Glob {
    /// `parts` is the pattern; `substring` wraps it in `*…*` (searches).
    pub(crate) fn new(parts: &[crate::ast::Wild], substring: bool) -> Glob {
        use crate::ast::Wild;
        let mut toks = Vec::new();
        let star = |toks: &mut Vec<Tok>| {
            if toks.last() != Some(&Tok::Star) {
                toks.push(Tok::Star);
            }
        };
        if substring {
            star(&mut toks);
        }
        for part in parts {
            match part {
                Wild::Lit(text) => {
                    toks.extend(text.chars().flat_map(char::to_lowercase).map(Tok::Char))
                }
                Wild::Star => star(&mut toks),
                Wild::One => toks.push(Tok::One),
            }
        }
        if substring {
            star(&mut toks);
        }
        Glob {
            toks: toks.into_boxed_slice(),
        }
    }

    /// The longest run of literal characters, which any match contains.
    pub(crate) fn longest_literal(&self) -> String {
        let mut best = String::new();
        for run in self.toks.split(|t| !matches!(t, Tok::Char(_))) {
            if run.len() > best.chars().count() {
                best = run
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Char(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
            }
        }
        best
    }

    /// Matches a value; `scratch` holds the lower-cased characters of a
    /// non-ASCII value (reused, so it stops allocating once warm).
    pub(crate) fn matches(&self, value: &str, scratch: &mut Vec<char>) -> bool {
        if value.is_ascii() {
            run(&self.toks, value.as_bytes(), |c, b| {
                b.to_ascii_lowercase() as char == c
            })
        } else {
            scratch.clear();
            scratch.extend(value.chars().flat_map(char::to_lowercase));
            self.matches_lowered(scratch)
        }
    }

    /// Matches text that is already lower-cased into characters.
    pub(crate) fn matches_lowered(&self, chars: &[char]) -> bool {
        run(&self.toks, chars, |c, x| x == c)
    }
}

/// The classic linear-space wildcard walk: on a mismatch, go back to the
/// last `*` and let it swallow one more character.
fn run<T: Copy>(toks: &[Tok], text: &[T], eq: impl Fn(char, T) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                back = Some((p, t));
                p += 1;
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Tok::Char(c)) if eq(*c, text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match back {
            Some((star, at)) => {
                back = Some((star, at + 1));
                p = star + 1;
                t = at + 1;
            }
            None => return false,
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

/// `bytes.make_ascii_lowercase()`, written without a branch so that it
/// compiles to vector instructions (the standard one runs byte by byte).
pub(crate) fn ascii_lowercase(bytes: &mut [u8]) {
    for b in bytes {
        *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
    }
}
