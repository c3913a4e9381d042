//! The retry delay every component uses: exponential backoff with jitter.
//!
//! Archive uploads and HTTP requests both retry without limit while the pipeline
//! runs; what differs is only where the delays start and stop. Half of each
//! delay is fixed and half random ("equal jitter"), so retries of many requests
//! that failed together spread out instead of arriving together again.

use std::time::Duration;

use rand::Rng;

/// Delays growing from `initial`, doubling per attempt, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The ceiling of every delay.
    pub max: Duration,
}

impl Backoff {
    /// Backoff from `initial` to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The ceiling of the delay after failed attempt number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The delay after failed attempt number `attempt`: between half the ceiling and the ceiling.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let half = ceiling / 2;
        Duration::from_millis(half + rand::rng().random_range(0..=ceiling - half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_and_is_capped_with_jitter_inside_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(1600));
        assert_eq!(b.ceiling(30), Duration::from_secs(60));
        for attempt in [0, 3, 30] {
            for _ in 0..100 {
                let d = b.delay(attempt);
                assert!(d <= b.ceiling(attempt), "{d:?}");
                assert!(d >= b.ceiling(attempt) / 2, "{d:?}");
            }
        }
    }

    #[test]
    fn a_max_below_initial_is_the_initial() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
