//! The syslog message parser (RFC 5424 and RFC 3164 with year inference): any
//! bytes parse or fail with a reason, never panic or hang.
#![no_main]

#[path = "shared/syslog.rs"]
mod syslog;

use libfuzzer_sys::fuzz_target;
use syslog::parse::{parse, ParseContext};
use syslog::time::TimeZone;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the receive time (year inference) and the zone.
    let (pick, line) = data.split_first().unwrap_or((&0, data));
    let now_ms = 1_700_000_000_000 + i64::from(*pick) * 86_400_000 * 7;
    for zone in [TimeZone::Utc, TimeZone::Local] {
        let cx = ParseContext { now_ms, zone };
        if let Ok(parsed) = parse(line, &cx) {
            std::hint::black_box(format!("{parsed:?}"));
        }
    }
});
