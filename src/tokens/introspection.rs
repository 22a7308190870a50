//! Opaque tokens checked at an identity provider's RFC 7662 endpoint (SPEC §16), the pure
//! part: what an answer means ([`verdict`]), how long it is remembered ([`Cache`], keyed by
//! the token's SHA-256, never the token), and how many calls may start ([`Bucket`]). The
//! answer and the time are handed in; `introspector` makes the calls.

use super::issuer::{Issuer, IssuerClaims};
use super::token::TokenError;
use dashmap::DashMap;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How long an inactive (or refused) answer is remembered.
pub const INACTIVE_SECONDS: u64 = 10;
/// Most `cache_seconds` an entry may give.
pub const MAX_CACHE_SECONDS: u64 = 300;
/// Most answers remembered per entry, and most bytes of names (client id, subject, scopes,
/// roles) they hold; past either, the expired are swept, then a quarter of the rest, so
/// one flood of valid tokens cannot make everyone's answers be asked for again at once.
const CACHE_MAX: usize = 16_384;
const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// What an answer said of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Active, and it passed the entry's rules: who it names and what it may open.
    Active(Arc<IssuerClaims>),
    /// Not active, or refused by the entry's rules (401 `invalid_token`).
    Inactive(TokenError),
}

/// The SHA-256 of a token: what the cache and the calls in flight are keyed by.
pub type Key = [u8; 32];

pub fn key(token: &str) -> Key {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// An answer that says nothing usable about the token (SPEC §16: anything but HTTP 200
/// with a JSON object holding a boolean `active`): the token cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// Read the provider's answer (`status`, `body`) to a question about one token at `now`
/// (Unix seconds): the verdict, and until when it may be remembered (SPEC §16: an answer
/// `cache_seconds` at most, never past its `exp`, whether the entry's rules accept it or
/// not; an inactive one [`INACTIVE_SECONDS`]).
pub fn verdict(
    issuer: &Issuer,
    cache_seconds: u64,
    status: u16,
    body: &[u8],
    now: u64,
) -> Result<(Verdict, u64), Unusable> {
    if status != 200 {
        return Err(Unusable(format!(
            "the introspection endpoint answered HTTP {status}"
        )));
    }
    let answer: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(Unusable(
                "the introspection answer is not a JSON object".into(),
            ))
        }
        Err(_) => return Err(Unusable("the introspection answer is not JSON".into())),
    };
    let Some(active) = answer.get("active").and_then(Value::as_bool) else {
        return Err(Unusable(
            "the introspection answer has no boolean `active`".into(),
        ));
    };
    if !active {
        let until = now.saturating_add(INACTIVE_SECONDS);
        return Ok((Verdict::Inactive(TokenError::Inactive), until));
    }
    let exp = answer
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let until = now.saturating_add(cache_seconds).min(exp);
    match rules(issuer, &answer, now) {
        Ok(claims) => Ok((Verdict::Active(Arc::new(claims)), until)),
        Err(e) => Ok((Verdict::Inactive(e), until)),
    }
}

/// An active answer's checks (SPEC §16), each only when the member is present: `iss` is
/// the entry's, `exp` is in the future, `token_type` names an access token; `aud` as §9
/// when the entry has audiences. Then who and what it names, as §9 reads claims. Without
/// `exp`, the claims' `exp` is `u64::MAX` (the cache's bound is then `cache_seconds`).
fn rules(issuer: &Issuer, c: &Map<String, Value>, now: u64) -> Result<IssuerClaims, TokenError> {
    if let Some(iss) = c.get("iss") {
        if !iss.as_str().is_some_and(|iss| issuer.matches(iss, c)) {
            return Err(TokenError::WrongIssuer);
        }
    }
    let exp = match c.get("exp") {
        None => u64::MAX,
        Some(v) => {
            let exp = v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or(TokenError::Malformed)?;
            if exp <= now {
                return Err(TokenError::Expired);
            }
            exp
        }
    };
    if let Some(t) = c.get("token_type") {
        let t = t.as_str().unwrap_or_default();
        if !t.eq_ignore_ascii_case("bearer") && !t.eq_ignore_ascii_case("access_token") {
            return Err(TokenError::NotAccessToken);
        }
    }
    issuer.check_audience(c)?;
    issuer.identity(c, exp)
}

struct Remembered {
    verdict: Verdict,
    until: u64,
}

impl Remembered {
    /// What it holds, roughly, in bytes.
    fn size(&self) -> usize {
        let names = |v: &[String]| v.iter().map(|n| n.len() + 24).sum::<usize>();
        96 + match &self.verdict {
            Verdict::Active(c) => {
                c.client_id.len()
                    + c.subject.as_ref().map_or(0, String::len)
                    + names(&c.scopes)
                    + names(&c.roles)
            }
            Verdict::Inactive(_) => 0,
        }
    }
}

/// Answers remembered by the token's SHA-256, each until its time (Unix seconds).
#[derive(Default)]
pub struct Cache {
    map: DashMap<Key, Remembered>,
    bytes: std::sync::atomic::AtomicUsize,
}

impl Cache {
    /// The remembered verdict for `key` at `now`; an expired one is dropped.
    pub fn get(&self, key: &Key, now: u64) -> Option<Verdict> {
        let hit = self.map.get(key)?;
        if now < hit.until {
            return Some(hit.verdict.clone());
        }
        drop(hit);
        if let Some((_, r)) = self.map.remove_if(key, |_, r| now >= r.until) {
            self.bytes.fetch_sub(r.size(), Ordering::Relaxed);
        }
        None
    }

    pub fn insert(&self, key: Key, verdict: Verdict, until: u64, now: u64) {
        if until <= now {
            return;
        }
        let r = Remembered { verdict, until };
        let size = r.size();
        if self.map.len() >= CACHE_MAX
            || self.bytes.load(Ordering::Relaxed) + size > CACHE_MAX_BYTES
        {
            self.make_room(now);
        }
        if let Some(old) = self.map.insert(key, r) {
            self.bytes.fetch_sub(old.size(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Sweep the expired; still over three quarters full, drop every fourth of the rest.
    /// Rare (once per quarter of the cache filled), so the sizes are summed again here.
    fn make_room(&self, now: u64) {
        self.map.retain(|_, r| now < r.until);
        let total = || self.map.iter().map(|r| r.size()).sum::<usize>();
        if self.map.len() > CACHE_MAX / 4 * 3 || total() > CACHE_MAX_BYTES / 4 * 3 {
            let mut n = 0usize;
            self.map.retain(|_, _| {
                n += 1;
                n % 4 != 0
            });
        }
        self.bytes.store(total(), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A bucket of `capacity` calls refilled at `per_second` (SPEC §16: 100 and 100): a call
/// takes one or is not made.
pub struct Bucket {
    capacity: f64,
    per_second: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(capacity: u32, per_second: u32, now: Instant) -> Bucket {
        Bucket {
            capacity: capacity.into(),
            per_second: per_second.into(),
            level: capacity.into(),
            at: now,
        }
    }

    /// Take one call's room at `now`, if there is any.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = self.at.max(now);
        self.level = (self.level + elapsed.as_secs_f64() * self.per_second).min(self.capacity);
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn issuer(audience: &[&str]) -> Issuer {
        Issuer {
            name: "corp".into(),
            issuer: "https://idp.example".into(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            algorithms: vec![],
            roles_claim: Some("/roles".into()),
            client_id_claim: None,
            privileges: None,
            tenants: vec![],
            allowed_skew_seconds: 30,
            max_age_seconds: 0,
        }
    }

    const NOW: u64 = 1_000_000;

    fn read(i: &Issuer, status: u16, body: Value) -> Result<(Verdict, u64), Unusable> {
        verdict(i, 60, status, body.to_string().as_bytes(), NOW)
    }

    fn refused(v: Result<(Verdict, u64), Unusable>) -> (TokenError, u64) {
        match v {
            Ok((Verdict::Inactive(e), until)) => (e, until),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_active_answer_names_the_client_its_scopes_and_roles() {
        let i = issuer(&[]);
        let a = json!({"active": true, "client_id": "svc", "sub": "u1", "scope": "a b",
            "roles": ["r1"], "exp": NOW + 3600, "iss": "https://idp.example",
            "token_type": "Bearer"});
        let (v, until) = read(&i, 200, a).unwrap();
        let Verdict::Active(c) = v else { panic!() };
        assert_eq!(
            (
                c.client_id.as_str(),
                c.subject.as_deref(),
                &c.scopes[..],
                &c.roles[..]
            ),
            (
                "svc",
                Some("u1"),
                &["a".to_string(), "b".into()][..],
                &["r1".to_string()][..]
            )
        );
        assert_eq!(until, NOW + 60, "cache_seconds bounds it before exp");
        // Sooner than cache_seconds, exp bounds it; without exp, cache_seconds does.
        let a = json!({"active": true, "sub": "u1", "exp": NOW + 5});
        assert_eq!(read(&i, 200, a).unwrap().1, NOW + 5);
        let a = json!({"active": true, "sub": "u1", "token_type": "access_token"});
        assert_eq!(read(&i, 200, a).unwrap().1, NOW + 60);
    }

    #[test]
    fn refusals_are_remembered_as_answers_and_inactive_ones_ten_seconds() {
        let i = issuer(&["orders"]);
        let ok = json!({"active": true, "sub": "u", "aud": "orders"});
        assert!(matches!(read(&i, 200, ok).unwrap().0, Verdict::Active(_)));
        let cases = [
            (json!({"active": false}), TokenError::Inactive),
            (
                json!({"active": true, "sub": "u", "aud": "orders", "iss": "https://other"}),
                TokenError::WrongIssuer,
            ),
            (
                json!({"active": true, "sub": "u", "aud": "orders", "iss": 7}),
                TokenError::WrongIssuer,
            ),
            (
                json!({"active": true, "sub": "u", "aud": "orders", "exp": NOW}),
                TokenError::Expired,
            ),
            (
                json!({"active": true, "sub": "u", "aud": "orders", "exp": "soon"}),
                TokenError::Malformed,
            ),
            (
                json!({"active": true, "sub": "u", "aud": "orders", "token_type": "refresh_token"}),
                TokenError::NotAccessToken,
            ),
            (
                json!({"active": true, "sub": "u", "aud": "billing"}),
                TokenError::WrongAudience,
            ),
            (
                json!({"active": true, "sub": "u"}),
                TokenError::WrongAudience,
            ),
            (
                json!({"active": true, "aud": "orders"}),
                TokenError::MissingClaim("sub".into()),
            ),
            (
                json!({"active": true, "sub": "a\u{1}b", "aud": "orders"}),
                TokenError::Malformed,
            ),
        ];
        for (answer, want) in cases {
            // Inactive: 10 s. Active but refused by the entry's rules: as any answer,
            // cache_seconds at most and never past its exp.
            let until = match &want {
                TokenError::Inactive => NOW + INACTIVE_SECONDS,
                TokenError::Expired => NOW,
                _ => NOW + 60,
            };
            assert_eq!(
                refused(read(&i, 200, answer.clone())),
                (want, until),
                "{answer}"
            );
        }
    }

    #[test]
    fn answers_that_say_nothing_usable_are_not_verdicts() {
        let i = issuer(&[]);
        for (status, body) in [
            (500, br#"{"active": true, "sub": "u"}"#.to_vec()),
            (302, b"".to_vec()),
            (200, b"not json".to_vec()),
            (200, b"[true]".to_vec()),
            (200, b"\"active\"".to_vec()),
            (200, br#"{"active": "true", "sub": "u"}"#.to_vec()),
            (200, br#"{"active": 1}"#.to_vec()),
            (200, br#"{"sub": "u"}"#.to_vec()),
        ] {
            let v = verdict(&i, 60, status, &body, NOW);
            assert!(
                v.is_err(),
                "{status} {}: {v:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn the_cache_forgets_at_the_given_time() {
        let c = Cache::default();
        let k = key("opaque-1");
        assert_ne!(k, key("opaque-2"));
        c.insert(k, Verdict::Inactive(TokenError::Inactive), NOW + 10, NOW);
        assert_eq!(
            c.get(&k, NOW + 9),
            Some(Verdict::Inactive(TokenError::Inactive))
        );
        assert_eq!(c.get(&k, NOW + 10), None);
        assert!(c.is_empty(), "an expired answer is dropped when read");
        c.insert(k, Verdict::Inactive(TokenError::Inactive), NOW, NOW);
        assert!(c.is_empty(), "an answer already expired is not kept");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = Cache::default();
        for n in 0..(CACHE_MAX as u64 + 10) {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&n.to_le_bytes());
            c.insert(k, Verdict::Inactive(TokenError::Inactive), NOW + 10, NOW);
        }
        assert!(c.len() <= CACHE_MAX);
        assert!(
            c.len() >= CACHE_MAX / 2,
            "a flood drops a quarter, not everyone's answers"
        );
        // Large answers are bounded by their bytes too.
        let c = Cache::default();
        let big = Arc::new(IssuerClaims {
            client_id: "c".into(),
            subject: None,
            scopes: vec!["s".repeat(60_000)],
            roles: vec![],
            exp: u64::MAX,
        });
        for n in 0..2_000u64 {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&n.to_le_bytes());
            c.insert(k, Verdict::Active(big.clone()), NOW + 10, NOW);
        }
        assert!(c.bytes.load(Ordering::Relaxed) <= CACHE_MAX_BYTES + 61_000);
        assert!(c.len() < 600, "{}", c.len());
    }

    #[test]
    fn the_bucket_lets_a_hundred_through_then_a_hundred_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::full(100, 100, t0);
        assert_eq!((0..150).filter(|_| b.take(t0)).count(), 100);
        let later = t0 + Duration::from_millis(100);
        assert_eq!((0..50).filter(|_| b.take(later)).count(), 10);
        // An hour idle refills it to its capacity, not beyond.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..500).filter(|_| b.take(much_later)).count(), 100);
    }
}
