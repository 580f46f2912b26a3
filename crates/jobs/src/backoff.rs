//! Retry delays: exponential in the attempt number, capped, with jitter so
//! that jobs failing together (a payment provider down for a minute) do not
//! all come back in the same instant.

use std::time::Duration;

/// Exponential backoff with "equal jitter": the delay before attempt n+1
/// is half of `base * 2^(n-1)` (capped at `cap`) plus a random part of the
/// other half, so it is never shorter than half the nominal delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The nominal delay after the first failure.
    pub base: Duration,
    /// The longest nominal delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1 for the first), with
    /// `random` in `[0, 1)` choosing within the jitter.
    pub fn delay(&self, attempt: i64, random: f64) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 62)).unwrap_or(62);
        let nominal = self
            .base
            .checked_mul(2u32.saturating_pow(doublings.min(31)))
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = nominal / 2;
        half + half.mul_f64(random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(3600));
        assert_eq!(b.delay(i64::MAX, 0.5), Duration::from_secs(2700));
    }

    proptest! {
        #[test]
        fn a_delay_is_between_half_and_all_of_the_nominal(attempt in 1i64..100, random in 0.0f64..1.0) {
            let b = Backoff::default();
            let nominal = b.delay(attempt, 1.0);
            let d = b.delay(attempt, random);
            prop_assert!(d >= nominal / 2 && d <= nominal);
            prop_assert!(b.delay(attempt + 1, 1.0) >= nominal, "never shrinks");
        }
    }
}
