//! The syntax tree of a parsed query and its canonical text.
//!
//! The tree is what the parser produces and what `Display` prints; the
//! matcher never walks it (see `plan`). Printing is canonical: operators are
//! the upper-case keywords, `-x` and `!x` become `NOT x`, field groups
//! (`level:(a OR b)`) are already spelled out as `level:a OR level:b`, and
//! parentheses appear only where the tree needs them. Parsing the printed text
//! gives back an equal tree; the property tests check that.

use std::fmt::{self, Write};

/// A boolean combination of leaves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// Every child matches. Always two or more children.
    And(Vec<Expr>),
    /// At least one child matches. Always two or more children.
    Or(Vec<Expr>),
    /// The child does not match.
    Not(Box<Expr>),
    /// `path:value`.
    Field(Path, Value),
    /// `_exists_:path`.
    Exists(Path),
    /// A search of the message text.
    Text(Text),
}

/// A dotted field path, one string per segment (never empty, no empty
/// segment). `kubernetes.namespace` is `["kubernetes", "namespace"]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path(pub Vec<String>);

/// What a field's value is tested against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A plain word: case-insensitive equality, numeric when it is a number.
    Term(String),
    /// A quoted value: case-insensitive equality on the text.
    Phrase(String),
    /// A word with `*` or `?`: matches the whole value.
    Wildcard(Vec<Wild>),
    /// `/regex/`, anchored to the whole value, case-sensitive.
    Regex(String),
    /// `>400`, `>=400`, `<400`, `<=400`.
    Compare(CmpOp, f64),
    /// `[lo TO hi]`, `{lo TO hi}` or a mix of the two brackets.
    Range(Bound, Bound),
}

/// A search of the message text (`message`, else `line`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Text {
    /// A bare word: case-insensitive substring.
    Term(String),
    /// A quoted phrase: case-insensitive substring.
    Phrase(String),
    /// A bare word with `*` or `?`: case-insensitive wildcard substring.
    Wildcard(Vec<Wild>),
    /// A bare `/regex/`, anchored to the whole text, case-sensitive.
    Regex(String),
}

/// One piece of a wildcard pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wild {
    /// Literal text (never empty; two literals are never adjacent).
    Lit(String),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// The operator of a one-sided comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// One end of a range: `None` is `*` (unbounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub value: Option<f64>,
    pub inclusive: bool,
}

/// Characters that must be escaped wherever they appear in a word.
fn always_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\\' | '(' | ')' | ':' | '"' | '*' | '?')
}

/// Where a word is printed; decides which first characters need escaping.
#[derive(Clone, Copy, PartialEq)]
enum Spot {
    /// A bare search word, where `-x`, `+x`, `!x`, `/re/` mean something.
    Bare,
    /// Right after `field:`, where `/re/`, `[..]`, `{..}`, `>`, `<` mean
    /// something.
    Value,
    /// A segment of a field path: either of the above, and `.` separates.
    Segment,
}

fn special_first(spot: Spot, c: char) -> bool {
    let bare = matches!(c, '-' | '+' | '!' | '/' | '&' | '|');
    let value = matches!(c, '/' | '[' | '{' | '>' | '<');
    match spot {
        Spot::Bare => bare,
        Spot::Value => value,
        Spot::Segment => bare || value,
    }
}

/// Writes `text` as one word that parses back to exactly `text`.
/// `first` says whether this piece starts the word.
fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str, spot: Spot, first: bool) -> fmt::Result {
    let keyword = matches!(text, "AND" | "OR" | "NOT" | "TO" | "_exists_");
    for (i, c) in text.chars().enumerate() {
        let at_start = first && i == 0;
        let escape = always_special(c)
            || (spot == Spot::Segment && c == '.')
            || (at_start && (special_first(spot, c) || keyword));
        if escape {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    Ok(())
}

fn write_wildcard(f: &mut fmt::Formatter<'_>, parts: &[Wild], spot: Spot) -> fmt::Result {
    for (i, part) in parts.iter().enumerate() {
        match part {
            Wild::Lit(text) => write_escaped(f, text, spot, i == 0)?,
            Wild::Star => f.write_char('*')?,
            Wild::One => f.write_char('?')?,
        }
    }
    Ok(())
}

fn write_phrase(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

fn write_regex(f: &mut fmt::Formatter<'_>, source: &str) -> fmt::Result {
    f.write_char('/')?;
    for c in source.chars() {
        if c == '/' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('/')
}

fn write_bound(f: &mut fmt::Formatter<'_>, bound: Option<f64>) -> fmt::Result {
    match bound {
        Some(n) => write!(f, "{n}"),
        None => f.write_char('*'),
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            write_escaped(f, segment, Spot::Segment, true)?;
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Term(text) => write_escaped(f, text, Spot::Value, true),
            Value::Phrase(text) => write_phrase(f, text),
            Value::Wildcard(parts) => write_wildcard(f, parts, Spot::Value),
            Value::Regex(source) => write_regex(f, source),
            Value::Compare(op, n) => {
                let op = match op {
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                };
                write!(f, "{op}{n}")
            }
            Value::Range(lo, hi) => {
                f.write_char(if lo.inclusive { '[' } else { '{' })?;
                write_bound(f, lo.value)?;
                f.write_str(" TO ")?;
                write_bound(f, hi.value)?;
                f.write_char(if hi.inclusive { ']' } else { '}' })
            }
        }
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Term(text) => write_escaped(f, text, Spot::Bare, true),
            Text::Phrase(text) => write_phrase(f, text),
            Text::Wildcard(parts) => write_wildcard(f, parts, Spot::Bare),
            Text::Regex(source) => write_regex(f, source),
        }
    }
}

impl Expr {
    /// Writes `self` as a child of an operator, in parentheses when the
    /// child would otherwise be read differently.
    fn write_child(&self, f: &mut fmt::Formatter<'_>, parenthesize: bool) -> fmt::Result {
        if parenthesize {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" AND ")?;
                    }
                    // A nested AND keeps its own node, so it keeps its
                    // parentheses; an OR needs them for precedence.
                    child.write_child(f, matches!(child, Expr::And(_) | Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Or(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    child.write_child(f, matches!(child, Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Not(child) => {
                f.write_str("NOT ")?;
                child.write_child(f, matches!(**child, Expr::And(_) | Expr::Or(_)))
            }
            Expr::Field(path, value) => write!(f, "{path}:{value}"),
            Expr::Exists(path) => write!(f, "_exists_:{path}"),
            Expr::Text(text) => write!(f, "{text}"),
        }
    }
}
