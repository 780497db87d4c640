//! Rate limiting for log lines that an overload would repeat thousands of times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lets one line through per second and counts the ones held back.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The second, since the Unix epoch, of the last line let through.
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Returns `Some(n)` when a line may be logged now, `n` being how many were held back
    /// since the last one; returns `None` when this line should be dropped.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_second.load(Ordering::Relaxed);
        if last != now
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_with_count() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        throttle.last_second.store(0, Ordering::Relaxed);
        assert_eq!(throttle.admit(), Some(2));
    }
}
