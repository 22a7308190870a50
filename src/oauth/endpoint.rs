//! The token endpoint, `POST {base_path}/oauth/token` (RFC 6749 §4.4, SPEC §4), and the JWKS.
//!
//! [`TokenEndpoint::handle`] does no network I/O: the proxy hands it the method, headers and
//! body it read, and writes back the [`Reply`]. Client secrets are checked against their
//! hashes in constant time; a correct argon2id secret is remembered (as a keyed hash, in
//! memory) so a repeated correct request does not pay argon2 again. Every other argon2
//! check waits for admission to [`Pool`] and runs there, off the proxy's threads.

// `Err(Reply)` is an answer like `Ok(Reply)`, written once per request: boxing it would
// allocate on every refusal to save a few bytes of stack.
#![allow(clippy::result_large_err)]

use crate::clients::secret::pool::{Pool, Refusal};
use crate::clients::secret::{Argon2Hash, SecretHash};
use crate::oauth::throttle::Throttle;
use crate::registry::{Client, Registry};
use crate::tokens::token::{now, Claims, Tokens};
use base64::Engine;
use dashmap::DashSet;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

const VERIFIED_CACHE_MAX: usize = 10_000;

/// A response to write: status, headers, JSON body, and what to count and log.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The `outcome` label of `ords_guard_token_requests_total`.
    pub outcome: &'static str,
    /// The registered client a token was issued to.
    pub issued_to: Option<String>,
    /// The limit that refused the request (`ords_guard_limit_rejections_total{limit}`).
    pub limit: Option<&'static str>,
    /// A revocation this process made, for the other replicas (SPEC §16 `store: redis`):
    /// the client and what was revoked.
    pub revoked: Option<(String, crate::tokens::revoked::Revoked)>,
}

impl Reply {
    fn json(status: u16, body: serde_json::Value, outcome: &'static str) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: vec![
                ("Cache-Control", "no-store".into()),
                ("Pragma", "no-cache".into()),
            ],
            body: serde_json::to_vec(&body).expect("json"),
            outcome,
            issued_to: None,
            limit: None,
            revoked: None,
        }
    }

    /// RFC 6749 §5.2 error.
    fn error(status: u16, code: &'static str, description: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"error": code, "error_description": description}),
            code,
        )
    }
}

/// What the proxy read of a token request.
pub struct TokenRequest<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub authorization: Vec<&'a [u8]>,
    /// `None` when the body was larger than `limits.max_token_body_bytes`.
    pub body: Option<&'a [u8]>,
    /// The client's address: the peer's, or the one `trusted_proxies` vouch for.
    pub client_addr: Option<IpAddr>,
}

/// Client authentication as presented.
struct Presented {
    id: String,
    secret: String,
    basic: bool,
}

/// State that outlives a registry generation: throttling, the verified-secret cache and the
/// argon2 pool.
pub struct TokenEndpoint {
    pub throttle: Throttle,
    pub pool: Pool,
    verified: DashSet<[u8; 32]>,
    /// Keys the cache so a memory dump does not yield unsalted secret hashes.
    cache_key: [u8; 32],
}

impl Default for TokenEndpoint {
    fn default() -> Self {
        let mut cache_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut cache_key);
        TokenEndpoint {
            throttle: Throttle::default(),
            pool: Pool::new(),
            verified: DashSet::new(),
            cache_key,
        }
    }
}

fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, Reply> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Reply::error(
                400,
                "invalid_request",
                &format!("parameter `{}` is repeated", truncate(&k)),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The form of a POST to `endpoint` (the token, introspection or revocation endpoint),
/// read within `limits.max_token_body_bytes`.
fn form(
    reg: &Registry,
    req: &TokenRequest<'_>,
    endpoint: &str,
) -> Result<Vec<(String, String)>, Reply> {
    if req.method != "POST" {
        let mut r = Reply::error(
            405,
            "invalid_request",
            &format!("{endpoint} accepts POST only"),
        );
        r.headers.push(("Allow", "POST".into()));
        return Err(r);
    }
    let form_type = req
        .content_type
        .and_then(|c| std::str::from_utf8(c).ok())
        .map(|c| c.split(';').next().unwrap_or("").trim());
    if !form_type.is_some_and(|c| c.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(Reply::error(
            400,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let Some(body) = req.body else {
        return Err(Reply::error(
            400,
            "invalid_request",
            &format!(
                "the request body is larger than {} bytes",
                reg.limits.max_token_body_bytes
            ),
        ));
    };
    parse_form(body)
}

/// The `token` parameter of an introspection or revocation request.
fn token_parameter(form: &[(String, String)]) -> Result<&str, Reply> {
    get(form, "token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Reply::error(400, "invalid_request", "token is missing"))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn get<'f>(form: &'f [(String, String)], k: &str) -> Option<&'f str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// RFC 6749 §2.3.1: Basic credentials are form-encoded before base64.
fn basic(value: &[u8]) -> Option<Result<(String, String), Reply>> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bad = || Reply::error(401, "invalid_client", "malformed Basic credentials");
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return Some(Err(bad()));
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return Some(Err(bad()));
    };
    let Some((id, secret)) = raw.split_once(':') else {
        return Some(Err(bad()));
    };
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((decode(id), decode(secret))))
}

/// An argon2 check not admitted: 429 at once (RFC 6749 has no overload code for the token
/// endpoint; `temporarily_unavailable` is its authorization-endpoint one, and says it).
fn overloaded(r: Refusal) -> Reply {
    let mut reply = Reply::error(
        429,
        "temporarily_unavailable",
        "too many client secrets are being verified right now; retry after the Retry-After delay",
    );
    let secs = r.retry_after.as_secs() + u64::from(r.retry_after.subsec_nanos() > 0);
    reply.headers.push(("Retry-After", secs.max(1).to_string()));
    reply.outcome = "overloaded";
    reply.limit = Some(r.limit);
    reply
}

impl TokenEndpoint {
    /// Handle a request to the token endpoint. An argon2 check waits for the pool; every
    /// other step runs inline and is cheap.
    pub async fn handle(&self, reg: &Registry, req: &TokenRequest<'_>) -> Reply {
        match self.handle_inner(reg, req).await {
            Ok(r) | Err(r) => r,
        }
    }

    async fn handle_inner(&self, reg: &Registry, req: &TokenRequest<'_>) -> Result<Reply, Reply> {
        let form = form(reg, req, "the token endpoint")?;
        let grant_type = get(&form, "grant_type")
            .ok_or_else(|| Reply::error(400, "invalid_request", "grant_type is missing"))?;
        if grant_type != "client_credentials" {
            return Err(Reply::error(
                400,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ));
        }
        let client = self.client(reg, req, &form).await?;
        if client.disabled || client.grant_type != "client_credentials" {
            return Err(Reply::error(
                400,
                "unauthorized_client",
                "this client may not use the client_credentials grant",
            ));
        }
        let requested = get(&form, "scope");
        let (roles, scope) = grant(reg, client, requested)
            .map_err(|why| Reply::error(400, "invalid_scope", &why))?;
        // Clients exist only with `token:` (the registry refuses them otherwise).
        let tokens = reg.tokens.as_ref().ok_or_else(no_token_endpoint)?;
        Ok(self.issue(tokens, client, roles, scope, requested))
    }

    /// `POST {base_path}/oauth/introspect` (RFC 7662, SPEC §16): what a client allowed to
    /// ask (`introspect: true`) learns of one of ords-guard's tokens; `{"active": false}`
    /// and nothing more for any token that would not pass the decision's token checks now.
    pub async fn introspect(&self, reg: &Registry, req: &TokenRequest<'_>) -> Reply {
        let answer = async {
            let form = form(reg, req, "the introspection endpoint")?;
            let client = self.client(reg, req, &form).await?;
            if !client.introspect || client.disabled {
                // As a failed authentication answers (SPEC §4): nothing says the secret
                // was right.
                let mut r = Reply::error(401, "invalid_client", "client authentication failed");
                if req
                    .authorization
                    .iter()
                    .any(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case(b"basic "))
                {
                    r.headers
                        .push(("WWW-Authenticate", "Basic realm=\"ords-guard\"".into()));
                }
                return Err(r);
            }
            let token = token_parameter(&form)?;
            let active = reg
                .tokens
                .as_ref()
                .and_then(|t| t.verify(token).ok())
                .filter(|claims| {
                    reg.client(&claims.client_id)
                        .is_some_and(|c| !c.disabled && !c.revoked(claims))
                });
            let body = match active {
                Some(c) => {
                    let mut body = serde_json::json!({
                        "active": true,
                        "client_id": c.client_id,
                        "sub": c.sub,
                        "scope": c.scope,
                        "exp": c.exp,
                        "iat": c.iat,
                        "iss": c.iss,
                        "jti": c.jti,
                        "token_type": "Bearer",
                    });
                    if let Some(aud) = &c.aud {
                        body["aud"] = serde_json::Value::String(aud.clone());
                    }
                    body
                }
                None => serde_json::json!({"active": false}),
            };
            Ok(Reply::json(200, body, "introspection"))
        };
        match answer.await {
            Ok(r) | Err(r) => r,
        }
    }

    /// `POST {base_path}/oauth/revoke` (RFC 7009, SPEC §16): a client revokes one of its own
    /// tokens, until its expiry. 200 whatever the token was (nothing says whether it was
    /// valid, known or another client's, which is left alone).
    pub async fn revoke(&self, reg: &Registry, req: &TokenRequest<'_>) -> Reply {
        let answer = async {
            let form = form(reg, req, "the revocation endpoint")?;
            let client = self.client(reg, req, &form).await?;
            let token = token_parameter(&form)?;
            let own = reg
                .tokens
                .as_ref()
                .and_then(|t| t.verify(token).ok())
                .filter(|claims| claims.client_id == client.client_id);
            let revoked = own.map(|claims| {
                let (new, what) = crate::tokens::revoked::REVOKED.revoke(
                    &client.client_id,
                    &claims.jti,
                    claims.iat,
                    claims.exp,
                    now(),
                );
                if new {
                    tracing::info!(target: "ords_guard::token", client_id = %client.client_id, jti = %claims.jti, "token revoked");
                }
                (new, what)
            });
            let outcome = match &revoked {
                Some((true, _)) => "revoked",
                _ => "not_revoked",
            };
            let mut r = Reply::json(200, serde_json::Value::Null, outcome);
            r.body.clear();
            // Shared again even when it was already revoked here: a client retrying after
            // the store failed must reach the other replicas.
            r.revoked = revoked.map(|(_, what)| (client.client_id.clone(), what));
            Ok(r)
        };
        match answer.await {
            Ok(r) | Err(r) => r,
        }
    }

    /// The client a request to one of the endpoints authenticates as (SPEC §4: HTTP Basic
    /// or form fields, throttled), or the 401 `invalid_client` (or 429) that answers it.
    async fn client<'r>(
        &self,
        reg: &'r Registry,
        req: &TokenRequest<'_>,
        form: &[(String, String)],
    ) -> Result<&'r Client, Reply> {
        let presented = self.presented(req, form)?;
        let started = Instant::now();
        if let Some(wait) = self
            .throttle
            .blocked(Some(&presented.id), req.client_addr, started)
        {
            let mut r = Reply::error(
                429,
                "slow_down",
                "too many failed authentication attempts; retry later",
            );
            r.headers
                .push(("Retry-After", wait.as_secs().max(1).to_string()));
            r.outcome = "throttled";
            return Err(r);
        }
        match self.authenticate(reg, &presented).await? {
            Some(c) => {
                self.throttle.succeeded(&presented.id);
                Ok(c)
            }
            None => {
                self.throttle
                    .failed(Some(&presented.id), req.client_addr, started);
                let mut r = Reply::error(401, "invalid_client", "client authentication failed");
                if presented.basic {
                    r.headers
                        .push(("WWW-Authenticate", "Basic realm=\"ords-guard\"".into()));
                }
                Err(r)
            }
        }
    }

    fn presented(
        &self,
        req: &TokenRequest<'_>,
        form: &[(String, String)],
    ) -> Result<Presented, Reply> {
        let in_form = (get(form, "client_id"), get(form, "client_secret"));
        let from_header = match req.authorization.as_slice() {
            [] => None,
            [one] => basic(one).transpose()?,
            _ => {
                return Err(Reply::error(
                    400,
                    "invalid_request",
                    "send one Authorization header",
                ))
            }
        };
        match (from_header, in_form) {
            (Some(_), (Some(_), _) | (_, Some(_))) => Err(Reply::error(
                400,
                "invalid_request",
                "authenticate either with HTTP Basic or with form fields, not both",
            )),
            (Some((id, secret)), _) => Ok(Presented {
                id,
                secret,
                basic: true,
            }),
            (None, (Some(id), Some(secret))) => Ok(Presented {
                id: id.into(),
                secret: secret.into(),
                basic: false,
            }),
            (None, _) => {
                let mut r = Reply::error(401, "invalid_client", "client authentication failed");
                r.headers
                    .push(("WWW-Authenticate", "Basic realm=\"ords-guard\"".into()));
                Err(r)
            }
        }
    }

    /// Check the presented secret against every slot, and take as long for an unknown id as
    /// for a wrong secret. `Err` when an argon2 check was not admitted.
    async fn authenticate<'r>(
        &self,
        reg: &'r Registry,
        p: &Presented,
    ) -> Result<Option<&'r Client>, Reply> {
        let secret = p.secret.as_bytes();
        let Some(client) = reg.client(&p.id) else {
            if reg.has_argon2 {
                // Admitted like a real check (so a refusal says nothing about the id), then
                // only waiting as long as one.
                let ticket = self.admit(reg)?;
                self.pool.pretend(ticket).await;
            } else {
                dummy().verify(secret);
            }
            return Ok(None);
        };
        let mut ok = false;
        let mut slow: Vec<Arc<Argon2Hash>> = Vec::new();
        for h in &client.secrets {
            match h {
                SecretHash::Sha256(_) => ok |= h.verify(secret),
                SecretHash::Argon2id(a) => slow.push(a.clone()),
            }
        }
        if ok {
            return Ok(Some(client));
        }
        if slow.is_empty() {
            return Ok(None);
        }
        let fingerprints: Vec<[u8; 32]> = slow
            .iter()
            .map(|h| self.fingerprint(&client.client_id, h, secret))
            .collect();
        if fingerprints.iter().any(|fp| self.verified.contains(fp)) {
            return Ok(Some(client));
        }
        let ticket = self.admit(reg)?;
        let Some(matched) = self.pool.verify(ticket, slow, secret).await else {
            return Ok(None);
        };
        if self.verified.len() >= VERIFIED_CACHE_MAX {
            self.verified.clear();
        }
        // Only the slot that matched: a secret retired from the other slot by a reload must
        // not stay remembered under the one that remains.
        self.verified.insert(fingerprints[matched]);
        Ok(Some(client))
    }

    fn admit(&self, reg: &Registry) -> Result<crate::clients::secret::pool::Ticket, Reply> {
        self.pool
            .admit(reg.limits.argon2, Instant::now())
            .map_err(overloaded)
    }

    /// The verified-secret cache key: keyed, so a memory dump yields no unsalted hashes.
    fn fingerprint(&self, client_id: &str, h: &Argon2Hash, secret: &[u8]) -> [u8; 32] {
        let mut d = Sha256::new();
        for part in [
            &self.cache_key[..],
            client_id.as_bytes(),
            h.phc.as_bytes(),
            secret,
        ] {
            d.update((part.len() as u64).to_be_bytes());
            d.update(part);
        }
        d.finalize().into()
    }

    fn issue(
        &self,
        tokens: &Tokens,
        client: &Client,
        roles: Vec<String>,
        scope: Vec<String>,
        requested: Option<&str>,
    ) -> Reply {
        let claims = claims_for(tokens, client, roles, scope, now());
        let lifetime = claims.exp - claims.iat;
        let token = match tokens.mint(&claims) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(target: "ords_guard::token", client_id = %client.client_id, "{e}");
                // RFC 6749 §5.2 has no code for this; server_error is §4.1.2.1's.
                return Reply::error(500, "server_error", "the token could not be signed; retry");
            }
        };
        let mut body = serde_json::json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime,
        });
        if let Some(s) = requested {
            body["scope"] = serde_json::Value::String(
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        let mut r = Reply::json(200, body, "issued");
        r.issued_to = Some(client.client_id.clone());
        r
    }
}

/// A hash to verify against when the id is unknown and every secret is `sha256:`, so its
/// (tiny) cost matches a real client's.
fn dummy() -> &'static SecretHash {
    use std::sync::OnceLock;
    static SHA: OnceLock<SecretHash> = OnceLock::new();
    SHA.get_or_init(|| {
        SecretHash::parse(&crate::clients::secret::hash(
            b"dummy",
            crate::clients::secret::Scheme::Sha256,
        ))
        .expect("hash")
    })
}

/// The claims of a token issued to `client` at `now` with `roles` and `scope` (the
/// privilege names [`grant`] gives).
pub fn claims_for(
    tokens: &Tokens,
    client: &Client,
    roles: Vec<String>,
    scope: Vec<String>,
    now: u64,
) -> Claims {
    let lifetime = client
        .token_lifetime_seconds
        .unwrap_or(tokens.lifetime_seconds);
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    Claims {
        iss: tokens.issuer.clone(),
        sub: client.client_id.clone(),
        client_id: client.client_id.clone(),
        aud: tokens.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        jti: hex::encode(jti),
        roles,
        scope: scope.join(" "),
    }
}

/// SPEC §4 scope rules: the token's roles and granted privileges, or why `requested`
/// cannot be granted (`invalid_scope`).
pub fn grant(
    reg: &Registry,
    client: &Client,
    requested: Option<&str>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let held = |i: &usize| reg.holds(client, *i);
    let Some(requested) = requested else {
        let scope = (0..reg.privileges.len())
            .filter(held)
            .map(|i| reg.privilege(i).name.clone())
            .collect();
        return Ok((client.roles.clone(), scope));
    };
    let mut roles: Vec<String> = Vec::new();
    let mut named: Vec<usize> = Vec::new();
    for name in requested.split(' ').filter(|s| !s.is_empty()) {
        let is_role = client.has_role(name);
        let privilege = reg.privilege_index(name).filter(held);
        if !is_role && privilege.is_none() {
            return Err(format!(
                "`{}` is neither a role nor a privilege of this client",
                truncate(name)
            ));
        }
        if is_role && !roles.iter().any(|r| r == name) {
            roles.push(name.to_string());
        }
        named.extend(privilege);
    }
    let scope = (0..reg.privileges.len())
        .filter(held)
        .filter(|i| named.contains(i) || reg.privilege(*i).roles.iter().any(|r| roles.contains(r)))
        .map(|i| reg.privilege(i).name.clone())
        .collect();
    Ok((roles, scope))
}

/// What the token endpoint and JWKS answer if ever asked without `token:` (the proxy
/// routes nothing to them then: the paths are ordinary).
/// A revocation the shared store did not take (SPEC §16 `store: redis`): 503, try again.
pub fn revocation_not_shared() -> Reply {
    let mut r = Reply::error(
        503,
        "temporarily_unavailable",
        "the token is revoked at this replica, but the revocation store did not answer: send the revocation again",
    );
    r.headers.push(("Retry-After", "1".into()));
    r
}

fn no_token_endpoint() -> Reply {
    Reply::error(
        404,
        "invalid_request",
        "this ords-guard mints no tokens (no `token` in its config)",
    )
}

/// `GET {base_path}/oauth/jwks`.
pub fn jwks(reg: &Registry, method: &str) -> Reply {
    let Some(tokens) = &reg.tokens else {
        return no_token_endpoint();
    };
    if method != "GET" && method != "HEAD" {
        let mut r = Reply::error(405, "invalid_request", "the JWKS endpoint accepts GET only");
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    Reply {
        status: 200,
        content_type: "application/jwk-set+json",
        headers: vec![("Cache-Control", "max-age=60".into())],
        body: tokens.jwks().to_vec(),
        outcome: "jwks",
        issued_to: None,
        limit: None,
        revoked: None,
    }
}

/// RFC 8414 metadata (SPEC §16) at `path`, or 404 on a well-known path it does not serve
/// (`token.issuer` is not a URL it can describe): never forwarded either way.
pub fn metadata(reg: &Registry, method: &str, path: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        let mut r = Reply::error(
            405,
            "invalid_request",
            "the metadata endpoint accepts GET only",
        );
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    match reg.metadata(path) {
        Some(doc) => Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![("Cache-Control", "max-age=60".into())],
            body: doc.to_vec(),
            outcome: "metadata",
            issued_to: None,
            limit: None,
            revoked: None,
        },
        None => Reply {
            status: 404,
            content_type: "application/problem+json",
            headers: Vec::new(),
            body: crate::problem::problem(404, "Not Found", "no authorization server metadata here: ords-guard serves it only when token.issuer is an https:// URL (or http:// to loopback) whose path is empty or base_path, at /.well-known/oauth-authorization-server followed by that path"),
            outcome: "metadata",
            issued_to: None,
            limit: None,
            revoked: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::secret::{hash, Scheme};
    use crate::registry::testing::registry;

    fn req<'a>(body: &'a str, auth: Vec<&'a [u8]>) -> TokenRequest<'a> {
        TokenRequest {
            method: "POST",
            content_type: Some(b"application/x-www-form-urlencoded; charset=utf-8"),
            authorization: auth,
            body: Some(body.as_bytes()),
            client_addr: Some("127.0.0.1".parse().unwrap()),
        }
    }

    fn with_secret(secret: &str, scheme: Scheme) -> (tempfile::TempDir, Registry) {
        let extra = format!(
            "  - name: Tester\n    client_id: t1\n    secrets: [\"{}\"]\n    roles: [example_role, example_admin]\n    token_lifetime_seconds: 600\n",
            hash(secret.as_bytes(), scheme)
        );
        registry(&extra, "allow")
    }

    fn body_json(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[tokio::test]
    async fn issues_a_token_with_all_roles_and_privileges() {
        let (_d, reg) = with_secret("s3cret", Scheme::Sha256);
        let ep = TokenEndpoint::default();
        let r = ep
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&client_id=t1&client_secret=s3cret",
                    vec![],
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let b = body_json(&r);
        assert_eq!(b["token_type"], "bearer");
        assert_eq!(b["expires_in"], 600);
        assert!(b.get("scope").is_none());
        let c = reg
            .tokens
            .as_ref()
            .unwrap()
            .verify(b["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(c.roles, ["example_role", "example_admin"]);
        assert_eq!(c.scope, "example_priv example_write open_priv");
        assert_eq!(c.exp - c.iat, 600);
        assert!(r.headers.contains(&("Cache-Control", "no-store".into())));
    }

    #[tokio::test]
    async fn scope_narrows_by_role_and_by_privilege() {
        let (_d, reg) = with_secret("s3cret", Scheme::Sha256);
        let ep = TokenEndpoint::default();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("t1:s3cret")
        );
        let r = ep
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&scope=example_admin",
                    vec![basic.as_bytes()],
                ),
            )
            .await;
        let b = body_json(&r);
        assert_eq!(b["scope"], "example_admin");
        let c = reg
            .tokens
            .as_ref()
            .unwrap()
            .verify(b["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            (c.roles.clone(), c.scope.as_str()),
            (vec!["example_admin".to_string()], "example_write")
        );
        let r = ep
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&scope=open_priv",
                    vec![basic.as_bytes()],
                ),
            )
            .await;
        let c = reg
            .tokens
            .as_ref()
            .unwrap()
            .verify(body_json(&r)["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!((c.roles.len(), c.scope.as_str()), (0, "open_priv"));
        let r = ep
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&scope=example_priv+nope",
                    vec![basic.as_bytes()],
                ),
            )
            .await;
        assert_eq!(
            (r.status, body_json(&r)["error"].as_str()),
            (400, Some("invalid_scope"))
        );
    }

    #[tokio::test]
    async fn basic_credentials_are_form_decoded() {
        let secret = "p:ss+w%rd é";
        let (_d, reg) = with_secret(secret, Scheme::Sha256);
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc("t1"),
                enc(secret)
            ))
        );
        let r = TokenEndpoint::default()
            .handle(
                &reg,
                &req("grant_type=client_credentials", vec![basic.as_bytes()]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    #[tokio::test]
    async fn errors_follow_rfc6749() {
        let (_d, reg) = with_secret("s3cret", Scheme::Sha256);
        let ep = TokenEndpoint::default();
        let good_basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("t1:s3cret")
        );
        let wrong_basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("t1:nope")
        );
        let cases: Vec<(TokenRequest, u16, &str)> = vec![
            (req("grant_type=client_credentials&client_id=t1&client_secret=nope", vec![]), 401, "invalid_client"),
            (req("grant_type=client_credentials&client_id=ghost&client_secret=s3cret", vec![]), 401, "invalid_client"),
            (req("grant_type=client_credentials", vec![wrong_basic.as_bytes()]), 401, "invalid_client"),
            (req("grant_type=client_credentials", vec![]), 401, "invalid_client"),
            (req("grant_type=client_credentials&client_id=t1", vec![good_basic.as_bytes()]), 400, "invalid_request"),
            (req("grant_type=client_credentials&grant_type=client_credentials&client_id=t1&client_secret=s3cret", vec![]), 400, "invalid_request"),
            (req("client_id=t1&client_secret=s3cret", vec![]), 400, "invalid_request"),
            (req("grant_type=password&client_id=t1&client_secret=s3cret", vec![]), 400, "unsupported_grant_type"),
            (req("grant_type=client_credentials&client_id=t1&client_secret=s3cret&scope=c2", vec![]), 400, "invalid_scope"),
            (TokenRequest { content_type: Some(b"application/json"), ..req("{}", vec![]) }, 400, "invalid_request"),
            (TokenRequest { body: None, ..req("", vec![]) }, 400, "invalid_request"),
            (TokenRequest { method: "GET", ..req("", vec![]) }, 405, "invalid_request"),
        ];
        for (i, (r, status, code)) in cases.iter().enumerate() {
            let rep = ep.handle(&reg, r).await;
            assert_eq!(
                (rep.status, body_json(&rep)["error"].as_str().unwrap()),
                (*status, *code),
                "case {i}"
            );
            assert!(!String::from_utf8_lossy(&rep.body).contains("s3cret"));
        }
        // Unknown id and wrong secret: same body.
        let a = ep.handle(&reg, &cases[0].0).await;
        let b = ep.handle(&reg, &cases[1].0).await;
        assert_eq!(a.body, b.body);
        // Basic failures carry the Basic challenge.
        assert!(ep
            .handle(&reg, &cases[2].0)
            .await
            .headers
            .iter()
            .any(|(k, v)| *k == "WWW-Authenticate" && v.starts_with("Basic")));
    }

    #[tokio::test]
    async fn a_client_id_with_a_space_authenticates_both_ways() {
        let extra = format!(
            "  - name: Legacy\n    client_id: \"legacy client 7\"\n    secrets: [\"{}\"]\n    roles: [example_role]\n",
            hash(b"s3cret", Scheme::Sha256)
        );
        let (_d, reg) = registry(&extra, "allow");
        let ep = TokenEndpoint::default();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("legacy+client+7:s3cret")
        );
        let r = ep
            .handle(
                &reg,
                &req("grant_type=client_credentials", vec![basic.as_bytes()]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let r = ep
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&client_id=legacy%20client%207&client_secret=s3cret",
                    vec![],
                ),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.issued_to.as_deref(), Some("legacy client 7"));
    }

    #[tokio::test]
    async fn disabled_client_is_unauthorized_client() {
        let extra = format!(
            "  - name: Off\n    client_id: off\n    secrets: [\"{}\"]\n    disabled: true\n",
            hash(b"x", Scheme::Sha256)
        );
        let (_d, reg) = registry(&extra, "allow");
        let r = TokenEndpoint::default()
            .handle(
                &reg,
                &req(
                    "grant_type=client_credentials&client_id=off&client_secret=x",
                    vec![],
                ),
            )
            .await;
        assert_eq!(
            (r.status, body_json(&r)["error"].as_str()),
            (400, Some("unauthorized_client"))
        );
    }

    #[tokio::test]
    async fn repeated_failures_are_throttled_for_unknown_ids_too() {
        let (_d, reg) = with_secret("s3cret", Scheme::Sha256);
        let ep = TokenEndpoint {
            throttle: Throttle::new(3, 1000),
            ..TokenEndpoint::default()
        };
        for id in ["t1", "ghost"] {
            let body = format!("grant_type=client_credentials&client_id={id}&client_secret=wrong");
            for _ in 0..3 {
                assert_eq!(ep.handle(&reg, &req(&body, vec![])).await.status, 401);
            }
            let r = ep.handle(&reg, &req(&body, vec![])).await;
            assert_eq!(r.status, 429, "{id}");
            assert!(r.headers.iter().any(|(k, _)| *k == "Retry-After"));
        }
        // Even the right secret waits out the window: the id is blocked, not the guess.
        assert_eq!(
            ep.handle(
                &reg,
                &req(
                    "grant_type=client_credentials&client_id=t1&client_secret=s3cret",
                    vec![]
                )
            )
            .await
            .status,
            429
        );
    }

    #[tokio::test]
    async fn argon2_is_paid_once_for_a_repeated_correct_secret() {
        let (_d, reg) = with_secret("chosen words", Scheme::Argon2id);
        assert!(reg.has_argon2);
        let ep = TokenEndpoint::default();
        let body = "grant_type=client_credentials&client_id=t1&client_secret=chosen+words";
        assert_eq!(ep.handle(&reg, &req(body, vec![])).await.status, 200);
        assert_eq!(ep.verified.len(), 1);
        assert_eq!(ep.handle(&reg, &req(body, vec![])).await.status, 200);
        assert_eq!(ep.verified.len(), 1);
        // A wrong secret is not cached.
        assert_eq!(
            ep.handle(
                &reg,
                &req(
                    "grant_type=client_credentials&client_id=t1&client_secret=chosen",
                    vec![]
                )
            )
            .await
            .status,
            401
        );
        assert_eq!(ep.verified.len(), 1);
    }

    #[tokio::test]
    async fn a_secret_retired_by_a_reload_is_not_remembered() {
        // Mid-rotation: two argon2id slots; the old secret is used, then the rotation ends
        // and a reload keeps only the new slot (the same PHC string).
        let (old, new) = (
            hash(b"old one", Scheme::Argon2id),
            hash(b"new one", Scheme::Argon2id),
        );
        let client = |secrets: &str| {
            format!("  - name: Rotating\n    client_id: rot\n    secrets: [{secrets}]\n    roles: [example_role]\n")
        };
        let (_d1, both) = registry(&client(&format!("\"{old}\", \"{new}\"")), "allow");
        let (_d2, after) = registry(&client(&format!("\"{new}\"")), "allow");
        let ep = TokenEndpoint::default();
        let body = "grant_type=client_credentials&client_id=rot&client_secret=old+one";
        assert_eq!(ep.handle(&both, &req(body, vec![])).await.status, 200);
        assert_eq!(ep.handle(&after, &req(body, vec![])).await.status, 401);
        let body = "grant_type=client_credentials&client_id=rot&client_secret=new+one";
        assert_eq!(ep.handle(&after, &req(body, vec![])).await.status, 200);
    }

    #[test]
    fn jwks_is_get_only() {
        let (_d, reg) = registry("", "allow");
        assert_eq!(jwks(&reg, "GET").body, br#"{"keys":[]}"#);
        assert_eq!(jwks(&reg, "POST").status, 405);
    }
}
