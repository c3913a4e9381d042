//! The Lucene-like query language of sediment's `exclude` rules and restore
//! filters: parse a query once, then test JSON events against it.
//!
//! ```
//! use sediment_query::Query;
//!
//! let query = Query::parse(r#"level:error AND NOT "health check""#).unwrap();
//! let event = serde_json::json!({"level": "ERROR", "message": "disk full"});
//! assert!(query.matches(event.as_object().unwrap()));
//! ```
//!
//! # Layout
//!
//! - `parser` turns query text into a syntax tree (`ast`), with errors that
//!   point at a column ([`ParseError`]). It is a hand-written recursive
//!   descent over characters (grammar in `parser`, lexemes such as phrases,
//!   regexes and ranges in `parser::tokens`), because what a character means
//!   depends on where it stands.
//! - `ast` is the syntax tree and its canonical text ([`Query`]'s `Display`);
//!   printing and re-parsing gives an equal tree.
//! - `plan` compiles one or more trees into a matching plan: literals
//!   lower-cased, wildcards and anchored regexes compiled, equal leaves of
//!   different rules merged, the message-text literals of all rules put into
//!   one Aho-Corasick automaton (behind a SIMD pre-filter), the children of
//!   `AND`/`OR` sorted cheapest first.
//! - `eval` runs a plan on one event: the hot path. It allocates nothing
//!   (reusable buffers live in a thread-local scratch), computes shared work
//!   (the literal search, top-level field lookups, leaves used by several
//!   rules) at most once per event and only when a rule needs it.
//! - `keys` finds an event's top-level fields (one pass, comparing
//!   fingerprints of the keys) and holds the per-key equality tables, so that
//!   `app:a`, `app:b`, … on one event compare the value once.
//! - `guard` derives from each rule a necessary condition on one key's
//!   equality table (`app:x AND …` needs `app` to be `x`), checked before the
//!   rule's tree is walked.
//! - `text` holds the matcher's primitives: case folding, the number syntax,
//!   wildcard matching, required literals of regexes, the text of JSON
//!   scalars.
//! - `ruleset` is [`RuleSet`], several named queries in one plan.
//! - [`Fields`] is what an event must offer: its top-level values by key.
//!   Matching is generic over it, with `serde_json::Map` as the reference
//!   implementation.
//! - `error` is [`ParseError`].
//!
//! Decisions worth knowing before changing anything: a [`Query`] keeps its
//! syntax tree (for `Display`, equality and re-compiling into a [`RuleSet`])
//! next to its plan; matching never walks the tree. A single query is a plan
//! with one rule, so `Query` and `RuleSet` share every optimisation. The
//! tests include a slow reference matcher that does walk the tree, and
//! property tests hold the plan to it; a counting allocator checks that
//! matching does not allocate.
//!
//! # The query language
//!
//! A query is a boolean combination of terms. An event is a JSON object.
//!
//! ## Field terms
//!
//! | syntax | matches when the field's value… |
//! | --- | --- |
//! | `level:error` | equals `error`, ignoring case |
//! | `status:200` | is the number 200, or the text `200` |
//! | `ok:true` | is `true` or the text `true` (any case) |
//! | `level:"fatal error"` | equals the quoted text, ignoring case |
//! | `host:web-*`, `host:*prod*`, `code:E?1` | matches the wildcard as a whole, ignoring case (`*` any run of characters, `?` one character); `host:*` is any value but an object |
//! | `path:/\/api\/v[12]\/.*/` | matches the regex as a whole (see below) |
//! | `status:>400`, `>=`, `<`, `<=` | is a number, or a numeric string, in that relation |
//! | `status:[400 TO 499]` | is numerically between the bounds, both included |
//! | `status:{400 TO 500}` | … both excluded; the brackets mix: `[400 TO 500}` |
//! | `bytes:[1000 TO *]` | … `*` leaves an end open |
//! | `level:(error OR warn)` | the group applies the field to every term in it (`level:(a b)` is `level:a AND level:b`) |
//!
//! `_exists_:path` matches when the field is present and not null. Nothing
//! may stand between `field:` and its value: `level: error` is an error.
//!
//! **Paths.** A field name is a top-level key or a dotted path into nested
//! objects: `_meta.source:http_in`, `kubernetes.namespace:prod`. A key that
//! itself contains a dot is written with `\.`: `k8s\.io:x`. Wherever the path
//! meets an array, every element is tried, and a field holding an array
//! matches when any element does (`tags:urgent` matches
//! `{"tags": ["a", "urgent"]}`).
//!
//! **Absent fields** never match and are never an error; JSON `null` counts as
//! absent (so `_exists_` is false for it, as is an empty array). Objects match
//! nothing but `_exists_`.
//!
//! **Case.** Equality, quoted values, wildcards and text searches ignore case:
//! both sides are lower-cased character by character
//! ([`char::to_lowercase`]), so this also holds for non-ASCII text (`?`
//! stands for one character of the lower-cased value).
//!
//! **Numbers.** A value written as a number (`-?digits(.digits)?(e±digits)?`)
//! matches a JSON number that is numerically equal (compared as 64-bit
//! floats: `status:200.0` matches `200`) and any value whose text equals it
//! ignoring case (`status:200` matches the string `"200"`, not `"200.0"`).
//! Other values compare as text: `true` matches JSON `true` and the string
//! `"TRUE"`. Comparisons and ranges read numbers and strings in the number
//! syntax; any other value (`"abc"`, `true`, an object) is never greater or
//! smaller than anything. Wildcards and regexes see a number as JSON writes
//! it (`status:4??` matches `404`).
//!
//! **Regexes** use the syntax of the [`regex`] crate and, as in Lucene, must
//! match the *whole* value: `/err.*/` matches `error` but not `an error`; write
//! `/.*err.*/` to search. They are case-sensitive unless they start with
//! `(?i)`. Inside `/…/`, write a slash as `\/`; other backslashes belong to the
//! regex; the closing `/` must be followed by a space, `)` or the end.
//!
//! ## Message text
//!
//! A term without a field searches the event's message text: the `message`
//! field when it is present and not null, else `line`. Strings are searched
//! as they are, numbers and booleans as their JSON text; an object or array
//! in `message` matches no text term (`line` is not used then), and an event
//! with neither field matches none either. `"…"` may hold any character,
//! `""` matches every event that has a message text.
//!
//! | syntax | matches when the message… |
//! | --- | --- |
//! | `timeout` | contains `timeout`, ignoring case |
//! | `"connection refused"` | contains the phrase, ignoring case |
//! | `time*out`, `err?r` | contains a match of the wildcard, ignoring case |
//! | `/.*timed? ?out.*/` | matches the regex as a whole |
//!
//! ## Operators
//!
//! - `a AND b` (also `a && b`, or just `a b`): both.
//! - `a OR b` (also `a || b`): either.
//! - `NOT a` (also `!a`, `-a`): not; `+a` is the same as `a` (Lucene's
//!   "required"). `-` and `+` must touch their term.
//! - `( … )` groups. Precedence, tightest first: `NOT` (and `-`, `!`), `AND`
//!   (written or implied), `OR`. So `a b OR c` is `(a AND b) OR c` and
//!   `NOT a AND b` is `(NOT a) AND b`.
//! - Keywords are upper-case; `and`, `or`, `not` are ordinary words.
//!
//! ## Escaping
//!
//! `\` makes the next character literal: `msg:a\:b`, `path:\/api\/v1`,
//! `\-1`, `\AND`, `file:\*.log`, and `"say \"hi\""` in quotes. Characters
//! that need it in a word: white space, `\ ( ) : " * ?`; at the start of a
//! word also `- + ! / & |` (and `/ [ { > <` right after `field:`).
//!
//! ## Errors
//!
//! [`ParseError`] gives the 1-based character column and one sentence:
//! `column 7: expected a value after "level:"`, `column 3: unbalanced ")"`,
//! `column 5: unterminated quoted phrase`, `column 9: invalid regex: …`,
//! `column 1: empty query`. Nesting deeper than 64 levels is refused.
//!
//! ## Canonical form
//!
//! `Display` prints a query in one canonical spelling (upper-case operators,
//! `NOT` for `-`/`!`, field groups written out, minimal parentheses); parsing
//! it gives the same query back.
#![warn(missing_docs)]

mod ast;
mod error;
mod eval;
mod guard;
mod keys;
mod parser;
mod plan;
mod ruleset;
mod text;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use error::ParseError;
pub use ruleset::RuleSet;

/// Read access to the top-level fields of an event, as matching needs it.
///
/// Matching asks for each top-level key it needs at most once per event
/// and walks nested paths in the returned value itself. A
/// `serde_json::Map` is the reference implementation; an accessor over
/// another representation (raw JSON text, say) must answer exactly what
/// the map parsed from that representation would answer.
pub trait Fields {
    /// The value of the top-level field `key`, if present.
    fn field(&self, key: &str) -> Option<&Value>;

    /// The event as a map, when it is one: lets matching find all the keys
    /// it needs in one pass over the entries.
    fn as_map(&self) -> Option<&Map<String, Value>> {
        None
    }
}

impl<T: Fields + ?Sized> Fields for &T {
    fn field(&self, key: &str) -> Option<&Value> {
        (**self).field(key)
    }

    fn as_map(&self) -> Option<&Map<String, Value>> {
        (**self).as_map()
    }
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        keys::lookup(self, key)
    }

    fn as_map(&self) -> Option<&Map<String, Value>> {
        Some(self)
    }
}

/// A compiled query: immutable, cheap to clone, shareable across threads.
///
/// Two queries are equal when they parse to the same syntax tree, which is
/// the case for a query and the re-parse of its `Display` text.
#[derive(Clone)]
pub struct Query {
    ast: ast::Expr,
    plan: Arc<plan::Plan>,
}

impl Query {
    /// Parses and compiles `text`; see the crate docs for the language.
    pub fn parse(text: &str) -> Result<Query, ParseError> {
        parser::parse(text).map(Query::from_ast)
    }

    /// Whether `event` matches. Allocates nothing (for a map; other
    /// [`Fields`] accessors allocate what they choose to).
    pub fn matches<F: Fields + ?Sized>(&self, event: &F) -> bool {
        self.plan.first_match(event).is_some()
    }

    /// The distinct top-level keys this query may look at (the first
    /// segments of its field paths, and `message` and `line` when it
    /// searches the message text): a [`Fields`] accessor need not find
    /// any other.
    pub fn top_level_keys(&self) -> &[String] {
        &self.plan.keys
    }

    fn from_ast(ast: ast::Expr) -> Query {
        let plan = Arc::new(plan::Plan::compile([&ast]));
        Query { ast, plan }
    }

    pub(crate) fn ast(&self) -> &ast::Expr {
        &self.ast
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Query) -> bool {
        self.ast == other.ast
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ast.fmt(f)
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Query").field(&self.to_string()).finish()
    }
}
