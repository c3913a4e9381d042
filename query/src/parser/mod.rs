//! Query text → syntax tree.
//!
//! A hand-written recursive-descent parser working straight on the
//! characters, without a separate lexer: what a character means depends on
//! where it stands (`-` negates a bare term but is literal in `temp:-5`; `[`
//! opens a range only right after `field:`), which is simpler to say in the
//! parser itself. Positions are character indexes, reported 1-based.
//!
//! ```text
//! query   = or EOF
//! or      = and { ("OR" | "||") and }
//! and     = unary { ["AND" | "&&"] unary }            (adjacent terms: AND)
//! unary   = ("NOT" | "!") unary | "-" unary | "+" unary | primary
//! primary = "(" or ")" | phrase | regex | field ":" value | "_exists_:" path | word
//! value   = "(" or ")" | phrase | regex | range | compare | word
//! ```

mod tokens;

use crate::ast::{Expr, Path, Text, Value};
use crate::error::ParseError;
use tokens::{path, plain, wildcard, word_value};

/// Deepest nesting of parentheses and prefix operators accepted. Keeps the
/// recursive parser, printer and matcher far from the end of the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Parses a whole query.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
        open_parens: 0,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Err(ParseError::new(1, "empty query"));
    }
    let expr = parser.parse_or(&Ctx::Text, None)?;
    // `parse_or` stops only at the end or at a `)` it has no `(` for.
    match parser.peek() {
        None => Ok(expr),
        Some(_) => Err(parser.error_here("unbalanced \")\"")),
    }
}

/// What the terms being parsed apply to.
enum Ctx {
    /// Top level: words and phrases search the message text.
    Text,
    /// Inside `field:( ... )`: words and phrases are values of this field.
    Field(Path),
    /// Inside `_exists_:( ... )`: words are field paths.
    Exists,
}

/// One character of a word, with whether it was escaped and where it was.
#[derive(Clone, Copy)]
struct WordChar {
    c: char,
    escaped: bool,
    pos: usize,
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    open_parens: usize,
}

/// Ends a word (unless escaped).
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"' | ':')
}

fn error_at(pos: usize, message: impl Into<String>) -> ParseError {
    ParseError::new(pos + 1, message)
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        error_at(self.pos, message)
    }

    /// An upper-case keyword at the cursor, standing alone as a word.
    fn at_keyword(&self, word: &str) -> bool {
        let len = word.chars().count();
        word.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
            && self
                .peek_at(len)
                .is_none_or(|c| c.is_whitespace() || c == '(' || c == ')')
    }

    /// `AND` or `&&` at the cursor: its length and spelling.
    fn at_and(&self) -> Option<(usize, &'static str)> {
        if self.at_keyword("AND") {
            Some((3, "AND"))
        } else if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
            Some((2, "&&"))
        } else {
            None
        }
    }

    /// `OR` or `||` at the cursor: its length and spelling.
    fn at_or(&self) -> Option<(usize, &'static str)> {
        if self.at_keyword("OR") {
            Some((2, "OR"))
        } else if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
            Some((2, "||"))
        } else {
            None
        }
    }

    /// One level deeper, for the operator or parenthesis at `at`.
    fn enter(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error_at(
                at,
                format!("the query is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self, ctx: &Ctx, after: Option<&str>) -> Result<Expr, ParseError> {
        let mut items = vec![self.parse_and(ctx, after)?];
        loop {
            self.skip_ws();
            let Some((len, name)) = self.at_or() else {
                break;
            };
            self.pos += len;
            items.push(self.parse_and(ctx, Some(name))?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self, ctx: &Ctx, after: Option<&str>) -> Result<Expr, ParseError> {
        let mut items = vec![self.parse_unary(ctx, after)?];
        loop {
            self.skip_ws();
            if self.at_end() || self.peek() == Some(')') || self.at_or().is_some() {
                break;
            }
            if let Some((len, name)) = self.at_and() {
                self.pos += len;
                items.push(self.parse_unary(ctx, Some(name))?);
            } else {
                items.push(self.parse_unary(ctx, None)?);
            }
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_unary(&mut self, ctx: &Ctx, after: Option<&str>) -> Result<Expr, ParseError> {
        self.skip_ws();
        let prefix = if self.at_keyword("NOT") {
            Some((3, "NOT", true))
        } else {
            match self.peek() {
                Some('!') => Some((1, "!", true)),
                Some('-') => Some((1, "-", true)),
                Some('+') => Some((1, "+", false)),
                _ => None,
            }
        };
        let Some((len, name, negate)) = prefix else {
            return self.parse_primary(ctx, after, false);
        };
        let at = self.pos;
        self.pos += len;
        // `-` and `+` belong to the term they stand before.
        if len == 1 && name != "!" && self.peek().is_none_or(char::is_whitespace) {
            return Err(self.error_here(format!("expected a term right after \"{name}\"")));
        }
        self.enter(at)?;
        let inner = self.parse_unary(ctx, Some(name))?;
        self.depth -= 1;
        Ok(if negate {
            Expr::Not(Box::new(inner))
        } else {
            inner
        })
    }

    /// Reports why no term starts at the cursor.
    fn missing_term(&self, after: Option<&str>) -> ParseError {
        if self.peek() == Some(')') && self.open_parens == 0 {
            return self.error_here("unbalanced \")\"");
        }
        if let Some(after) = after {
            return self.error_here(format!("expected a term after \"{after}\""));
        }
        let found = self.at_and().or(self.at_or()).map_or("", |(_, name)| name);
        self.error_here(format!("expected a term before \"{found}\""))
    }

    /// A term. `value` is true right after `field:`, where operators are
    /// ordinary characters.
    fn parse_primary(
        &mut self,
        ctx: &Ctx,
        after: Option<&str>,
        value: bool,
    ) -> Result<Expr, ParseError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.missing_term(after));
        };
        if c == ')' || (!value && (self.at_and().is_some() || self.at_or().is_some())) {
            return Err(self.missing_term(after));
        }
        if let Ctx::Field(path) = ctx {
            let value = match c {
                '[' | '{' => Some(self.parse_range()?),
                '>' | '<' => Some(self.parse_compare()?),
                _ => None,
            };
            if let Some(value) = value {
                return Ok(Expr::Field(path.clone(), value));
            }
        }
        match c {
            '(' => return self.parse_group(ctx),
            '"' => {
                let phrase = self.parse_phrase()?;
                return match ctx {
                    Ctx::Text => Ok(Expr::Text(Text::Phrase(phrase))),
                    Ctx::Field(path) => Ok(Expr::Field(path.clone(), Value::Phrase(phrase))),
                    Ctx::Exists => {
                        Err(error_at(start, "expected a field name after \"_exists_:\""))
                    }
                };
            }
            '/' if !matches!(ctx, Ctx::Exists) => {
                let regex = self.parse_regex()?;
                return Ok(match ctx {
                    Ctx::Field(path) => Expr::Field(path.clone(), Value::Regex(regex)),
                    _ => Expr::Text(Text::Regex(regex)),
                });
            }
            ':' => return Err(self.error_here("expected a field name before \":\"")),
            _ => {}
        }
        let word = self.read_word()?;
        if self.peek() == Some(':') {
            if !matches!(ctx, Ctx::Text) {
                return Err(self.error_here("unexpected \":\" (escape it as \"\\:\" to match it)"));
            }
            return self.parse_field(&word, start);
        }
        Ok(match ctx {
            Ctx::Text => match wildcard(&word) {
                Some(parts) => Expr::Text(Text::Wildcard(parts)),
                None => Expr::Text(Text::Term(plain(&word))),
            },
            Ctx::Field(path) => Expr::Field(path.clone(), word_value(&word)),
            Ctx::Exists => Expr::Exists(path(&word, start)?),
        })
    }

    /// `( or )`, in any context.
    fn parse_group(&mut self, ctx: &Ctx) -> Result<Expr, ParseError> {
        let open = self.pos;
        self.enter(open)?;
        self.pos += 1;
        self.open_parens += 1;
        let inner = self.parse_or(ctx, Some("("))?;
        self.skip_ws();
        if self.peek() != Some(')') {
            return Err(error_at(open, "unbalanced \"(\""));
        }
        self.pos += 1;
        self.open_parens -= 1;
        self.depth -= 1;
        Ok(inner)
    }

    /// `field:value` or `_exists_:path`; the cursor is on the `:`.
    fn parse_field(&mut self, word: &[WordChar], start: usize) -> Result<Expr, ParseError> {
        let raw: String = self.chars[start..self.pos].iter().collect();
        let is_exists = word.iter().all(|w| !w.escaped) && plain(word) == "_exists_";
        let ctx = if is_exists {
            Ctx::Exists
        } else {
            Ctx::Field(path(word, start)?)
        };
        self.pos += 1;
        let label = format!("{raw}:");
        match self.peek() {
            Some(c) if !c.is_whitespace() && c != ')' && c != ':' => {}
            _ => {
                let what = if is_exists { "a field name" } else { "a value" };
                return Err(self.error_here(format!("expected {what} after \"{label}\"")));
            }
        }
        self.parse_primary(&ctx, Some(&label), true)
    }
}
