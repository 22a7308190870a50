//! Access tokens: minting and verification of the JWTs the token endpoint issues.
//!
//! Verification fails closed: the key is chosen by `kid` and must have exactly the `alg` the
//! token names (no HS256-with-a-public-key confusion, no `none`); `exp`, `nbf`, `iat`,
//! `iss`, `sub` (and `aud` when configured) are required.

use crate::config::{Algorithm, TokenConfig};
use crate::tokens::keys::{self, SigningKey, VerifyingKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use dashmap::DashMap;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Longest bearer token looked at by default (`limits.max_bearer_bytes`); anything longer
/// is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8192;
/// Clock skew tolerated between replicas for `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// Verified tokens remembered per registry generation. Only successes are cached, so an
/// attacker cannot fill it without valid tokens; past this size expired entries are swept,
/// then the cache is cleared.
pub const CACHE_MAX: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    // Defaulted so a missing one reaches claim validation and is reported by name.
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub exp: u64,
    pub jti: String,
    pub roles: Vec<String>,
    /// Granted privilege names, space-separated.
    pub scope: String,
}

impl Claims {
    pub fn has_scope(&self, privilege: &str) -> bool {
        self.scope.split(' ').any(|s| s == privilege)
    }
}

/// Why a token was refused; the text goes into `error_description` and never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed,
    UnknownKey,
    AlgorithmNotAccepted,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// Issued longer ago than an issuer's `max_age_seconds` (SPEC §9).
    TooOld,
    MissingClaim(String),
    /// An identity provider's introspection answered `active: false` (SPEC §16).
    Inactive,
    /// Introspection named another `token_type` than an access token (SPEC §16).
    NotAccessToken,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => f.write_str("the token is too long"),
            TokenError::Malformed => f.write_str("the token is malformed"),
            TokenError::UnknownKey => f.write_str("the token was signed by an unknown key"),
            TokenError::AlgorithmNotAccepted => f.write_str("the token's alg is not accepted"),
            TokenError::BadSignature => f.write_str("the token signature is invalid"),
            TokenError::Expired => f.write_str("the token has expired"),
            TokenError::NotYetValid => f.write_str("the token is not yet valid"),
            TokenError::WrongIssuer => f.write_str("the token has the wrong issuer"),
            TokenError::WrongAudience => f.write_str("the token has the wrong audience"),
            TokenError::TooOld => f.write_str("the token was issued too long ago"),
            TokenError::MissingClaim(c) => write!(f, "the token lacks the {c} claim"),
            TokenError::Inactive => {
                f.write_str("the identity provider says the token is not active")
            }
            TokenError::NotAccessToken => {
                f.write_str("the identity provider says the token is not an access token")
            }
        }
    }
}

/// The keys and claim rules of one registry generation.
pub struct Tokens {
    pub issuer: String,
    pub audience: Option<String>,
    pub lifetime_seconds: u64,
    /// Longest bearer token parsed (`limits.max_bearer_bytes`).
    pub max_len: usize,
    signing: SigningKey,
    /// Every key that verifies, by kid: the signing key's own and the older ones.
    verifying: HashMap<String, VerifyingKey>,
    jwks: Vec<u8>,
    /// The base64url JWS header, computed once.
    header_b64: String,
    /// A reload builds a new `Tokens`, so a key change empties it.
    verified: Verified<Claims>,
}

impl Tokens {
    /// Load the keys of `cfg`; `resolve` maps a configured file path to a real one.
    /// Errors are (key path, message).
    pub fn load(
        cfg: &TokenConfig,
        resolve: impl Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Tokens, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if cfg.key_id.is_empty() {
            errors.push(("token.key_id".into(), "key_id is empty".into()));
        }
        if cfg.lifetime_seconds == 0 {
            errors.push((
                "token.lifetime_seconds".into(),
                "lifetime_seconds must be positive".into(),
            ));
        }
        if cfg.issuer.is_empty() {
            errors.push(("token.issuer".into(), "issuer is empty".into()));
        }
        let signing =
            keys::load_signing(&resolve(&cfg.signing_key_file), cfg.algorithm, &cfg.key_id)
                .map_err(|e| errors.push(("token.signing_key_file".into(), e)))
                .ok();
        let mut verifying = HashMap::new();
        for (i, v) in cfg.verification_keys.iter().enumerate() {
            if v.key_id == cfg.key_id || verifying.contains_key(&v.key_id) {
                errors.push((
                    format!("token.verification_keys[{i}].key_id"),
                    format!("duplicate key_id `{}`", v.key_id),
                ));
                continue;
            }
            match keys::load_verification(&resolve(&v.file), v.algorithm, &v.key_id) {
                Ok(k) => {
                    verifying.insert(v.key_id.clone(), k);
                }
                Err(e) => errors.push((format!("token.verification_keys[{i}].file"), e)),
            }
        }
        let signing = match signing {
            Some(s) if errors.is_empty() => s,
            _ => return Err(errors),
        };
        let mut jwks: Vec<serde_json::Value> = signing.verifying.jwk.iter().cloned().collect();
        let mut kids: Vec<_> = verifying.keys().cloned().collect();
        kids.sort();
        jwks.extend(kids.iter().filter_map(|k| verifying[k].jwk.clone()));
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwks })).expect("json");
        let own = VerifyingKey {
            alg: signing.verifying.alg,
            key: signing.verifying.key.clone(),
            jwk: None,
        };
        let mut header = Header::new(keys::jwt_algorithm(signing.alg));
        header.kid = Some(cfg.key_id.clone());
        let header_b64 = B64.encode(serde_json::to_vec(&header).expect("json"));
        verifying.insert(cfg.key_id.clone(), own);
        Ok(Tokens {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            lifetime_seconds: cfg.lifetime_seconds,
            max_len: MAX_TOKEN_LEN,
            signing,
            verifying,
            jwks,
            header_b64,
            verified: Verified::default(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.signing.alg
    }

    /// The RFC 7517 JWK set: public keys only.
    pub fn jwks(&self) -> &[u8] {
        &self.jwks
    }

    /// Sign `claims` with the current signing key (JWS compact serialisation, RFC 7515).
    pub fn mint(&self, claims: &Claims) -> Result<String, crate::tokens::keys::SignError> {
        let payload = B64.encode(serde_json::to_vec(claims).expect("json"));
        let input = format!("{}.{}", self.header_b64, payload);
        let signature = self.signing.signer.sign(input.as_bytes())?;
        Ok(format!("{input}.{signature}"))
    }

    /// Whether `token` was verified before (and is still remembered).
    pub fn knows(&self, token: &str) -> bool {
        self.verified.knows(token)
    }

    /// Verify a bearer token, from the cache when it was verified before.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let n = now();
        if let Some(hit) = self.verified.get(token, n) {
            return hit;
        }
        let claims = Arc::new(self.verify_uncached(token)?);
        self.verified.insert(token, claims.clone(), n);
        Ok(claims)
    }

    /// Verify a bearer token's signature and standard claims, without the cache.
    ///
    /// The claims are checked first: they cost microseconds, the signature tens of them, so a
    /// token that would fail anyway (expired, another issuer) is refused before the expensive
    /// step. Reading unverified claims only ever refuses; nothing is granted before the
    /// signature holds.
    pub fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let jws = Jws::split(token, self.max_len)?;
        let key = jws
            .header
            .kid
            .as_deref()
            .and_then(|k| self.verifying.get(k))
            .ok_or(TokenError::UnknownKey)?;
        if jws.header.alg != keys::jwt_algorithm(key.alg) {
            return Err(TokenError::AlgorithmNotAccepted);
        }
        let claims = self.check_claims(jws.claims()?, now())?;
        if !key.key.verify(jws.signed(), &jws.signature()?) {
            return Err(TokenError::BadSignature);
        }
        Ok(claims)
    }

    /// RFC 7519 claim rules at `now`: the required claims present, `exp` and `nbf` with
    /// [`LEEWAY_SECONDS`], `iss`, `aud` when configured, and `sub` naming the client.
    fn check_claims(
        &self,
        raw: serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let required = ["exp", "nbf", "iat", "iss", "sub"];
        let aud = self.audience.as_ref().map(|_| "aud");
        if let Some(missing) = required
            .into_iter()
            .chain(aud)
            .find(|c| !raw.contains_key(*c))
        {
            return Err(TokenError::MissingClaim(missing.into()));
        }
        let c: Claims = serde_json::from_value(serde_json::Value::Object(raw))
            .map_err(|_| TokenError::Malformed)?;
        if c.exp.saturating_add(LEEWAY_SECONDS) < now {
            return Err(TokenError::Expired);
        }
        if c.nbf > now.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        if c.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if self.audience.is_some() && c.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        if c.sub != c.client_id {
            return Err(TokenError::Malformed);
        }
        Ok(c)
    }
}

/// A compact JWS (RFC 7515) split and its header decoded; the payload and the signature are
/// decoded when asked for, so a token is refused by its cheapest failing check. Shared by
/// the proxy's own tokens and identity providers' (`tokens::issuer`).
pub struct Jws<'a> {
    pub header: Header,
    payload_b64: &'a str,
    signature_b64: &'a str,
    /// `header.payload`, the signed bytes.
    signed: &'a str,
}

impl<'a> Jws<'a> {
    /// Split `token`; `max_len` is `limits.max_bearer_bytes`.
    pub fn split(token: &'a str, max_len: usize) -> Result<Self, TokenError> {
        if token.len() > max_len {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        // jsonwebtoken's header type refuses unknown algorithms, `none` among them.
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        Ok(Jws {
            header,
            payload_b64: p,
            signature_b64: s,
            signed: &token[..h.len() + 1 + p.len()],
        })
    }

    /// The payload as a JSON object.
    pub fn claims(&self) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
        B64.decode(self.payload_b64)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(TokenError::Malformed)
    }

    pub fn signature(&self) -> Result<Vec<u8>, TokenError> {
        B64.decode(self.signature_b64)
            .map_err(|_| TokenError::Malformed)
    }

    pub fn signed(&self) -> &'a [u8] {
        self.signed.as_bytes()
    }
}

/// What is malformed about `token`, in words, or `None` when it splits into a JWS header,
/// payload and signature (`ords-guard explain`; the proxy's 401 says only "malformed").
pub fn why_malformed(token: &str) -> Option<String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Some(format!(
            "a JWT is three base64url parts joined by `.`; this has {}",
            parts.len()
        ));
    }
    let json = |i: usize, what: &str| -> Result<serde_json::Value, String> {
        let bytes = B64
            .decode(parts[i])
            .map_err(|e| format!("the {what} is not base64url ({e})"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the {what} is not JSON ({e})"))
    };
    let header = match json(0, "header") {
        Ok(h) => h,
        Err(why) => return Some(why),
    };
    if serde_json::from_value::<Header>(header.clone()).is_err() {
        let alg = header
            .get("alg")
            .map_or("none".to_string(), |a| a.to_string());
        return Some(format!(
            "the header's alg ({alg}) is not a JWS signing algorithm, or its fields are not JWS header fields"
        ));
    }
    match json(1, "payload") {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Some("the payload is not a JSON object of claims".into()),
        Err(why) => return Some(why),
    }
    if let Err(e) = B64.decode(parts[2]) {
        return Some(format!("the signature is not base64url ({e})"));
    }
    None
}

/// What a cached verification needs to know: until when it holds (with any leeway).
pub trait Expiring {
    fn valid_until(&self) -> u64;
}

impl Expiring for Claims {
    fn valid_until(&self) -> u64 {
        self.exp.saturating_add(LEEWAY_SECONDS)
    }
}

/// Verified tokens: token -> what its verification found. A signature and its claims never
/// change for a given token string, so a hit only needs its expiry checked. Only successes
/// go in, so an attacker cannot fill it without valid tokens; past [`CACHE_MAX`] entries
/// the expired ones are swept, then all.
pub struct Verified<T> {
    map: DashMap<Box<str>, Arc<T>>,
}

impl<T> Default for Verified<T> {
    fn default() -> Self {
        Verified {
            map: DashMap::new(),
        }
    }
}

impl<T: Expiring> Verified<T> {
    /// The remembered verification of `token` at `now`; an expired one is dropped and
    /// answered [`TokenError::Expired`].
    pub fn get(&self, token: &str, now: u64) -> Option<Result<Arc<T>, TokenError>> {
        let hit = self.map.get(token)?;
        if now <= hit.valid_until() {
            return Some(Ok(hit.clone()));
        }
        drop(hit);
        self.map.remove(token);
        Some(Err(TokenError::Expired))
    }

    pub fn insert(&self, token: &str, v: Arc<T>, now: u64) {
        if self.map.len() >= CACHE_MAX {
            self.map.retain(|_, c| now <= c.valid_until());
            if self.map.len() >= CACHE_MAX {
                self.map.clear();
            }
        }
        self.map.insert(token.into(), v);
    }

    pub fn knows(&self, token: &str) -> bool {
        self.map.contains_key(token)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VerificationKeyConfig;
    use std::path::{Path, PathBuf};

    struct Fixture {
        _dir: tempfile::TempDir,
        tokens: Tokens,
        path: PathBuf,
    }

    fn fixture(alg: Algorithm, audience: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        keys::write_generated(dir.path(), &keys::generate(alg)).unwrap();
        let cfg = TokenConfig {
            issuer: "ords-guard".into(),
            audience: audience.map(String::from),
            lifetime_seconds: 3600,
            algorithm: alg,
            signing_key_file: "signing.pem".into(),
            key_id: "k1".into(),
            verification_keys: vec![],
        };
        let path = dir.path().to_path_buf();
        let p2 = path.clone();
        let tokens = Tokens::load(&cfg, move |p: &Path| p2.join(p)).unwrap();
        Fixture {
            _dir: dir,
            tokens,
            path,
        }
    }

    fn claims(t: &Tokens, iat: u64, exp: u64) -> Claims {
        Claims {
            iss: t.issuer.clone(),
            sub: "c1".into(),
            client_id: "c1".into(),
            aud: t.audience.clone(),
            iat,
            nbf: iat,
            exp,
            jti: "j".into(),
            roles: vec!["r".into()],
            scope: "p q".into(),
        }
    }

    fn fresh(t: &Tokens) -> Claims {
        claims(t, now(), now() + 600)
    }

    /// Re-encode a token's header and payload without a valid signature.
    fn forge(header: &serde_json::Value, payload: &serde_json::Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string()),
            sig
        )
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [
            Algorithm::HS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
        ] {
            let f = fixture(alg, Some("api"));
            let c = fresh(&f.tokens);
            assert_eq!(
                f.tokens.verify(&f.tokens.mint(&c).unwrap()).as_deref(),
                Ok(&c),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let f = fixture(Algorithm::ES256, None);
        let c = serde_json::to_value(fresh(&f.tokens)).unwrap();
        let t = forge(
            &serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"}),
            &c,
            "",
        );
        assert!(f.tokens.verify(&t).is_err());
        let t = forge(&serde_json::json!({"alg": "NONE", "kid": "k1"}), &c, "");
        assert!(f.tokens.verify(&t).is_err());
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let f = fixture(Algorithm::ES256, None);
        let public = std::fs::read(f.path.join("signing.pub.pem")).unwrap();
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let t = jsonwebtoken::encode(
            &h,
            &fresh(&f.tokens),
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(f.tokens.verify(&t), Err(TokenError::AlgorithmNotAccepted));
    }

    #[test]
    fn time_claims_are_enforced() {
        let f = fixture(Algorithm::HS256, None);
        let t = &f.tokens;
        let n = now();
        assert_eq!(
            t.verify(&t.mint(&claims(t, n - 7200, n - 3600)).unwrap()),
            Err(TokenError::Expired)
        );
        let mut c = claims(t, n, n + 7200);
        c.nbf = n + 3600;
        assert_eq!(t.verify(&t.mint(&c).unwrap()), Err(TokenError::NotYetValid));
    }

    #[test]
    fn missing_exp_is_refused() {
        let f = fixture(Algorithm::HS256, None);
        let t = &f.tokens;
        let mut c = serde_json::to_value(fresh(t)).unwrap();
        c.as_object_mut().unwrap().remove("exp");
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let key = jsonwebtoken::EncodingKey::from_secret(
            &std::fs::read(f.path.join("signing.pem")).unwrap(),
        );
        let tok = jsonwebtoken::encode(&h, &c, &key).unwrap();
        assert_eq!(t.verify(&tok), Err(TokenError::MissingClaim("exp".into())));
    }

    #[test]
    fn wrong_issuer_and_audience_are_refused() {
        let f = fixture(Algorithm::EdDSA, Some("api"));
        let t = &f.tokens;
        let mut c = fresh(t);
        c.iss = "someone-else".into();
        assert_eq!(t.verify(&t.mint(&c).unwrap()), Err(TokenError::WrongIssuer));
        let mut c = fresh(t);
        c.aud = Some("other-api".into());
        assert_eq!(
            t.verify(&t.mint(&c).unwrap()),
            Err(TokenError::WrongAudience)
        );
        let mut c = fresh(t);
        c.aud = None;
        assert_eq!(
            t.verify(&t.mint(&c).unwrap()),
            Err(TokenError::MissingClaim("aud".into()))
        );
    }

    #[test]
    fn tampered_payload_and_signature_are_refused() {
        let f = fixture(Algorithm::ES256, None);
        let t = &f.tokens;
        let tok = t.mint(&fresh(t)).unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        // Payload changed to widen the scope, signature kept.
        let mut c = fresh(t);
        c.scope = "p q admin".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_string(&c).unwrap()),
            parts[2]
        );
        assert_eq!(t.verify(&tampered), Err(TokenError::BadSignature));
        // Signature bytes flipped.
        let mut sig = B64.decode(parts[2]).unwrap();
        sig[5] ^= 1;
        let bad = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
        assert_eq!(t.verify(&bad), Err(TokenError::BadSignature));
        // Truncated, garbage, oversized.
        assert!(t.verify(&tok[..tok.len() - 10]).is_err());
        assert_eq!(t.verify("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(t.verify(""), Err(TokenError::Malformed));
        assert_eq!(
            t.verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn unknown_kid_and_sub_mismatch_are_refused() {
        let f = fixture(Algorithm::HS256, None);
        let t = &f.tokens;
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("other".into());
        let key = jsonwebtoken::EncodingKey::from_secret(
            &std::fs::read(f.path.join("signing.pem")).unwrap(),
        );
        assert_eq!(
            t.verify(&jsonwebtoken::encode(&h, &fresh(t), &key).unwrap()),
            Err(TokenError::UnknownKey)
        );
        let mut c = fresh(t);
        c.sub = "someone".into();
        assert_eq!(t.verify(&t.mint(&c).unwrap()), Err(TokenError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_jwks_public_only() {
        let old = fixture(Algorithm::ES256, None);
        let old_token = old.tokens.mint(&fresh(&old.tokens)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        keys::write_generated(dir.path(), &keys::generate(Algorithm::EdDSA)).unwrap();
        let cfg = TokenConfig {
            issuer: "ords-guard".into(),
            audience: None,
            lifetime_seconds: 3600,
            algorithm: Algorithm::EdDSA,
            signing_key_file: dir.path().join("signing.pem"),
            key_id: "k2".into(),
            verification_keys: vec![VerificationKeyConfig {
                key_id: "k1".into(),
                algorithm: Algorithm::ES256,
                file: old.path.join("signing.pub.pem"),
            }],
        };
        let t = Tokens::load(&cfg, |p: &Path| p.to_path_buf()).unwrap();
        assert!(t.verify(&old_token).is_ok());
        let jwks: serde_json::Value = serde_json::from_slice(t.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], "k2");
        assert_eq!(keys[1]["kid"], "k1");
        assert!(keys.iter().all(|k| k.get("d").is_none()));
    }

    #[test]
    fn cache_serves_repeats_and_still_expires() {
        let f = fixture(Algorithm::HS256, None);
        let t = &f.tokens;
        let tok = t.mint(&fresh(t)).unwrap();
        let a = t.verify(&tok).unwrap();
        let b = t.verify(&tok).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second verification came from the cache"
        );
        // A cached entry past its expiry is refused and dropped.
        let n = now();
        let mut old = claims(t, n - 7200, n - 3600);
        old.jti = "old".into();
        let tok = t.mint(&old).unwrap();
        t.verified.insert(&tok, Arc::new(old), n);
        assert_eq!(t.verify(&tok), Err(TokenError::Expired));
        assert!(!t.knows(&tok));
        // Failures are not cached.
        assert!(t.verify("x.y.z").is_err());
        assert_eq!(t.verified.len(), 1);
    }

    #[test]
    fn tokens_signed_by_another_implementation_verify() {
        // jsonwebtoken's own (pure-Rust) signers, with our key files: ring must agree.
        for alg in [
            Algorithm::HS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
        ] {
            let f = fixture(alg, None);
            let pem = std::fs::read(f.path.join("signing.pem")).unwrap();
            let key = match alg {
                Algorithm::HS256 => jsonwebtoken::EncodingKey::from_secret(&pem),
                Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
                Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
                Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            };
            let mut h = Header::new(keys::jwt_algorithm(alg));
            h.kid = Some("k1".into());
            let c = fresh(&f.tokens);
            let t = jsonwebtoken::encode(&h, &c, &key).unwrap();
            assert_eq!(f.tokens.verify_uncached(&t), Ok(c), "{alg:?}");
            // And what we mint, jsonwebtoken verifies (backends use such libraries).
            let ours = f.tokens.mint(&fresh(&f.tokens)).unwrap();
            let mut v = jsonwebtoken::Validation::new(keys::jwt_algorithm(alg));
            v.validate_aud = false;
            let dk = match alg {
                Algorithm::HS256 => jsonwebtoken::DecodingKey::from_secret(&pem),
                _ => {
                    let public = std::fs::read(f.path.join("signing.pub.pem")).unwrap();
                    match alg {
                        Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(&public),
                        Algorithm::EdDSA => jsonwebtoken::DecodingKey::from_ed_pem(&public),
                        _ => jsonwebtoken::DecodingKey::from_rsa_pem(&public),
                    }
                    .unwrap()
                }
            };
            assert!(
                jsonwebtoken::decode::<Claims>(&ours, &dk, &v).is_ok(),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn claims_are_refused_before_the_signature_is_checked() {
        let f = fixture(Algorithm::ES256, None);
        let t = &f.tokens;
        let n = now();
        let expired = serde_json::to_value(claims(t, n - 7200, n - 3600)).unwrap();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let garbage = B64.encode([7u8; 64]);
        assert_eq!(
            t.verify(&forge(&header, &expired, &garbage)),
            Err(TokenError::Expired)
        );
        let mut other = serde_json::to_value(fresh(t)).unwrap();
        other["iss"] = "elsewhere".into();
        assert_eq!(
            t.verify(&forge(&header, &other, &garbage)),
            Err(TokenError::WrongIssuer)
        );
        // Good claims, forged signature: the signature decides.
        let good = serde_json::to_value(fresh(t)).unwrap();
        assert_eq!(
            t.verify(&forge(&header, &good, &garbage)),
            Err(TokenError::BadSignature)
        );
        // Four parts, or a non-base64 signature: malformed.
        let tok = t.mint(&fresh(t)).unwrap();
        assert_eq!(t.verify(&format!("{tok}.x")), Err(TokenError::Malformed));
        let (head, _) = tok.rsplit_once('.').unwrap();
        assert_eq!(t.verify(&format!("{head}.*")), Err(TokenError::Malformed));
    }

    #[test]
    fn hs256_jwks_is_empty() {
        let f = fixture(Algorithm::HS256, None);
        assert_eq!(f.tokens.jwks(), br#"{"keys":[]}"#);
    }
}
