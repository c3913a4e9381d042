//! Generators for property tests that hold the text path to the map path
//! (feature `testing`, and this crate's own tests): arbitrary JSON values with
//! the spelling choices `serde_json` would normalise (nested, unicode,
//! escapes, numbers at the edges, duplicate keys, reserved and timestamp
//! fields), and their writers. One generator serves every crate that has
//! such a test.

use proptest::prelude::*;

/// A JSON value with the spelling choices that serde_json would normalise.
#[derive(Debug, Clone)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// The number and how it is spelled (canonical or not).
    Number(String),
    /// The string and whether printable characters are escaped as `\u`.
    Str(String, bool),
    /// An array of values.
    Array(Vec<Json>),
    /// Keys may repeat.
    Object(Vec<(String, Json)>),
}

/// A number, spelt canonically or not.
pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        Just("0".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551615".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("1700000000".to_string()),
        Just("1700000000123".to_string()),
        Just("1.7e9".to_string()),
        Just("1E2".to_string()),
        Just("1.50".to_string()),
        Just("5e-324".to_string()),
        Just("1.7976931348623157e308".to_string()),
        Just("0.30000000000000004".to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
    ]
}

/// A string value's characters, some of them timestamps.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        "\\PC{0,8}",
        "[\\x00-\\x1f\"\\\\/é€😀\u{7f}]{0,6}",
        Just("2023-11-14T22:13:20Z".to_string()),
        Just(" 2023-11-14T23:13:20+01:00\n".to_string()),
        Just("1700000000.5".to_string()),
        Just(String::new()),
    ]
}

/// An object key, often a reserved or a timestamp field's.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-c]",
        1 => Just("_id".to_string()),
        1 => Just("_ts".to_string()),
        1 => Just("_meta".to_string()),
        1 => Just("time".to_string()),
        1 => Just("timestamp".to_string()),
        1 => Just("ts".to_string()),
        1 => Just("line".to_string()),
        1 => "\\PC{0,4}",
        1 => Just("t\\ime".to_string()),
    ]
}

/// A JSON value nested at most `depth` deep.
pub fn json(depth: u32) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        (text(), prop::bool::weighted(0.1)).prop_map(|(s, e)| Json::Str(s, e)),
    ];
    leaf.prop_recursive(depth, 8 * depth, depth + 1, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..depth as usize + 1).prop_map(Json::Object),
        ]
    })
}

/// Writes `s` as a JSON string, every character escaped as `\u` when `escape_all`.
pub fn write_str(s: &str, escape_all: bool, out: &mut String) {
    if !escape_all {
        out.push_str(&serde_json::to_string(s).unwrap());
        return;
    }
    out.push('"');
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04X}"));
    }
    out.push('"');
}

/// Writes `v`, with a space after each comma when `spaced`.
pub fn write(v: &Json, spaced: bool, out: &mut String) {
    let sep = if spaced { ", " } else { "," };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::Str(s, e) => write_str(s, *e, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write(item, spaced, out);
            }
            out.push(']');
        }
        Json::Object(members) => write_object(members, spaced, out),
    }
}

/// Writes an object of `members` in their order (keys may repeat).
pub fn write_object(members: &[(String, Json)], spaced: bool, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(if spaced { ", " } else { "," });
        }
        write_str(k, false, out);
        out.push(':');
        write(v, spaced, out);
    }
    out.push('}');
}
