//! The memory budget of one HTTP source: what request bodies, their decoded
//! text and their events in the pipeline may hold at once (`memory_limit`).
//!
//! A request reserves memory as it comes to hold it: each body frame as it
//! arrives (so a client trickling a large `Content-Length` holds only what it
//! sent), the decompressed text, and an allowance for the events of the
//! chunks it has in the pipeline. When the budget is spent a request waits up
//! to `queue_timeout` for room and is then answered `503`; a request that
//! could never fit gets `413`. Everything is released when the request has
//! been answered, by which time its events have left the pipeline.
//!
//! A tokio [`Semaphore`] counts the bytes: waiters are served in order, so a
//! large request is not starved by a stream of small ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, TryAcquireError};

/// Bytes are counted in units of this size, so that any budget fits the
/// semaphore's permit count and small frames cost at least one unit.
const UNIT: u64 = 1024;

/// The budget shared by the requests of one source.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    units: u64,
}

/// Memory held by one request; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    permits: Arc<Semaphore>,
    units: u64,
    limit_units: u64,
}

/// Why a reservation could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The budget stayed spent for the whole wait: retry later (`503`).
    Busy,
    /// More than the whole budget: this request can never fit (`413`).
    TooLarge,
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = bytes.div_ceil(UNIT).max(1);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// An empty reservation.
    pub fn reserve(&self) -> Reservation {
        Reservation {
            permits: self.permits.clone(),
            units: 0,
            limit_units: self.units,
        }
    }

    /// Bytes not reserved by anyone now.
    #[cfg(test)]
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

impl Reservation {
    /// Bytes held.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.units * UNIT
    }

    /// Holds `bytes` more, waiting up to `wait` for room.
    pub async fn grow(&mut self, bytes: u64, wait: Duration) -> Result<(), Shortfall> {
        let add = self.units_for(bytes)?;
        if add == 0 {
            return Ok(());
        }
        match tokio::time::timeout(wait, self.permits.acquire_many(add as u32)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                self.units += add;
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(Shortfall::Busy),
        }
    }

    /// Holds `bytes` more if there is room now (for code on the blocking pool).
    pub fn try_grow(&mut self, bytes: u64) -> Result<(), Shortfall> {
        let add = self.units_for(bytes)?;
        if add == 0 {
            return Ok(());
        }
        match self.permits.try_acquire_many(add as u32) {
            Ok(permit) => {
                permit.forget();
                self.units += add;
                Ok(())
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(Shortfall::Busy),
        }
    }

    /// Gives back everything above `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        let keep = bytes.div_ceil(UNIT).min(self.units);
        let give = self.units - keep;
        if give > 0 {
            self.permits.add_permits(give as usize);
            self.units = keep;
        }
    }

    fn units_for(&self, bytes: u64) -> Result<u64, Shortfall> {
        let total = (self.units * UNIT).saturating_add(bytes).div_ceil(UNIT);
        if total > self.limit_units {
            return Err(Shortfall::TooLarge);
        }
        Ok(total - self.units)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.units > 0 {
            self.permits.add_permits(self.units as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_for_room_and_release_on_drop() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut a = budget.reserve();
        a.grow(6 * UNIT, Duration::ZERO).await.unwrap();
        let mut b = budget.reserve();
        assert_eq!(
            b.grow(5 * UNIT, Duration::from_secs(1)).await,
            Err(Shortfall::Busy),
            "only 4 units are left"
        );
        assert_eq!(b.held(), 0, "a failed grow holds nothing");
        let waiting =
            tokio::spawn(async move { b.grow(5 * UNIT, Duration::from_secs(5)).await.map(|_| b) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        let b = waiting
            .await
            .unwrap()
            .expect("room appeared within the wait");
        assert_eq!(b.held(), 5 * UNIT);
        assert_eq!(budget.available(), 5 * UNIT);
        drop(b);
        assert_eq!(budget.available(), 10 * UNIT);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_too_large_and_shrinking_gives_back() {
        let budget = MemoryBudget::new(10 * UNIT);
        let mut r = budget.reserve();
        assert_eq!(r.try_grow(11 * UNIT), Err(Shortfall::TooLarge));
        r.try_grow(3 * UNIT + 1).unwrap();
        assert_eq!(r.held(), 4 * UNIT, "partial units round up");
        r.try_grow(6 * UNIT).unwrap();
        assert_eq!(r.try_grow(1), Err(Shortfall::TooLarge));
        r.shrink_to(2 * UNIT);
        assert_eq!(budget.available(), 8 * UNIT);
        assert_eq!(r.try_grow(0), Ok(()));
    }
}
