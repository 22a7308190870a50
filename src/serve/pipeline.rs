//! The decision pipeline: what one request may do, from a view of it that any door can build
//! ([`RequestView`]), in named steps — the target normalised ([`normalise`]), the token
//! endpoint recognised ([`token_endpoint`]), the decision taken, and taken again once an
//! identity provider's keys are in ([`decide`]), the rate limits taken ([`rate_limited`]),
//! and the decision carried out ([`carry_out`]: `mode: report` counted in [`report_only`],
//! a refusal's words in [`refusal`]).
//!
//! No pingora session in sight: the ingress proxy runs it from `request_filter`, the authz
//! check endpoints from theirs, and another door (an h2 stream) can run it the same way.
//! Each door counts the decision in its own metric family as soon as it returns, before the
//! client sees the answer; what it learnt is kept in [`Decided`], for the forwarded
//! request's headers and the access line.

use crate::access::decision::{self, Awaits, Decision};
use crate::patterns::path::{self, Target};
use crate::registry::{Own, Registry};
use crate::serve::state::Guard;
use crate::tokens::token::TokenError;
use opentelemetry::KeyValue;
use std::net::IpAddr;

/// `Retry-After` (seconds) on a 503 for an identity provider whose keys are not in yet.
const ISSUER_RETRY_AFTER: u64 = 5;
pub const REALM: &str = "ords-guard";

/// What the pipeline reads of a request; each door fills it from its own session.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The request target as it arrived.
    pub target: &'a [u8],
    /// Every `Authorization` header's value.
    pub authorization: Vec<&'a [u8]>,
    /// The client's address (behind `trusted_proxies`, the one they forwarded).
    pub client_addr: Option<IpAddr>,
}

/// Every `Authorization` value of a request's headers, as a [`RequestView`] holds them.
pub fn authorizations(headers: &http::HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}

/// What the pipeline learnt of a request: what was decided, for forwarding, logging and
/// metrics.
#[derive(Default)]
pub struct Decided {
    pub target: Option<Target>,
    pub decision: Option<Decision>,
    /// The `decision` label; `None` for the token endpoint and JWKS (counted apart).
    pub label: Option<&'static str>,
    pub client_id: Option<String>,
    pub privilege: Option<String>,
    /// The client's address (behind `trusted_proxies`, the one they forwarded).
    pub client_addr: Option<IpAddr>,
    /// The identity provider (`issuers[]` name) whose token was presented.
    pub issuer: Option<String>,
    /// Under `mode: report`, the refusal that was not carried out (SPEC §11).
    pub would: Option<&'static str>,
    /// The `RateLimit` field for the answer (SPEC §13), when a limit counted the request.
    pub rate_limit: Option<String>,
    /// The limit that refused it.
    pub limit: Option<String>,
}

impl Decided {
    /// An access-line field: set here, or else the forwarded grant's, or `-`.
    pub fn logged<'a>(
        &'a self,
        set: impl Fn(&'a Decided) -> &'a Option<String>,
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

impl Decided {
    /// The access line's fields of what was decided (SPEC §6), the same at every door:
    /// `status`, `decision`, `client_id`, `privilege`, `issuer`, `would`, `limit`.
    pub fn log(&self, l: &mut crate::logs::access::Line<'_>, status: u16, decision: &str) {
        l.uint("status", status.into())
            .str("decision", decision)
            .str(
                "client_id",
                self.logged(|c| &c.client_id, |g| Some(&g.client_id)),
            )
            .str(
                "privilege",
                self.logged(|c| &c.privilege, |g| Some(&g.privilege)),
            )
            .str("issuer", self.logged(|c| &c.issuer, |g| g.issuer.as_ref()))
            .str("would", self.would.unwrap_or("-"))
            .str("limit", self.limit.as_deref().unwrap_or("-"));
    }
}

/// What the SERVER span says of a request (SPEC §15), the same at every door: the
/// normalised path (never the query), the deciding pattern, and the decision's labels.
pub fn trace_facts<'a>(
    d: &'a Decided,
    reg: Option<&'a Registry>,
    method: &'a str,
    status: u16,
) -> crate::traces::Facts<'a> {
    let path = d.target.as_ref().map(|t| t.path.as_str());
    let privilege = match &d.decision {
        Some(Decision::Forward(g)) => Some(g.privilege.as_str()),
        _ => d.privilege.as_deref(),
    };
    let set = |v: &'a str| (v != "-").then_some(v);
    crate::traces::Facts {
        method,
        path,
        // Only where a privilege decided: a public path has no route.
        route: privilege
            .and(reg.zip(path))
            .and_then(|(r, p)| r.route(p, method)),
        // The token endpoint and the JWKS are the undecided ones; the JWKS is `public`.
        token_endpoint: d.label.is_none()
            && path.is_some()
            && reg.and_then(|r| r.token_path()) == path,
        status,
        client_addr: d.client_addr,
        decision: d.label.unwrap_or("token_endpoint"),
        privilege,
        client_id: set(d.logged(|c| &c.client_id, |g| Some(&g.client_id))),
        issuer: set(d.logged(|c| &c.issuer, |g| g.issuer.as_ref())),
        door: None,
    }
}

/// An identity no header can carry (a control byte in a token's `sub`): refused as an
/// invalid token, at every door that would have to send it.
pub fn unsendable_identity(ctx: &mut Decided) -> Answer {
    decided(ctx, "invalid_token");
    let why = "the token's identity cannot be sent in a header";
    Answer::problem(
        401,
        "Unauthorized",
        why,
        Some((
            "WWW-Authenticate",
            format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{why}\""
            ),
        )),
    )
}

/// A 429's headers and problem document (SPEC §13).
type Refusal = (Vec<(&'static str, String)>, Vec<u8>);

/// A local answer: its status, headers and problem document (`application/problem+json`).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The problem document for `status`, with at most one header.
    pub fn problem(
        status: u16,
        title: &str,
        detail: &str,
        header: Option<(&'static str, String)>,
    ) -> Answer {
        Answer {
            status,
            headers: header.into_iter().collect(),
            body: problem(status, title, detail),
        }
    }
}

/// What the door does next.
pub enum Next {
    /// Send the request upstream: the decision is in [`Decided::decision`].
    Forward,
    /// ords-guard's own endpoints (the token endpoint, which reads the body; the JWKS; the
    /// RFC 8414 metadata): the door serves them.
    TokenEndpoint { target: Target, own: Own },
    /// Answer locally, without forwarding.
    Refuse(Answer),
}

pub use crate::problem::problem;

/// Record the decision. Each door counts it in its own family (the proxy's requests, the
/// authz checks) as soon as the pipeline returns, so the count is in place before the
/// client sees the answer.
pub fn decided(ctx: &mut Decided, label: &'static str) {
    ctx.label = Some(label);
}

/// The identity headers a forwarded grant gives the backend (SPEC §3, §9): the proxy sets
/// them on the upstream request, the authz endpoints return them to the proxy in front.
pub fn identity_headers(g: &decision::Grant) -> Vec<(&'static str, std::borrow::Cow<'_, str>)> {
    let mut h = vec![("X-ORDS-Client-Id", g.client_id.as_str().into())];
    if let Some(name) = &g.client_name {
        h.push(("X-ORDS-Client-Name", name.as_str().into()));
    }
    if let Some(issuer) = &g.issuer {
        h.push(("X-ORDS-Issuer", issuer.as_str().into()));
    }
    if let Some(subject) = &g.subject {
        h.push(("X-ORDS-Subject", subject.as_str().into()));
    }
    h.push(("X-ORDS-Roles", g.roles.join(",").into()));
    h.push(("X-ORDS-Privilege", g.privilege.as_str().into()));
    h
}

/// A header value for one of `identity_headers`: any visible byte or obs-text (a client
/// name may hold any UTF-8), never a control byte.
pub fn identity_value(v: &str) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    http::HeaderValue::from_str(v)
}

/// The pipeline: what the request `view` may do under `reg`, and what was learnt of it in
/// `ctx`.
pub async fn run(guard: &Guard, reg: &Registry, view: &RequestView<'_>, ctx: &mut Decided) -> Next {
    // First, so every access line names the client, refused paths too.
    ctx.client_addr = view.client_addr;
    let target = match normalise(reg, view, ctx) {
        Ok(t) => t,
        Err(answer) => return Next::Refuse(answer),
    };
    if let Some(own) = reg.own_endpoint(target.decision_path()) {
        return Next::TokenEndpoint { target, own };
    }
    let d = decide(reg, view, &target).await;
    if d.is_forwarded() && !reg.rate_limits.is_empty() {
        if let Some((status, (headers, body))) = rate_limited(guard, reg, &d, ctx).await {
            ctx.target = Some(target);
            return Next::Refuse(Answer {
                status,
                headers,
                body,
            });
        }
    }
    decided(ctx, d.label());
    ctx.target = Some(target);
    carry_out(guard, d, ctx)
}

/// The request target normalised (SPEC §3), or the 400 that refuses it.
pub fn normalise(
    reg: &Registry,
    view: &RequestView<'_>,
    ctx: &mut Decided,
) -> Result<Target, Answer> {
    path::normalise_with(view.target, reg.path_parameters).map_err(|e| {
        decided(ctx, "bad_request");
        Answer::problem(
            400,
            "Bad Request",
            &format!("{e}; the request was not forwarded"),
            None,
        )
    })
}
/// The access decision (SPEC §3). When it waits for an identity provider's keys or its
/// answer about an opaque token, taken again once they are in.
pub async fn decide(reg: &Registry, view: &RequestView<'_>, target: &Target) -> Decision {
    let creds = decision::credentials(&view.authorization);
    let decide = || decision::decide(reg, view.method, target.decision_path(), creds);
    let d = decide();
    match d.awaits() {
        None => d,
        Some(Awaits::Keys(entry)) => {
            // Unknown `kid` or no keys yet: the issuer's cell joins or starts one refetch
            // (bounded in time and rate, SPEC §9), then the same pure decision runs again.
            let e = &reg.issuers[entry];
            crate::traces::waiting(
                "jwks fetch",
                || issuer_attribute(e),
                |_| false,
                e.keys.refetch(std::time::Instant::now()),
            )
            .await;
            decide()
        }
        Some(Awaits::Introspection(entry)) => {
            // No answer remembered: one call (or the one in flight) asks the provider
            // (SPEC §16), then the same pure decision runs again on what it answered.
            let e = &reg.issuers[entry];
            let (decision::Credentials::Bearer(token), Some(i)) = (creds, &e.introspector) else {
                return d.unchecked();
            };
            let asked = crate::traces::waiting(
                "introspection",
                || issuer_attribute(e),
                |r| r.is_err(),
                i.check(token),
            );
            match asked.await {
                Ok(answer) => decision::decide_answered(
                    reg,
                    view.method,
                    target.decision_path(),
                    creds,
                    Some(&answer),
                ),
                Err(_) => d.unchecked(),
            }
        }
    }
}

fn issuer_attribute(e: &crate::registry::issuers::IssuerEntry) -> Vec<KeyValue> {
    vec![KeyValue::new("ords_guard.issuer", e.issuer.name.clone())]
}

/// SPEC §13: take the request from every limit that applies, or refuse it (429) when
/// one has no room: the status and answer to send then. Local limits first, then the
/// shared ones in one bounded round trip; when the store fails, `on_error` decides
/// (allow: forwarded, uncounted; deny: 503). A counted request's `RateLimit` field is
/// kept for its forwarded answer.
pub async fn rate_limited(
    guard: &Guard,
    reg: &Registry,
    d: &Decision,
    ctx: &mut Decided,
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
                let round_trip = crate::traces::waiting(
                    "redis rate limit",
                    || vec![KeyValue::new("db.system.name", "redis")],
                    |r| r.is_err(),
                    guard.shared_limits.take(&shared, store),
                );
                match round_trip.await {
                    Ok(reply) => outcome = applicable.with_shared(outcome, reply),
                    // Forwarded as if no limit counted it: no `RateLimit` that could
                    // mislead the client.
                    Err(_) if store.on_error == OnStoreError::Allow => {
                        return None;
                    }
                    Err(_) => {
                        applicable.give_back_local();
                        decided(ctx, "rate_limit_unavailable");
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
    decided(ctx, "rate_limited");
    guard
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

/// The decision carried out: forwarded (under `mode: report`, the refusal that was not
/// carried out counted), or refused.
pub fn carry_out(guard: &Guard, d: Decision, ctx: &mut Decided) -> Next {
    if let Decision::ReportOnly(refusal) = &d {
        // Forwarded as a public request; what was not enforced is counted and logged.
        report_only(guard, refusal, ctx);
    }
    if d.is_forwarded() {
        ctx.decision = Some(d);
        return Next::Forward;
    }
    Next::Refuse(refusal(&d, ctx))
}

/// A refusal's answer: its problem document and `WWW-Authenticate` challenge; who and which
/// privilege are kept for the access line.
pub fn refusal(d: &Decision, ctx: &mut Decided) -> Answer {
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
    let (title, detail, www) = match d {
        // Forwarded (`carry_out`): nothing to answer. The access line reads who and which
        // privilege from the grant kept in `ctx`.
        Decision::ForwardPublic | Decision::ReportOnly(_) | Decision::Forward(_) => {
            ("", String::new(), None)
        }
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
        }
        | Decision::Introspect {
            privilege, issuer, ..
        } => {
            ctx.privilege = Some(privilege.clone());
            ctx.issuer = Some(issuer.clone());
            let introspected = !matches!(
                d,
                Decision::IssuerUnavailable {
                    introspected: false,
                    ..
                }
            );
            let why = if introspected {
                format!("identity provider `{issuer}` could not be asked about the token")
            } else {
                format!("the keys of identity provider `{issuer}` could not be fetched yet")
            };
            (
                "Service Unavailable",
                format!("{why}, so the token cannot be checked; retry shortly"),
                Some(("Retry-After", ISSUER_RETRY_AFTER.to_string())),
            )
        }
    };
    let status = d.status().unwrap_or(500);
    Answer::problem(status, title, &detail, www)
}

/// `mode: report` (SPEC §11): the refusal a privilege did not carry out, counted by
/// privilege and `would`, and kept for the access line.
pub fn report_only(guard: &Guard, refusal: &Decision, ctx: &mut Decided) {
    let privilege = refusal.privilege().unwrap_or_default();
    let would = refusal.would().unwrap_or_default();
    guard
        .metrics
        .report_only
        .with_label_values(&[privilege, would])
        .inc();
    ctx.privilege = Some(privilege.to_string());
    ctx.would = Some(would);
    if let Decision::InsufficientScope { client_id, .. } = refusal {
        ctx.client_id = Some(client_id.clone());
    }
}
