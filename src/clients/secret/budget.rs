//! The global budget of argon2 verifications per second (`limits.argon2_per_second`): a
//! token bucket holding one second's worth. Pure: the caller passes the clock, so tests
//! need no waiting.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Budget {
    /// Verifications left, fractional while refilling.
    left: f64,
    /// When `left` was last brought up to date; `None` before the first take (full bucket).
    at: Option<Instant>,
}

impl Budget {
    /// Take one verification out of a budget of `per_second`. `Err(wait)` when it is spent:
    /// the time until one is available again.
    pub fn take(&mut self, per_second: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(per_second.max(1));
        // A clock read that went backwards (two threads racing) refills nothing.
        let now = self.at.map_or(now, |at| now.max(at));
        self.left = match self.at {
            None => rate,
            Some(at) => (self.left + (now - at).as_secs_f64() * rate).min(rate),
        };
        self.at = Some(now);
        if self.left >= 1.0 {
            self.left -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.left) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_worth_then_refills_at_the_rate() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(b.take(4, t0), Ok(()));
        }
        let wait = b.take(4, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        // A quarter second later exactly one more.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.take(4, t1), Ok(()));
        assert!(b.take(4, t1).is_err());
        // Idle for long: back to one second's worth, never more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(b.take(4, t2), Ok(()));
        }
        assert!(b.take(4, t2).is_err());
    }

    #[test]
    fn refusals_do_not_spend_the_budget() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        assert_eq!(b.take(1, t0), Ok(()));
        for ms in [100, 200, 300] {
            let wait = b.take(1, t0 + Duration::from_millis(ms)).unwrap_err();
            assert_eq!(wait.as_millis(), (1000 - ms) as u128);
        }
        assert_eq!(b.take(1, t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = Budget::default();
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(b.take(1, t0), Ok(()));
        assert!(b.take(1, t0 - Duration::from_secs(5)).is_err());
    }
}
