//! The per-event evaluation of a [`Plan`]: the hot path.
//!
//! Evaluation does not allocate. The buffers that lower-cased text and the
//! literal bit set need live in a thread-local scratch reused from event to
//! event; everything else is on the stack.
//!
//! Events are usually small objects whose keys, values and message each sit
//! in their own heap block, so what costs is not comparing but waiting for
//! memory. When the plan uses several top-level fields, the first field a
//! rule needs therefore triggers one pass over the event's entries that
//! finds them all and touches each value, so that the loads run side by side
//! instead of one miss at a time as rules get to them.
//!
//! The event is anything that implements [`Fields`]: a `serde_json` map, or
//! an accessor that finds the plan's top-level keys elsewhere (sediment's
//! events keep their received JSON text and parse only the fields asked
//! for). The one-pass scan above applies to maps; other accessors are asked
//! key by key, once per key and event.

use std::cell::RefCell;

use serde_json::Value;

use crate::guard::Guard;
use crate::keys::{any_value, fingerprint, same_bytes, touch, FINGERPRINT_LEN, LINEAR_ENTRIES};
use crate::plan::{Leaf, Node, Plan};
use crate::text::{ascii_lowercase, Glob, NumText};
use crate::Fields;

/// Top-level keys found per event in one pass (keys past this are looked up
/// each time they are needed).
pub(crate) const CACHED_KEYS: usize = 32;
/// From this many keys in the plan, finding them all in one pass pays off.
const SCAN_KEYS: usize = 3;
/// `Cx::equal`: the key's equality table has not been consulted yet.
const EQ_UNKNOWN: u32 = u32::MAX;
/// `Cx::equal`: the key's value is neither a string nor absent, so each test
/// looks at it itself.
const EQ_OTHER: u32 = u32::MAX - 1;
/// `Cx::equal`: the key's value is absent, or a string equal to no entry.
const EQ_NONE: u32 = u32::MAX - 2;

impl Plan {
    /// The index of the first rule that matches `event`.
    pub(crate) fn first_match<F: Fields + ?Sized>(&self, event: &F) -> Option<usize> {
        let run = |scratch: &mut Scratch| {
            scratch.start_event(self.leaves.len());
            let mut cx = Cx::new(self, event, scratch);
            let mut rules = self.roots.iter().zip(&self.guards);
            rules.position(|(root, guard)| {
                guard.as_ref().is_none_or(|g| cx.guard_allows(g)) && cx.eval(root)
            })
        };
        SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut scratch) => run(&mut scratch),
                Err(_) => run(&mut Scratch::default()),
            })
            .unwrap_or_else(|_| run(&mut Scratch::default()))
    }
}

/// Buffers reused across events on one thread.
#[derive(Default)]
struct Scratch {
    /// The message text lower-cased.
    text_lower: Vec<u8>,
    /// The same as characters, for wildcards on non-ASCII text.
    text_chars: Vec<char>,
    /// A field value lower-cased into characters, for wildcards.
    value_chars: Vec<char>,
    /// A non-ASCII field value lower-cased, for equality tables.
    value_lower: Vec<u8>,
    /// Which literals occur in the message text.
    literal_bits: Vec<u64>,
    /// Numbers the current event; `memo_event[leaf] == event` means that
    /// `memo_value[leaf]` holds the leaf's value for this event.
    event: u32,
    memo_event: Vec<u32>,
    memo_value: Vec<bool>,
}

impl Scratch {
    /// Forgets every memo of the previous event (in constant time).
    fn start_event(&mut self, leaves: usize) {
        self.event = self.event.wrapping_add(1);
        if self.event == 0 {
            self.memo_event.fill(0);
            self.event = 1;
        }
        if self.memo_event.len() < leaves {
            self.memo_event.resize(leaves, 0);
            self.memo_value.resize(leaves, false);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// The message text of the event being matched.
enum MessageText<'e> {
    Borrowed(&'e str),
    Number(NumText),
    Owned(String),
}

impl MessageText<'_> {
    fn as_str(&self) -> &str {
        match self {
            MessageText::Borrowed(s) => s,
            MessageText::Number(n) => n.as_str(),
            MessageText::Owned(s) => s,
        }
    }
}

/// The state of one evaluation: what has been computed for this event.
struct Cx<'p, 'e, 's, F: ?Sized> {
    plan: &'p Plan,
    event: &'e F,
    scratch: &'s mut Scratch,
    /// Bit i set: `tops[i]` holds the lookup of `plan.keys[i]`.
    looked_up: u32,
    tops: [Option<&'e Value>; CACHED_KEYS],
    /// Per key: which entry of its equality table the (string) value
    /// equals, `EQ_NONE`, or `EQ_UNKNOWN` until a test asks.
    equal: [u32; CACHED_KEYS],
    scanned: bool,
    text: Option<Option<MessageText<'e>>>,
    text_lowered: bool,
    text_chars_ready: bool,
    literals_ready: bool,
}

impl<'p, 'e, 's, F: Fields + ?Sized> Cx<'p, 'e, 's, F> {
    fn new(plan: &'p Plan, event: &'e F, scratch: &'s mut Scratch) -> Self {
        Cx {
            plan,
            event,
            scratch,
            looked_up: 0,
            tops: [None; CACHED_KEYS],
            equal: [EQ_UNKNOWN; CACHED_KEYS],
            scanned: false,
            text: None,
            text_lowered: false,
            text_chars_ready: false,
            literals_ready: false,
        }
    }

    fn eval(&mut self, node: &'p Node) -> bool {
        match node {
            Node::And(children) => children.iter().all(|c| self.eval(c)),
            Node::Or(children) => children.iter().any(|c| self.eval(c)),
            Node::Not(child) => !self.eval(child),
            Node::Literal(id) => self.literal(*id),
            Node::Leaf(id) => self.leaf(&self.plan.leaves[*id]),
            Node::Equals { key, entry, leaf } => match self.equal(*key) {
                EQ_OTHER => self.leaf(&self.plan.leaves[*leaf]),
                found => found == *entry,
            },
            Node::SharedLeaf(id) => {
                if self.scratch.memo_event[*id] == self.scratch.event {
                    return self.scratch.memo_value[*id];
                }
                let value = self.leaf(&self.plan.leaves[*id]);
                self.scratch.memo_event[*id] = self.scratch.event;
                self.scratch.memo_value[*id] = value;
                value
            }
        }
    }

    fn leaf(&mut self, leaf: &'p Leaf) -> bool {
        match leaf {
            Leaf::Exists(field) => self
                .top(field.key)
                .is_some_and(|v| any_value(v, &field.rest, &mut |_| true)),
            Leaf::Field(field, test) => {
                let Some(top) = self.top(field.key) else {
                    return false;
                };
                let scratch = &mut self.scratch.value_chars;
                match top {
                    // The common case, without the walk.
                    Value::String(_) | Value::Number(_) | Value::Bool(_)
                        if field.rest.is_empty() =>
                    {
                        test.matches(top, scratch)
                    }
                    _ => any_value(top, &field.rest, &mut |v| test.matches(v, scratch)),
                }
            }
            // Reached only through `Node::Equals`, when the value is not a
            // string: the table cannot answer, the test can.
            Leaf::TopEquals { key, test, .. } => match self.top(*key) {
                Some(top) => {
                    let scratch = &mut self.scratch.value_chars;
                    any_value(top, &[], &mut |v| test.matches(v, scratch))
                }
                None => false,
            },
            Leaf::TextPresent => self.text().is_some(),
            Leaf::TextGlob { glob, required } => {
                if required.is_some_and(|id| !self.literal(id)) {
                    return false;
                }
                self.text_glob(glob)
            }
            Leaf::TextRegex { re, required } => {
                if required.is_some_and(|id| !self.literal(id)) {
                    return false;
                }
                self.text().is_some_and(|t| re.is_match(t))
            }
        }
    }

    /// The top-level value of `plan.keys[key]`.
    #[inline]
    fn top(&mut self, key: usize) -> Option<&'e Value> {
        if key < CACHED_KEYS && self.looked_up & (1 << key) != 0 {
            return self.tops[key];
        }
        self.top_slow(key)
    }

    /// `top` when the value is not known yet.
    #[inline(never)]
    fn top_slow(&mut self, key: usize) -> Option<&'e Value> {
        if !self.scanned {
            self.scan();
        }
        if key >= CACHED_KEYS {
            return self.event.field(&self.plan.keys[key]);
        }
        if self.looked_up & (1 << key) == 0 {
            self.tops[key] = self.event.field(&self.plan.keys[key]);
            self.looked_up |= 1 << key;
        }
        self.tops[key]
    }

    /// Whether a rule with this guard may match.
    #[inline]
    fn guard_allows(&mut self, guard: &Guard) -> bool {
        match self.equal(guard.key) {
            EQ_OTHER => true,
            found => guard.entries.contains(&found),
        }
    }

    /// Which entry of the equality table of `key` its value equals, else
    /// `EQ_NONE` or `EQ_OTHER`; found once per event.
    #[inline]
    fn equal(&mut self, key: usize) -> u32 {
        if self.equal[key] == EQ_UNKNOWN {
            self.equal[key] = match self.top(key) {
                Some(Value::String(s)) => self.equal_entry(key, s),
                None | Some(Value::Null) => EQ_NONE,
                Some(_) => EQ_OTHER,
            };
        }
        self.equal[key]
    }

    /// Which entry of the equality table of `key` its string value `s`
    /// equals (`EQ_NONE` for none); found once per event.
    fn equal_entry(&mut self, key: usize, s: &str) -> u32 {
        if self.equal[key] == EQ_UNKNOWN {
            let table = &self.plan.eq_tables[key];
            let found = if s.is_ascii() && table.index.is_none() {
                table.find_ascii(s)
            } else if s.is_ascii() {
                let lower = &mut self.scratch.value_lower;
                lower.clear();
                lower.extend_from_slice(s.as_bytes());
                lower.make_ascii_lowercase();
                table.find(lower)
            } else {
                let lower = &mut self.scratch.value_lower;
                lower.clear();
                for c in s.chars().flat_map(char::to_lowercase) {
                    lower.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                table.find(lower)
            };
            self.equal[key] = found.unwrap_or(EQ_NONE);
        }
        self.equal[key]
    }

    /// Finds all the plan's keys in one pass over a small event.
    fn scan(&mut self) {
        self.scanned = true;
        let Some(event) = self.event.as_map() else {
            return;
        };
        if event.len() > LINEAR_ENTRIES || self.plan.keys.len() < SCAN_KEYS {
            return;
        }
        let by_len = &self.plan.keys_by_len;
        for (name, value) in event {
            let Some(ids) = by_len.get(name.len()).filter(|ids| !ids.is_empty()) else {
                continue;
            };
            let print = fingerprint(name.as_bytes());
            let long = name.len() > FINGERPRINT_LEN;
            if let Some(&(_, id)) = ids
                .iter()
                .find(|&&(p, id)| p == print && (!long || same_bytes(&self.plan.keys[id], name)))
            {
                self.tops[id] = Some(value);
                touch(value);
            }
        }
        self.looked_up = u32::MAX;
    }

    /// The message text: `message` when present and not null, else `line`;
    /// only strings, numbers and booleans have one.
    fn text(&mut self) -> Option<&str> {
        if self.text.is_none() {
            let source = match self.plan.text_keys {
                Some((message, line)) => match self.top(message) {
                    None | Some(Value::Null) => self.top(line),
                    found => found,
                },
                None => None,
            };
            self.text = Some(match source {
                Some(Value::String(s)) => Some(MessageText::Borrowed(s)),
                Some(Value::Bool(b)) => {
                    Some(MessageText::Borrowed(if *b { "true" } else { "false" }))
                }
                Some(Value::Number(n)) => Some(match NumText::new(n) {
                    Some(t) => MessageText::Number(t),
                    None => MessageText::Owned(n.to_string()),
                }),
                _ => None,
            });
        }
        self.text
            .as_ref()
            .and_then(|t| t.as_ref())
            .map(MessageText::as_str)
    }

    /// The message text lower-cased (into the scratch buffer, once).
    fn lowered_text(&mut self) -> Option<&[u8]> {
        self.text()?;
        if !self.text_lowered {
            let lowered = &mut self.scratch.text_lower;
            lowered.clear();
            if let Some(Some(t)) = &self.text {
                let t = t.as_str();
                if t.is_ascii() {
                    lowered.extend_from_slice(t.as_bytes());
                    ascii_lowercase(lowered);
                } else {
                    for c in t.chars().flat_map(char::to_lowercase) {
                        lowered.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                }
            }
            self.text_lowered = true;
        }
        Some(&self.scratch.text_lower)
    }

    fn literal(&mut self, id: usize) -> bool {
        if !self.literals_ready {
            self.find_literals();
        }
        self.scratch.literal_bits[id / 64] & (1 << (id % 64)) != 0
    }

    /// Sets the bit of every literal the message text contains.
    fn find_literals(&mut self) {
        self.literals_ready = true;
        let plan = self.plan;
        let mut bits = std::mem::take(&mut self.scratch.literal_bits);
        bits.clear();
        bits.resize(plan.literal_count.div_ceil(64), 0);
        if let (Some(ac), Some(text)) = (&plan.literals, self.lowered_text()) {
            // No literal starts before the leftmost pre-filter match, so the
            // automaton starts there (or does not run when there is none).
            let start = if plan.prefilter.is_empty() {
                Some(0)
            } else {
                plan.prefilter
                    .iter()
                    .filter_map(|s| s.find(text))
                    .map(|m| m.start())
                    .min()
            };
            if let Some(start) = start {
                let mut missing = plan.literal_count;
                let mut matches = ac.find_overlapping_iter(&text[start..]);
                while missing > 0 {
                    let Some(m) = matches.next() else {
                        break;
                    };
                    let id = m.pattern().as_usize();
                    if bits[id / 64] & (1 << (id % 64)) == 0 {
                        bits[id / 64] |= 1 << (id % 64);
                        missing -= 1;
                    }
                }
            }
        }
        self.scratch.literal_bits = bits;
    }

    fn text_glob(&mut self, glob: &Glob) -> bool {
        let Some(t) = self.text() else {
            return false;
        };
        if t.is_ascii() {
            return glob.matches(t, &mut Vec::new());
        }
        if !self.text_chars_ready {
            let chars = &mut self.scratch.text_chars;
            chars.clear();
            if let Some(Some(t)) = &self.text {
                chars.extend(t.as_str().chars().flat_map(char::to_lowercase));
            }
            self.text_chars_ready = true;
        }
        glob.matches_lowered(&self.scratch.text_chars)
    }
}
