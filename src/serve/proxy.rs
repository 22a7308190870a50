//! The pingora glue: reads request facts, asks `decision`/`endpoint`, and carries out the
//! answer. No access rule lives here.

use crate::access::decision::{self, Decision};
use crate::access::path::{self, Target};
use crate::oauth::endpoint::{self, Reply, TokenRequest};
use crate::oauth::token::TokenError;
use crate::registry::Registry;
use crate::serve::conn::clipper;
use crate::serve::conn::framing::ChunkError;
use crate::serve::state::Guard;
use crate::serve::upstream_slots::{Slot, UpstreamSlots};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Retry-After` (seconds) on a 503 for an identity provider whose keys are not in yet.
const ISSUER_RETRY_AFTER: u64 = 5;
pub const REALM: &str = "ords-guard";

/// pingora's own bound on one read from (or write to) the client, kept unless the
/// request's deadline comes sooner.
const DOWNSTREAM_READ: Duration = Duration::from_secs(60);

pub struct Proxy {
    pub guard: Arc<Guard>,
    /// Requests in flight, for graceful shutdown.
    pub in_flight: Arc<AtomicUsize>,
    /// `limits.max_upstream_connections`, when set.
    pub upstream_slots: Option<UpstreamSlots>,
}

/// Per-request state: what was decided, for forwarding, logging and metrics.
pub struct Ctx {
    start: Instant,
    _in_flight: InFlight,
    registry: Option<Arc<Registry>>,
    target: Option<Target>,
    decision: Option<Decision>,
    /// The `decision` label; `None` for the token endpoint and JWKS (counted apart).
    label: Option<&'static str>,
    client_id: Option<String>,
    privilege: Option<String>,
    upstream_status: Option<u16>,
    /// The token endpoint's outcome label, for the access log.
    token_outcome: Option<&'static str>,
    /// The client's address (behind `trusted_proxies`, the one they forwarded).
    client_addr: Option<std::net::IpAddr>,
    /// The identity provider (`issuers[]` name) whose token was presented.
    issuer: Option<String>,
    /// Under `mode: report`, the refusal that was not carried out (SPEC §11).
    would: Option<&'static str>,
    /// The `RateLimit` field for the answer (SPEC §13), when a limit counted the request.
    rate_limit: Option<String>,
    /// The limit that refused it.
    limit: Option<String>,
    /// Held while the request is at the upstream (`limits.max_upstream_connections`).
    upstream_slot: Option<Slot>,
}

impl Ctx {
    /// An access-line field: set on the context, or else the forwarded grant's, or `-`.
    fn logged<'a>(
        &'a self,
        set: impl Fn(&'a Ctx) -> &'a Option<String>,
        granted: impl Fn(&'a decision::Grant) -> Option<&'a String>,
    ) -> &'a str {
        let from_grant = || match &self.decision {
            Some(Decision::Forward(g)) => granted(g),
            _ => None,
        };
        set(self)
            .as_ref()
            .or_else(from_grant)
            .map_or("-", String::as_str)
    }
}

/// Counts a request in flight (ingress or egress) for as long as it lives: the drain
/// waits for the count to reach zero.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(crate) fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The peer for an upstream, its timeouts clipped to the request's deadline. A host name is
/// looked up here (within the connect timeout); a failed lookup is a connect error (502).
pub(crate) async fn peer_for(up: &crate::registry::Upstream) -> Result<HttpPeer> {
    let clip = clipper();
    let addr = up
        .addr
        .resolve(clip(up.connect_timeout))
        .await
        .map_err(|e| Error::explain(ErrorType::ConnectNoRoute, e.to_string()))?;
    let mut peer = HttpPeer::new(addr, up.tls, up.host.clone());
    let o = &mut peer.options;
    o.connection_timeout = Some(clip(up.connect_timeout));
    o.total_connection_timeout = Some(clip(up.connect_timeout));
    o.read_timeout = Some(clip(up.read_timeout));
    o.write_timeout = Some(clip(up.read_timeout));
    o.idle_timeout = Some(up.idle_timeout);
    o.verify_cert = up.verify;
    o.verify_hostname = up.verify;
    o.ca = up.ca.clone();
    Ok(peer)
}

/// A 429's headers and problem document (SPEC §13).
type Refusal = (Vec<(&'static str, String)>, Vec<u8>);

/// An RFC 9457 problem document.
pub fn problem(status: u16, title: &str, detail: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail})).expect("json")
}

/// Write a complete local response.
async fn respond(
    session: &mut Session,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(headers.len() + 2))?;
    h.insert_header("Content-Type", content_type)?;
    h.insert_header("Content-Length", body.len().to_string())?;
    for (k, v) in headers {
        h.insert_header(k.to_string(), v.as_str())?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head).await?;
    if !head {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

pub(crate) async fn respond_problem(
    session: &mut Session,
    status: u16,
    title: &str,
    detail: &str,
    header: Option<(&'static str, String)>,
) -> Result<()> {
    let headers: Vec<(&str, String)> = header.into_iter().collect();
    respond(
        session,
        status,
        "application/problem+json",
        &headers,
        problem(status, title, detail),
    )
    .await
}

/// Read the body of a denied request before answering, so the connection can be reused
/// (pingora closes it otherwise); large bodies are not worth reading: close instead.
pub(crate) async fn discard_body(session: &mut Session) {
    if session.is_body_empty() {
        return;
    }
    let small = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n <= 64 * 1024);
    if !small || session.drain_request_body().await.is_err() {
        session.set_keepalive(None);
    }
}

/// Read at most `max` bytes; `None` when the body is larger.
async fn read_limited_body(session: &mut Session, max: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > max {
            session.set_keepalive(None);
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// A header name in canonical spelling: lower case, `_` read as `-` (as some servers do).
fn canonical(name: &str) -> impl Iterator<Item = u8> + '_ {
    name.bytes().map(|b| {
        if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    })
}

/// Header names we own: `X-ORDS-*`, in any letter case and with `_` for `-`.
fn is_identity_header(name: &str) -> bool {
    canonical(name).take(7).eq(b"x-ords-".iter().copied())
}

/// Headers with which a client asks a legacy backend to treat the request as another
/// method (Spring, Jersey, ASP.NET honour them): the decision was taken on the real method,
/// so they never pass.
fn is_method_override(name: &str) -> bool {
    [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ]
    .iter()
    .any(|o| canonical(name).eq(o.bytes()))
}

impl Proxy {
    /// SPEC §13: take the request from every limit that applies, or refuse it (429) when
    /// one has no room: the status and answer to send then. Local limits first, then the
    /// shared ones in one bounded round trip; when the store fails, `on_error` decides
    /// (allow: forwarded, uncounted; deny: 503). A counted request's `RateLimit` field is
    /// kept for its forwarded answer.
    async fn rate_limited(
        &self,
        reg: &Registry,
        d: &Decision,
        ctx: &mut Ctx,
    ) -> Option<(u16, Refusal)> {
        use crate::config::OnStoreError;
        use crate::ratelimit::{self, Applicable, Caller, Outcome};
        let (privilege, client) = match d {
            Decision::Forward(g) => (
                reg.privilege_index(&g.privilege),
                Some(g.client_id.as_str()),
            ),
            Decision::ReportOnly(r) => (r.privilege().and_then(|p| reg.privilege_index(p)), None),
            _ => (None, None),
        };
        let caller = Caller {
            privilege,
            client,
            addr: ctx.client_addr,
        };
        let limits = &reg.rate_limits;
        let applicable = Applicable::new(limits, &caller);
        let mut outcome = applicable.take_local(ratelimit::now());
        if !matches!(outcome, Outcome::Refused { .. }) {
            if let Some(store) = &reg.rate_limit_store {
                let shared = applicable.shared();
                if !shared.is_empty() {
                    match self.guard.shared_limits.take(&shared, store).await {
                        Ok(reply) => outcome = applicable.with_shared(outcome, reply),
                        // Forwarded as if no limit counted it: no `RateLimit` that could
                        // mislead the client.
                        Err(_) if store.on_error == OnStoreError::Allow => {
                            return None;
                        }
                        Err(_) => {
                            applicable.give_back_local();
                            self.decided(ctx, "rate_limit_unavailable");
                            ctx.privilege = d.privilege().map(str::to_string);
                            ctx.client_id = client.map(str::to_string);
                            let detail = "the rate-limit store did not answer and on_error is deny; retry shortly";
                            return Some((
                                503,
                                (
                                    vec![("Retry-After", "1".to_string())],
                                    problem(503, "Service Unavailable", detail),
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let header = outcome.header(limits);
        let Outcome::Refused {
            limit,
            retry_after_seconds,
            ..
        } = outcome
        else {
            ctx.rate_limit = header;
            return None;
        };
        let l = &limits[limit];
        self.decided(ctx, "rate_limited");
        self.guard
            .metrics
            .rate_limited
            .with_label_values(&[l.name.as_str()])
            .inc();
        ctx.limit = Some(l.name.clone());
        ctx.privilege = d.privilege().map(str::to_string);
        ctx.client_id = client.map(str::to_string);
        let headers = vec![
            ("Retry-After", retry_after_seconds.to_string()),
            ("RateLimit-Policy", l.policy()),
            ("RateLimit", header.unwrap_or_default()),
        ];
        let detail = format!(
            "rate limit `{}` ({} per {} s) reached; retry in {retry_after_seconds} s",
            l.name, l.rate, l.per_seconds
        );
        Some((429, (headers, problem(429, "Too Many Requests", &detail))))
    }

    /// Record the decision; counted now rather than at logging, so the count is in place
    /// before the client sees the response.
    fn decided(&self, ctx: &mut Ctx, label: &'static str) {
        ctx.label = Some(label);
        self.guard.metrics.requests.inc(label);
    }

    async fn token_endpoint(
        &self,
        session: &mut Session,
        reg: Arc<Registry>,
        is_jwks: bool,
        client_addr: Option<std::net::IpAddr>,
    ) -> Result<Reply> {
        let method = session.req_header().method.as_str().to_string();
        if is_jwks {
            discard_body(session).await;
            return Ok(endpoint::jwks(&reg, &method));
        }
        let body = read_limited_body(session, reg.limits.max_token_body_bytes).await?;
        let h = &session.req_header().headers;
        let content_type = h
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes().to_vec());
        let authorization: Vec<Vec<u8>> = h
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let req = TokenRequest {
            method: &method,
            content_type: content_type.as_deref(),
            authorization: authorization.iter().map(|v| v.as_slice()).collect(),
            body: body.as_deref(),
            client_addr,
        };
        // argon2 runs on the endpoint's own pool, never on this thread.
        Ok(self.guard.endpoint.handle(&reg, &req).await)
    }
}

/// The client's address for throttling and logs: the peer's, or the one the registry's
/// `trusted_proxies` vouch for in `X-Forwarded-For`.
fn client_addr(session: &Session, reg: &Registry) -> Option<std::net::IpAddr> {
    let peer = peer_ip(session)?;
    if reg.trusted_proxies.is_empty() {
        return Some(peer);
    }
    let xff = session.req_header().headers.get_all("x-forwarded-for");
    Some(
        reg.trusted_proxies
            .client_addr(peer, xff.iter().map(|v| v.as_bytes())),
    )
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            _in_flight: InFlight::enter(&self.in_flight),
            registry: None,
            target: None,
            decision: None,
            label: None,
            client_id: None,
            privilege: None,
            upstream_status: None,
            token_outcome: None,
            client_addr: None,
            issuer: None,
            would: None,
            rate_limit: None,
            limit: None,
            upstream_slot: None,
        }
    }

    /// No downstream modules: pingora's default adds a (disabled) compression module that
    /// still inspects every response.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // A body that stalls ends by the request's deadline (408), not pingora's 60 s.
        let wait = clipper()(DOWNSTREAM_READ);
        session.set_read_timeout(Some(wait));
        session.set_write_timeout(Some(wait));
        let reg = self.guard.registry();
        ctx.registry = Some(reg.clone());
        // First, so every access line names the client, refused paths too.
        ctx.client_addr = client_addr(session, &reg);
        let target =
            match path::normalise_with(session.req_header().raw_path(), reg.path_parameters) {
                Ok(t) => t,
                Err(e) => {
                    self.decided(ctx, "bad_request");
                    discard_body(session).await;
                    respond_problem(
                        session,
                        400,
                        "Bad Request",
                        &format!("{e}; the request was not forwarded"),
                        None,
                    )
                    .await?;
                    return Ok(true);
                }
            };
        let is_token = reg.token_path() == Some(target.decision_path());
        if is_token || reg.jwks_path() == Some(target.decision_path()) {
            let reply = self
                .token_endpoint(session, reg, !is_token, ctx.client_addr)
                .await?;
            self.guard.metrics.token_requests.inc(reply.outcome);
            if let Some(limit) = reply.limit {
                self.guard.metrics.limit_rejections.inc(limit);
            }
            ctx.token_outcome = Some(reply.outcome);
            if let Some(client) = &reply.issued_to {
                self.guard
                    .metrics
                    .tokens_issued
                    .with_label_values(&[client])
                    .inc();
                ctx.client_id = Some(client.clone());
            }
            ctx.target = Some(target);
            respond(
                session,
                reply.status,
                reply.content_type,
                &reply.headers,
                reply.body,
            )
            .await?;
            return Ok(true);
        }
        let auth: Vec<&[u8]> = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let decide = || {
            decision::decide(
                &reg,
                session.req_header().method.as_str(),
                target.decision_path(),
                decision::credentials(&auth),
            )
        };
        let mut d = decide();
        if let Some(entry) = d.awaits_keys() {
            // Unknown `kid` or no keys yet: the issuer's cell joins or starts one refetch
            // (bounded in time and rate, SPEC §9), then the same pure decision runs again.
            reg.issuers[entry]
                .keys
                .refetch(std::time::Instant::now())
                .await;
            d = decide();
        }
        if d.is_forwarded() && !reg.rate_limits.is_empty() {
            if let Some((status, (headers, body))) = self.rate_limited(&reg, &d, ctx).await {
                ctx.target = Some(target);
                discard_body(session).await;
                respond(session, status, "application/problem+json", &headers, body).await?;
                return Ok(true);
            }
        }
        self.decided(ctx, d.label());
        ctx.target = Some(target);
        let challenge = |extra: &str| {
            Some((
                "WWW-Authenticate",
                format!("Bearer realm=\"{REALM}\"{extra}"),
            ))
        };
        let invalid_token = |desc: String| {
            (
                "Unauthorized",
                format!("{desc}; get a new token from the token endpoint"),
                challenge(&format!(
                    ", error=\"invalid_token\", error_description=\"{desc}\""
                )),
            )
        };
        let (title, detail, www) = match &d {
            Decision::ForwardPublic => ("", String::new(), None),
            Decision::ReportOnly(refusal) => {
                // Forwarded as a public request; what was not enforced is counted and logged.
                let privilege = refusal.privilege().unwrap_or_default();
                let would = refusal.would().unwrap_or_default();
                self.guard
                    .metrics
                    .report_only
                    .with_label_values(&[privilege, would])
                    .inc();
                ctx.privilege = Some(privilege.to_string());
                ctx.would = Some(would);
                if let Decision::InsufficientScope { client_id, .. } = refusal.as_ref() {
                    ctx.client_id = Some(client_id.clone());
                }
                ("", String::new(), None)
            }
            // The access line reads who and which privilege from the grant kept in `ctx`.
            Decision::Forward(_) => ("", String::new(), None),
            Decision::Unmatched => (
                "Forbidden",
                "no privilege covers this path and unmatched paths are denied".into(),
                None,
            ),
            Decision::Unauthenticated { privilege } => {
                ctx.privilege = Some(privilege.clone());
                ("Unauthorized", "this resource is protected: send Authorization: Bearer <token> from the token endpoint".into(), challenge(""))
            }
            Decision::InvalidToken { privilege, reason } => {
                ctx.privilege = Some(privilege.clone());
                invalid_token(reason.to_string())
            }
            Decision::UnknownKey {
                privilege, issuer, ..
            } => {
                ctx.privilege = Some(privilege.clone());
                ctx.issuer = Some(issuer.clone());
                invalid_token(TokenError::UnknownKey.to_string())
            }
            Decision::InsufficientScope {
                privilege,
                client_id,
            } => {
                ctx.privilege = Some(privilege.clone());
                ctx.client_id = Some(client_id.clone());
                (
                    "Forbidden",
                    format!("the token does not grant privilege `{privilege}`"),
                    challenge(", error=\"insufficient_scope\""),
                )
            }
            Decision::IssuerUnavailable {
                privilege, issuer, ..
            } => {
                ctx.privilege = Some(privilege.clone());
                ctx.issuer = Some(issuer.clone());
                (
                    "Service Unavailable",
                    format!("the keys of identity provider `{issuer}` could not be fetched yet, so its token cannot be checked; retry shortly"),
                    Some(("Retry-After", ISSUER_RETRY_AFTER.to_string())),
                )
            }
        };
        if d.is_forwarded() {
            ctx.decision = Some(d);
            return Ok(false);
        }
        discard_body(session).await;
        let status = d.status().unwrap_or(500);
        respond_problem(session, status, title, &detail, www).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let reg = ctx.registry.as_ref().expect("set in request_filter");
        // The proxy listener exists only with `listen`, which requires `upstream`.
        let up = reg
            .upstream
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream"))?;
        let mut waited = Duration::ZERO;
        // A retry (pingora calls this again) keeps the slot it has.
        if let (Some(slots), None) = (&self.upstream_slots, &ctx.upstream_slot) {
            let started = Instant::now();
            let wait = slots.take(clipper()(up.connect_timeout));
            tokio::pin!(wait);
            let taken = if session.is_body_empty() {
                // A client that leaves while its request waits gives up its place in line:
                // served later, its answer would have nowhere to go, and the upstream
                // connection it used would be closed with it. (Watched the way pingora
                // watches a bodiless request while the upstream answers; a request with a
                // body is not, its bytes are the upstream's.)
                tokio::select! {
                    taken = &mut wait => taken,
                    gone = session.downstream_session.read_body_or_idle(true) => {
                        gone?;
                        wait.await
                    }
                }
            } else {
                wait.await
            };
            let slot = taken.map_err(|_| {
                Error::explain(
                    ErrorType::Custom(crate::serve::upstream_slots::CONNECTION_LIMIT),
                    "every connection limits.max_upstream_connections allows stayed busy for the connect timeout",
                )
            })?;
            ctx.upstream_slot = Some(slot);
            waited = started.elapsed();
        }
        let mut peer = peer_for(up).await?;
        // The wait for a slot and the connect share the connect timeout.
        if !waited.is_zero() {
            let o = &mut peer.options;
            for t in [&mut o.connection_timeout, &mut o.total_connection_timeout] {
                *t = t.map(|t| t.saturating_sub(waited));
            }
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let target = ctx.target.as_ref().expect("set in request_filter");
        // The upstream receives exactly the path that was decided on (most requests arrive
        // in that form already: no copy, no reparse).
        if !target.is_wire_form(req.raw_path()) {
            req.set_raw_path(target.path_and_query().as_bytes())?;
        }

        let spoofed: Vec<_> = req
            .headers
            .keys()
            .filter(|n| is_identity_header(n.as_str()) || is_method_override(n.as_str()))
            .cloned()
            .collect();
        for name in spoofed {
            req.remove_header(&name);
        }
        if let Some(Decision::Forward(g)) = &ctx.decision {
            req.remove_header(&http::header::AUTHORIZATION);
            let value = |what: &'static str, v: &str| {
                http::HeaderValue::from_str(v)
                    .map_err(|e| Error::because(ErrorType::InternalError, what, e))
            };
            req.insert_header("X-ORDS-Client-Id", value("client id header", &g.client_id)?)?;
            if let Some(name) = &g.client_name {
                req.insert_header(
                    "X-ORDS-Client-Name",
                    http::HeaderValue::from_bytes(name.as_bytes()).map_err(|e| {
                        Error::because(ErrorType::InternalError, "client name header", e)
                    })?,
                )?;
            }
            if let Some(issuer) = &g.issuer {
                req.insert_header("X-ORDS-Issuer", issuer.as_str())?;
            }
            if let Some(subject) = &g.subject {
                req.insert_header("X-ORDS-Subject", value("subject header", subject)?)?;
            }
            req.insert_header("X-ORDS-Roles", g.roles.join(","))?;
            req.insert_header("X-ORDS-Privilege", g.privilege.as_str())?;
        }
        if let Some(ip) = peer_ip(session) {
            use std::fmt::Write;
            let prev = req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            // One allocation: an address is at most 45 characters.
            let mut xff = String::with_capacity(prev.map_or(0, |p| p.len() + 2) + 45);
            if let Some(prev) = prev {
                xff.push_str(prev);
                xff.push_str(", ");
            }
            let _ = write!(xff, "{ip}");
            req.insert_header("X-Forwarded-For", xff)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        req.insert_header("X-Forwarded-Proto", if tls { "https" } else { "http" })?;
        if let Some(host) = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned()
        {
            req.insert_header("X-Forwarded-Host", host)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        if let Some(v) = &ctx.rate_limit {
            resp.insert_header("RateLimit", v.as_str())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let upstream = matches!(e.esource(), pingora::ErrorSource::Upstream);
        // The connection guard refused the client's chunked body as it passed.
        let bad_chunk = e
            .root_cause()
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<ChunkError>());
        let connection_limit =
            matches!(e.etype(), Custom(c) if *c == crate::serve::upstream_slots::CONNECTION_LIMIT);
        let (code, kind) = match e.etype() {
            _ if bad_chunk.is_some() => (400, None),
            _ if connection_limit => (502, Some("connection_limit")),
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                (502, Some("connect"))
            }
            // Still waiting for the client's body, whichever side's wait ran out: the
            // client is the slow one.
            ReadTimedout | WriteTimedout if !session.is_body_empty() && !session.is_body_done() => {
                (408, None)
            }
            ReadTimedout | WriteTimedout if upstream => (504, Some("timeout")),
            ReadTimedout => (408, None),
            HTTPStatus(c) => (*c, None),
            _ if upstream => (502, Some("protocol")),
            ReadError | WriteError | WriteTimedout | ConnectionClosed => (0, None),
            _ if matches!(e.esource(), pingora::ErrorSource::Downstream) => (400, None),
            _ => (500, None),
        };
        if matches!(e.etype(), ReadTimedout | WriteTimedout | ConnectTimedout)
            && crate::serve::conn::deadline().is_some_and(|d| d <= tokio::time::Instant::now())
        {
            self.guard
                .metrics
                .limit_rejections
                .inc(crate::serve::metrics::REQUEST_TOTAL_TIMEOUT);
        }
        if let Some(k) = kind {
            self.guard.metrics.upstream_errors.inc(k);
        }
        if code > 0 {
            let chunk_detail =
                bad_chunk.map(|c| format!("the chunked request body is malformed: {c}"));
            let (title, detail) = match code {
                400 if chunk_detail.is_some() => {
                    ("Bad Request", chunk_detail.as_deref().unwrap_or_default())
                }
                502 if connection_limit => (
                    "Bad Gateway",
                    "the upstream service is at its connection limit: try again shortly",
                ),
                502 => ("Bad Gateway", "the upstream service could not be reached"),
                504 => (
                    "Gateway Timeout",
                    "the upstream service did not answer in time",
                ),
                400 => ("Bad Request", "the request could not be read"),
                408 => ("Request Timeout", "the request body did not arrive in time"),
                _ => ("Error", "the request failed"),
            };
            // The connection is not reused after a failure: say so, so clients do not try.
            session.set_keepalive(None);
            // Fails harmlessly if the response had already started.
            let _ = respond_problem(session, code, title, detail, None).await;
        }
        if ctx.label.is_none() && ctx.target.is_none() {
            // Failed before a decision: the request could not be read.
            self.decided(ctx, "bad_request");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Used by pingora's own error lines: method and normalised path, never the query
    /// (which may carry credentials).
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let path = ctx
            .target
            .as_ref()
            .map_or("<not normalised>", |t| t.path.as_str());
        format!("{} {}", session.req_header().method, path)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let latency = ctx.start.elapsed();
        self.guard.metrics.duration.observe(latency.as_secs_f64());
        // The path only: a query may carry credentials.
        let path = ctx.target.as_ref().map_or("-", |t| t.path.as_str());
        crate::logs::access::write(|l| {
            l.display("method", &session.req_header().method)
                .str("path", path);
            if let Some(addr) = ctx.client_addr {
                l.display("client_addr", addr);
            }
            l.uint("status", status.into())
                .str("decision", ctx.label.unwrap_or("token_endpoint"))
                .str(
                    "client_id",
                    ctx.logged(|c| &c.client_id, |g| Some(&g.client_id)),
                )
                .str(
                    "privilege",
                    ctx.logged(|c| &c.privilege, |g| Some(&g.privilege)),
                )
                .str("issuer", ctx.logged(|c| &c.issuer, |g| g.issuer.as_ref()))
                .str("would", ctx.would.unwrap_or("-"))
                .str("limit", ctx.limit.as_deref().unwrap_or("-"))
                .float("latency_ms", latency.as_secs_f64() * 1000.0)
                .uint("upstream_status", ctx.upstream_status.unwrap_or(0).into())
                .str("token_outcome", ctx.token_outcome.unwrap_or("-"))
                .str("error", e.map(|e| e.etype().as_str()).unwrap_or("-"));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_in_every_spelling() {
        for n in [
            "x-ords-client-id",
            "X-ORDS-Roles",
            "x_ords_client_id",
            "X_Ords-Privilege",
            "x-ords-anything",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in ["x-ords", "x-ordsx-a", "authorization", "x-forwarded-for"] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    #[test]
    fn method_overrides_in_every_spelling() {
        for n in [
            "X-HTTP-Method-Override",
            "x_http_method",
            "X-Method-Override",
        ] {
            assert!(is_method_override(n), "{n}");
        }
        for n in ["x-http-method-overrides", "x-method", "method"] {
            assert!(!is_method_override(n), "{n}");
        }
    }
}
