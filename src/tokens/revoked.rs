//! ords-guard's own tokens revoked before their expiry (SPEC §16, `revocation: {store:
//! local}`): this process's list, by `jti`, each entry kept while its token could still
//! verify (`exp` plus the verification leeway).
//!
//! Only a client that authenticates can add to it, and only tokens it was issued that still
//! verify; still, a client minting and revoking in a loop must not grow it without end: past
//! [`PER_CLIENT`] live revocations, a client's later revocations become a watermark instead
//! (every token of the client issued up to the revoked one's `iat` is refused), one entry
//! per client.

use super::token::LEEWAY_SECONDS;
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::LazyLock;

/// Entries past their expiry are swept when the list has grown by this many since.
const SWEEP_EVERY: usize = 1024;
/// Live revocations one client may hold as single tokens.
pub const PER_CLIENT: usize = 1000;

/// A client's revocations beyond [`PER_CLIENT`]: its tokens issued (`iat`) up to `iat` are
/// refused until `until`.
#[derive(Debug, Clone, Copy)]
struct Watermark {
    iat: u64,
    until: u64,
}

/// What a revocation holds, for the replicas to learn (SPEC §16 `store: redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The token `jti`, refused until `until`.
    Token { jti: String, until: u64 },
    /// Every token of the client issued up to `iat`, until `until`.
    Watermark { iat: u64, until: u64 },
}

#[derive(Default)]
pub struct Revocations {
    /// `jti` -> (client id, until when the token could verify).
    by_jti: DashMap<String, (String, u64)>,
    /// Live single revocations per client.
    per_client: DashMap<String, usize>,
    watermarks: DashMap<String, Watermark>,
    /// The list's length after the last sweep, and when a client at its bound last swept.
    swept_at: AtomicUsize,
    last_sweep: std::sync::atomic::AtomicU64,
    /// Whether a token, or a watermark, was ever revoked: until then the decision's check
    /// costs one load, not a map lookup (DashMap's `is_empty` reads every shard).
    any_token: AtomicBool,
    any_watermark: AtomicBool,
}

impl Revocations {
    /// Revoke the token `jti` of `client`, issued at `iat`, expiring at `exp`: whether it
    /// is new (false: it already was), and what holds it.
    pub fn revoke(&self, client: &str, jti: &str, iat: u64, exp: u64, now: u64) -> (bool, Revoked) {
        let until = exp.saturating_add(LEEWAY_SECONDS);
        let token = Revoked::Token {
            jti: jti.to_string(),
            until,
        };
        if self.by_jti.contains_key(jti) {
            return (false, token);
        }
        if self.is_revoked(client, jti, iat, now) {
            return (false, Revoked::Watermark { iat, until });
        }
        if self.held(client) >= PER_CLIENT {
            // Expired ones do not count: swept first (at most once a second).
            if self.last_sweep.swap(now, Ordering::AcqRel) < now {
                self.sweep(now);
            }
            if self.held(client) >= PER_CLIENT {
                self.watermark(client, iat, until);
                return (true, Revoked::Watermark { iat, until });
            }
        }
        self.add(client, jti, until, now);
        (true, token)
    }

    fn held(&self, client: &str) -> usize {
        self.per_client.get(client).map_or(0, |n| *n)
    }

    /// Learn another replica's revocation of the token `jti` (refused until `until`).
    pub fn restore(&self, client: &str, jti: &str, until: u64, now: u64) {
        if now <= until && !self.by_jti.contains_key(jti) {
            self.add(client, jti, until, now);
        }
    }

    /// Refuse `client`'s tokens issued up to `iat`, until `until` (a client past its bound,
    /// here or at another replica).
    pub fn watermark(&self, client: &str, iat: u64, until: u64) {
        self.any_watermark.store(true, Ordering::Release);
        let mut w = self
            .watermarks
            .entry(client.to_string())
            .or_insert(Watermark { iat, until });
        w.iat = w.iat.max(iat);
        w.until = w.until.max(until);
    }

    fn add(&self, client: &str, jti: &str, until: u64, now: u64) {
        self.any_token.store(true, Ordering::Release);
        // Counted once however many add it at once.
        if self
            .by_jti
            .insert(jti.to_string(), (client.to_string(), until))
            .is_none()
        {
            *self.per_client.entry(client.to_string()).or_insert(0) += 1;
        }
        if self.by_jti.len() >= self.swept_at.load(Ordering::Relaxed) + SWEEP_EVERY {
            self.sweep(now);
        }
    }

    /// Whether `client`'s token `jti`, issued at `iat`, is revoked at `now`.
    pub fn is_revoked(&self, client: &str, jti: &str, iat: u64, now: u64) -> bool {
        if self.any_watermark.load(Ordering::Acquire) {
            if let Some(w) = self.watermarks.get(client) {
                if iat <= w.iat && now <= w.until {
                    return true;
                }
            }
        }
        self.any_token.load(Ordering::Acquire) && self.by_jti.get(jti).is_some_and(|e| now <= e.1)
    }

    /// Revocations held (single tokens and watermarks), as of the last sweep and since.
    pub fn len(&self) -> usize {
        self.by_jti.len() + self.watermarks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget what can no longer verify.
    pub fn sweep(&self, now: u64) {
        let per_client = &self.per_client;
        self.by_jti.retain(|_, (client, until)| {
            let live = now <= *until;
            if !live {
                if let Some(mut n) = per_client.get_mut(client.as_str()) {
                    *n = n.saturating_sub(1);
                }
            }
            live
        });
        self.per_client.retain(|_, n| *n > 0);
        self.watermarks.retain(|_, w| now <= w.until);
        self.swept_at.store(self.by_jti.len(), Ordering::Relaxed);
    }
}

/// This process's revocations.
pub static REVOKED: LazyLock<Revocations> = LazyLock::new(Revocations::default);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_lasts_while_the_token_could_verify() {
        let r = Revocations::default();
        assert!(matches!(
            r.revoke("c", "j1", 0, 1_000, 500),
            (true, Revoked::Token { .. })
        ));
        assert!(!r.revoke("c", "j1", 0, 1_000, 600).0, "already revoked");
        // Refused through the leeway `verify` allows past `exp`.
        assert!(r.is_revoked("c", "j1", 0, 1_000 + LEEWAY_SECONDS));
        assert!(!r.is_revoked("c", "j1", 0, 1_001 + LEEWAY_SECONDS));
        assert!(!r.is_revoked("c", "j2", 0, 500));
        r.sweep(1_000);
        assert_eq!(r.len(), 1);
        r.sweep(1_001 + LEEWAY_SECONDS);
        assert!(r.is_empty());
    }

    #[test]
    fn expired_entries_are_swept_as_the_list_grows() {
        let r = Revocations::default();
        for i in 0..SWEEP_EVERY * 3 {
            r.revoke(&format!("c{i}"), &format!("j{i}"), 0, 100, 50);
        }
        // Past their expiry, the next sweep forgets them.
        for i in 0..SWEEP_EVERY {
            r.revoke(&format!("d{i}"), &format!("k{i}"), 0, 10_000, 200);
        }
        assert!(r.by_jti.len() <= 2 * SWEEP_EVERY, "{}", r.by_jti.len());
        r.sweep(200);
        assert_eq!(r.len(), SWEEP_EVERY);
        assert!(r.per_client.len() <= SWEEP_EVERY);
    }

    #[test]
    fn a_client_past_its_bound_gets_a_watermark_not_more_entries() {
        let r = Revocations::default();
        for i in 0..PER_CLIENT as u64 + 500 {
            assert!(r.revoke("busy", &format!("j{i}"), i, 10_000, 0).0);
        }
        assert_eq!(r.by_jti.len(), PER_CLIENT);
        assert_eq!(r.len(), PER_CLIENT + 1);
        // Everything up to the last revoked token's iat is refused; a later token is not,
        // nor another client's.
        let last = PER_CLIENT as u64 + 499;
        assert!(r.is_revoked("busy", "unlisted", last, 5));
        assert!(!r.is_revoked("busy", "later", last + 1, 5));
        assert!(!r.is_revoked("other", "unlisted", 0, 5));
    }

    #[test]
    fn expired_revocations_do_not_count_toward_the_bound() {
        let r = Revocations::default();
        for i in 0..PER_CLIENT as u64 {
            r.revoke("daily", &format!("old{i}"), i, 100, 50);
        }
        // A day later, long expired: the next revocation is a single one again.
        let (new, what) = r.revoke("daily", "today", 86_400, 90_000, 86_400);
        assert!(new);
        assert!(matches!(what, Revoked::Token { .. }), "{what:?}");
        assert!(!r.is_revoked("daily", "other-today", 86_400, 86_401));
    }
}
