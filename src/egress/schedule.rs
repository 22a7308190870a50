//! When an egress token is renewed, until when it may be sent, and when a failed token
//! request is tried again (SPEC §10). Plain functions of the instants they are given, so the
//! token manager's timing is tested without waiting.

use std::time::{Duration, Instant};

/// A token is never sent in its last second (SPEC §10): clocks differ, requests take time.
pub const LAST_SECOND: Duration = Duration::from_secs(1);
/// Token requests back off from 1 s to 30 s while they fail (SPEC §10).
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// A token's times, from when it was received and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub expires: Instant,
    /// When to start renewing it.
    pub renew_at: Instant,
}

/// Renew when less than `refresh_before` remains, or at half the lifetime if that is
/// sooner (SPEC §10). A `refresh_before` as long as the lifetime itself would renew at once
/// and for ever; half the lifetime then applies alone.
pub fn lifetime(received: Instant, lives: Duration, refresh_before: Duration) -> Lifetime {
    let half = lives / 2;
    let by_margin = lives.checked_sub(refresh_before).filter(|d| !d.is_zero());
    let renew_in = by_margin.map_or(half, |m| m.min(half));
    Lifetime {
        expires: received + lives,
        renew_at: received + renew_in,
    }
}

impl Lifetime {
    /// Whether the token may still be sent at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        now + LAST_SECOND < self.expires
    }

    /// Whether the renewal is due at `now`.
    pub fn renewal_due(&self, now: Instant) -> bool {
        now >= self.renew_at
    }
}

/// The wait before the next token request after `failures` in a row.
pub fn retry_in(failures: u32, jitter: f64) -> Duration {
    crate::backoff::backoff(failures, FIRST_RETRY, MAX_RETRY, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_the_margin_or_half_the_lifetime_whichever_is_sooner() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // ORDS's hour with a minute's margin: half the lifetime is sooner.
        let l = lifetime(t0, s(3600), s(60));
        assert_eq!((l.expires, l.renew_at), (t0 + s(3600), t0 + s(1800)));
        // A short token with a large margin: the margin is sooner.
        assert_eq!(lifetime(t0, s(100), s(80)).renew_at, t0 + s(20));
        // A margin as long as the lifetime: half the lifetime, not a renewal loop.
        assert_eq!(lifetime(t0, s(30), s(60)).renew_at, t0 + s(15));
        assert_eq!(lifetime(t0, s(60), s(60)).renew_at, t0 + s(30));
        // One-second tokens are renewed at once and never sent.
        let l = lifetime(t0, s(1), s(60));
        assert!(!l.usable(t0));
        assert!(l.renewal_due(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn never_sent_in_its_last_second() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let l = lifetime(t0, s(300), s(60));
        assert!(l.usable(t0 + s(298)));
        assert!(!l.usable(t0 + s(299)));
        assert!(!l.usable(t0 + s(400)));
        assert!(!l.renewal_due(t0 + s(149)));
        assert!(l.renewal_due(t0 + s(150)));
    }

    #[test]
    fn token_requests_back_off_from_one_to_thirty_seconds() {
        let secs = |n| retry_in(n, 0.0).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(5), secs(6), secs(50)],
            [1, 2, 16, 30, 30]
        );
        assert!(retry_in(4, 0.9) < Duration::from_secs(8));
    }
}
