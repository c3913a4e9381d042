//! Parsing one syslog message: RFC 5424, RFC 3164, and what real devices send.
//!
//! Why not a crate: `syslog_loose` (what Vector uses) was tried first. It returns
//! structured-data values with their escapes (`\"`, `\\`, `\]`) still in, keeps
//! the UTF-8 BOM in RFC 5424 messages, rejects whole lines that have a valid PRI
//! but no BSD timestamp (Cisco `<189>29: *Mar  1 …`, Fortinet `<189>date=…`),
//! and needs `&str` input, so one bad byte would force a lossy copy of the line.
//! This parser works on bytes, borrows everything except unescaped values, and
//! draws the line between "parsed" and "parse error" explicitly:
//!
//! - `<PRI>VERSION SP …` is RFC 5424; a header that breaks the grammar (a bad
//!   timestamp, a missing field) is a parse error. Malformed structured data is
//!   not: the message then starts at the `[`.
//! - Anything else is RFC 3164: optional `<PRI>`, optional Cisco sequence number
//!   (`29: `) and clock mark (`*`/`.`), a BSD or RFC 3339 timestamp, then an
//!   optional hostname and an optional tag (`app[pid]:`, `app:`, `[pid]:`).
//!   With a PRI but no timestamp, the rest is the message (RFC 3164 §4.3.3).
//! - No PRI and no timestamp, or an invalid PRI (`<999>`, `<x>`), is a parse error.

use std::borrow::Cow;

use super::time::{self, TimeZone};

/// Largest PRI value: facility 23 (local7), severity 7 (debug).
const MAX_PRI: u32 = 191;

/// A message taken apart; byte fields are borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed<'a> {
    /// `facility * 8 + severity`, when the message had a PRI.
    pub pri: Option<u8>,
    /// The RFC 5424 version; `None` for RFC 3164.
    pub version: Option<u8>,
    /// Header time in milliseconds since the epoch.
    pub time_ms: Option<i64>,
    /// HOSTNAME.
    pub hostname: Option<&'a [u8]>,
    /// APP-NAME, or the RFC 3164 tag.
    pub app: Option<&'a [u8]>,
    /// PROCID, or the RFC 3164 `[pid]`.
    pub procid: Option<&'a [u8]>,
    /// MSGID (RFC 5424 only).
    pub msgid: Option<&'a [u8]>,
    /// STRUCTURED-DATA elements, in order.
    pub structured_data: Vec<SdElement<'a>>,
    /// MSG, without a leading BOM.
    pub message: &'a [u8],
}

/// One RFC 5424 SD-ELEMENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// SD-ID.
    pub id: &'a [u8],
    /// PARAM-NAME and unescaped PARAM-VALUE pairs; names may repeat.
    pub params: Vec<(&'a [u8], Cow<'a, [u8]>)>,
}

/// Why a message did not parse (kept whole as the event's `message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// One short reason, for `_meta.syslog.parse_error`.
    pub reason: &'static str,
    /// The PRI, when it was valid.
    pub pri: Option<u8>,
}

/// What parsing needs besides the bytes: when the message was received and the
/// zone of timestamps that carry none.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// Receive time, milliseconds since the epoch (year inference).
    pub now_ms: i64,
    /// The zone of RFC 3164 timestamps.
    pub zone: TimeZone,
}

/// Parses one message (a frame or a datagram, trailing line ends already removed).
pub fn parse<'a>(line: &'a [u8], cx: &ParseContext) -> Result<Parsed<'a>, ParseError> {
    let (pri, rest) = pri(line).map_err(|reason| ParseError { reason, pri: None })?;
    let fail = |reason| ParseError { reason, pri };
    if let Some((version, rest)) = version(rest) {
        return rfc5424(rest, pri, version, cx).map_err(fail);
    }
    rfc3164(rest, pri, cx).map_err(fail)
}

fn pri(s: &[u8]) -> Result<(Option<u8>, &[u8]), &'static str> {
    if s.first() != Some(&b'<') {
        return Ok((None, s));
    }
    let n = s[1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&n) || s.get(1 + n) != Some(&b'>') {
        return Err("invalid PRI: expected <0> to <191>");
    }
    let value = s[1..1 + n]
        .iter()
        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    if value > MAX_PRI {
        return Err("invalid PRI: expected <0> to <191>");
    }
    Ok((Some(value as u8), &s[n + 2..]))
}

/// `VERSION SP` (one or two digits, not starting with 0).
fn version(s: &[u8]) -> Option<(u8, &[u8])> {
    if !matches!(s.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let n = if s.get(1).is_some_and(u8::is_ascii_digit) {
        2
    } else {
        1
    };
    (s.get(n) == Some(&b' ')).then(|| {
        let v = s[..n].iter().fold(0u8, |v, d| v * 10 + (d - b'0'));
        (v, &s[n + 1..])
    })
}

/// The next space-delimited field and what follows its space (`None` at the end).
fn field(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b' ', s) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn nil(f: &[u8]) -> Option<&[u8]> {
    (f != b"-" && !f.is_empty()).then_some(f)
}

fn rfc5424<'a>(
    s: &'a [u8],
    pri: Option<u8>,
    version: u8,
    cx: &ParseContext,
) -> Result<Parsed<'a>, &'static str> {
    let early = "RFC 5424 header ends early: expected TIMESTAMP HOSTNAME APP-NAME PROCID MSGID";
    let (ts, rest) = field(s);
    let time_ms = match ts {
        b"-" => None,
        _ => match time::rfc3339(ts, cx.zone) {
            Some((ms, [])) => Some(ms),
            _ => return Err("invalid RFC 5424 timestamp"),
        },
    };
    let (hostname, rest) = field(rest.ok_or(early)?);
    let (app, rest) = field(rest.ok_or(early)?);
    let (procid, rest) = field(rest.ok_or(early)?);
    let (msgid, rest) = field(rest.ok_or(early)?);
    let mut parsed = Parsed {
        pri,
        version: Some(version),
        time_ms,
        hostname: nil(hostname),
        app: nil(app),
        procid: nil(procid),
        msgid: nil(msgid),
        ..Parsed::default()
    };
    let rest = rest.unwrap_or_default();
    let message = match rest.first() {
        Some(b'-') => rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..]),
        Some(b'[') => match structured_data(rest) {
            Some((elements, after)) => {
                parsed.structured_data = elements;
                after.strip_prefix(b" ").unwrap_or(after)
            }
            // Malformed structured data: keep it as the start of the message.
            None => rest,
        },
        _ => rest,
    };
    parsed.message = message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message);
    Ok(parsed)
}

/// One or more `[SD-ID PARAM="VALUE" …]` at the start of `s`, and what follows.
fn structured_data(mut s: &[u8]) -> Option<(Vec<SdElement<'_>>, &[u8])> {
    let mut elements = Vec::new();
    while let Some(body) = s.strip_prefix(b"[") {
        let id_len = body
            .iter()
            .position(|b| matches!(b, b' ' | b']' | b'=' | b'"'))?;
        let (id, mut p) = body.split_at(id_len);
        if id.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            match p.first()? {
                b']' => {
                    s = &p[1..];
                    break;
                }
                b' ' => p = &p[1..],
                _ => {
                    let name_len = p
                        .iter()
                        .position(|b| matches!(b, b'=' | b' ' | b']' | b'"'))?;
                    let (name, after) = p.split_at(name_len);
                    let after = after.strip_prefix(b"=\"").filter(|_| !name.is_empty())?;
                    let (value, after) = sd_value(after)?;
                    params.push((name, value));
                    p = after;
                }
            }
        }
        elements.push(SdElement { id, params });
    }
    Some((elements, s))
}

/// A PARAM-VALUE up to its closing quote, unescaping `\"`, `\\` and `\]`; other
/// backslashes are kept as they are (RFC 5424 §6.3.3).
fn sd_value(s: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let mut owned: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut copied = 0;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &s[i..])?;
        if s[j] == b'"' {
            let value = match owned {
                Some(mut v) => {
                    v.extend_from_slice(&s[copied..j]);
                    Cow::Owned(v)
                }
                None => Cow::Borrowed(&s[..j]),
            };
            return Some((value, &s[j + 1..]));
        }
        match s.get(j + 1) {
            Some(b'"' | b'\\' | b']') => {
                let v = owned.get_or_insert_with(Vec::new);
                v.extend_from_slice(&s[copied..j]);
                copied = j + 1;
                i = j + 2;
            }
            _ => i = j + 1,
        }
    }
}

fn rfc3164<'a>(
    s: &'a [u8],
    pri: Option<u8>,
    cx: &ParseContext,
) -> Result<Parsed<'a>, &'static str> {
    let mut rest = s;
    if pri.is_some() {
        rest = cisco_sequence(rest).unwrap_or(rest);
    }
    if let [b'*' | b'.', next, ..] = rest {
        if next.is_ascii_alphanumeric() {
            rest = &rest[1..];
        }
    }
    let stamped = if rest.first().is_some_and(u8::is_ascii_digit) {
        time::rfc3339(rest, cx.zone)
    } else {
        time::bsd(rest, cx.now_ms, cx.zone)
    };
    let mut parsed = Parsed {
        pri,
        ..Parsed::default()
    };
    let Some((time_ms, after)) = stamped else {
        if pri.is_none() {
            return Err("no PRI and no timestamp: not a syslog message");
        }
        // RFC 3164 §4.3.3: without a valid timestamp, everything after the PRI is content.
        parsed.message = s;
        return Ok(parsed);
    };
    parsed.time_ms = Some(time_ms);
    let after = after.strip_prefix(b":").unwrap_or(after);
    let mut rest = trim_spaces(after);
    let (first, after_first) = field(rest);
    if let Some((app, procid)) = tag(first, true) {
        (parsed.app, parsed.procid) = (app, procid);
        rest = after_first.unwrap_or_default();
    } else if looks_like_hostname(first) {
        parsed.hostname = Some(first);
        rest = trim_spaces(after_first.unwrap_or_default());
        let (second, after_second) = field(rest);
        if let Some((app, procid)) = tag(second, false) {
            (parsed.app, parsed.procid) = (app, procid);
            rest = after_second.unwrap_or_default();
        }
    }
    parsed.message = rest;
    Ok(parsed)
}

/// Skips a Cisco sequence number such as `29: ` or `000123: `.
fn cisco_sequence(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take(11).take_while(|b| b.is_ascii_digit()).count();
    (n > 0 && n <= 10 && s[n..].starts_with(b": ")).then(|| &s[n + 2..])
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b' ').count();
    &s[n..]
}

/// A tag: `app[pid]:`, `app:`, `[pid]:`, or (without the colon) `app[digits]`.
/// Returns (app, procid). `first` is true right after the timestamp, where a
/// tag without a colon would be taken for a hostname, so the colon is required.
#[allow(clippy::type_complexity)]
fn tag(token: &[u8], first: bool) -> Option<(Option<&[u8]>, Option<&[u8]>)> {
    if token.is_empty() || token.len() > 64 {
        return None;
    }
    let (body, colon) = match token.strip_suffix(b":") {
        Some(body) => (body, true),
        None => (token, false),
    };
    if !colon && first {
        return None;
    }
    let (app, procid) = match body.strip_suffix(b"]") {
        Some(inner) => {
            let open = memchr::memrchr(b'[', inner)?;
            (&inner[..open], Some(&inner[open + 1..]))
        }
        None if colon => (body, None),
        None => return None,
    };
    if !colon
        && (app.is_empty()
            || !procid.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit)))
    {
        return None;
    }
    let app_ok = app.is_empty()
        || (app[0].is_ascii_alphanumeric() || matches!(app[0], b'_' | b'/' | b'.' | b'('))
            && !app.contains(&b'[');
    if !app_ok || (app.is_empty() && procid.is_none_or(<[u8]>::is_empty)) {
        return None;
    }
    Some((nil(app), procid.and_then(nil)))
}

/// Host names and IP addresses: letters, digits, `.`, `-`, `_`, `:`; not a tag.
fn looks_like_hostname(token: &[u8]) -> bool {
    !token.is_empty()
        && token.len() <= 255
        && !token.ends_with(b":")
        && token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
