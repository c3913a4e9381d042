//! Syntax trees → a matching plan (evaluated per event by `eval`).
//!
//! A plan holds one boolean tree per rule (a single query is a plan with one
//! rule) whose leaves are ready to run: lower-cased literals, compiled
//! wildcards, anchored regexes, numeric bounds. Shared work is hoisted out of
//! the rules and done at most once per event, and only when a rule needs it:
//!
//! - every message-text literal of every rule goes into one Aho-Corasick
//!   automaton; the first text leaf to be evaluated lower-cases the message
//!   once and runs the automaton over it, recording which literals occur, so
//!   every other text leaf is a bit test. Text wildcards and regexes add the
//!   literal every match must contain, as a pre-filter. Most messages
//!   contain none of the literals, so a SIMD multi-substring search (Teddy)
//!   checks that first and the automaton only runs when it finds something;
//! - a field regex first looks for the literal every match contains;
//! - top-level fields are found once per event, so ten rules on `level` look
//!   it up once;
//! - the equality values of each top-level field form one table
//!   ([`EqTable`]): the first equality test on a string finds which entry,
//!   if any, the value equals, and every other test on that field is an
//!   integer comparison, so `app:a`, `app:b`, … cost one comparison pass;
//! - each rule gets a guard when it needs one key's value to be one of a few
//!   table entries (`guard`), so most `app:x AND …` rules are skipped with
//!   one test.

use std::collections::HashMap;

use aho_corasick::{packed, AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;
use serde_json::Value;

use crate::ast::{Bound, CmpOp, Expr, Text, Value as AstValue};
use crate::eval::CACHED_KEYS;
use crate::guard::{self, Guard};
use crate::keys::{fingerprint, EqTable, Fingerprint, LINEAR_EQ_ENTRIES};
use crate::text::{self, Glob};

/// Literals shorter than this are not worth a pre-filter.
const MIN_PREFILTER_CHARS: usize = 3;
/// Up to this many literals, the automaton is a full DFA (fastest, and still
/// small); past it, aho-corasick picks.
const DFA_LITERALS: usize = 1000;

/// A compiled set of rules.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) roots: Vec<Node>,
    /// Per root, a guard when one can be proved (see [`Guard`]).
    pub(crate) guards: Vec<Option<Guard>>,
    /// The distinct leaves of all rules.
    pub(crate) leaves: Vec<Leaf>,
    /// Distinct first segments of all field paths; leaves refer by index.
    pub(crate) keys: Vec<String>,
    /// For each byte length, the [`fingerprint`]s and ids (below
    /// `CACHED_KEYS`) of the keys of that length: what one pass over an
    /// event's keys compares against.
    pub(crate) keys_by_len: Vec<Vec<(Fingerprint, usize)>>,
    /// The ids of `message` and `line`, when some leaf searches the text.
    pub(crate) text_keys: Option<(usize, usize)>,
    /// All distinct lower-cased message-text literals; pattern id = index.
    pub(crate) literals: Option<AhoCorasick>,
    pub(crate) literal_count: usize,
    /// The same literals, in chunks a packed (Teddy) searcher takes; empty
    /// when the CPU has no support, and then the automaton always runs.
    pub(crate) prefilter: Vec<packed::Searcher>,
    /// For each key id below `CACHED_KEYS`, the values its top-level
    /// equality tests compare with.
    pub(crate) eq_tables: Vec<EqTable>,
}

/// A rule's boolean tree. The children of `And` and `Or` are sorted
/// cheapest first, which changes nothing but the time it takes.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// Whether this literal of the shared automaton is in the text.
    Literal(usize),
    /// `plan.leaves[id]`, used by this node only.
    Leaf(usize),
    /// `plan.leaves[id]`, used by several nodes (equal leaves share one id):
    /// evaluated at most once per event, then remembered.
    SharedLeaf(usize),
    /// `plan.leaves[leaf]`, a `Leaf::TopEquals` of `key` and `entry`, so
    /// that evaluation can answer from the key's equality table without
    /// visiting the leaf.
    Equals {
        key: usize,
        entry: u32,
        leaf: usize,
    },
}

impl Node {
    /// Rewrites the leaves that are top-level equalities into `Equals`.
    fn specialise(&mut self, leaves: &[Leaf]) {
        match self {
            Node::And(children) | Node::Or(children) => {
                children.iter_mut().for_each(|c| c.specialise(leaves))
            }
            Node::Not(child) => child.specialise(leaves),
            Node::Leaf(id) | Node::SharedLeaf(id) => {
                if let Leaf::TopEquals { key, entry, .. } = leaves[*id] {
                    *self = Node::Equals {
                        key,
                        entry,
                        leaf: *id,
                    };
                }
            }
            Node::Literal(_) | Node::Equals { .. } => {}
        }
    }

    /// Turns the leaves used more than once into shared ones.
    fn mark_shared(&mut self, uses: &[u32]) {
        match self {
            Node::And(children) | Node::Or(children) => {
                children.iter_mut().for_each(|c| c.mark_shared(uses))
            }
            Node::Not(child) => child.mark_shared(uses),
            Node::Leaf(id) if uses[*id] > 1 => *self = Node::SharedLeaf(*id),
            Node::Literal(_) | Node::Leaf(_) | Node::SharedLeaf(_) | Node::Equals { .. } => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    Exists(FieldRef),
    Field(FieldRef, Test),
    /// `key:value` on a top-level key below `CACHED_KEYS`: a string matches
    /// when it equals `entry` of `plan.eq_tables[key]`; other values go
    /// through `test` (a `Test::Equals`).
    TopEquals {
        key: usize,
        entry: u32,
        test: Test,
    },
    /// The empty phrase: any event with a message text.
    TextPresent,
    TextGlob {
        glob: Glob,
        required: Option<usize>,
    },
    TextRegex {
        re: Regex,
        required: Option<usize>,
    },
}

/// A field path as a cached first key and the remaining segments.
#[derive(Debug, Clone)]
pub(crate) struct FieldRef {
    pub(crate) key: usize,
    pub(crate) rest: Box<[String]>,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// Case-insensitive equality with `lower`; `number` also matches JSON
    /// numbers numerically.
    Equals {
        lower: String,
        number: Option<f64>,
    },
    Glob(Glob),
    /// `required` finds the literal every match contains.
    Regex {
        re: Regex,
        required: Option<AhoCorasick>,
    },
    /// Numeric bounds: (value, inclusive).
    Range {
        lo: Option<(f64, bool)>,
        hi: Option<(f64, bool)>,
    },
}

#[derive(Default)]
struct Compiler {
    keys: Vec<String>,
    key_ids: HashMap<String, usize>,
    literals: Vec<String>,
    literal_ids: HashMap<String, usize>,
    searches_text: bool,
    eq_tables: Vec<EqTable>,
    leaves: Vec<Leaf>,
    /// How many nodes use each leaf.
    leaf_uses: Vec<u32>,
    /// Leaf ids by canonical text (which is unique per leaf).
    leaf_ids: HashMap<String, usize>,
}

/// A rough relative cost of evaluating a node, for ordering children.
fn cost(node: &Node, leaves: &[Leaf]) -> u32 {
    match node {
        Node::And(children) | Node::Or(children) => children.iter().map(|c| cost(c, leaves)).sum(),
        Node::Not(child) => cost(child, leaves),
        // A bit test, but the first one of an event searches the text.
        Node::Literal(_) => 4,
        Node::Leaf(id) | Node::SharedLeaf(id) | Node::Equals { leaf: id, .. } => match &leaves[*id]
        {
            Leaf::TextPresent => 1,
            Leaf::Exists(_) => 2,
            Leaf::Field(_, Test::Equals { .. } | Test::Range { .. }) | Leaf::TopEquals { .. } => 3,
            Leaf::Field(_, Test::Glob(_)) | Leaf::TextGlob { .. } => 6,
            Leaf::Field(_, Test::Regex { .. }) | Leaf::TextRegex { .. } => 10,
        },
    }
}

impl Compiler {
    fn key(&mut self, key: &str) -> usize {
        if let Some(id) = self.key_ids.get(key) {
            return *id;
        }
        self.keys.push(key.to_string());
        self.key_ids.insert(key.to_string(), self.keys.len() - 1);
        self.keys.len() - 1
    }

    fn literal(&mut self, lower: String) -> usize {
        if let Some(id) = self.literal_ids.get(&lower) {
            return *id;
        }
        self.literals.push(lower.clone());
        self.literal_ids.insert(lower, self.literals.len() - 1);
        self.literals.len() - 1
    }

    fn node(&mut self, expr: &Expr) -> Node {
        self.searches_text |= matches!(expr, Expr::Text(_));
        match expr {
            Expr::And(children) => Node::And(self.children(children)),
            Expr::Or(children) => Node::Or(self.children(children)),
            Expr::Not(child) => Node::Not(Box::new(self.node(child))),
            Expr::Text(Text::Term(t) | Text::Phrase(t)) if !t.is_empty() => {
                Node::Literal(self.literal(text::lower(t)))
            }
            leaf => {
                let canonical = leaf.to_string();
                if let Some(id) = self.leaf_ids.get(&canonical) {
                    self.leaf_uses[*id] += 1;
                    return Node::Leaf(*id);
                }
                let compiled = self.leaf(leaf);
                self.leaves.push(compiled);
                self.leaf_uses.push(1);
                self.leaf_ids.insert(canonical, self.leaves.len() - 1);
                Node::Leaf(self.leaves.len() - 1)
            }
        }
    }

    fn children(&mut self, children: &[Expr]) -> Box<[Node]> {
        let mut nodes: Vec<Node> = children.iter().map(|e| self.node(e)).collect();
        nodes.sort_by_cached_key(|n| cost(n, &self.leaves));
        nodes.into_boxed_slice()
    }

    fn leaf(&mut self, expr: &Expr) -> Leaf {
        match expr {
            Expr::Exists(path) => Leaf::Exists(self.field(&path.0)),
            Expr::Field(path, value @ (AstValue::Term(_) | AstValue::Phrase(_)))
                if path.0.len() == 1 =>
            {
                let field = self.field(&path.0);
                let test = test(value);
                let Test::Equals { lower, .. } = &test else {
                    unreachable!("terms and phrases compile to equality")
                };
                if field.key >= CACHED_KEYS {
                    return Leaf::Field(field, test);
                }
                if self.eq_tables.len() <= field.key {
                    self.eq_tables.resize(field.key + 1, EqTable::default());
                }
                let entry = self.eq_tables[field.key].entry(lower);
                Leaf::TopEquals {
                    key: field.key,
                    entry,
                    test,
                }
            }
            Expr::Field(path, value) => Leaf::Field(self.field(&path.0), test(value)),
            Expr::Text(Text::Wildcard(parts)) => {
                let glob = Glob::new(parts, true);
                let literal = glob.longest_literal();
                let required =
                    (literal.chars().count() >= MIN_PREFILTER_CHARS).then(|| self.literal(literal));
                Leaf::TextGlob { glob, required }
            }
            Expr::Text(Text::Regex(source)) => {
                // Lower-cased, the literal still has to be in the lower-cased
                // text, so the shared case-folded search can rule it out.
                let required = text::regex_required_literal(source, MIN_PREFILTER_CHARS)
                    .map(|literal| self.literal(text::lower(&literal)));
                Leaf::TextRegex {
                    re: regex(source),
                    required,
                }
            }
            // Non-empty ones are literals, not leaves.
            Expr::Text(Text::Term(_) | Text::Phrase(_)) => Leaf::TextPresent,
            Expr::And(_) | Expr::Or(_) | Expr::Not(_) => unreachable!("`node` compiles operators"),
        }
    }

    fn field(&mut self, path: &[String]) -> FieldRef {
        FieldRef {
            key: self.key(&path[0]),
            rest: path[1..].into(),
        }
    }
}

fn regex(source: &str) -> Regex {
    // The parser compiled this very source to accept the query.
    text::compile_regex(source).expect("regex validated by the parser")
}

fn test(value: &AstValue) -> Test {
    let bound = |b: &Bound| b.value.map(|v| (v, b.inclusive));
    match value {
        AstValue::Term(t) => Test::Equals {
            lower: text::lower(t),
            number: text::parse_number(t),
        },
        AstValue::Phrase(t) => Test::Equals {
            lower: text::lower(t),
            number: None,
        },
        AstValue::Wildcard(parts) => Test::Glob(Glob::new(parts, false)),
        AstValue::Regex(source) => Test::Regex {
            re: regex(source),
            required: text::regex_required_literal(source, MIN_PREFILTER_CHARS).map(|literal| {
                // One short pattern: only fails on absurd sizes, like `regex`.
                AhoCorasick::new([literal]).expect("single-literal searcher")
            }),
        },
        AstValue::Compare(op, n) => {
            let (lo, hi) = match op {
                CmpOp::Gt => (Some((*n, false)), None),
                CmpOp::Ge => (Some((*n, true)), None),
                CmpOp::Lt => (None, Some((*n, false))),
                CmpOp::Le => (None, Some((*n, true))),
            };
            Test::Range { lo, hi }
        }
        AstValue::Range(lo, hi) => Test::Range {
            lo: bound(lo),
            hi: bound(hi),
        },
    }
}

impl Test {
    pub(crate) fn matches(&self, value: &Value, scratch: &mut Vec<char>) -> bool {
        match self {
            Test::Equals { lower, number } => match value {
                Value::String(s) => text::eq_lower(s, lower),
                Value::Number(n) => {
                    number.is_some_and(|x| n.as_f64() == Some(x))
                        || text::with_scalar_text(value, |t| text::eq_lower(t, lower))
                            .unwrap_or(false)
                }
                Value::Bool(b) => lower == if *b { "true" } else { "false" },
                _ => false,
            },
            Test::Glob(glob) => {
                text::with_scalar_text(value, |t| glob.matches(t, scratch)).unwrap_or(false)
            }
            Test::Regex { re, required } => text::with_scalar_text(value, |t| {
                required.as_ref().is_none_or(|finder| finder.is_match(t)) && re.is_match(t)
            })
            .unwrap_or(false),
            Test::Range { lo, hi } => text::numeric(value).is_some_and(|n| {
                lo.is_none_or(|(b, inclusive)| if inclusive { n >= b } else { n > b })
                    && hi.is_none_or(|(b, inclusive)| if inclusive { n <= b } else { n < b })
            }),
        }
    }
}

impl Plan {
    /// Compiles rules, in order.
    pub(crate) fn compile<'a>(rules: impl IntoIterator<Item = &'a Expr>) -> Plan {
        let mut compiler = Compiler::default();
        let mut roots: Vec<Node> = rules.into_iter().map(|e| compiler.node(e)).collect();
        for root in &mut roots {
            root.mark_shared(&compiler.leaf_uses);
            root.specialise(&compiler.leaves);
        }
        let guards = roots.iter().map(guard::guard).collect();
        let text_keys = compiler
            .searches_text
            .then(|| (compiler.key("message"), compiler.key("line")));
        let mut keys_by_len: Vec<Vec<(Fingerprint, usize)>> = Vec::new();
        for (id, key) in compiler.keys.iter().enumerate().take(CACHED_KEYS) {
            if keys_by_len.len() <= key.len() {
                keys_by_len.resize(key.len() + 1, Vec::new());
            }
            keys_by_len[key.len()].push((fingerprint(key.as_bytes()), id));
        }
        let mut eq_tables = compiler.eq_tables;
        eq_tables.resize(compiler.keys.len().min(CACHED_KEYS), EqTable::default());
        for table in &mut eq_tables {
            if table.entries.len() <= LINEAR_EQ_ENTRIES {
                table.index = None;
            }
        }
        let count = compiler.literals.len();
        let literals = (count > 0).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind((count <= DFA_LITERALS).then_some(AhoCorasickKind::DFA))
                .build(&compiler.literals)
                // Only fails past billions of automaton states.
                .expect("automaton over the rules' literals")
        });
        let prefilter: Option<Vec<packed::Searcher>> = compiler
            .literals
            .chunks(64)
            .map(|chunk| packed::Config::new().builder().extend(chunk).build())
            .collect();
        Plan {
            roots,
            guards,
            leaves: compiler.leaves,
            keys: compiler.keys,
            keys_by_len,
            text_keys,
            literals,
            literal_count: count,
            prefilter: prefilter.unwrap_or_default(),
            eq_tables,
        }
    }
}
