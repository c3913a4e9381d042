//! The lexemes of the query language: words with escapes, quoted phrases,
//! regexes, ranges, comparisons, and what a word turns into.

use super::{ends_word, error_at, Parser, WordChar};
use crate::ast::{Bound, CmpOp, Path, Value, Wild};
use crate::error::ParseError;
use crate::text::parse_number;

impl Parser {
    /// A run of word characters with `\` escapes, stopping at whitespace,
    /// parentheses, quotes and colons.
    pub(super) fn read_word(&mut self) -> Result<Vec<WordChar>, ParseError> {
        let mut word = Vec::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                let Some(next) = self.peek_at(1) else {
                    return Err(self.error_here("nothing to escape after \"\\\" at the end"));
                };
                word.push(WordChar {
                    c: next,
                    escaped: true,
                    pos: self.pos,
                });
                self.pos += 2;
            } else if ends_word(c) {
                break;
            } else {
                word.push(WordChar {
                    c,
                    escaped: false,
                    pos: self.pos,
                });
                self.pos += 1;
            }
        }
        if word.is_empty() {
            return Err(self.error_here(format!("unexpected \"{}\"", self.peek().unwrap_or(' '))));
        }
        Ok(word)
    }

    /// `"..."` with `\` escapes; the cursor is on the opening quote.
    pub(super) fn parse_phrase(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(error_at(open, "unterminated quoted phrase")),
                Some('"') => break,
                Some('\\') => match self.peek_at(1) {
                    Some(c) => {
                        text.push(c);
                        self.pos += 2;
                    }
                    None => return Err(error_at(open, "unterminated quoted phrase")),
                },
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Ok(text)
    }

    /// `/.../`; only `\/` is an escape here, other backslashes belong to the
    /// regex. The regex is checked now so that errors point at it.
    pub(super) fn parse_regex(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut source = String::new();
        loop {
            match self.peek() {
                None => return Err(error_at(open, "unterminated regex")),
                Some('/') => break,
                Some('\\') => match self.peek_at(1) {
                    Some('/') => {
                        source.push('/');
                        self.pos += 2;
                    }
                    Some(c) => {
                        source.push('\\');
                        source.push(c);
                        self.pos += 2;
                    }
                    None => return Err(error_at(open, "unterminated regex")),
                },
                Some(c) => {
                    source.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        if self.peek().is_some_and(|c| !c.is_whitespace() && c != ')') {
            return Err(self.error_here(
                "expected a space or \")\" after the regex (escape \"/\" as \"\\/\" to match it)",
            ));
        }
        if let Err(e) = crate::text::compile_regex(&source) {
            return Err(error_at(open, format!("invalid regex: {e}")));
        }
        Ok(source)
    }

    /// `[lo TO hi]`, `{lo TO hi}` or mixed brackets.
    pub(super) fn parse_range(&mut self) -> Result<Value, ParseError> {
        let lo_inclusive = self.peek() == Some('[');
        self.pos += 1;
        self.skip_ws();
        let lo = self.parse_bound()?;
        let before_to = self.pos;
        self.skip_ws();
        if before_to == self.pos || !self.at_keyword("TO") {
            return Err(self.error_here("expected \"TO\" in the range"));
        }
        self.pos += 2;
        self.skip_ws();
        let hi = self.parse_bound()?;
        self.skip_ws();
        let hi_inclusive = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            _ => return Err(self.error_here("expected \"]\" or \"}\" to close the range")),
        };
        self.pos += 1;
        Ok(Value::Range(
            Bound {
                value: lo,
                inclusive: lo_inclusive,
            },
            Bound {
                value: hi,
                inclusive: hi_inclusive,
            },
        ))
    }

    /// A number or `*` inside a range.
    fn parse_bound(&mut self) -> Result<Option<f64>, ParseError> {
        let start = self.pos;
        let token = self.take_while(|c| !c.is_whitespace() && !matches!(c, ']' | '}' | ')'));
        if token == "*" {
            return Ok(None);
        }
        parse_number(&token)
            .map(Some)
            .ok_or_else(|| error_at(start, "expected a number or \"*\" in the range"))
    }

    /// `>n`, `>=n`, `<n`, `<=n`.
    pub(super) fn parse_compare(&mut self) -> Result<Value, ParseError> {
        let greater = self.peek() == Some('>');
        self.pos += 1;
        let equal = self.peek() == Some('=');
        if equal {
            self.pos += 1;
        }
        let op = match (greater, equal) {
            (true, false) => CmpOp::Gt,
            (true, true) => CmpOp::Ge,
            (false, false) => CmpOp::Lt,
            (false, true) => CmpOp::Le,
        };
        let start = self.pos;
        let token = self.take_while(|c| !c.is_whitespace() && !matches!(c, '(' | ')'));
        match parse_number(&token) {
            Some(n) => Ok(Value::Compare(op, n)),
            None => {
                let op: String = self.chars[start - 1 - usize::from(equal)..start]
                    .iter()
                    .collect();
                Err(error_at(start, format!("expected a number after \"{op}\"")))
            }
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

pub(super) fn plain(word: &[WordChar]) -> String {
    word.iter().map(|w| w.c).collect()
}

/// The pieces of a word with unescaped `*` or `?`, or `None` for a plain word.
pub(super) fn wildcard(word: &[WordChar]) -> Option<Vec<Wild>> {
    let is_wild = |w: &WordChar| !w.escaped && (w.c == '*' || w.c == '?');
    if !word.iter().any(is_wild) {
        return None;
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    for w in word {
        if is_wild(w) {
            if !literal.is_empty() {
                parts.push(Wild::Lit(std::mem::take(&mut literal)));
            }
            parts.push(if w.c == '*' { Wild::Star } else { Wild::One });
        } else {
            literal.push(w.c);
        }
    }
    if !literal.is_empty() {
        parts.push(Wild::Lit(literal));
    }
    Some(parts)
}

pub(super) fn word_value(word: &[WordChar]) -> Value {
    match wildcard(word) {
        Some(parts) => Value::Wildcard(parts),
        None => Value::Term(plain(word)),
    }
}

/// Splits a field name on unescaped dots.
pub(super) fn path(word: &[WordChar], start: usize) -> Result<Path, ParseError> {
    let mut segments = vec![String::new()];
    for w in word {
        if !w.escaped && (w.c == '*' || w.c == '?') {
            return Err(error_at(w.pos, "wildcards are not allowed in field names"));
        }
        if !w.escaped && w.c == '.' {
            segments.push(String::new());
        } else if let Some(last) = segments.last_mut() {
            last.push(w.c);
        }
    }
    if segments.iter().any(String::is_empty) {
        return Err(error_at(
            start,
            format!("empty segment in the field name \"{}\"", plain(word)),
        ));
    }
    Ok(Path(segments))
}
