//! Delays between retries: exponential backoff with jitter, and the server's Retry-After.

use std::time::Duration;

/// Delay before the first retry.
const BASE_DELAY: Duration = Duration::from_secs(1);
/// Largest delay computed by backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Largest Retry-After honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Returns the delay before retry number `attempt` (0 for the first retry): between half
/// and all of `BASE_DELAY * 2^attempt`, capped, or the server's Retry-After when longer.
pub fn delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = BASE_DELAY
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    let jittered = ceiling / 2 + ceiling.mul_f64(random_fraction() / 2.0);
    match retry_after {
        Some(requested) => jittered.max(requested.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// Returns a random duration in `[0, max)`, for the splay before a run.
pub fn random_below(max: Duration) -> Duration {
    max.mul_f64(random_fraction())
}

/// Returns a uniformly random number in `[0, 1)`.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    // NOTE: if the system random source fails, the bytes stay zero and the delay is the
    // shortest one; retries still happen, only without jitter.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        for attempt in 0..20 {
            let ceiling = BASE_DELAY
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let delay = delay(attempt, None);
            assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?}");
            assert!(delay <= ceiling, "attempt {attempt}: {delay:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert!(delay(0, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(delay(0, Some(Duration::from_secs(86_400))) <= MAX_RETRY_AFTER);
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| delay(5, None)).collect();
        assert!(delays.len() > 1);
        assert!(random_below(Duration::from_secs(10)) < Duration::from_secs(10));
    }
}
