//! `ords-guard explain` (SPEC §11): how the proxy would decide one request, told from the
//! command line. It runs the proxy's own steps — `path::normalise_with`, the token
//! endpoint's `grant` for `--client`, `decision::decide`, an identity provider's keys fetched
//! (or its introspection endpoint asked) once when the decision waits for them, the shared
//! revocations read once — and then says why, in words or as JSON.

use crate::access::decision::{self, Awaits, Decision, Invalid};
use crate::registry::{issuers, Registry};
use crate::tokens::introspection::Verdict;
use crate::tokens::introspector::Unavailable;
use crate::tokens::issuer::IssuerClaims;
use crate::tokens::token::TokenError;
use serde_json::{json, Value};

/// Whose request it is.
pub enum Who {
    /// No `Authorization` header.
    Anonymous,
    /// `Authorization: Bearer TOKEN`.
    Token(String),
    /// The token this client would get from the token endpoint now (`scope` as requested).
    Client { id: String, scope: Option<String> },
}

/// What `explain` prints: text lines, or the JSON object, and whether the request would be
/// forwarded (exit 0) or refused (exit 1).
pub struct Explanation {
    pub lines: Vec<String>,
    pub json: Value,
    pub forwarded: bool,
}

/// Explain `method target` (as a client sends it: base_path included, a query allowed).
/// `Err` is a usage error: an unknown or unusable `--client`, a bad scope.
pub async fn explain(
    reg: &Registry,
    method: &str,
    target: &str,
    who: Who,
) -> Result<Explanation, String> {
    let token = match who {
        Who::Anonymous => None,
        Who::Token(t) => Some(t),
        Who::Client { id, scope } => Some(client_token(reg, &id, scope.as_deref())?),
    };
    let mut out = Out::default();
    out.line("request", format!("{method} {target}"));
    let target = match crate::patterns::path::normalise_with(target.as_bytes(), reg.path_parameters)
    {
        Ok(t) => t,
        Err(e) => {
            out.line("path", format!("refused: {e}"));
            out.json["path"] = Value::Null;
            out.json["reason"] = json!(format!("{e}; the request is not forwarded"));
            return Ok(out.finish(Some(400), "bad_request", None));
        }
    };
    let path = target.decision_path();
    out.json["path"] = json!(target.path);
    match &target.stripped {
        Some(s) => out.line(
            "path",
            format!("{} (decided as {s}: path_parameters: strip)", target.path),
        ),
        None => out.line("path", target.path.clone()),
    }
    if reg.own_endpoint(path).is_some() {
        out.line(
            "rule",
            "ords-guard's own token endpoint, JWKS or metadata: answered here, never forwarded",
        );
        return Ok(out.finish(None, "token_endpoint", None).not_forwarded());
    }
    // Read as the proxy reads the header it would carry (a token with a space in it is
    // ambiguous there too).
    let header = token.as_ref().map(|t| format!("Bearer {t}"));
    let values: Vec<&[u8]> = header.iter().map(|h| h.as_bytes()).collect();
    let creds = decision::credentials(&values);
    if reg.revocations_in_redis && token.is_some() {
        shared_revocations(reg, &mut out).await;
    }
    let mut d = decision::decide(reg, method, path, creds);
    match d.awaits() {
        None => {}
        Some(Awaits::Keys(entry)) => {
            // The proxy waits on one refetch here; explain fetches once itself.
            let source = issuers::fetch_sources(&reg.issuers)
                .into_iter()
                .find(|s| std::sync::Arc::ptr_eq(&s.cell, &reg.issuers[entry].keys));
            if let Some(s) = source {
                match crate::tokens::jwks_fetch::fetch_once(&s).await {
                    Ok(n) => out.line(
                        "keys",
                        format!("fetched {n} key(s) of `{}` from {}", s.issuer, s.url),
                    ),
                    Err(e) => out.line(
                        "keys",
                        format!(
                            "cannot fetch the keys of `{}` from {}: {e}",
                            s.issuer, s.url
                        ),
                    ),
                }
                d = decision::decide(reg, method, path, creds);
            }
        }
        Some(Awaits::Introspection(entry)) => {
            // As the proxy does: one call, then the same decision on its answer.
            let e = &reg.issuers[entry];
            let asked = match (&token, &e.introspector) {
                (Some(t), Some(i)) => Some(i.check(t).await),
                _ => None,
            };
            let name = &e.issuer.name;
            let said = match &asked {
                Some(Ok(Verdict::Active(_))) => format!("`{name}` says the token is active"),
                Some(Ok(Verdict::Inactive(why))) => format!("`{name}` refuses the token: {why}"),
                Some(Err(Unavailable(why))) => format!("`{name}` could not be asked: {why}"),
                None => format!("`{name}` was not asked"),
            };
            out.line("introspection", said.clone());
            out.json["introspection"] = json!(said);
            d = match &asked {
                Some(Ok(answer)) => {
                    decision::decide_answered(reg, method, path, creds, Some(answer))
                }
                _ => d.unchecked(),
            };
        }
    }
    rule(reg, method, path, &mut out);
    if let Some(t) = &token {
        describe_token(reg, t, &mut out);
    }
    let reason = why(reg, &d, token.as_deref());
    out.json["reason"] = json!(reason);
    out.line("why", reason);
    let status = d.status();
    let privilege = d.privilege().map(str::to_string);
    if let Some(w) = d.would() {
        if matches!(d, Decision::ReportOnly(_)) {
            out.json["would"] = json!(w);
        }
    }
    Ok(out.finish(status, d.label(), privilege))
}

/// The token `--client` would get now, minted as the token endpoint mints it (never printed).
fn client_token(reg: &Registry, id: &str, scope: Option<&str>) -> Result<String, String> {
    let tokens = reg
        .tokens
        .as_ref()
        .ok_or("this config has no `token:` section: it issues no tokens, so --client has nothing to explain; use --token")?;
    let client = reg
        .client(id)
        .ok_or_else(|| format!("no client has client_id `{id}` in this config"))?;
    if client.disabled || client.grant_type != "client_credentials" {
        return Err(format!("client `{id}` gets no token (disabled, or not a client_credentials client): the token endpoint answers unauthorized_client"));
    }
    let (roles, granted) = crate::oauth::endpoint::grant(reg, client, scope)
        .map_err(|why| format!("--scope: {why} (the token endpoint answers invalid_scope)"))?;
    let claims = crate::oauth::endpoint::claims_for(
        tokens,
        client,
        roles,
        granted,
        crate::tokens::token::now(),
    );
    tokens.mint(&claims).map_err(|e| e.to_string())
}

/// The pattern and privilege that decide, or the `unmatched` rule.
fn rule(reg: &Registry, method: &str, path: &str, out: &mut Out) {
    let Some(idx) = reg.protecting(path, method) else {
        let why = match reg.relative(path) {
            None => "the path lies outside base_path",
            Some(_) => "no privilege's pattern covers this path for this method",
        };
        let unmatched = format!("{:?}", reg.unmatched).to_lowercase();
        out.line("rule", format!("{why}: unmatched: {unmatched}"));
        out.json["unmatched"] = json!(unmatched);
        return;
    };
    let p = reg.privilege(idx);
    let pattern = deciding_pattern(reg, idx, path).unwrap_or_default();
    let mode = format!("{:?}", p.mode).to_lowercase();
    let methods = p
        .methods
        .as_ref()
        .map_or("all".to_string(), |m| m.join(", "));
    out.line(
        "rule",
        format!(
            "pattern {pattern} of privilege `{}`: roles [{}], methods {methods}, mode {mode}",
            p.name,
            p.roles.join(", ")
        ),
    );
    out.json["pattern"] = json!(pattern);
    out.json["roles"] = json!(p.roles);
    out.json["mode"] = json!(mode);
}

/// Which of privilege `idx`'s patterns covers `path`, the most specific first (as the
/// registry's matcher picks).
fn deciding_pattern(reg: &Registry, idx: usize, path: &str) -> Option<String> {
    use crate::patterns::pattern::{Matcher, Methods, Pattern};
    let rel = reg.relative(path)?;
    let mut m = Matcher::default();
    for (j, s) in reg.privilege(idx).patterns.iter().enumerate() {
        let _ = m.insert(&Pattern::parse(s).ok()?, Methods::ALL, j);
    }
    m.lookup(rel, "GET")
        .map(|j| reg.privilege(idx).patterns[*j].clone())
}

/// Whose token it is and what it carries, when it verifies.
fn describe_token(reg: &Registry, token: &str, out: &mut Out) {
    let now = crate::tokens::token::now();
    let expiry = |exp: u64| {
        if exp > now {
            format!("expires at {exp} (in {} s)", exp - now)
        } else {
            format!("expired at {exp} ({} s ago)", now - exp)
        }
    };
    if let Some(Ok(c)) = reg.tokens.as_ref().map(|t| t.verify_uncached(token)) {
        let name = reg.client(&c.client_id).map(|c| c.name.as_str());
        out.line(
            "token",
            format!(
                "ords-guard's own (iss {}): client {}{}, roles [{}], scope \"{}\", {}",
                c.iss,
                c.client_id,
                name.map(|n| format!(" ({n})")).unwrap_or_default(),
                c.roles.join(", "),
                c.scope,
                expiry(c.exp)
            ),
        );
        out.json["token"] = json!({"issuer": c.iss, "client_id": c.client_id, "client_name": name, "roles": c.roles, "scope": c.scope, "exp": c.exp});
        let revoked = revocation(reg, &c, now);
        out.line("revoked", revoked.clone());
        out.json["token"]["revoked"] = json!(revoked);
        return;
    }
    // An identity provider's token: verified (a JWT) or answered for (introspected).
    let provider = |c: &IssuerClaims, how: String| {
        let subject = c.subject.as_ref().map(|s| format!(", subject {s}"));
        let until = match c.exp {
            u64::MAX => "no exp in the answer".to_string(),
            exp => expiry(exp),
        };
        format!(
            "{how}: client {}{}, roles [{}], scope \"{}\", {until}",
            c.client_id,
            subject.unwrap_or_default(),
            c.roles.join(", "),
            c.scopes.join(" "),
        )
    };
    if let Some(Ok(v)) = reg.issuer_tokens.get(token, now) {
        let entry = &reg.issuers[v.entry].issuer;
        let c = &v.claims;
        let how = format!("identity provider `{}` (iss {})", entry.name, entry.issuer);
        out.line("token", provider(c, how));
        out.json["token"] = json!({"issuer": entry.name, "client_id": c.client_id, "subject": c.subject, "roles": c.roles, "scope": c.scopes.join(" "), "exp": c.exp});
        return;
    }
    if let Some((entry, Verdict::Active(c))) = introspected(reg, token, now) {
        let how = format!("opaque, introspected by `{}`, active", entry.name);
        out.line("token", provider(&c, how));
        out.json["token"] = json!({"issuer": entry.name, "introspected": true, "active": true, "client_id": c.client_id, "subject": c.subject, "roles": c.roles, "scope": c.scopes.join(" ")});
        return;
    }
    if let Some((entry, Verdict::Inactive(why))) = introspected(reg, token, now) {
        out.line(
            "token",
            format!("opaque, introspected by `{}`: refused ({why})", entry.name),
        );
        out.json["token"] = json!({"issuer": entry.name, "introspected": true, "active": false, "why": why.to_string()});
        return;
    }
    if let Some(why) = crate::tokens::token::why_malformed(token) {
        out.line("token", format!("malformed: {why}"));
        out.json["token"] = json!({"malformed": why});
        return;
    }
    // Well-formed but not verified: what it claims, unverified, helps tell why (an old
    // `exp`, another `iss`).
    let claims = crate::tokens::token::Jws::split(token, usize::MAX).and_then(|j| j.claims());
    if let Ok(c) = claims {
        let get = |k: &str| c.get(k).map_or("-".to_string(), |v| v.to_string());
        out.line(
            "token",
            format!(
                "not verified; it claims iss {}, client_id {}, exp {} (now {now})",
                get("iss"),
                get("client_id"),
                get("exp")
            ),
        );
        out.json["token"] = json!({"verified": false, "iss": c.get("iss"), "client_id": c.get("client_id"), "exp": c.get("exp")});
    }
}

/// The introspecting entry's remembered answer about `token` (after `explain` asked).
fn introspected<'r>(
    reg: &'r Registry,
    token: &str,
    now: u64,
) -> Option<(&'r crate::tokens::issuer::Issuer, Verdict)> {
    reg.issuers.iter().find_map(|e| {
        let v = e.introspector.as_ref()?.peek(token, now)?;
        Some((&e.issuer, v))
    })
}

/// Whether our own token `c` is revoked (SPEC §16), in words.
fn revocation(reg: &Registry, c: &crate::tokens::token::Claims, now: u64) -> String {
    let client = reg.client(&c.client_id);
    if let Some(nb) = client.and_then(|cl| cl.not_before).filter(|nb| c.iat < *nb) {
        return format!(
            "yes: issued at {}, before its client's not_before {nb}",
            c.iat
        );
    }
    let revoked = crate::tokens::revoked::REVOKED.is_revoked(&c.client_id, &c.jti, c.iat, now);
    match (revoked, reg.revocations_in_redis) {
        (true, _) => format!("yes: revoked at /oauth/revoke (jti {})", c.jti),
        (false, true) => "no: not among the revocations in the shared store".into(),
        (false, false) => "not in this process's view: with revocation store local, only the running proxy knows what was revoked at its /oauth/revoke".into(),
    }
}

/// Read the revocations replicas share (`revocation: {store: redis}`) once, as a replica
/// does before it is ready: at most 3 s.
async fn shared_revocations(reg: &Registry, out: &mut Out) {
    let store = crate::revocation::RevocationStore::default();
    store.sync(reg.rate_limit_store.as_ref());
    let read = async {
        while !store.loaded() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(3), read)
        .await
        .is_err()
    {
        out.line(
            "revocations",
            "the shared revocation store did not answer within 3 s: revocations are not known",
        );
    }
    store.sync(None);
}

/// Why the decision is what it is, in words.
fn why(reg: &Registry, d: &Decision, token: Option<&str>) -> String {
    match d {
        Decision::ForwardPublic => "forwarded as a public path (Authorization passed through untouched)".into(),
        Decision::Unmatched => "refused: unmatched paths are denied, whatever the token".into(),
        Decision::Forward(g) => {
            let p = reg.privilege_index(&g.privilege).map(|i| reg.privilege(i));
            match p {
                Some(p) if p.roles.is_empty() => format!("the token opens `{}`: it has no roles, so any valid token does", g.privilege),
                _ => format!("the token opens `{}`: client {} holds it now, and the token grants it; forwarded with X-ORDS-Client-Id {}", g.privilege, g.client_id, g.client_id),
            }
        }
        Decision::Unauthenticated { privilege } => format!("`{privilege}` is protected and the request has no Authorization: Bearer token"),
        Decision::InvalidToken { privilege, reason } => {
            let detail = match (reason, token) {
                (Invalid::Token(TokenError::Malformed), Some(t)) => crate::tokens::token::why_malformed(t)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!("`{privilege}` is protected and the token is not valid: {reason}{detail}")
        }
        Decision::UnknownKey { privilege, issuer, .. } => format!("`{privilege}` is protected and the token's kid is not among the keys of `{issuer}`, even after a fetch"),
        Decision::IssuerUnavailable { privilege, issuer, introspected: false, .. } => format!("`{privilege}` is protected and the keys of `{issuer}` could not be fetched, so its token cannot be checked (503)"),
        Decision::IssuerUnavailable { privilege, issuer, .. } | Decision::Introspect { privilege, issuer, .. } => format!("`{privilege}` is protected and `{issuer}` could not be asked about the token (introspection), so it cannot be checked (503)"),
        Decision::InsufficientScope { privilege, client_id } => {
            let own = token.and_then(|t| reg.tokens.as_ref()?.verify_uncached(t).ok());
            match own {
                Some(c) if !c.has_scope(privilege) => format!("client {client_id}'s token does not grant `{privilege}`: its scope is \"{}\"; ask for a token with scope `{privilege}` (or one of its roles)", c.scope),
                Some(_) => format!("the token grants `{privilege}`, but client {client_id} no longer holds it in the registry (its roles or privileges changed since)"),
                None => format!("the identity provider's token names neither `{privilege}` nor one of its roles (scope or role claim) for client {client_id}"),
            }
        }
        Decision::ReportOnly(inner) => format!(
            "{}; `{}` is in report mode, so it is forwarded as a public path instead of {} and counted as would=\"{}\"",
            why(reg, inner, token),
            inner.privilege().unwrap_or_default(),
            inner.status().unwrap_or_default(),
            inner.would().unwrap_or_default()
        ),
    }
}

#[derive(Default)]
struct Out {
    lines: Vec<String>,
    json: Value,
}

impl Out {
    fn line(&mut self, what: &str, text: impl Into<String>) {
        self.lines.push(format!("{what:<9}{}", text.into()));
    }

    fn finish(
        mut self,
        status: Option<u16>,
        label: &str,
        privilege: Option<String>,
    ) -> Explanation {
        let result = match status {
            Some(s) => format!("{s}, decision {label}"),
            None => format!("forwarded, decision {label}"),
        };
        self.line("result", result);
        let j = &mut self.json;
        j["status"] = json!(status);
        j["decision"] = json!(label);
        j["privilege"] = json!(privilege);
        if j.get("path").is_none() {
            j["path"] = Value::Null;
        }
        Explanation {
            lines: self.lines,
            json: self.json,
            forwarded: status.is_none() && label != "token_endpoint",
        }
    }
}

impl Explanation {
    fn not_forwarded(mut self) -> Explanation {
        self.forwarded = false;
        self
    }
}
