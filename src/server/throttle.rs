//! Rate limiting for log lines that an overload or a scan would repeat thousands of times.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lets a number of lines through per second and counts the ones held back.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    /// The current second since the Unix epoch, lines let through in it, lines held back.
    state: Mutex<(u64, u32, u64)>,
}

impl Throttle {
    pub fn new(per_second: u32) -> Throttle {
        Throttle {
            per_second,
            state: Mutex::new((0, 0, 0)),
        }
    }

    /// Returns `Some(n)` when a line may be logged now, `n` being how many were held back
    /// before it. Returns `None` when this line should be dropped.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.admit_at(now)
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (second, admitted, suppressed) = &mut *state;
        if *second != now {
            *second = now;
            *admitted = 0;
        }
        if *admitted < self.per_second {
            *admitted += 1;
            return Some(std::mem::take(suppressed));
        }
        *suppressed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_per_second_are_capped_and_counted() {
        let throttle = Throttle::new(2);
        assert_eq!(throttle.admit_at(10), Some(0));
        assert_eq!(throttle.admit_at(10), Some(0));
        assert_eq!(throttle.admit_at(10), None);
        assert_eq!(throttle.admit_at(10), None);
        assert_eq!(throttle.admit_at(11), Some(2));
        assert_eq!(throttle.admit_at(11), Some(0));
    }
}
