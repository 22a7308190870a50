//! ords-guard's own tokens revoked before their expiry (SPEC §16, `revocation: {store:
//! local}`): this process's list, by `jti`, each entry forgotten at its token's `exp`.
//! Only a client that authenticates can add to it, and only tokens it was issued that
//! still verify, so it is bounded by the tokens issued within one lifetime.

use dashmap::DashMap;
use std::sync::LazyLock;

/// Entries past their `exp` are swept when the list has grown by this many since.
const SWEEP_EVERY: usize = 1024;

#[derive(Default)]
pub struct Revocations {
    /// `jti` -> the token's `exp` (Unix seconds).
    by_jti: DashMap<String, u64>,
    /// The list's length after the last sweep.
    swept_at: std::sync::atomic::AtomicUsize,
}

impl Revocations {
    /// Revoke the token `jti`, valid until `exp`; false when it already was.
    pub fn revoke(&self, jti: &str, exp: u64, now: u64) -> bool {
        use std::sync::atomic::Ordering;
        let new = self.by_jti.insert(jti.to_string(), exp).is_none();
        let len = self.by_jti.len();
        if len >= self.swept_at.load(Ordering::Relaxed) + SWEEP_EVERY {
            self.by_jti.retain(|_, exp| *exp > now);
            self.swept_at.store(self.by_jti.len(), Ordering::Relaxed);
        }
        new
    }

    /// Whether the token `jti` is revoked (at `now`, before its `exp`).
    pub fn is_revoked(&self, jti: &str, now: u64) -> bool {
        self.by_jti.get(jti).is_some_and(|exp| *exp > now)
    }

    /// Tokens revoked and not yet expired; expired entries are forgotten.
    pub fn live(&self, now: u64) -> usize {
        self.by_jti.retain(|_, exp| *exp > now);
        self.swept_at
            .store(self.by_jti.len(), std::sync::atomic::Ordering::Relaxed);
        self.by_jti.len()
    }
}

/// This process's revocations.
pub static REVOKED: LazyLock<Revocations> = LazyLock::new(Revocations::default);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_lasts_until_the_tokens_expiry() {
        let r = Revocations::default();
        assert!(r.revoke("j1", 1_000, 500));
        assert!(!r.revoke("j1", 1_000, 600), "already revoked");
        assert!(r.is_revoked("j1", 999));
        assert!(
            !r.is_revoked("j1", 1_000),
            "expired: the token is refused anyway"
        );
        assert!(!r.is_revoked("j2", 500));
        assert_eq!(r.live(999), 1);
        assert_eq!(r.live(1_000), 0);
    }

    #[test]
    fn expired_entries_are_swept_as_the_list_grows() {
        let r = Revocations::default();
        for i in 0..SWEEP_EVERY * 3 {
            r.revoke(&format!("j{i}"), 100, 50);
        }
        // Past their expiry, the next sweep forgets them.
        for i in 0..SWEEP_EVERY {
            r.revoke(&format!("k{i}"), 10_000, 200);
        }
        assert!(r.by_jti.len() <= 2 * SWEEP_EVERY, "{}", r.by_jti.len());
        assert_eq!(r.live(200), SWEEP_EVERY);
    }
}
