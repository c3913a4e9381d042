//! Reading a request body: bounded in size, in time and by the memory budget.
//!
//! The body is read before the request takes an in-flight slot, so a client
//! that trickles its body holds only the bytes it sent (reserved frame by
//! frame) and never a slot that others need; `request_timeout` ends it.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::budget::{Reservation, Shortfall};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Larger than `max_body_size` (`413`).
    TooLarge,
    /// Not complete within `request_timeout` (`408`).
    Timeout,
    /// The memory budget stayed spent (`503`).
    Busy,
    /// The budget can never hold it (`413`).
    OverBudget,
    /// The connection failed or the framing was invalid (`400`).
    Broken(String),
}

/// Limits for [`read`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, in bytes.
    pub max: u64,
    /// When the whole body must have arrived.
    pub deadline: Instant,
    /// How long to wait for room in the budget, each time it is short.
    pub queue_timeout: Duration,
}

/// Reads the whole body into one buffer, reserving its bytes in `reservation`
/// as they arrive. `declared` is the `Content-Length`, when sent.
pub async fn read(
    body: Body,
    declared: Option<u64>,
    limits: BodyLimits,
    reservation: &mut Reservation,
) -> Result<Bytes, BodyRefusal> {
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(limits.deadline, body.frame()).await {
            Err(_) => return Err(BodyRefusal::Timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyRefusal::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        len += data.len() as u64;
        if len > limits.max {
            return Err(BodyRefusal::TooLarge);
        }
        let grow = reservation.grow(data.len() as u64, limits.queue_timeout);
        match tokio::time::timeout_at(limits.deadline, grow).await {
            Err(_) => return Err(BodyRefusal::Timeout),
            Ok(Err(Shortfall::Busy)) => return Err(BodyRefusal::Busy),
            Ok(Err(Shortfall::TooLarge)) => return Err(BodyRefusal::OverBudget),
            Ok(Ok(())) => {}
        }
        // One frame is kept as it came; from the second on, one buffer of the
        // declared size (or growing) holds them all.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                let hint = declared.unwrap_or(0).min(limits.max) as usize;
                buf.reserve(hint.max(f.len() + data.len()));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(match first {
        Some(f) => f,
        None => buf.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::budget::MemoryBudget;
    use futures::stream;

    fn limits(max: u64) -> BodyLimits {
        BodyLimits {
            max,
            deadline: Instant::now() + Duration::from_secs(5),
            queue_timeout: Duration::from_millis(10),
        }
    }

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(stream::iter(frames))
    }

    #[tokio::test]
    async fn frames_are_joined_and_reserved() {
        let budget = MemoryBudget::new(1 << 20);
        let mut r = budget.reserve();
        let body = read(chunked(&[b"ab", b"cd", b"e"]), None, limits(100), &mut r)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcde");
        assert!(r.held() >= 5);
    }

    #[tokio::test]
    async fn size_budget_and_time_limits() {
        let budget = MemoryBudget::new(4096);
        let mut r = budget.reserve();
        assert_eq!(
            read(chunked(&[b"abc", b"def"]), None, limits(5), &mut r).await,
            Err(BodyRefusal::TooLarge)
        );
        drop(r);
        let mut hog = budget.reserve();
        hog.try_grow(4096).unwrap();
        let mut r = budget.reserve();
        assert_eq!(
            read(chunked(&[b"x"]), None, limits(100), &mut r).await,
            Err(BodyRefusal::Busy)
        );
        drop(hog);
        let big = vec![b'x'; 8192].leak();
        assert_eq!(
            read(chunked(&[big]), None, limits(1 << 20), &mut r).await,
            Err(BodyRefusal::OverBudget)
        );
        let never = Body::from_stream(stream::pending::<Result<Bytes, std::io::Error>>());
        let mut l = limits(100);
        l.deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            read(never, None, l, &mut r).await,
            Err(BodyRefusal::Timeout)
        );
    }
}
