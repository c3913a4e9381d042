//! Reading object keys back: which prefixes to list for a time range, and which
//! hour and part a listed key holds.
//!
//! A layout is a key template (`key_template`'s syntax: strftime fields,
//! `{account_id}`, `{part}`) plus `*` for any run of characters within one path
//! segment (foreign archives name files `archive_<random>.json.gz`). Restore
//! lists one prefix per day: the template rendered for that day up to its first
//! field that changes within the day (for the default layout,
//! `year=2026/month=11/day=22/acme.2026-11-22.`). When the template puts no date
//! field before the hour, it lists one prefix per hour instead; a template whose
//! first field changes within the hour could only be read by listing everything
//! under its literal start, and is refused.

use chrono::{Datelike, TimeZone, Timelike, Utc};
use regex::Regex;

/// Fields of a template, as restore reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Year,
    Year2,
    Month,
    Day,
    DayOfYear,
    Hour,
    Part,
    Any,
}

/// A parsed layout.
#[derive(Debug, Clone)]
pub struct Layout {
    tokens: Vec<Token>,
    pattern: Regex,
    /// Listing units are days (else hours).
    by_day: bool,
}

/// How long a listing unit lasts, in seconds.
const DAY: i64 = 86_400;
const HOUR: i64 = 3600;

/// What a key says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTime {
    /// Start of the hour, seconds since the epoch.
    pub hour: i64,
    /// 0 for the primary object, N for `.N`.
    pub part: u32,
}

/// One listing: a prefix and the hours its keys can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// What to list.
    pub prefix: String,
    /// First hour (seconds) the unit covers.
    pub first_hour: i64,
    /// Hours covered.
    pub hours: i64,
}

impl Layout {
    /// Parses `template`, replacing `{account_id}` with `account_id`.
    pub fn parse(template: &str, account_id: &str) -> Result<Layout, String> {
        let tokens = tokenize(&template.replace("{account_id}", account_id))?;
        if !tokens.contains(&Token::Hour) {
            return Err(format!(
                "layout `{template}` has no %H: restore finds each hour's objects by it"
            ));
        }
        let date_before_hour = tokens.iter().take_while(|t| **t != Token::Hour).any(|t| {
            matches!(
                t,
                Token::Year | Token::Year2 | Token::Month | Token::Day | Token::DayOfYear
            )
        });
        let varies_before_hour = tokens
            .iter()
            .take_while(|t| **t != Token::Hour)
            .any(|t| matches!(t, Token::Part | Token::Any));
        if varies_before_hour && !date_before_hour {
            return Err(format!("layout `{template}` has `*` or {{part}} before its time fields: reading it would mean listing everything under its literal start"));
        }
        let pattern =
            Regex::new(&regex_of(&tokens)).map_err(|e| format!("layout `{template}`: {e}"))?;
        Ok(Layout {
            by_day: date_before_hour,
            tokens,
            pattern,
        })
    }

    /// Whether keys within one listing unit sort by hour (so an hour's objects
    /// come together): the first field after the unit's prefix is `%H`.
    pub fn hour_ordered(&self) -> bool {
        if !self.by_day {
            return true;
        }
        self.tokens
            .iter()
            .find(|t| matches!(t, Token::Hour | Token::Part | Token::Any))
            == Some(&Token::Hour)
    }

    /// The listings that cover the hours of `hours` (hour starts in seconds, ascending), in order.
    pub fn units(&self, hours: impl IntoIterator<Item = i64>) -> Vec<Unit> {
        let span = if self.by_day { DAY } else { HOUR };
        let mut units: Vec<Unit> = Vec::new();
        for hour in hours {
            let start = hour.div_euclid(span) * span;
            match units.last_mut() {
                Some(u) if u.first_hour.div_euclid(span) * span == start => {
                    u.hours = (hour - u.first_hour) / HOUR + 1
                }
                _ => units.push(Unit {
                    prefix: self.prefix(start, span),
                    first_hour: hour,
                    hours: 1,
                }),
            }
        }
        units
    }

    /// The template rendered for the unit starting at `start` up to its first
    /// field that changes within `span` seconds.
    fn prefix(&self, start: i64, span: i64) -> String {
        let t = Utc.timestamp_opt(start, 0).single().unwrap_or_default();
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Year => out.push_str(&format!("{:04}", t.year())),
                Token::Year2 => out.push_str(&format!("{:02}", t.year() % 100)),
                Token::Month => out.push_str(&format!("{:02}", t.month())),
                Token::Day => out.push_str(&format!("{:02}", t.day())),
                Token::DayOfYear => out.push_str(&format!("{:03}", t.ordinal())),
                Token::Hour if span <= HOUR => out.push_str(&format!("{:02}", t.hour())),
                Token::Hour | Token::Part | Token::Any => break,
            }
        }
        out
    }

    /// The hour and part of `key`, or `None` when the key does not follow the layout.
    pub fn read(&self, key: &str) -> Option<KeyTime> {
        let caps = self.pattern.captures(key)?;
        let number = |name: &str| caps.name(name).map(|m| m.as_str().parse::<u32>());
        let year = match (number("Y"), number("y")) {
            (Some(y), _) => y.ok()? as i32,
            (None, Some(y)) => 2000 + y.ok()? as i32,
            (None, None) => return None,
        };
        let hour = number("H")?.ok()?;
        let date = match (number("m"), number("d"), number("j")) {
            (Some(m), Some(d), _) => chrono::NaiveDate::from_ymd_opt(year, m.ok()?, d.ok()?)?,
            (_, _, Some(j)) => chrono::NaiveDate::from_yo_opt(year, j.ok()?)?,
            _ => return None,
        };
        let at = date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp();
        let part = match number("part") {
            Some(p) => p.ok()?,
            None => 0,
        };
        Some(KeyTime { hour: at, part })
    }
}

fn tokenize(template: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    let flush = |literal: &mut String, tokens: &mut Vec<Token>| {
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(literal)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let spec = chars.next().ok_or("a layout may not end with `%`")?;
                let token = match spec {
                    '%' => {
                        literal.push('%');
                        continue;
                    }
                    'Y' => Token::Year,
                    'y' => Token::Year2,
                    'm' => Token::Month,
                    'd' => Token::Day,
                    'j' => Token::DayOfYear,
                    'H' => Token::Hour,
                    'F' => {
                        flush(&mut literal, &mut tokens);
                        tokens.extend([
                            Token::Year,
                            Token::Literal("-".into()),
                            Token::Month,
                            Token::Literal("-".into()),
                            Token::Day,
                        ]);
                        continue;
                    }
                    other => return Err(format!("`%{other}` cannot be read back from a key; restore reads %Y, %y, %m, %d, %j, %H and %F")),
                };
                flush(&mut literal, &mut tokens);
                tokens.push(token);
            }
            '*' => {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Any);
            }
            '{' if template_rest_starts(&mut chars, "part}") => {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Part);
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut tokens);
    Ok(tokens)
}

/// Consumes `expected` from `chars` if it comes next.
fn template_rest_starts(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    expected: &str,
) -> bool {
    let rest: String = chars.clone().take(expected.len()).collect();
    if rest == expected {
        for _ in 0..expected.len() {
            chars.next();
        }
        true
    } else {
        false
    }
}

fn regex_of(tokens: &[Token]) -> String {
    let mut re = String::from("^");
    let mut seen = std::collections::HashSet::new();
    for token in tokens {
        // A field that appears twice (the default layout has the date twice) must agree;
        // the regex captures its first occurrence and matches later ones as digits.
        let (name, digits) = match token {
            Token::Literal(s) => {
                re.push_str(&regex::escape(s));
                continue;
            }
            Token::Any => {
                re.push_str("[^/]*");
                continue;
            }
            Token::Part => {
                // `.N`, or `.{topic}-{partition}-{first_offset}` for objects of a
                // Kafka partition (their part number reads as 0: they are ordered
                // by key like any part).
                let kafka = r"\.[A-Za-z0-9._-]+-[0-9]+-[0-9]+";
                if seen.insert("part") {
                    re.push_str(&format!(r"(?:\.(?P<part>[0-9]+)|{kafka})?"));
                } else {
                    re.push_str(&format!(r"(?:\.[0-9]+|{kafka})?"));
                }
                continue;
            }
            Token::Year => ("Y", 4),
            Token::Year2 => ("y", 2),
            Token::Month => ("m", 2),
            Token::Day => ("d", 2),
            Token::DayOfYear => ("j", 3),
            Token::Hour => ("H", 2),
        };
        if seen.insert(name) {
            re.push_str(&format!("(?P<{name}>[0-9]{{{digits}}})"));
        } else {
            re.push_str(&format!("[0-9]{{{digits}}}"));
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "year=%Y/month=%m/day=%d/{account_id}.%Y-%m-%d.%H00{part}.json.gz";
    const HOUR9: i64 = 1_763_802_000; // 2025-11-22T09:00:00Z

    #[test]
    fn the_default_layout_lists_one_prefix_per_day_and_reads_hour_and_part() {
        let l = Layout::parse(DEFAULT, "acme").unwrap();
        let units = l.units([HOUR9, HOUR9 + 3600, HOUR9 + 15 * 3600, HOUR9 + 16 * 3600]);
        assert_eq!(
            units,
            [
                Unit {
                    prefix: "year=2025/month=11/day=22/acme.2025-11-22.".into(),
                    first_hour: HOUR9,
                    hours: 2
                },
                Unit {
                    prefix: "year=2025/month=11/day=23/acme.2025-11-23.".into(),
                    first_hour: HOUR9 + 15 * 3600,
                    hours: 2
                },
            ]
        );
        assert_eq!(
            l.read("year=2025/month=11/day=22/acme.2025-11-22.0900.json.gz"),
            Some(KeyTime {
                hour: HOUR9,
                part: 0
            })
        );
        assert_eq!(
            l.read("year=2025/month=11/day=22/acme.2025-11-22.0900.12.json.gz"),
            Some(KeyTime {
                hour: HOUR9,
                part: 12
            })
        );
        assert_eq!(
            l.read("year=2025/month=11/day=22/other.2025-11-22.0900.json.gz"),
            None
        );
        assert_eq!(
            l.read("year=2025/month=11/day=22/acme.2025-11-22.0900.json.gz.tmp"),
            None
        );
        assert_eq!(l.read("sediment-verified"), None);
        assert_eq!(
            l.read("year=2025/month=11/day=22/acme.2025-11-22.0900.app.logs-3-1200.json.gz"),
            Some(KeyTime {
                hour: HOUR9,
                part: 0
            }),
            "a Kafka partition's object"
        );
    }

    #[test]
    fn a_datadog_layout_with_a_wildcard_file_name() {
        let l = Layout::parse("dt=%Y%m%d/hour=%H/archive_*.json.gz", "x").unwrap();
        assert_eq!(l.units([HOUR9])[0].prefix, "dt=20251122/hour=");
        assert_eq!(
            l.read("dt=20251122/hour=09/archive_093512.1234.abcd.json.gz"),
            Some(KeyTime {
                hour: HOUR9,
                part: 0
            })
        );
        assert_eq!(
            l.read("dt=20251122/hour=09/sub/archive_1.json.gz"),
            None,
            "`*` stays in its segment"
        );
    }

    #[test]
    fn hour_units_when_no_date_comes_before_the_hour_and_refusals() {
        let l = Layout::parse("%H/%Y-%m-%d{part}.json.gz", "x").unwrap();
        assert_eq!(l.units([HOUR9])[0].prefix, "09/2025-11-22");
        assert!(Layout::parse("logs/%Y/%m/%d.json.gz", "x")
            .unwrap_err()
            .contains("no %H"));
        assert!(Layout::parse("*/%H/%Y%m%d.gz", "x")
            .unwrap_err()
            .contains("listing everything"));
        assert!(Layout::parse("%Y/%b/%H.gz", "x")
            .unwrap_err()
            .contains("`%b` cannot be read back"));
    }

    #[test]
    fn every_rendered_hour_of_the_sink_templates_reads_back() {
        let template = sediment_sinks::archive::naming::KeyTemplate::new(DEFAULT, "acme").unwrap();
        let l = Layout::parse(DEFAULT, "acme").unwrap();
        for h in (0..24 * 400).map(|i| HOUR9 + i * 3600) {
            for part in [0, 1, 17] {
                let key = template.render(h, part);
                assert_eq!(l.read(&key), Some(KeyTime { hour: h, part }), "{key}");
                let unit = &l.units([h])[0];
                assert!(key.starts_with(&unit.prefix), "{key} outside {unit:?}");
            }
        }
    }
}
