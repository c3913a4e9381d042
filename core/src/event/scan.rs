//! Recognising JSON text that is already in the archive's form, and walking it.
//!
//! An archive line is what `serde_json` writes for the event's map: compact
//! (no white space), strings escaped the way `serde_json` escapes them (only
//! `"`, `\` and control characters, the latter as `\b \f \n \r \t` or
//! `\u00xx` in lower-case hex), numbers as `serde_json` prints the number it
//! parsed, each key once per object. A received object that is already in
//! that form — nearly every line a logging library writes — can be archived as
//! its own bytes with the reserved fields spliced in, and the line is the one
//! the map would have given, byte for byte. [`Scanner::canonical_object`]
//! decides that in one pass and reports the top-level members on the way;
//! anything else (white space, `\/` or `\u` escapes of printable characters,
//! `1E3`, integers past 64 bits, duplicate keys at any depth, deep nesting,
//! invalid JSON) answers `false`, and the caller takes the map path, which
//! keeps today's behaviour and error messages exactly.
//!
//! Why a scanner of our own rather than `serde_json`'s `IgnoredAny` pass,
//! `simd-json` or `sonic-rs`: validating alone is not enough; splicing is
//! only exact for text in canonical form, and none of those tells whether it
//! is, so they would need this pass after theirs anyway. Measured with
//! `cargo run --release -p sediment-core --example scan_bench` on the
//! benchmark's lines (224 bytes on average, 4 fields; one core of this
//! shared 2-core machine, so ±20 %): this pass 0.30 µs a line,
//! `serde_json::from_slice::<IgnoredAny>` (validation only) 0.19 µs,
//! `serde_json::from_slice::<Map>` 1.0 µs; stamping and writing the line
//! takes 0.68 µs a line on the text path against 2.2 µs on the map path.
//! `simd-json` and `sonic-rs` were not measured (not in the dependency tree;
//! they build a tape or DOM this path does not need), and the scan is less
//! than half of the text path's per-line cost.
//!
//! Floats are checked by parsing them with `serde_json` and printing them
//! with `serde_json` (into a stack buffer): the value and its spelling are
//! then the map path's by construction, whatever float algorithms the
//! `serde_json` in the tree uses.

use std::ops::Range;

/// Deeper nesting than this is left to the map path (whose recursion limit
/// and error message then apply).
const MAX_DEPTH: u32 = 100;

/// Reusable state of the canonical-form check (the keys of the objects being
/// scanned, for the duplicate check); one per thread or request.
#[derive(Debug, Default)]
pub struct Scanner {
    keys: Vec<(u32, u32)>,
    sorted: Vec<(u32, u32)>,
}

/// A top-level member: the key's text between its quotes (escapes left as
/// they are) and the byte range of its value.
pub type TopMember<'a> = dyn FnMut(&[u8], Range<usize>) + 'a;

impl Scanner {
    /// Whether `text` is one JSON object exactly as `serde_json` would write
    /// it (see the module docs). `top` is called for each top-level member;
    /// when the answer is `false`, what it was told must be ignored.
    pub fn canonical_object(&mut self, text: &[u8], top: &mut TopMember<'_>) -> bool {
        self.leading_object(text, top) == Some(text.len())
    }

    /// The length of the JSON object in canonical form that `text` starts
    /// with (an element of a JSON array, say, followed by the rest of the
    /// array), or `None` when it does not start with one. `top` is called as
    /// for [`Scanner::canonical_object`], with ranges within `text`.
    pub fn leading_object(&mut self, text: &[u8], top: &mut TopMember<'_>) -> Option<usize> {
        if text.first() != Some(&b'{') || text.len() > u32::MAX as usize {
            return None;
        }
        self.keys.clear();
        let mut cur = Cursor {
            t: text,
            i: 0,
            scanner: self,
        };
        if !cur.object(1, Some(top)) {
            return None;
        }
        let end = cur.i;
        // The walk reads bytes from 0x20 up inside strings as characters; the
        // object's text is only canonical if they are valid UTF-8.
        std::str::from_utf8(&text[..end]).is_ok().then_some(end)
    }
}

/// Bytes that end a run of plain string characters: `"`, `\` and control characters.
static STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

struct Cursor<'a, 's> {
    t: &'a [u8],
    i: usize,
    scanner: &'s mut Scanner,
}

impl Cursor<'_, '_> {
    #[inline]
    fn peek(&self) -> u8 {
        self.t.get(self.i).copied().unwrap_or(0)
    }

    fn value(&mut self, depth: u32) -> bool {
        match self.peek() {
            b'{' => self.object(depth + 1, None),
            b'[' => self.array(depth + 1),
            b'"' => self.string().is_some(),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => false,
        }
    }

    fn word(&mut self, w: &[u8]) -> bool {
        if self.t[self.i..].starts_with(w) {
            self.i += w.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self, depth: u32, mut top: Option<&mut TopMember<'_>>) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.i += 1;
        if self.peek() == b'}' {
            self.i += 1;
            return true;
        }
        let base = self.scanner.keys.len();
        loop {
            if self.peek() != b'"' {
                return false;
            }
            let key_start = self.i + 1;
            let Some(key_end) = self.string() else {
                return false;
            };
            self.scanner.keys.push((key_start as u32, key_end as u32));
            if self.peek() != b':' {
                return false;
            }
            self.i += 1;
            let value_start = self.i;
            if !self.value(depth) {
                return false;
            }
            if let Some(f) = top.as_mut() {
                f(&self.t[key_start..key_end], value_start..self.i);
            }
            match self.peek() {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return false,
            }
        }
        let unique = self.unique_keys(base);
        self.scanner.keys.truncate(base);
        unique
    }

    /// Whether the keys pushed since `base` are distinct. Comparing their
    /// text is enough: in canonical form a string has one spelling.
    fn unique_keys(&mut self, base: usize) -> bool {
        let t = self.t;
        let text = |&(s, e): &(u32, u32)| &t[s as usize..e as usize];
        let keys = &self.scanner.keys[base..];
        if keys.len() <= 16 {
            return keys
                .iter()
                .enumerate()
                .all(|(i, a)| keys[i + 1..].iter().all(|b| text(a) != text(b)));
        }
        let sorted = &mut self.scanner.sorted;
        sorted.clear();
        sorted.extend_from_slice(keys);
        sorted.sort_unstable_by(|a, b| text(a).cmp(text(b)));
        sorted.windows(2).all(|w| text(&w[0]) != text(&w[1]))
    }

    fn array(&mut self, depth: u32) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.i += 1;
        if self.peek() == b']' {
            self.i += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// A string in canonical form, from its opening quote; returns the index
    /// of its closing quote and leaves the cursor after it.
    fn string(&mut self) -> Option<usize> {
        let t = self.t;
        let mut i = self.i + 1;
        loop {
            // The text is valid UTF-8, so bytes from 0x20 up other than `"`
            // and `\` are characters as serde_json writes them.
            i += t[i..]
                .iter()
                .position(|&b| STOP[b as usize])
                .unwrap_or(t.len() - i);
            match t.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(i);
                }
                b'\\' => match t.get(i + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = t.get(i + 2..i + 6)?;
                        let canonical = hex[0] == b'0'
                            && hex[1] == b'0'
                            && matches!(hex[2], b'0' | b'1')
                            && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f');
                        if !canonical {
                            return None;
                        }
                        let code = (hex[2] - b'0') * 16
                            + match hex[3] {
                                d @ b'0'..=b'9' => d - b'0',
                                d => d - b'a' + 10,
                            };
                        if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                },
                // A raw control character: not JSON.
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> bool {
        let t = self.t;
        let start = self.i;
        let mut i = start;
        let negative = t[i] == b'-';
        if negative {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while *i < t.len() && t[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - from
        };
        let int_start = i;
        let int_digits = digits(&mut i);
        if int_digits == 0 || (t[int_start] == b'0' && int_digits > 1) {
            return false;
        }
        let mut float = false;
        if t.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return false;
            }
            float = true;
        }
        if matches!(t.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(t.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return false;
            }
            float = true;
        }
        self.i = i;
        let token = &t[start..i];
        // ASCII digits and signs: valid UTF-8.
        let text = std::str::from_utf8(token).unwrap_or("");
        if !float {
            return if negative {
                text != "-0" && text.parse::<i64>().is_ok()
            } else {
                text.parse::<u64>().is_ok()
            };
        }
        match serde_json::from_slice::<f64>(token) {
            Ok(f) if f.is_finite() => {
                let mut printed = [0u8; 40];
                let mut w = std::io::Cursor::new(&mut printed[..]);
                serde_json::to_writer(&mut w, &f).is_ok() && {
                    let n = w.position() as usize;
                    &printed[..n] == token
                }
            }
            _ => false,
        }
    }
}

/// The top-level members of an object in valid JSON text (an archive line,
/// or an event's text that [`Scanner::canonical_object`] accepted): key text
/// between its quotes and value text, in order. Stops at the first thing
/// that is not a member.
pub fn members(text: &[u8]) -> Members<'_> {
    Members {
        t: text,
        i: usize::from(text.first() == Some(&b'{')),
    }
}

/// Iterator of [`members`].
#[derive(Debug, Clone)]
pub struct Members<'a> {
    t: &'a [u8],
    i: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.t;
        if t.get(self.i) == Some(&b',') {
            self.i += 1;
        }
        if t.get(self.i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(t, self.i)?;
        let key = &t[self.i + 1..key_end - 1];
        if t.get(key_end) != Some(&b':') {
            return None;
        }
        let value_start = key_end + 1;
        let value_end = skip_value(t, value_start)?;
        self.i = value_end;
        Some((key, &t[value_start..value_end]))
    }
}

/// The end (one past the closing quote) of the string starting at `i`.
fn skip_string(t: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let at = j + t.get(j..)?.iter().position(|&b| b == b'"' || b == b'\\')?;
        if t[at] == b'"' {
            return Some(at + 1);
        }
        j = at + 2;
    }
}

/// The end of the value starting at `i` in valid compact JSON.
fn skip_value(t: &[u8], i: usize) -> Option<usize> {
    match t.get(i)? {
        b'"' => skip_string(t, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match t.get(j)? {
                    b'"' => {
                        j = skip_string(t, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = t[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']'))
                .unwrap_or(t.len() - i);
            Some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> bool {
        Scanner::default().canonical_object(text.as_bytes(), &mut |_, _| {})
    }

    #[test]
    fn accepts_what_serde_json_writes_and_nothing_else() {
        for yes in [
            r#"{}"#,
            r#"{"a":1,"b":[true,false,null,{"c":"d"}],"e":-12.5,"f":1e+20,"g":"\u0001\n\"\\"}"#,
            "{\"k\":18446744073709551615,\"m\":-9223372036854775808,\"é\":\"ü\x7f\"}",
            r#"{"x":5e-324,"y":0.1,"z":-0.0,"w":[]}"#,
        ] {
            assert!(canonical(yes), "{yes}");
            let v: serde_json::Value = serde_json::from_str(yes).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), yes);
        }
        for no in [
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":1E2}"#,
            r#"{"a":1.50}"#,
            r#"{"a":-0}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"b":{"a":1,"a":2}}"#,
            r#"{"a":01}"#,
            r#"{"a":1e999}"#,
            r#"{"a":"x}"#,
            r#"{"a":1,}"#,
            "{\"a\":\"\t\"}",
            r#"[1]"#,
            r#""s""#,
        ] {
            assert!(!canonical(no), "{no}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(!canonical(&deep));
    }

    #[test]
    fn reports_top_level_members_and_walks_them_back() {
        let text = br#"{"a":{"b":1},"c":"x\"}","d":[1,{"e":2}],"f":null}"#;
        let mut seen = Vec::new();
        assert!(Scanner::default()
            .canonical_object(text, &mut |k, r| seen.push((k.to_vec(), text[r].to_vec()))));
        let walked: Vec<_> = members(text)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(seen, walked);
        let keys: Vec<&[u8]> = walked.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, [&b"a"[..], b"c", b"d", b"f"]);
        assert_eq!(walked[1].1, br#""x\"}""#);
    }

    #[test]
    fn a_leading_object_is_measured_in_longer_text() {
        let leading = |t: &[u8]| Scanner::default().leading_object(t, &mut |_, _| {});
        assert_eq!(leading(br#"{"a":[1,{"b":"}"}]},{"c":2}]"#), Some(19));
        assert_eq!(leading(br#"{"a":1}"#), Some(7));
        assert_eq!(leading(br#"{"a":1} ,"#), Some(7));
        assert_eq!(leading(br#"{"a": 1},"#), None);
        assert_eq!(leading(br#"{"a":1"#), None);
        assert_eq!(leading(b"{\"a\":\"\xff\"},"), None, "not UTF-8");
        assert_eq!(
            leading(b"{\"a\":1},\xff"),
            Some(7),
            "what follows is not read"
        );
        assert_eq!(leading(br#" {"a":1}"#), None);
    }

    #[test]
    fn many_keys_are_checked_for_duplicates_too() {
        let mut keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(canonical(&format!("{{{}}}", keys.join(","))));
        keys.push("\"k7\":0".into());
        assert!(!canonical(&format!("{{{}}}", keys.join(","))));
    }
}
