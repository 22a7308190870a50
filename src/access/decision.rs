//! The access decision (SPEC §3): a pure function from request facts and the current registry
//! to a [`Decision`]. The proxy only carries it out; metrics count it by [`Decision::label`].

use crate::config::{Mode, Unmatched};
use crate::registry::{Privilege, Registry};
use crate::tokens::introspection::Verdict;
use crate::tokens::issuer::{IssuerClaims, IssuerError, IssuerVerified, Unverified};
use crate::tokens::jwks::KeyMiss;
use crate::tokens::token::TokenError;
use std::fmt;
use std::sync::Arc;

/// What the `Authorization` header(s) of a request amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization`, or a scheme other than Bearer.
    None,
    Bearer(&'a str),
    /// Several `Authorization` headers, or a Bearer header without a token: refused rather
    /// than guessing which one the backend would read.
    Ambiguous,
}

/// Read the `Authorization` header values of a request.
pub fn credentials<'a>(values: &[&'a [u8]]) -> Credentials<'a> {
    match values {
        [] => Credentials::None,
        [one] => {
            let Ok(v) = std::str::from_utf8(one) else {
                return Credentials::Ambiguous;
            };
            let v = v.trim();
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let token = token.trim();
                    if token.is_empty() || has_whitespace(token) {
                        Credentials::Ambiguous
                    } else {
                        Credentials::Bearer(token)
                    }
                }
                None if v.eq_ignore_ascii_case("bearer") => Credentials::Ambiguous,
                _ => Credentials::None,
            }
        }
        _ => Credentials::Ambiguous,
    }
}

/// `str::contains(char::is_whitespace)`, with a fast path for the ASCII tokens always are:
/// decoding ~600 bytes of a JWT char by char was the dearest step of reading the header.
fn has_whitespace(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes()
            .fold(false, |ws, b| ws | b.is_ascii_whitespace() | (b == 0x0b))
    } else {
        s.contains(char::is_whitespace)
    }
}

/// Why a bearer token does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Token(TokenError),
    Ambiguous,
    /// The token is sound but its client was removed or disabled since.
    ClientRevoked,
    /// Revoked at `/oauth/revoke`, or issued before its client's `not_before` (SPEC §16).
    Revoked,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Token(e) => e.fmt(f),
            Invalid::Ambiguous => {
                f.write_str("send exactly one Authorization: Bearer header with one token")
            }
            Invalid::ClientRevoked => f.write_str("the token's client is unknown or disabled"),
            Invalid::Revoked => f.write_str("token revoked"),
        }
    }
}

/// Who is let through to a protected path: becomes the `X-ORDS-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    /// The registry client's name; none for an identity provider's token.
    pub client_name: Option<String>,
    /// Our own tokens: the token's roles the client still has. An issuer's: the role
    /// claim's roles that some privilege names.
    pub roles: Vec<String>,
    pub privilege: String,
    /// The `issuers[]` entry's name, for an identity provider's token (SPEC §9).
    pub issuer: Option<String>,
    /// Its `sub`.
    pub subject: Option<String>,
}

/// The `would` values of `ords_guard_report_only_total` (SPEC §11).
pub const WOULD: [&str; 3] = ["unauthenticated", "invalid_token", "forbidden"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No privilege covers the path and `unmatched: allow`.
    ForwardPublic,
    Forward(Grant),
    /// No privilege covers the path and `unmatched: deny`.
    Unmatched,
    /// Protected, no bearer token (401).
    Unauthenticated {
        privilege: String,
    },
    /// Protected, the token does not authenticate (401).
    InvalidToken {
        privilege: String,
        reason: Invalid,
    },
    /// Protected, the client does not hold the privilege through this token (403).
    InsufficientScope {
        privilege: String,
        client_id: String,
    },
    /// Protected, the token names an identity provider whose keys ords-guard has never had
    /// (503: it cannot check the token; the client did nothing wrong).
    IssuerUnavailable {
        privilege: String,
        issuer: String,
        /// Its index in `Registry::issuers`: the proxy waits on a fetch in flight.
        entry: usize,
        /// Its introspection endpoint, not its keys, could not check the token (SPEC §16).
        introspected: bool,
    },
    /// Protected, a token the introspecting identity provider must be asked about, with no
    /// answer remembered (SPEC §16): the door asks (or joins the call asking) and decides
    /// again; never answered as it is.
    Introspect {
        privilege: String,
        issuer: String,
        entry: usize,
    },
    /// Protected, an identity provider's token signed by a `kid` its keys do not hold (401
    /// `invalid_token`, unless a refetch of that issuer's keys brings it: the proxy asks
    /// for one and decides again).
    UnknownKey {
        privilege: String,
        issuer: String,
        entry: usize,
    },
    /// The deciding privilege is in `mode: report` and would have refused with the 401 or
    /// 403 inside (SPEC §11): the request is forwarded as a public one, and counted.
    ReportOnly(Box<Decision>),
}

impl Decision {
    /// The `decision` label of `ords_guard_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::ForwardPublic => "forwarded_public",
            Decision::Forward(_) => "forwarded",
            Decision::Unmatched | Decision::InsufficientScope { .. } => "forbidden",
            Decision::Unauthenticated { .. } => "unauthenticated",
            Decision::InvalidToken { .. } | Decision::UnknownKey { .. } => "invalid_token",
            Decision::IssuerUnavailable { .. } | Decision::Introspect { .. } => {
                "issuer_unavailable"
            }
            Decision::ReportOnly(_) => "report_only",
        }
    }

    /// The status a refusal answers with (SPEC §3, §9); `None` when forwarded.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::ForwardPublic | Decision::Forward(_) | Decision::ReportOnly(_) => None,
            Decision::Unauthenticated { .. }
            | Decision::InvalidToken { .. }
            | Decision::UnknownKey { .. } => Some(401),
            Decision::Unmatched | Decision::InsufficientScope { .. } => Some(403),
            Decision::IssuerUnavailable { .. } | Decision::Introspect { .. } => Some(503),
        }
    }

    pub fn is_forwarded(&self) -> bool {
        matches!(
            self,
            Decision::ForwardPublic | Decision::Forward(_) | Decision::ReportOnly(_)
        )
    }

    /// What a refusal of a privilege's would be reported as under `mode: report`: the
    /// `would` label of `ords_guard_report_only_total` (SPEC §11). `None` for decisions
    /// report mode does not turn into forwarding (forwarded ones, 503s).
    pub fn would(&self) -> Option<&'static str> {
        match self {
            Decision::Unauthenticated { .. } => Some(WOULD[0]),
            Decision::InvalidToken { .. } | Decision::UnknownKey { .. } => Some(WOULD[1]),
            Decision::InsufficientScope { .. } => Some(WOULD[2]),
            Decision::ReportOnly(inner) => inner.would(),
            _ => None,
        }
    }

    /// The privilege that decides a protected path, whatever the outcome.
    pub fn privilege(&self) -> Option<&str> {
        match self {
            Decision::ForwardPublic | Decision::Unmatched => None,
            Decision::Forward(g) => Some(&g.privilege),
            Decision::Unauthenticated { privilege }
            | Decision::InvalidToken { privilege, .. }
            | Decision::InsufficientScope { privilege, .. }
            | Decision::IssuerUnavailable { privilege, .. }
            | Decision::Introspect { privilege, .. }
            | Decision::UnknownKey { privilege, .. } => Some(privilege),
            Decision::ReportOnly(inner) => inner.privilege(),
        }
    }

    /// What the door must wait for before this decision can be taken again: an issuer's
    /// keys (it has none yet, or lacks the token's `kid`), or its introspection endpoint's
    /// answer about the token.
    pub fn awaits(&self) -> Option<Awaits> {
        match self {
            Decision::IssuerUnavailable {
                entry,
                introspected: false,
                ..
            }
            | Decision::UnknownKey { entry, .. } => Some(Awaits::Keys(*entry)),
            Decision::Introspect { entry, .. } => Some(Awaits::Introspection(*entry)),
            Decision::ReportOnly(inner) => inner.awaits(),
            _ => None,
        }
    }

    /// An [`Decision::Introspect`] whose token could not be checked: 503.
    pub fn unchecked(self) -> Decision {
        match self {
            Decision::Introspect {
                privilege,
                issuer,
                entry,
            } => Decision::IssuerUnavailable {
                privilege,
                issuer,
                entry,
                introspected: true,
            },
            d => d,
        }
    }
}

/// What a decision waits for (the index in `Registry::issuers` of whose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaits {
    Keys(usize),
    Introspection(usize),
}

impl Decision {}

/// Decide a request whose path is already normalised.
pub fn decide(reg: &Registry, method: &str, path: &str, creds: Credentials<'_>) -> Decision {
    decide_answered(reg, method, path, creds, None)
}

/// [`decide`] again once the introspecting provider `answered` about the request's token
/// ([`Decision::Introspect`]): the answer itself decides, not a cache that may have let it
/// go, and it is not counted as remembered.
pub fn decide_answered(
    reg: &Registry,
    method: &str,
    path: &str,
    creds: Credentials<'_>,
    answered: Option<&Verdict>,
) -> Decision {
    let Some(idx) = reg.protecting(path, method) else {
        return match reg.unmatched {
            Unmatched::Allow => Decision::ForwardPublic,
            Unmatched::Deny => Decision::Unmatched,
        };
    };
    let privilege = reg.privilege(idx);
    let d = protected(reg, idx, privilege, creds, answered);
    // SPEC §11: under `mode: report` the same decision is taken, and its 401/403 reported.
    if privilege.mode == Mode::Report && d.would().is_some() {
        return Decision::ReportOnly(Box::new(d));
    }
    d
}

/// Decide a request to a path privilege `idx` protects, as `mode: enforce` would.
fn protected(
    reg: &Registry,
    idx: usize,
    privilege: &Privilege,
    creds: Credentials<'_>,
    answered: Option<&Verdict>,
) -> Decision {
    let name = || privilege.name.clone();
    let token = match creds {
        Credentials::None => return Decision::Unauthenticated { privilege: name() },
        Credentials::Ambiguous => {
            return Decision::InvalidToken {
                privilege: name(),
                reason: Invalid::Ambiguous,
            }
        }
        Credentials::Bearer(t) => t,
    };
    // Tokens are routed by their unverified `iss` when identity providers are configured;
    // tokens verified before, ours or theirs, are known by their caches and need no routing.
    // Without `token:` every bearer token is an identity provider's.
    let own = reg.tokens.as_ref();
    // No `.`, no JWS: an opaque token, straight to the introspecting provider's answers
    // (SPEC §16) without the JWT caches' lookups.
    if let Some(entry) = reg.introspecting {
        if !token.contains('.') && token.len() <= reg.max_bearer {
            return introspected(reg, privilege, entry, token, answered);
        }
    }
    if !reg.issuers.is_empty() && !own.is_some_and(|t| t.knows(token)) {
        // One lookup answers a known issuer token: no more than an own token costs.
        match reg.issuer_tokens.get(token, crate::tokens::token::now()) {
            Some(Ok(v)) => return issuer_grant(reg, privilege, v.entry, &v.claims),
            Some(Err(e)) => {
                return Decision::InvalidToken {
                    privilege: name(),
                    reason: Invalid::Token(e),
                }
            }
            None => {}
        }
        match Unverified::parse(token, reg.max_bearer) {
            Ok(unverified) => {
                if own.is_none_or(|t| unverified.iss() != Some(t.issuer.as_str())) {
                    return decide_issuer(reg, privilege, token, &unverified, answered);
                }
            }
            // Not a JWT: an opaque token, the introspecting provider's (SPEC §16).
            Err(e) => match reg.introspecting {
                Some(entry) if e != TokenError::TooLong => {
                    return introspected(reg, privilege, entry, token, answered)
                }
                _ if own.is_none() => {
                    return Decision::InvalidToken {
                        privilege: name(),
                        reason: Invalid::Token(e),
                    }
                }
                _ => {}
            },
        }
    }
    let Some(own) = own else {
        return Decision::InvalidToken {
            privilege: name(),
            reason: Invalid::Token(TokenError::WrongIssuer),
        };
    };
    let claims = match own.verify(token) {
        Ok(c) => c,
        Err(e) => {
            return Decision::InvalidToken {
                privilege: name(),
                reason: Invalid::Token(e),
            }
        }
    };
    // The registry decides now, not the token: a removed or disabled client stops at once.
    let client = match reg.client(&claims.client_id) {
        Some(c) if !c.disabled => c,
        _ => {
            return Decision::InvalidToken {
                privilege: name(),
                reason: Invalid::ClientRevoked,
            }
        }
    };
    if client.revoked(&claims) {
        return Decision::InvalidToken {
            privilege: name(),
            reason: Invalid::Revoked,
        };
    }
    let opened =
        (privilege.roles.is_empty() || claims.has_scope(&privilege.name)) && reg.holds(client, idx);
    if !opened {
        return Decision::InsufficientScope {
            privilege: name(),
            client_id: client.client_id.clone(),
        };
    }
    Decision::Forward(Grant {
        client_id: client.client_id.clone(),
        client_name: Some(client.name.clone()),
        roles: claims
            .roles
            .iter()
            .filter(|r| client.has_role(r))
            .cloned()
            .collect(),
        privilege: name(),
        issuer: None,
        subject: None,
    })
}

/// An identity provider's token (SPEC §9), `iss` not ours and not in the cache: routed to
/// its entry, verified with its keys, remembered, then what it opens.
fn decide_issuer(
    reg: &Registry,
    privilege: &Privilege,
    token: &str,
    u: &Unverified<'_>,
    answered: Option<&Verdict>,
) -> Decision {
    let name = || privilege.name.clone();
    let invalid = |e: TokenError| Decision::InvalidToken {
        privilege: name(),
        reason: Invalid::Token(e),
    };
    let now = crate::tokens::token::now();
    let iss = u.iss().unwrap_or_default();
    let Some(idx) = reg
        .issuers
        .iter()
        .position(|e| e.issuer.matches(iss, &u.claims))
    else {
        return invalid(TokenError::WrongIssuer);
    };
    let entry = &reg.issuers[idx];
    if entry.introspector.is_some() {
        return introspected(reg, privilege, idx, token, answered);
    }
    let Some(keys) = entry.keys.current() else {
        return Decision::IssuerUnavailable {
            privilege: name(),
            issuer: entry.issuer.name.clone(),
            entry: idx,
            introspected: false,
        };
    };
    let claims = match entry.issuer.verify(u, &keys, now) {
        Ok(c) => c,
        Err(IssuerError::Token(e)) => return invalid(e),
        Err(IssuerError::Key(KeyMiss::UnknownKid)) => {
            return Decision::UnknownKey {
                privilege: name(),
                issuer: entry.issuer.name.clone(),
                entry: idx,
            }
        }
        // Several keys and no `kid` to choose by: fresh keys would not help.
        Err(IssuerError::Key(KeyMiss::KidRequired)) => return invalid(TokenError::UnknownKey),
        Err(IssuerError::Key(KeyMiss::AlgorithmMismatch)) => {
            return invalid(TokenError::AlgorithmNotAccepted)
        }
    };
    let v = IssuerVerified {
        entry: idx,
        valid_until: claims.exp.saturating_add(entry.issuer.allowed_skew_seconds),
        claims,
    };
    let decision = issuer_grant(reg, privilege, idx, &v.claims);
    reg.issuer_tokens.insert(token, Arc::new(v), now);
    decision
}

/// A token the introspecting entry `idx` answers for (SPEC §16): the answer just
/// `answered`, or else its remembered one, decided afresh against `privilege`; or
/// [`Decision::Introspect`] when there is none.
fn introspected(
    reg: &Registry,
    privilege: &Privilege,
    idx: usize,
    token: &str,
    answered: Option<&Verdict>,
) -> Decision {
    let entry = &reg.issuers[idx];
    let Some(introspector) = &entry.introspector else {
        return Decision::InvalidToken {
            privilege: privilege.name.clone(),
            reason: Invalid::Token(TokenError::WrongIssuer),
        };
    };
    let verdict = answered
        .cloned()
        .or_else(|| introspector.cached(token, crate::tokens::token::now()));
    match verdict {
        Some(Verdict::Active(claims)) => issuer_grant(reg, privilege, idx, &claims),
        Some(Verdict::Inactive(e)) => Decision::InvalidToken {
            privilege: privilege.name.clone(),
            reason: Invalid::Token(e),
        },
        None => Decision::Introspect {
            privilege: privilege.name.clone(),
            issuer: entry.issuer.name.clone(),
            entry: idx,
        },
    }
}

/// What an identity provider's token (`issuers[idx]`'s, verified or introspected) opens of
/// `privilege`.
fn issuer_grant(
    reg: &Registry,
    privilege: &Privilege,
    idx: usize,
    claims: &IssuerClaims,
) -> Decision {
    let name = || privilege.name.clone();
    let entry = &reg.issuers[idx];
    if !entry
        .issuer
        .opens(claims, &privilege.name, &privilege.roles)
    {
        return Decision::InsufficientScope {
            privilege: name(),
            client_id: claims.client_id.clone(),
        };
    }
    Decision::Forward(Grant {
        client_id: claims.client_id.clone(),
        client_name: None,
        roles: claims
            .roles
            .iter()
            .filter(|r| reg.role_names.contains(*r))
            .cloned()
            .collect(),
        privilege: name(),
        issuer: Some(entry.issuer.name.clone()),
        subject: claims.subject.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{registry, registry_edited, token, SHA};
    use crate::tokens::token::now;

    #[test]
    fn the_ascii_fast_path_finds_the_same_whitespace() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            for s in [format!("ab{c}cd"), format!("{c}"), format!("é{c}")] {
                assert_eq!(has_whitespace(&s), s.contains(char::is_whitespace), "{c:?}");
            }
        }
    }

    /// SPEC §11: a privilege in `mode: report` takes the same decision; a 401/403 of its is
    /// returned inside `ReportOnly` (forwarded, labelled `report_only`), the rest unchanged.
    #[test]
    fn report_mode_wraps_refusals_only() {
        let (_d, reg) = registry_edited("", "deny", |y| {
            y.replacen(
                "    patterns: [\"/example/*\"]\n",
                "    patterns: [\"/example/*\"]\n    mode: report\n",
                1,
            )
        });
        let report = |d: Decision| Decision::ReportOnly(Box::new(d));
        let priv_ = || "example_priv".to_string();
        let d = decide(&reg, "GET", "/example/1", Credentials::None);
        assert_eq!(d, report(Decision::Unauthenticated { privilege: priv_() }));
        assert_eq!(
            (d.label(), d.would(), d.privilege(), d.is_forwarded()),
            (
                "report_only",
                Some("unauthenticated"),
                Some("example_priv"),
                true
            )
        );
        let d = decide(&reg, "GET", "/example/1", Credentials::Bearer("garbage"));
        assert_eq!(d.would(), Some("invalid_token"));
        assert!(
            matches!(&d, Decision::ReportOnly(r) if matches!(**r, Decision::InvalidToken { .. }))
        );
        // A valid token without the privilege: forbidden, reported.
        let t = token(&reg, "c1", &["example_role"], "");
        let d = decide(&reg, "GET", "/example/1", Credentials::Bearer(&t));
        assert_eq!(
            d,
            report(Decision::InsufficientScope {
                privilege: priv_(),
                client_id: "c1".into()
            })
        );
        assert_eq!(d.would(), Some("forbidden"));
        // What it lets through is forwarded as under enforce, with the grant.
        let t = token(&reg, "c1", &["example_role"], "example_priv");
        let d = decide(&reg, "GET", "/example/1", Credentials::Bearer(&t));
        assert!(matches!(&d, Decision::Forward(g) if g.privilege == "example_priv"));
        assert_eq!((d.label(), d.would()), ("forwarded", None));
        // Other privileges, and unmatched paths, are not reported.
        assert_eq!(
            decide(&reg, "POST", "/example/orders/1", Credentials::None),
            Decision::Unauthenticated {
                privilege: "example_write".into()
            }
        );
        assert_eq!(
            decide(&reg, "GET", "/elsewhere", Credentials::None),
            Decision::Unmatched
        );
    }

    #[test]
    fn credentials_parsing() {
        assert_eq!(credentials(&[]), Credentials::None);
        assert_eq!(credentials(&[b"Bearer abc"]), Credentials::Bearer("abc"));
        assert_eq!(credentials(&[b"bearer  abc "]), Credentials::Bearer("abc"));
        assert_eq!(credentials(&[b"Basic dXNlcjpwdw=="]), Credentials::None);
        assert_eq!(credentials(&[b"Bearer"]), Credentials::Ambiguous);
        assert_eq!(credentials(&[b"Bearer a b"]), Credentials::Ambiguous);
        assert_eq!(
            credentials(&[b"Bearer a", b"Bearer b"]),
            Credentials::Ambiguous
        );
        assert_eq!(credentials(&[b"Bearer \xff"]), Credentials::Ambiguous);
    }

    #[test]
    fn unmatched_allow_forwards_public() {
        let (_d, reg) = registry("", "allow");
        assert_eq!(
            decide(&reg, "GET", "/public/x", Credentials::None),
            Decision::ForwardPublic
        );
    }

    #[test]
    fn unmatched_deny_forbids_whatever_the_token() {
        let (_d, reg) = registry("", "deny");
        let t = token(&reg, "c1", &["example_role"], "example_priv");
        assert_eq!(
            decide(&reg, "GET", "/public/x", Credentials::None),
            Decision::Unmatched
        );
        assert_eq!(
            decide(&reg, "GET", "/public/x", Credentials::Bearer(&t)),
            Decision::Unmatched
        );
        assert_eq!(Decision::Unmatched.label(), "forbidden");
    }

    #[test]
    fn protected_without_bearer_is_unauthenticated() {
        let (_d, reg) = registry("", "allow");
        for p in ["/example", "/example/", "/example/employees/1"] {
            assert_eq!(
                decide(&reg, "GET", p, Credentials::None),
                Decision::Unauthenticated {
                    privilege: "example_priv".into()
                }
            );
        }
    }

    #[test]
    fn protected_with_bad_tokens_is_invalid_token() {
        let (_d, reg) = registry("", "allow");
        let good = token(&reg, "c1", &["example_role"], "example_priv");
        // Swap one character in the middle of the signature.
        let at = good.len() - 8;
        let swapped = if &good[at..at + 1] == "A" { "B" } else { "A" };
        let tampered = format!("{}{}{}", &good[..at], swapped, &good[at + 1..]);
        for (t, want) in [
            ("garbage", Invalid::Token(TokenError::Malformed)),
            (tampered.as_str(), Invalid::Token(TokenError::BadSignature)),
            (
                &token(&reg, "ghost", &[], "example_priv"),
                Invalid::ClientRevoked,
            ),
        ] {
            match decide(&reg, "GET", "/example/1", Credentials::Bearer(t)) {
                Decision::InvalidToken { reason, .. } => assert_eq!(reason, want),
                d => panic!("{d:?}"),
            }
        }
        assert!(matches!(
            decide(&reg, "GET", "/example/1", Credentials::Ambiguous),
            Decision::InvalidToken {
                reason: Invalid::Ambiguous,
                ..
            }
        ));
    }

    #[test]
    fn disabled_client_is_invalid_token() {
        let extra = format!("  - name: Off\n    client_id: c3\n    secrets: [\"{SHA}\"]\n    roles: [example_role]\n    disabled: true\n");
        let (_d, reg) = registry(&extra, "allow");
        let t = token(&reg, "c3", &["example_role"], "example_priv");
        assert!(matches!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&t)),
            Decision::InvalidToken {
                reason: Invalid::ClientRevoked,
                ..
            }
        ));
    }

    #[test]
    fn valid_token_without_the_privilege_is_insufficient_scope() {
        let (_d, reg) = registry("", "allow");
        // c1 lacks example_admin: POST to orders needs example_write.
        let t = token(&reg, "c1", &["example_role"], "example_priv");
        assert_eq!(
            decide(&reg, "POST", "/example/orders/1", Credentials::Bearer(&t)),
            Decision::InsufficientScope {
                privilege: "example_write".into(),
                client_id: "c1".into()
            }
        );
        // c2 holds example_priv, but this token was narrowed to example_write only.
        let narrow = token(&reg, "c2", &["example_admin"], "example_write");
        assert!(matches!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&narrow)),
            Decision::InsufficientScope { .. }
        ));
    }

    #[test]
    fn valid_token_with_the_privilege_forwards() {
        let (_d, reg) = registry("", "allow");
        let t = token(
            &reg,
            "c1",
            &["example_role", "example_admin"],
            "example_priv example_write",
        );
        assert_eq!(
            decide(&reg, "GET", "/example/orders/1", Credentials::Bearer(&t)),
            Decision::Forward(Grant {
                client_id: "c1".into(),
                client_name: Some("Example Client".into()),
                // example_admin is in the token but not the client's: dropped.
                roles: vec!["example_role".into()],
                privilege: "example_priv".into(),
                issuer: None,
                subject: None,
            })
        );
        // A token claiming example_write is no use to a client that does not hold it now.
        assert!(matches!(
            decide(&reg, "POST", "/example/orders/1", Credentials::Bearer(&t)),
            Decision::InsufficientScope { .. }
        ));
        let t2 = token(&reg, "c2", &["example_admin"], "example_write");
        assert!(
            matches!(decide(&reg, "POST", "/example/orders/1", Credentials::Bearer(&t2)), Decision::Forward(ref g) if g.privilege == "example_write")
        );
    }

    #[test]
    fn privilege_without_roles_opens_to_any_valid_token() {
        let (_d, reg) = registry("", "allow");
        let t = token(&reg, "c1", &[], "");
        assert!(
            matches!(decide(&reg, "GET", "/open/x", Credentials::Bearer(&t)), Decision::Forward(ref g) if g.privilege == "open_priv")
        );
        assert!(matches!(
            decide(&reg, "GET", "/open/x", Credentials::None),
            Decision::Unauthenticated { .. }
        ));
    }

    /// SPEC §16: opaque tokens, and JWTs naming the introspecting issuer, go to its
    /// remembered answers, decided afresh per privilege; none remembered: ask.
    #[test]
    fn introspected_tokens_are_decided_afresh_from_the_answer() {
        use crate::tokens::introspection::Verdict;
        use crate::tokens::issuer::testing::TestIdp;
        let (_dir, reg) = registry(
            "issuers:\n  - name: corp\n    issuer: https://idp.test\n    roles_claim: /roles\n    introspection:\n      url: http://127.0.0.1:9/introspect\n      client_id: ords\n      client_secret_file: hs.key\n",
            "allow",
        );
        let intro = reg.issuers[0].introspector.as_ref().unwrap();
        let ask = Decision::Introspect {
            privilege: "example_priv".into(),
            issuer: "corp".into(),
            entry: 0,
        };
        let get = |t: &str| decide(&reg, "GET", "/example/1", Credentials::Bearer(t));
        assert_eq!(get("opaque-1"), ask);
        assert_eq!(ask.awaits(), Some(Awaits::Introspection(0)));
        assert_eq!(ask.label(), "issuer_unavailable");
        // A JWT naming the introspecting issuer is asked about too, whatever signs it.
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://idp.test".into());
        let jwt = TestIdp::new().sign(r#"{"alg":"ES256","kid":"k1"}"#, &claims);
        assert_eq!(get(&jwt), ask);
        // Our own tokens are ours still; an over-long opaque one is never sent anywhere.
        let own = token(&reg, "c1", &["example_role"], "example_priv");
        assert!(matches!(get(&own), Decision::Forward(ref g) if g.issuer.is_none()));
        let long = "x".repeat(reg.max_bearer + 1);
        assert!(matches!(
            get(&long),
            Decision::InvalidToken {
                reason: Invalid::Token(TokenError::TooLong),
                ..
            }
        ));
        // An active answer: decided per privilege, every time.
        let c = crate::tokens::issuer::IssuerClaims {
            client_id: "app".into(),
            subject: Some("u".into()),
            scopes: vec![],
            roles: vec!["example_role".into(), "other".into()],
            exp: u64::MAX,
        };
        intro.remember("opaque-1", Verdict::Active(Arc::new(c)), now() + 60);
        let want = Decision::Forward(Grant {
            client_id: "app".into(),
            client_name: None,
            roles: vec!["example_role".into()],
            privilege: "example_priv".into(),
            issuer: Some("corp".into()),
            subject: Some("u".into()),
        });
        assert_eq!(get("opaque-1"), want);
        assert!(matches!(
            decide(
                &reg,
                "POST",
                "/example/orders/1",
                Credentials::Bearer("opaque-1")
            ),
            Decision::InsufficientScope { .. }
        ));
        // An inactive one: 401, until it is forgotten.
        intro.remember(
            "opaque-2",
            Verdict::Inactive(TokenError::Inactive),
            now() + 10,
        );
        assert!(matches!(
            get("opaque-2"),
            Decision::InvalidToken {
                reason: Invalid::Token(TokenError::Inactive),
                ..
            }
        ));
        // Not answered: 503, as a keyless issuer's tokens are.
        let d = ask.clone().unchecked();
        assert!(matches!(
            d,
            Decision::IssuerUnavailable {
                introspected: true,
                ..
            }
        ));
        assert_eq!((d.status(), d.awaits()), (Some(503), None));
        // Without an introspecting issuer, an opaque token is simply malformed.
        let (_d2, plain) = registry("", "allow");
        assert!(matches!(
            decide(&plain, "GET", "/example/1", Credentials::Bearer("opaque-1")),
            Decision::InvalidToken {
                reason: Invalid::Token(TokenError::Malformed),
                ..
            }
        ));
    }

    #[test]
    fn issuer_tokens_are_decided_and_then_served_from_the_cache() {
        use crate::tokens::issuer::testing::TestIdp;
        let idp = TestIdp::new();
        let keys = tempfile::tempdir().unwrap();
        let jwks = keys.path().join("corp.json");
        std::fs::write(&jwks, idp.jwks()).unwrap();
        let (_dir, reg) = registry(
            &format!("issuers:\n  - name: corp\n    issuer: https://idp.test\n    jwks_file: {}\n    roles_claim: /roles\n", jwks.display()),
            "allow",
        );
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"iss": "https://idp.test", "sub": "u", "azp": "app", "exp": now() + 60});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c.as_object().unwrap().clone()
        };
        let header = r#"{"alg":"ES256","kid":"k1"}"#;
        let t = idp.sign(
            header,
            &claims(serde_json::json!({"roles": "example_role other"})),
        );
        let want = Decision::Forward(Grant {
            client_id: "app".into(),
            client_name: None,
            roles: vec!["example_role".into()],
            privilege: "example_priv".into(),
            issuer: Some("corp".into()),
            subject: Some("u".into()),
        });
        assert_eq!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&t)),
            want
        );
        assert!(reg.issuer_tokens.knows(&t));
        assert_eq!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&t)),
            want
        );
        // A cached token is still decided per privilege: it holds no example_admin role.
        assert!(matches!(
            decide(&reg, "POST", "/example/orders/1", Credentials::Bearer(&t)),
            Decision::InsufficientScope { .. }
        ));
        // The cache is what answers: an expired entry for a token is refused as expired.
        let stale = idp.sign(
            header,
            &claims(serde_json::json!({"roles": ["example_role"], "jti": "2"})),
        );
        let remembered = crate::tokens::issuer::IssuerVerified {
            entry: 0,
            claims: crate::tokens::issuer::IssuerClaims {
                client_id: "app".into(),
                subject: None,
                scopes: vec![],
                roles: vec![],
                exp: 0,
            },
            valid_until: now() - 1,
        };
        reg.issuer_tokens
            .insert(&stale, Arc::new(remembered), now());
        assert!(matches!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&stale)),
            Decision::InvalidToken {
                reason: Invalid::Token(TokenError::Expired),
                ..
            }
        ));
        // Failures are not remembered; our own tokens still take their own path.
        let other = idp.sign(
            header,
            &claims(serde_json::json!({"iss": "https://evil.test"})),
        );
        assert!(matches!(
            decide(&reg, "GET", "/example/1", Credentials::Bearer(&other)),
            Decision::InvalidToken {
                reason: Invalid::Token(TokenError::WrongIssuer),
                ..
            }
        ));
        assert!(!reg.issuer_tokens.knows(&other));
        // The first token only: the expired entry was dropped when it was refused.
        assert_eq!(reg.issuer_tokens.len(), 1);
    }
}
