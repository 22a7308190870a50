//! An identity provider's tokens (SPEC §9): the checks of one `issuers[]` entry, and what a
//! verified token opens. Pure: the keys are handed in (`jwks::KeySet`), and so is the time.
//!
//! The order follows the proxy's own tokens (`token`): the header and the claims first, as
//! they cost microseconds and only ever refuse, then the signature.

use crate::tokens::jwks::{KeyMiss, KeySet};
use crate::tokens::token::{Jws, TokenError};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// The literal in `issuer` that Entra ID's multi-tenant form puts the `tid` claim in.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";
/// Claims tried for the client id, in order, without `client_id_claim` (SPEC §9).
const CLIENT_ID_CLAIMS: [&str; 4] = ["client_id", "azp", "appid", "sub"];

/// A token split and its claims decoded, not yet verified: what routing by `iss` reads.
pub struct Unverified<'a> {
    pub jws: Jws<'a>,
    pub claims: Map<String, Value>,
}

impl<'a> Unverified<'a> {
    /// Split and decode `token`; `max_len` is `limits.max_bearer_bytes`.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, TokenError> {
        let jws = Jws::split(token, max_len)?;
        let claims = jws.claims()?;
        Ok(Unverified { jws, claims })
    }

    /// The unverified `iss`, which routes the token to its keys.
    pub fn iss(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// Why an issuer's token does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerError {
    Token(TokenError),
    /// No key of the set checks it; [`KeyMiss::UnknownKid`] asks for a refetch.
    Key(KeyMiss),
}

impl From<TokenError> for IssuerError {
    fn from(e: TokenError) -> Self {
        IssuerError::Token(e)
    }
}

/// The facts of a verified token that the decision and the forwarded headers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerClaims {
    /// `X-ORDS-Client-Id`: the client id claim, or `sub`.
    pub client_id: String,
    /// `X-ORDS-Subject`.
    pub subject: Option<String>,
    /// `scope` (space-separated) or `scp` (a string or an array).
    pub scopes: Vec<String>,
    /// The role claim's values.
    pub roles: Vec<String>,
    pub exp: u64,
}

/// An identity provider's verified token, as the verified-token cache keeps it.
pub struct IssuerVerified {
    /// Index into `Registry::issuers` (of the generation whose cache holds it).
    pub entry: usize,
    pub claims: IssuerClaims,
    /// `exp` plus the entry's skew.
    pub valid_until: u64,
}

impl crate::tokens::token::Expiring for IssuerVerified {
    fn valid_until(&self) -> u64 {
        self.valid_until
    }
}

/// One `issuers[]` entry, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub name: String,
    /// `iss` exactly, or with [`TENANT_PLACEHOLDER`] standing for the token's `tid`.
    pub issuer: String,
    /// `aud` must hold one of these, when any are given.
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// RFC 6901 JSON Pointers.
    pub roles_claim: Option<String>,
    pub client_id_claim: Option<String>,
    /// The only privileges its tokens may open; `None`: any.
    pub privileges: Option<Vec<String>>,
    /// Allowed `tid` values for a templated issuer; empty: any.
    pub tenants: Vec<String>,
    pub allowed_skew_seconds: u64,
    /// 0: no limit.
    pub max_age_seconds: u64,
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        // RFC 7519 NumericDate may have a fraction; whole seconds are what is compared.
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(TokenError::Malformed),
    }
}

/// A claim read as a list of names: an array of strings, or one string split on `split`.
pub fn names(v: Option<&Value>, split: &[char]) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(split)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

impl Issuer {
    /// Whether an unverified `iss` names this entry.
    pub fn matches(&self, iss: &str, claims: &Map<String, Value>) -> bool {
        let Some((before, after)) = self.issuer.split_once(TENANT_PLACEHOLDER) else {
            return iss == self.issuer;
        };
        let Some(tid) = claims.get("tid").and_then(Value::as_str) else {
            return false;
        };
        let tenant_ok = !tid.is_empty()
            && !tid.contains('/')
            && (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tid));
        tenant_ok
            && iss.len() == before.len() + tid.len() + after.len()
            && iss.starts_with(before)
            && iss[before.len()..].starts_with(tid)
            && iss.ends_with(after)
    }

    /// Verify a token already routed here by its `iss`, at `now`.
    pub fn verify(
        &self,
        token: &Unverified<'_>,
        keys: &KeySet,
        now: u64,
    ) -> Result<IssuerClaims, IssuerError> {
        let alg = token.jws.header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAccepted.into());
        }
        let claims = self.check_claims(&token.claims, now)?;
        let key = keys
            .select(token.jws.header.kid.as_deref(), alg)
            .map_err(IssuerError::Key)?;
        if !key.verify(alg, token.jws.signed(), &token.jws.signature()?) {
            return Err(TokenError::BadSignature.into());
        }
        Ok(claims)
    }

    /// SPEC §9's claim rules: `iss`, `exp` required, `nbf`/`iat`/`exp` with the skew,
    /// `max_age_seconds`, `aud` any-of; then who and what the token names.
    fn check_claims(&self, c: &Map<String, Value>, now: u64) -> Result<IssuerClaims, TokenError> {
        let iss = c.get("iss").and_then(Value::as_str);
        if !iss.is_some_and(|iss| self.matches(iss, c)) {
            return Err(TokenError::WrongIssuer);
        }
        let skew = self.allowed_skew_seconds;
        let exp = number(c, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if exp.saturating_add(skew) < now {
            return Err(TokenError::Expired);
        }
        let late = now.saturating_add(skew);
        if number(c, "nbf")?.is_some_and(|nbf| nbf > late) {
            return Err(TokenError::NotYetValid);
        }
        let iat = number(c, "iat")?;
        if iat.is_some_and(|iat| iat > late) {
            return Err(TokenError::NotYetValid);
        }
        if self.max_age_seconds > 0 {
            let iat = iat.ok_or_else(|| TokenError::MissingClaim("iat".into()))?;
            if iat
                .saturating_add(self.max_age_seconds)
                .saturating_add(skew)
                < now
            {
                return Err(TokenError::TooOld);
            }
        }
        self.check_audience(c)?;
        self.identity(c, exp)
    }

    /// `aud` holds one of the entry's audiences, when it has any.
    pub fn check_audience(&self, c: &Map<String, Value>) -> Result<(), TokenError> {
        if !self.audience.is_empty() {
            let aud = names(c.get("aud"), &[]);
            if !aud.iter().any(|a| self.audience.contains(a)) {
                return Err(TokenError::WrongAudience);
            }
        }
        Ok(())
    }

    /// Who and what checked claims (a token's, or an introspection answer's) name: the
    /// client id, `sub`, the scopes and the role claim's roles (SPEC §9).
    pub fn identity(&self, c: &Map<String, Value>, exp: u64) -> Result<IssuerClaims, TokenError> {
        let subject = c.get("sub").and_then(Value::as_str).map(str::to_string);
        let client_id = match &self.client_id_claim {
            Some(pointer) => claim_at(c, pointer).and_then(Value::as_str),
            None => CLIENT_ID_CLAIMS
                .iter()
                .find_map(|n| c.get(*n).and_then(Value::as_str)),
        }
        .or(subject.as_deref())
        .ok_or_else(|| TokenError::MissingClaim("sub".into()))?
        .to_string();
        // They are forwarded as X-ORDS-Client-Id and -Subject.
        if !forwardable(&client_id) || subject.as_deref().is_some_and(|s| !forwardable(s)) {
            return Err(TokenError::Malformed);
        }
        let mut scopes = names(c.get("scope"), &[' ']);
        scopes.extend(names(c.get("scp"), &[' ']));
        let roles = match &self.roles_claim {
            Some(pointer) => names(claim_at(c, pointer), &[' ', ',']),
            None => Vec::new(),
        };
        Ok(IssuerClaims {
            client_id,
            subject,
            scopes,
            roles,
            exp,
        })
    }

    /// Whether a verified token opens privilege `name` with `roles` (SPEC §9): the entry's
    /// `privileges` bound all three ways; then no roles, the name in the scope, or one of
    /// the roles in the role claim.
    pub fn opens(&self, claims: &IssuerClaims, name: &str, roles: &[String]) -> bool {
        if self
            .privileges
            .as_ref()
            .is_some_and(|only| !only.iter().any(|p| p == name))
        {
            return false;
        }
        roles.is_empty()
            || claims.scopes.iter().any(|s| s == name)
            || roles.iter().any(|r| claims.roles.contains(r))
    }
}

/// Whether a claim can travel in a header as it is: printable ASCII, at most 256 bytes.
fn forwardable(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The claim `pointer` (RFC 6901) names in the claims object, as `serde_json::Value::pointer`
/// would find it in the object (the `json_pointer` fuzz target holds it to that).
pub fn claim_at<'v>(c: &'v Map<String, Value>, pointer: &str) -> Option<&'v Value> {
    let (first, rest) = match pointer.strip_prefix('/')?.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (pointer.strip_prefix('/')?, None),
    };
    let first = first.replace("~1", "/").replace("~0", "~");
    let top = c.get(&first)?;
    match rest {
        Some(rest) => top.pointer(&format!("/{rest}")),
        None => Some(top),
    }
}

/// Whether `pointer` is a well-formed RFC 6901 JSON Pointer naming a claim (for config
/// validation): `/` then segments where `~` is only ever `~0` or `~1`.
pub fn is_json_pointer(pointer: &str) -> bool {
    let Some(rest) = pointer.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|seg| {
        let mut chars = seg.chars();
        while let Some(ch) = chars.next() {
            if ch == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return false;
            }
        }
        true
    })
}

/// A signing identity provider for unit tests: one P-256 key, `kid` `k1`.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use ring::signature::{self as sig, KeyPair};

    pub struct TestIdp {
        pair: sig::EcdsaKeyPair,
        rng: ring::rand::SystemRandom,
    }

    impl TestIdp {
        pub fn new() -> TestIdp {
            let rng = ring::rand::SystemRandom::new();
            let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
            let doc = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = sig::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap();
            TestIdp { pair, rng }
        }

        pub fn jwks(&self) -> Vec<u8> {
            let p = self.pair.public_key().as_ref();
            let set = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                "use": "sig", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])}]});
            serde_json::to_vec(&set).unwrap()
        }

        /// A compact JWS of `claims` under the JSON `header`.
        pub fn sign(&self, header: &str, claims: &Map<String, Value>) -> String {
            let input = format!(
                "{}.{}",
                B64.encode(header),
                B64.encode(serde_json::to_vec(claims).unwrap())
            );
            let s = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
            format!("{input}.{}", B64.encode(s.as_ref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::jwks::DEFAULT_ALGORITHMS;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn entry() -> Issuer {
        Issuer {
            name: "corp".into(),
            issuer: "https://idp.example/realms/corp".into(),
            audience: vec!["orders-api".into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            roles_claim: Some("/realm_access/roles".into()),
            client_id_claim: None,
            privileges: None,
            tenants: vec![],
            allowed_skew_seconds: 30,
            max_age_seconds: 0,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut c = json!({"iss": "https://idp.example/realms/corp", "aud": "orders-api",
            "sub": "u-1", "azp": "orders-app", "exp": NOW + 300, "iat": NOW - 10});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    fn check(i: &Issuer, extra: Value) -> Result<IssuerClaims, TokenError> {
        i.check_claims(&claims(extra), NOW)
    }

    #[test]
    fn claims_are_checked_with_the_skew() {
        let i = entry();
        let ok = check(&i, json!({})).unwrap();
        assert_eq!(ok.client_id, "orders-app");
        assert_eq!(ok.subject.as_deref(), Some("u-1"));
        assert_eq!(
            check(&i, json!({"exp": null})),
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check(&i, json!({"exp": NOW - 31})),
            Err(TokenError::Expired)
        );
        assert!(check(&i, json!({"exp": NOW - 30})).is_ok());
        assert_eq!(
            check(&i, json!({"nbf": NOW + 31})),
            Err(TokenError::NotYetValid)
        );
        assert!(check(&i, json!({"nbf": NOW + 30})).is_ok());
        assert_eq!(
            check(&i, json!({"iat": NOW + 31})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check(&i, json!({"exp": "soon"})),
            Err(TokenError::Malformed)
        );
        assert!(check(&i, json!({"exp": (NOW + 5) as f64 + 0.5})).is_ok());
        assert_eq!(
            check(&i, json!({"iss": "https://idp.example/realms/other"})),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            check(&i, json!({"iss": null})),
            Err(TokenError::WrongIssuer)
        );
        // aud: a string or an array, any of the configured ones.
        assert_eq!(
            check(&i, json!({"aud": "other"})),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            check(&i, json!({"aud": null})),
            Err(TokenError::WrongAudience)
        );
        assert!(check(&i, json!({"aud": ["x", "orders-api"]})).is_ok());
        let mut open = entry();
        open.audience.clear();
        assert!(check(&open, json!({"aud": null})).is_ok());
        // max_age needs iat, and bounds it.
        let mut aged = entry();
        aged.max_age_seconds = 600;
        assert!(check(&aged, json!({})).is_ok());
        assert_eq!(
            check(&aged, json!({"iat": null})),
            Err(TokenError::MissingClaim("iat".into()))
        );
        assert_eq!(
            check(&aged, json!({"iat": NOW - 631})),
            Err(TokenError::TooOld)
        );
    }

    #[test]
    fn client_id_scopes_and_roles() {
        let mut i = entry();
        // The first of client_id, azp, appid, sub.
        assert_eq!(check(&i, json!({"client_id": "c"})).unwrap().client_id, "c");
        assert_eq!(
            check(&i, json!({"azp": null, "appid": "entra-app"}))
                .unwrap()
                .client_id,
            "entra-app"
        );
        assert_eq!(check(&i, json!({"azp": null})).unwrap().client_id, "u-1");
        assert_eq!(
            check(&i, json!({"azp": "a\r\nX-Evil: 1"})),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            check(&i, json!({"sub": "\u{e9}"})),
            Err(TokenError::Malformed)
        );
        i.client_id_claim = Some("/ext/app".into());
        assert_eq!(
            check(&i, json!({"ext": {"app": "deep"}}))
                .unwrap()
                .client_id,
            "deep"
        );
        assert_eq!(
            check(&i, json!({})).unwrap().client_id,
            "u-1",
            "absent: sub"
        );
        let c = check(
            &i,
            json!({"scope": "orders_read  orders_write", "scp": ["x"]}),
        )
        .unwrap();
        assert_eq!(c.scopes, ["orders_read", "orders_write", "x"]);
        assert_eq!(check(&i, json!({"scp": "a b"})).unwrap().scopes, ["a", "b"]);
        // Roles: nested pointer; array or a string separated by spaces or commas.
        let roles = |v: Value| {
            check(&entry(), json!({"realm_access": {"roles": v}}))
                .unwrap()
                .roles
        };
        assert_eq!(roles(json!(["admin", "reader"])), ["admin", "reader"]);
        assert_eq!(roles(json!("admin, reader x")), ["admin", "reader", "x"]);
        assert_eq!(roles(json!(5)), Vec::<String>::new());
        // Empty names are no names, in a list as in a string (found by the json_pointer
        // fuzz target).
        assert_eq!(roles(json!(["", "admin", 7])), ["admin"]);
        // Escaped pointers: `~1` is `/`, `~0` is `~`.
        let mut escaped = entry();
        escaped.roles_claim = Some("/https:~1~1corp.example~1roles/~0all".into());
        let c = escaped
            .check_claims(
                &claims(json!({"https://corp.example/roles": {"~all": ["r"]}})),
                NOW,
            )
            .unwrap();
        assert_eq!(c.roles, ["r"]);
        let mut none = entry();
        none.roles_claim = None;
        assert!(check(&none, json!({"realm_access": {"roles": ["admin"]}}))
            .unwrap()
            .roles
            .is_empty());
        assert!(is_json_pointer("/a/b~0~1"));
        assert!(!is_json_pointer("a"));
        assert!(!is_json_pointer("/a~2"));
        assert!(!is_json_pointer("/a~"));
    }

    #[test]
    fn what_a_token_opens() {
        let i = entry();
        let c = check(
            &i,
            json!({"scope": "orders_read", "realm_access": {"roles": ["clerk"]}}),
        )
        .unwrap();
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(i.opens(&c, "anything_open", &[]));
        assert!(i.opens(&c, "orders_read", &roles(&["manager"])));
        assert!(i.opens(&c, "orders_write", &roles(&["clerk"])));
        assert!(!i.opens(&c, "orders_write", &roles(&["manager"])));
        let mut bounded = entry();
        bounded.privileges = Some(vec!["orders_read".into()]);
        assert!(bounded.opens(&c, "orders_read", &roles(&["manager"])));
        assert!(
            !bounded.opens(&c, "orders_write", &roles(&["clerk"])),
            "bounds roles too"
        );
        assert!(
            !bounded.opens(&c, "anything_open", &[]),
            "and role-less privileges"
        );
    }

    #[test]
    fn entra_tenant_template() {
        let mut i = entry();
        i.issuer = "https://login.microsoftonline.com/{tenantid}/v2.0".into();
        let c = |iss: &str, tid: Value| claims(json!({"iss": iss, "tid": tid}));
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let iss = format!("https://login.microsoftonline.com/{t}/v2.0");
        assert!(i.matches(&iss, &c(&iss, json!(t))));
        assert!(
            !i.matches(&iss, &c(&iss, json!("other"))),
            "tid must be the one in iss"
        );
        assert!(!i.matches(&iss, &c(&iss, Value::Null)));
        let slash = "https://login.microsoftonline.com/a/b/v2.0";
        assert!(
            !i.matches(slash, &c(slash, json!("a/b"))),
            "a tid with / matches nothing"
        );
        i.tenants = vec!["11111111-1111-1111-1111-111111111111".into()];
        assert!(
            !i.matches(&iss, &c(&iss, json!(t))),
            "not an allowed tenant"
        );
    }

    #[test]
    fn tokens_are_split_and_routed_by_iss() {
        let h = B64.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let p = B64.encode(br#"{"iss":"https://idp.example/realms/corp"}"#);
        let t = format!("{h}.{p}.c2ln");
        let u = Unverified::parse(&t, 8192).unwrap();
        assert_eq!(u.iss(), Some("https://idp.example/realms/corp"));
        assert_eq!(u.jws.header.kid.as_deref(), Some("k"));
        assert_eq!(Unverified::parse(&t, 10).err(), Some(TokenError::TooLong));
        let none = format!("{}.{p}.", B64.encode(br#"{"alg":"none"}"#));
        assert_eq!(
            Unverified::parse(&none, 8192).err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(
            Unverified::parse("a.b", 8192).err(),
            Some(TokenError::Malformed)
        );
        // HS256 is never an issuer's algorithm, whatever the keys.
        let hs = format!("{}.{p}.c2ln", B64.encode(br#"{"alg":"HS256","kid":"k"}"#));
        let u = Unverified::parse(&hs, 8192).unwrap();
        assert_eq!(
            entry().verify(&u, &KeySet::default(), NOW),
            Err(IssuerError::Token(TokenError::AlgorithmNotAccepted))
        );
    }

    #[test]
    fn a_signed_token_verifies_end_to_end() {
        let idp = testing::TestIdp::new();
        let keys = KeySet::parse(&idp.jwks(), &DEFAULT_ALGORITHMS).unwrap();
        let sign = |header: &str, claims: &Map<String, Value>| idp.sign(header, claims);
        let i = entry();
        let good = sign(
            r#"{"alg":"ES256","kid":"k1"}"#,
            &claims(json!({"scope": "orders_read"})),
        );
        let u = Unverified::parse(&good, 8192).unwrap();
        assert_eq!(i.verify(&u, &keys, NOW).unwrap().scopes, ["orders_read"]);
        // A changed claim breaks the signature.
        let (head, rest) = good.split_once('.').unwrap();
        let sig_part = rest.split_once('.').unwrap().1;
        let forged = format!(
            "{head}.{}.{sig_part}",
            B64.encode(serde_json::to_vec(&claims(json!({"scope": "admin"}))).unwrap())
        );
        let u = Unverified::parse(&forged, 8192).unwrap();
        assert_eq!(
            i.verify(&u, &keys, NOW),
            Err(IssuerError::Token(TokenError::BadSignature))
        );
        // Another kid asks for a refetch; claims fail before any key is looked for.
        let other = sign(r#"{"alg":"ES256","kid":"k2"}"#, &claims(json!({})));
        let u = Unverified::parse(&other, 8192).unwrap();
        assert_eq!(
            i.verify(&u, &keys, NOW),
            Err(IssuerError::Key(KeyMiss::UnknownKid))
        );
        let expired = sign(
            r#"{"alg":"ES256","kid":"k2"}"#,
            &claims(json!({"exp": NOW - 100})),
        );
        let u = Unverified::parse(&expired, 8192).unwrap();
        assert_eq!(
            i.verify(&u, &keys, NOW),
            Err(IssuerError::Token(TokenError::Expired))
        );
        // An algorithm outside the entry's list is refused whatever the key.
        let mut rs_only = entry();
        rs_only.algorithms = vec![Algorithm::RS256];
        let u = Unverified::parse(&good, 8192).unwrap();
        assert_eq!(
            rs_only.verify(&u, &keys, NOW),
            Err(IssuerError::Token(TokenError::AlgorithmNotAccepted))
        );
    }
}
