//! Finding an event's top-level fields and comparing their values with the
//! plan's equality tests: key fingerprints, equality tables, and the lookups
//! and walks below the top level.

use std::collections::HashMap;
use std::hint::black_box;

use serde_json::{Map, Value};

/// Up to this many entries, one linear pass over an event beats hashing.
pub(crate) const LINEAR_ENTRIES: usize = 16;

/// Two words that, together with the length, identify a string of up to
/// `FINGERPRINT_LEN` bytes (longer ones: its first and last 8 bytes).
pub(crate) type Fingerprint = (u64, u64);
/// Strings up to this length are equal when their fingerprints are.
pub(crate) const FINGERPRINT_LEN: usize = 16;

/// The fingerprint of `b`, from at most four (overlapping) loads: for a
/// given length, the loads cover every byte up to `FINGERPRINT_LEN`.
#[inline]
pub(crate) fn fingerprint(b: &[u8]) -> Fingerprint {
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("4")));
    match n {
        8.. => (word(0), word(n - 8)),
        4..=7 => (half(0) | half(n - 4) << 32, 0),
        1..=3 => (
            u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
            0,
        ),
        0 => (0, 0),
    }
}

/// The distinct lower-cased values that `key:value` tests of one top-level
/// key compare with; a test is then "the value equals entry `i`".
#[derive(Debug, Clone, Default)]
pub(crate) struct EqTable {
    pub(crate) entries: Vec<String>,
    /// Entry ids by value, when there are too many to compare one by one.
    pub(crate) index: Option<HashMap<String, u32>>,
}

/// Past this many entries, an equality table is looked up by hashing.
pub(crate) const LINEAR_EQ_ENTRIES: usize = 16;

impl EqTable {
    /// The id of the entry `lower`, added if new. While compiling, every
    /// table is indexed; `Plan::compile` drops the index of small ones.
    pub(crate) fn entry(&mut self, lower: &str) -> u32 {
        let index = self.index.get_or_insert_with(HashMap::new);
        if let Some(&i) = index.get(lower) {
            return i;
        }
        let id = u32::try_from(self.entries.len()).expect("fewer than 2^32 values per key");
        index.insert(lower.to_string(), id);
        self.entries.push(lower.to_string());
        id
    }

    /// The entry equal to `lower` (an already lower-cased value).
    pub(crate) fn find(&self, lower: &[u8]) -> Option<u32> {
        match &self.index {
            Some(index) => std::str::from_utf8(lower)
                .ok()
                .and_then(|l| index.get(l).copied()),
            None => self
                .entries
                .iter()
                .position(|e| e.as_bytes() == lower)
                .map(|i| i as u32),
        }
    }

    /// The entry that the ASCII `value` equals ignoring case, without
    /// lower-casing it first.
    pub(crate) fn find_ascii(&self, value: &str) -> Option<u32> {
        debug_assert!(value.is_ascii() && self.index.is_none());
        self.entries
            .iter()
            .position(|e| e.len() == value.len() && value.eq_ignore_ascii_case(e))
            .map(|i| i as u32)
    }
}

/// A key lookup; linear for small objects, where it beats hashing.
pub(crate) fn lookup<'e>(map: &'e Map<String, Value>, key: &str) -> Option<&'e Value> {
    if map.len() <= LINEAR_ENTRIES {
        map.iter().find(|(k, _)| same_bytes(k, key)).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

/// String equality as an inlined loop: keys are short, and a call to
/// `memcmp` per key costs more than comparing them here.
pub(crate) fn same_bytes(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Loads the first bytes of a value's heap data now. The result is unused:
/// this only starts the memory transfer early (see the module docs).
pub(crate) fn touch(value: &Value) {
    match value {
        Value::String(s) => {
            black_box((s.as_bytes().first().copied(), s.as_bytes().last().copied()));
        }
        Value::Object(map) => {
            black_box(map.iter().next().map(|(k, _)| k.len()));
        }
        Value::Array(items) => {
            black_box(items.first().map(|v| matches!(v, Value::Null)));
        }
        _ => {}
    }
}

/// Whether `f` holds for some non-null value at `rest` below `value`,
/// looking into arrays at every level.
pub(crate) fn any_value<'e>(
    value: &'e Value,
    rest: &[String],
    f: &mut impl FnMut(&'e Value) -> bool,
) -> bool {
    match (value, rest.split_first()) {
        (Value::Array(items), _) => items.iter().any(|v| any_value(v, rest, f)),
        (Value::Null, _) => false,
        (_, None) => f(value),
        (Value::Object(map), Some((key, rest))) => {
            lookup(map, key).is_some_and(|v| any_value(v, rest, f))
        }
        _ => false,
    }
}
