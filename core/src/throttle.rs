//! Warnings that a client can repeat at will (a failed TLS handshake, a connection
//! over a cap) are logged at most once per interval, each line carrying how many
//! occurrences it stands for; the metrics count every one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one occurrence in each interval through, with the count since the last one.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new(State::default()),
        }
    }

    /// At most one line per minute.
    pub fn per_minute() -> Throttle {
        Throttle::new(Duration::from_secs(60))
    }

    /// Records one occurrence; `Some(n)` when it is time to log, `n` being the
    /// occurrences since the last line, this one included.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    /// [`Throttle::hit`] at `now`.
    pub fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.count += 1;
        if s.last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let t = Throttle::per_minute();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            t.hit_at(at(0)),
            Some(1),
            "the first occurrence is logged at once"
        );
        assert_eq!(t.hit_at(at(1)), None);
        assert_eq!(t.hit_at(at(59)), None);
        assert_eq!(t.hit_at(at(60)), Some(3), "two held back, plus this one");
        assert_eq!(t.hit_at(at(61)), None);
        assert_eq!(t.hit_at(at(500)), Some(2));
    }
}
