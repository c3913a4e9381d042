//! Syslog timestamps: RFC 3339 (RFC 5424 and "high precision" RFC 3164), the BSD
//! `Mmm dd hh:mm:ss` of RFC 3164, the time zone such a timestamp leaves out, and
//! the year it leaves out.
//!
//! Year inference: a BSD timestamp gets the most recent year that does not put it
//! more than [`FUTURE_TOLERANCE_MS`] after the receive time. So `Dec 31 23:59:58`
//! received on 1 January belongs to last year, `Jan  1 00:00:03` received a few
//! seconds before midnight on 31 December (a sender clock slightly ahead) belongs
//! to next year, and `Feb 29` goes back to the last leap year.

use chrono::{Datelike, NaiveDate, TimeZone as _};

/// How far in the future a BSD timestamp may be (sender clocks ahead, zones
/// misconfigured by hours) before it is taken as last year's.
pub const FUTURE_TOLERANCE_MS: i64 = 24 * 3_600_000;

const DAY_MS: i64 = 86_400_000;

/// The zone of timestamps that carry none (RFC 3164).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeZone {
    /// Coordinated Universal Time.
    Utc,
    /// The zone of the machine sediment runs on (`TZ`, else `/etc/localtime`).
    Local,
    /// A fixed offset east of UTC, in seconds.
    Fixed(i32),
}

impl TimeZone {
    /// Parses `UTC`, `local`, or an offset such as `+02:00`, `-0530` or `+02`.
    pub fn parse(text: &str) -> Result<TimeZone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t == "+00:00" {
            return Ok(TimeZone::Utc);
        }
        if t.eq_ignore_ascii_case("local") {
            return Ok(TimeZone::Local);
        }
        let bad = || {
            format!(
                "invalid time zone `{t}`: expected `UTC`, `local` or an offset such as `+02:00`"
            )
        };
        let sign = match t.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad()),
        };
        let digits: String = t[1..].chars().filter(|c| *c != ':').collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
            return Err(bad());
        }
        let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
        let minutes: i32 = if digits.len() == 4 {
            digits[2..].parse().map_err(|_| bad())?
        } else {
            0
        };
        if hours > 14 || minutes > 59 {
            return Err(bad());
        }
        Ok(TimeZone::Fixed(sign * (hours * 3600 + minutes * 60)))
    }

    /// Milliseconds since the epoch of a wall-clock time in this zone.
    fn to_utc_ms(self, c: &Civil) -> Option<i64> {
        match self {
            TimeZone::Utc => c.as_utc_ms(),
            TimeZone::Fixed(offset) => c.as_utc_ms().map(|ms| ms - i64::from(offset) * 1000),
            TimeZone::Local => {
                let naive = NaiveDate::from_ymd_opt(c.year as i32, c.month, c.day)?
                    .and_hms_milli_opt(c.hour, c.minute, c.second.min(59), c.milli)?;
                // In a DST gap no such local time exists; use the offset in force just after.
                let local = chrono::Local
                    .from_local_datetime(&naive)
                    .earliest()
                    .unwrap_or_else(|| chrono::Local.from_utc_datetime(&naive));
                Some(local.timestamp_millis())
            }
        }
    }

    /// The calendar year at `ms` in this zone.
    fn year_at(self, ms: i64) -> i64 {
        match self {
            TimeZone::Utc => civil_from_days(ms.div_euclid(DAY_MS)).0,
            TimeZone::Fixed(offset) => {
                civil_from_days((ms + i64::from(offset) * 1000).div_euclid(DAY_MS)).0
            }
            TimeZone::Local => chrono::Local
                .timestamp_millis_opt(ms)
                .single()
                .map(|t| i64::from(t.year()))
                .unwrap_or_else(|| civil_from_days(ms.div_euclid(DAY_MS)).0),
        }
    }
}

/// A wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    milli: u32,
}

impl Civil {
    fn valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second <= 60
    }

    /// As if it were UTC; `None` when it is not a real date.
    fn as_utc_ms(&self) -> Option<i64> {
        if !self.valid() {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        Some(days * DAY_MS + secs * 1000 + i64::from(self.milli))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Reads exactly `n` ASCII digits at the start of `s`.
fn digits(s: &[u8], n: usize) -> Option<u32> {
    let d = s.get(..n)?;
    d.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// `hh:mm:ss[.fraction]` → (hour, minute, second, milli, bytes used).
fn clock(s: &[u8]) -> Option<(u32, u32, u32, u32, usize)> {
    let hour = digits(s, 2)?;
    let minute = (s.get(2) == Some(&b':')).then(|| digits(&s[3..], 2))??;
    let second = (s.get(5) == Some(&b':')).then(|| digits(&s[6..], 2))??;
    let mut used = 8;
    let mut milli = 0;
    if s.get(8) == Some(&b'.') {
        let frac = s[9..].iter().take_while(|b| b.is_ascii_digit()).count();
        if frac == 0 {
            return None;
        }
        for (i, b) in s[9..9 + frac.min(3)].iter().enumerate() {
            milli += u32::from(b - b'0') * [100, 10, 1][i];
        }
        used = 9 + frac;
    }
    Some((hour, minute, second, milli, used))
}

/// An RFC 3339 timestamp at the start of `s` (`2003-10-11T22:14:15.003Z`); without
/// an offset it is read in `zone`. Returns milliseconds and the rest of `s`.
pub fn rfc3339(s: &[u8], zone: TimeZone) -> Option<(i64, &[u8])> {
    let year = digits(s, 4)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') || !matches!(s.get(10), Some(b'T' | b't'))
    {
        return None;
    }
    let (hour, minute, second, milli, used) = clock(&s[11..])?;
    let civil = Civil {
        year: i64::from(year),
        month: digits(&s[5..], 2)?,
        day: digits(&s[8..], 2)?,
        hour,
        minute,
        second,
        milli,
    };
    let rest = &s[11 + used..];
    match rest.first() {
        Some(b'Z' | b'z') => Some((civil.as_utc_ms()?, &rest[1..])),
        Some(sign @ (b'+' | b'-')) => {
            let h = digits(&rest[1..], 2)?;
            let (m, len) = match rest.get(3) {
                Some(b':') => (digits(&rest[4..], 2)?, 6),
                Some(b'0'..=b'9') => (digits(&rest[3..], 2)?, 5),
                _ => (0, 3),
            };
            if h > 23 || m > 59 {
                return None;
            }
            let offset = i64::from(h * 3600 + m * 60) * 1000;
            let ms = civil.as_utc_ms()?;
            Some((
                if *sign == b'+' {
                    ms - offset
                } else {
                    ms + offset
                },
                &rest[len..],
            ))
        }
        _ => Some((zone.to_utc_ms(&civil)?, rest)),
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// A BSD timestamp at the start of `s`: `Mmm dd hh:mm:ss`, where the day may be
/// space-padded, the seconds may carry a fraction and a year may stand before the
/// time (`Mar  1 2024 00:02:32`, Cisco). Returns milliseconds and the rest of `s`.
pub fn bsd(s: &[u8], now_ms: i64, zone: TimeZone) -> Option<(i64, &[u8])> {
    let name = s.get(..3)?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| m[..] == name[..])? as u32 + 1;
    let mut i = 3;
    let spaces = s[i..].iter().take_while(|b| **b == b' ').count();
    if spaces == 0 || spaces > 2 {
        return None;
    }
    i += spaces;
    let day_len = s[i..]
        .iter()
        .take(3)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=2).contains(&day_len) || s.get(i + day_len) != Some(&b' ') {
        return None;
    }
    let day = digits(&s[i..], day_len)?;
    i += day_len + 1;
    let mut year = None;
    if let (Some(y), Some(b' ')) = (digits(&s[i..], 4), s.get(i + 4)) {
        year = Some(i64::from(y));
        i += 5;
    }
    let (hour, minute, second, milli, used) = clock(&s[i..])?;
    let rest = &s[i + used..];
    let civil = |year| Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        milli,
    };
    let ms = match year {
        Some(y) => zone.to_utc_ms(&civil(y))?,
        None => infer_year(now_ms, zone, civil)?,
    };
    Some((ms, rest))
}

/// The most recent year that puts `civil(year)` no further than
/// [`FUTURE_TOLERANCE_MS`] after `now_ms`.
fn infer_year(now_ms: i64, zone: TimeZone, civil: impl Fn(i64) -> Civil) -> Option<i64> {
    let this_year = zone.year_at(now_ms);
    // Eight years back reaches a 29 February even across a non-leap century year.
    (this_year - 8..=this_year + 1)
        .rev()
        .filter_map(|y| zone.to_utc_ms(&civil(y)))
        .find(|ms| *ms <= now_ms + FUTURE_TOLERANCE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn bsd_at(s: &str, now: &str, zone: TimeZone) -> Option<i64> {
        bsd(s.as_bytes(), utc(now), zone).map(|(ms, _)| ms)
    }

    #[test]
    fn civil_days_round_trip() {
        for z in [-800_000, -1, 0, 1, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn rfc3339_forms() {
        let p = |s: &str| rfc3339(s.as_bytes(), TimeZone::Utc).map(|(ms, rest)| (ms, rest.len()));
        assert_eq!(
            p("2003-10-11T22:14:15.003Z"),
            Some((utc("2003-10-11T22:14:15.003Z"), 0))
        );
        assert_eq!(
            p("2003-08-24T05:14:15.000003-07:00 host"),
            Some((utc("2003-08-24T12:14:15.000Z"), 5))
        );
        assert_eq!(
            p("2003-08-24T05:14:15+0200"),
            Some((utc("2003-08-24T03:14:15Z"), 0))
        );
        assert_eq!(
            p("2024-02-29T00:00:00"),
            Some((utc("2024-02-29T00:00:00Z"), 0))
        );
        assert_eq!(
            rfc3339(b"2024-06-01T12:00:00", TimeZone::Fixed(7200)).map(|r| r.0),
            Some(utc("2024-06-01T10:00:00Z"))
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2003-13-11T22:14:15Z",
            "2003-10-11 22:14:15Z",
            "2003-10-11T22:14:15.Z",
            "-",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn bsd_forms() {
        let now = "2024-06-15T12:00:00Z";
        assert_eq!(
            bsd_at("Oct 11 22:14:15 host", now, TimeZone::Utc),
            Some(utc("2023-10-11T22:14:15Z"))
        );
        assert_eq!(
            bsd_at("Jun  5 01:02:03", now, TimeZone::Utc),
            Some(utc("2024-06-05T01:02:03Z"))
        );
        assert_eq!(
            bsd_at("jun 05 01:02:03.250", now, TimeZone::Utc),
            Some(utc("2024-06-05T01:02:03.250Z"))
        );
        assert_eq!(
            bsd_at("Mar  1 2021 00:02:32", now, TimeZone::Utc),
            Some(utc("2021-03-01T00:02:32Z"))
        );
        assert_eq!(
            bsd_at("Jun  5 01:02:03", now, TimeZone::Fixed(7200)),
            Some(utc("2024-06-04T23:02:03Z"))
        );
        for bad in [
            "Foo 11 22:14:15",
            "Oct 32 22:14:15",
            "Oct 11 22:14",
            "Oct11 22:14:15",
            "Oct 11 25:00:00",
        ] {
            assert_eq!(bsd_at(bad, now, TimeZone::Utc), None, "{bad}");
        }
    }

    #[test]
    fn year_inference_around_new_year() {
        // December received early in January: last year.
        assert_eq!(
            bsd_at("Dec 31 23:59:58", "2025-01-01T00:00:05Z", TimeZone::Utc),
            Some(utc("2024-12-31T23:59:58Z"))
        );
        assert_eq!(
            bsd_at("Dec 20 10:00:00", "2025-01-10T00:00:00Z", TimeZone::Utc),
            Some(utc("2024-12-20T10:00:00Z"))
        );
        // A sender clock a little ahead at midnight: next year.
        assert_eq!(
            bsd_at("Jan  1 00:00:03", "2024-12-31T23:59:59Z", TimeZone::Utc),
            Some(utc("2025-01-01T00:00:03Z"))
        );
        // Same day, same year.
        assert_eq!(
            bsd_at("Jan  1 00:00:03", "2025-01-01T00:10:00Z", TimeZone::Utc),
            Some(utc("2025-01-01T00:00:03Z"))
        );
        // Months ahead of now is in the past: last year.
        assert_eq!(
            bsd_at("Jun 14 15:16:01", "2025-01-05T00:00:00Z", TimeZone::Utc),
            Some(utc("2024-06-14T15:16:01Z"))
        );
        // 29 February goes back to the last leap year.
        assert_eq!(
            bsd_at("Feb 29 12:00:00", "2027-03-01T00:00:00Z", TimeZone::Utc),
            Some(utc("2024-02-29T12:00:00Z"))
        );
        // The zone decides which year "now" is in: 23:30 UTC on 31 Dec is already 2025 at +02:00.
        assert_eq!(
            bsd_at(
                "Jan  1 01:00:00",
                "2024-12-31T23:30:00Z",
                TimeZone::Fixed(7200)
            ),
            Some(utc("2024-12-31T23:00:00Z"))
        );
    }

    #[test]
    fn time_zones() {
        assert_eq!(TimeZone::parse("UTC"), Ok(TimeZone::Utc));
        assert_eq!(TimeZone::parse("local"), Ok(TimeZone::Local));
        assert_eq!(TimeZone::parse("+02:00"), Ok(TimeZone::Fixed(7200)));
        assert_eq!(TimeZone::parse("-0530"), Ok(TimeZone::Fixed(-19800)));
        assert_eq!(TimeZone::parse("+02"), Ok(TimeZone::Fixed(7200)));
        assert!(TimeZone::parse("Europe/Paris")
            .unwrap_err()
            .contains("`Europe/Paris`"));
        assert!(TimeZone::parse("+25:00").is_err());
        let local = bsd_at("Jun  5 01:02:03", "2024-06-15T12:00:00Z", TimeZone::Local).unwrap();
        let expected = chrono::Local
            .with_ymd_and_hms(2024, 6, 5, 1, 2, 3)
            .earliest()
            .unwrap()
            .timestamp_millis();
        assert_eq!(local, expected);
    }
}
