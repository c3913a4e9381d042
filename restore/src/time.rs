//! The time range of a restore: `--from`/`--to` in the forms an operator types.
//!
//! Accepted: RFC 3339 (`2026-11-22T09:00:00Z`, any offset), a date
//! (`2026-11-22`, midnight UTC), a date and time without offset
//! (`2026-11-22T09:00`, UTC), epoch seconds (`1763802000`), `now`, and a
//! duration before now (`-6h`, `-2d`, `-90m`, `-1h30m`). The range is half-open,
//! `[from, to)`, in milliseconds since the epoch.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A half-open event-time range, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeRange {
    /// First millisecond included.
    pub from_ms: i64,
    /// First millisecond excluded.
    pub to_ms: i64,
}

impl TimeRange {
    /// Whether `ms` is inside.
    pub fn contains(&self, ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&ms)
    }

    /// Whether the hour starting at `hour_start` (seconds) overlaps the range.
    pub fn overlaps_hour(&self, hour_start: i64) -> bool {
        let start = hour_start * 1000;
        start < self.to_ms && start + 3_600_000 > self.from_ms
    }

    /// Hour starts (seconds) of every hour the range touches, in order.
    pub fn hours(&self) -> impl Iterator<Item = i64> {
        let first = self.from_ms.div_euclid(3_600_000) * 3600;
        let end = self.to_ms;
        (0..)
            .map(move |i| first + i * 3600)
            .take_while(move |h| h * 1000 < end)
    }

    /// Checks `from < to` and that `from` is not in the future; the error names the flag.
    pub fn new(from_ms: i64, to_ms: i64, now_ms: i64) -> Result<TimeRange, String> {
        if from_ms >= to_ms {
            return Err(format!(
                "--from ({}) must be before --to ({}): the range is [from, to)",
                format_ms(from_ms),
                format_ms(to_ms)
            ));
        }
        if from_ms > now_ms {
            return Err(format!(
                "--from ({}) is in the future; nothing can be archived there yet",
                format_ms(from_ms)
            ));
        }
        Ok(TimeRange { from_ms, to_ms })
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    sediment_core::event::format_time_ms(ms)
}

/// Parses one `--from`/`--to` value relative to `now_ms`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    let bad = || {
        format!("`{t}` is not a time: use RFC 3339 (2026-11-22T09:00:00Z), a date (2026-11-22), epoch seconds, `now`, or a duration before now such as -6h or -2d")
    };
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(ago) = t.strip_prefix('-') {
        let d = humantime::parse_duration(ago).map_err(|_| bad())?;
        return Ok(now_ms - d.as_millis() as i64);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = t.parse().map_err(|_| bad())?;
        return secs.checked_mul(1000).ok_or_else(bad);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(at.and_utc().timestamp_millis());
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(bad())
}

/// Now, in milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The event time of an archived line's raw `_ts` value (its JSON text).
///
/// sediment always writes `_ts` as `"YYYY-MM-DDTHH:MM:SS.mmmZ"`; that form is
/// read digit by digit here, because restore does it once per line and the
/// general parser (a `serde_json::Value`, then chrono) costs more than the rest
/// of judging the line. Anything else (lines archived by other tools, odd
/// values) goes through [`sediment_core::event::parse_time_ms`], whose result
/// the fast form always equals.
pub fn line_time_ms(raw: &str) -> Option<i64> {
    fast_ts_ms(raw.as_bytes()).or_else(|| {
        let value: serde_json::Value = serde_json::from_str(raw).ok()?;
        sediment_core::event::parse_time_ms(&value)
    })
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"` in milliseconds, or `None` for any other text
/// (including out-of-range fields, which the general parser then judges).
fn fast_ts_ms(b: &[u8]) -> Option<i64> {
    if b.len() != 26 || b[0] != b'"' || &b[24..] != b"Z\"" {
        return None;
    }
    let t = &b[1..24];
    for (i, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        if t[i] != sep {
            return None;
        }
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        t[from..to].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1971..=9999).contains(&year)
        || day == 0
        || day > month_days
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_802_000_000; // 2025-11-22T09:00:00Z

    #[test]
    fn every_accepted_form() {
        assert_eq!(parse_time("2025-11-22T09:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2025-11-22T10:00:00+01:00", 0), Ok(NOW));
        assert_eq!(parse_time("2025-11-22T09:00", 0), Ok(NOW));
        assert_eq!(parse_time("2025-11-22", 0), Ok(NOW - 9 * 3_600_000));
        assert_eq!(parse_time("1763802000", 0), Ok(NOW));
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("-6h", NOW), Ok(NOW - 6 * 3_600_000));
        assert_eq!(parse_time("-2d", NOW), Ok(NOW - 48 * 3_600_000));
        assert_eq!(parse_time("-1h30m", NOW), Ok(NOW - 90 * 60_000));
        let e = parse_time("yesterday", NOW).unwrap_err();
        assert!(e.starts_with("`yesterday` is not a time"), "{e}");
        assert!(parse_time("-6 parsecs", NOW).is_err());
    }

    #[test]
    fn a_range_must_be_ordered_and_start_in_the_past() {
        let e = TimeRange::new(NOW, NOW, NOW).unwrap_err();
        assert!(
            e.contains("--from") && e.contains("must be before --to"),
            "{e}"
        );
        let e = TimeRange::new(NOW + 1, NOW + 10, NOW).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
        let r = TimeRange::new(NOW - 1, NOW + 3_600_000, NOW).unwrap();
        assert!(r.contains(NOW - 1) && !r.contains(NOW + 3_600_000));
    }

    #[test]
    fn hours_cover_a_range_that_cuts_hours_in_the_middle() {
        let h = NOW / 1000;
        let r = TimeRange {
            from_ms: NOW + 1_800_000,
            to_ms: NOW + 2 * 3_600_000 + 1,
        };
        let hours: Vec<i64> = r.hours().collect();
        assert_eq!(hours, [h, h + 3600, h + 7200]);
        assert!(r.overlaps_hour(h) && r.overlaps_hour(h + 7200));
        assert!(!r.overlaps_hour(h - 3600) && !r.overlaps_hour(h + 3 * 3600));
    }

    #[test]
    fn archived_ts_is_read_fast_and_exactly_as_the_general_parser_reads_it() {
        for raw in [
            "\"2026-11-22T09:00:00.000Z\"",
            "\"2024-02-29T23:59:59.999Z\"",
            "\"1971-01-01T00:00:00.000Z\"",
            "\"9999-12-31T23:59:59.999Z\"",
        ] {
            let general = sediment_core::event::parse_time_ms(&serde_json::from_str(raw).unwrap());
            assert_eq!(fast_ts_ms(raw.as_bytes()), general, "{raw}");
        }
        for odd in [
            "\"2023-02-29T00:00:00.000Z\"",
            "\"2026-13-01T00:00:00.000Z\"",
            "\"2026-11-22T24:00:00.000Z\"",
            "\"2026-11-22T09:00:60.000Z\"",
            "\"1970-06-01T00:00:00.000Z\"",
            "\"2026-11-22 09:00:00.000Z\"",
            "\"2026-11-22T09:00:00.000+01:00\"",
            "1763802000",
        ] {
            assert_eq!(fast_ts_ms(odd.as_bytes()), None, "{odd}");
        }
        assert_eq!(line_time_ms("1763802000"), Some(1_763_802_000_000));
        assert_eq!(
            line_time_ms("\"2026-11-22T10:00:00+01:00\""),
            Some(1_795_338_000_000)
        );
    }

    proptest::proptest! {
        #[test]
        fn the_fast_form_agrees_with_the_general_parser(ms in 0i64..253_402_300_800_000) {
            let raw = format!("\"{}\"", sediment_core::event::format_time_ms(ms));
            let general = sediment_core::event::parse_time_ms(&serde_json::from_str(&raw).unwrap());
            proptest::prop_assert_eq!(fast_ts_ms(raw.as_bytes()), general);
            proptest::prop_assert_eq!(line_time_ms(&raw), general);
        }
    }
}
