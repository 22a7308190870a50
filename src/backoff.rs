//! Exponential backoff with jitter, for whatever ords-guard retries on its own (JWKS
//! fetches, egress token requests): `first` doubling per failure up to `max`, less up to a
//! quarter at random so replicas do not retry in step. Pure: the jitter is given.

use std::time::Duration;

/// The wait after `failures` failures in a row (1 for the first; 0 counts as 1); `jitter`
/// in 0..1 (clamped).
pub fn backoff(failures: u32, first: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = first.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled
        .min(max)
        .mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_less_the_jitter() {
        let s = Duration::from_secs;
        let b = |n| backoff(n, s(1), s(30), 0.0).as_secs();
        assert_eq!(
            [b(0), b(1), b(2), b(3), b(5), b(6), b(100)],
            [1, 1, 2, 4, 16, 30, 30]
        );
        assert_eq!(backoff(3, s(1), s(30), 1.0), s(3));
        assert_eq!(backoff(3, s(1), s(30), 7.0), s(3), "jitter is clamped");
        assert_eq!(backoff(u32::MAX, s(1), s(30), 0.0), s(30));
    }
}
