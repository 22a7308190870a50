//! The generic cell rate algorithm (SPEC §13): a token bucket kept as one number, the
//! theoretical arrival time (TAT) of the next request, so nothing runs between requests.
//! `burst` requests may come at once, then one every `interval`. Pure arithmetic on
//! nanoseconds from any fixed epoch: the caller passes `now`, so tests need no clock.

/// One limit's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// Nanoseconds between two requests at the sustained rate (`per` / `rate`).
    pub interval: u64,
    pub burst: u64,
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through; store `tat`. `remaining`: how many more could come now; `full_in`:
    /// nanoseconds until the bucket is full again.
    Allowed {
        tat: u64,
        remaining: u64,
        full_in: u64,
    },
    /// Over the limit; nothing to store. `retry_in`: nanoseconds until one more request
    /// is allowed; `full_in` as above.
    Limited { retry_in: u64, full_in: u64 },
}

pub const NANOS: u64 = 1_000_000_000;

impl Gcra {
    /// `rate` requests per `per_seconds`, `burst` at once (both at least 1).
    pub fn new(rate: u64, per_seconds: u64, burst: u64) -> Gcra {
        let per = u128::from(per_seconds) * u128::from(NANOS);
        let interval = (per / u128::from(rate.max(1))).max(1);
        Gcra {
            interval: u64::try_from(interval).unwrap_or(u64::MAX),
            burst: burst.max(1),
        }
    }

    /// How long a full burst lasts: the bucket's depth in time.
    fn window(&self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// Decide a request at `now` against the stored TAT (`None`: never seen, a full bucket).
    pub fn check(&self, tat: Option<u64>, now: u64) -> Verdict {
        let tat = tat.unwrap_or(now).max(now);
        let next = tat.saturating_add(self.interval);
        let allowed_at = next.saturating_sub(self.window());
        if now < allowed_at {
            return Verdict::Limited {
                retry_in: allowed_at - now,
                full_in: tat - now,
            };
        }
        Verdict::Allowed {
            tat: next,
            remaining: (now.saturating_add(self.window()) - next) / self.interval,
            full_in: next - now,
        }
    }

    /// Undo one request let through (a later limit refused it): the TAT it stored, back
    /// by one interval.
    pub fn give_back(&self, tat: u64) -> u64 {
        tat.saturating_sub(self.interval)
    }
}

/// Nanoseconds as whole seconds, rounded up (`Retry-After`, the RateLimit `t`).
pub fn ceil_seconds(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;

    #[test]
    fn a_burst_at_once_then_one_per_interval() {
        let g = Gcra::new(2, 1, 3); // 2/s, 3 at once: one every 500 ms
        assert_eq!(g.interval, S / 2);
        let mut tat = None;
        let now = 10 * S;
        for left in [2, 1, 0] {
            match g.check(tat, now) {
                Verdict::Allowed {
                    tat: t, remaining, ..
                } => {
                    assert_eq!(remaining, left);
                    tat = Some(t);
                }
                v => panic!("{v:?}"),
            }
        }
        // The fourth at the same instant waits one interval; the bucket is full 1.5 s on.
        assert_eq!(
            g.check(tat, now),
            Verdict::Limited {
                retry_in: S / 2,
                full_in: 3 * S / 2
            }
        );
        // 500 ms later one more fits, and none after it.
        let later = now + S / 2;
        let Verdict::Allowed {
            tat: t,
            remaining,
            full_in,
        } = g.check(tat, later)
        else {
            panic!()
        };
        assert_eq!((remaining, full_in), (0, 3 * S / 2));
        assert!(matches!(g.check(Some(t), later), Verdict::Limited { .. }));
        // Idle long enough, the bucket is full again: a stale TAT is a fresh one.
        assert_eq!(
            g.check(Some(t), later + 10 * S),
            g.check(None, later + 10 * S)
        );
    }

    #[test]
    fn give_back_undoes_one_request() {
        let g = Gcra::new(1, 60, 1);
        let Verdict::Allowed { tat, .. } = g.check(None, S) else {
            panic!()
        };
        assert!(matches!(g.check(Some(tat), S), Verdict::Limited { .. }));
        let back = g.give_back(tat);
        assert!(matches!(g.check(Some(back), S), Verdict::Allowed { .. }));
    }

    #[test]
    fn seconds_round_up_and_extremes_do_not_overflow() {
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(S), 1);
        assert_eq!(ceil_seconds(S + 1), 2);
        assert_eq!(ceil_seconds(0), 0);
        let g = Gcra::new(u64::MAX, 1, u64::MAX);
        assert_eq!(g.interval, 1);
        let _ = g.check(Some(u64::MAX), u64::MAX);
        let slow = Gcra::new(1, 3600, 1);
        assert_eq!(slow.interval, 3600 * S);
        let _ = slow.check(Some(u64::MAX - 1), 0);
    }
}
