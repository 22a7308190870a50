//! The decision for a proxy already in the path (SPEC §14): the HTTP check endpoints on
//! `authz.listen`. A thin door over [`pipeline`]: each API's check request is turned into
//! the [`RequestView`] the proxy would have built for the original request, the same
//! pipeline decides it (normalisation and its 400s, the decision, identity providers' keys,
//! rate limits, report mode), and the answer goes back to the proxy in front instead of
//! being carried out here.
//!
//! Who may ask comes first: a check from a peer outside `authz.trusted_peers` is refused
//! with 403 before any of its fields is read, since anyone could write `X-Forwarded-Uri`
//! (oauth2-proxy trusted a client-written one: CVE-2026-40575).

use crate::registry::{Own, Registry};
use crate::serve::pipeline::{self, Answer, Decided, Next, RequestView};
use crate::serve::proxy::{count_token_reply, discard_body, token_reply};
use crate::serve::state::Guard;
use async_trait::async_trait;
use http::{HeaderMap, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The check endpoints' listener name in logs and the connections gauge.
pub const AUTHZ_LISTENER: &str = "authz";

const FORWARD_AUTH: &str = "/authz/forward-auth";
const AUTH_REQUEST: &str = "/authz/auth-request";
const EXT_AUTHZ: &str = "/authz/ext-authz";

pub struct Authz {
    pub guard: Arc<Guard>,
}

/// Which proxy's way of asking a check follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy, Skipper: `X-Forwarded-*`.
    ForwardAuth,
    /// nginx `auth_request`: `X-Original-*`.
    AuthRequest,
    /// Envoy `ext_authz` `http_service` with `path_prefix: /authz/ext-authz`.
    ExtAuthzHttp,
    /// Envoy `ext_authz` `grpc_service`: `envoy.service.auth.v3.Authorization/Check`.
    ExtAuthzGrpc,
}

impl Api {
    /// The `api` label of metrics and access lines.
    pub fn label(self) -> &'static str {
        match self {
            Api::ForwardAuth => "forward_auth",
            Api::AuthRequest => "auth_request",
            Api::ExtAuthzHttp => "ext_authz_http",
            Api::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}

/// The APIs served on `authz.listen` (Envoy's gRPC one has its own listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpApi {
    ForwardAuth,
    AuthRequest,
    ExtAuthz,
}

impl HttpApi {
    fn api(self) -> Api {
        match self {
            HttpApi::ForwardAuth => Api::ForwardAuth,
            HttpApi::AuthRequest => Api::AuthRequest,
            HttpApi::ExtAuthz => Api::ExtAuthzHttp,
        }
    }
}

/// What a request to `authz.listen` is.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Check(HttpApi),
    /// ords-guard's own endpoints (token, JWKS, metadata), served here as an ordinary
    /// backend the proxy routes those paths to.
    Token {
        own: Own,
    },
    NotFound,
}

/// The route of a check request by its own path (its query is ignored: Caddy keeps the
/// client's query on the check request).
fn route(reg: &Registry, path: &str) -> Route {
    match path {
        FORWARD_AUTH => Route::Check(HttpApi::ForwardAuth),
        AUTH_REQUEST => Route::Check(HttpApi::AuthRequest),
        _ if ext_authz_rest(path.as_bytes()).is_some() => Route::Check(HttpApi::ExtAuthz),
        _ => match reg.own_endpoint(path) {
            Some(own) => Route::Token { own },
            None => Route::NotFound,
        },
    }
}

/// The original target an ext_authz check carries: its own target without the prefix
/// (`/authz/ext-authz/ords/hr/x?q` is `/ords/hr/x?q`; the bare prefix is `/`).
fn ext_authz_rest(target: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let rest = target.strip_prefix(EXT_AUTHZ.as_bytes())?;
    match rest.first() {
        None => Some(b"/".as_slice().into()),
        Some(b'/') => Some(rest.into()),
        Some(b'?') => Some([b"/".as_slice(), rest].concat().into()),
        Some(_) => None,
    }
}

/// The original request a check describes: its method and its target as the client sent
/// it (origin-form, or absolute-form from `X-Original-URL`; normalised by the pipeline).
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    pub target: Vec<u8>,
}

/// One header's only value, as text; two of them are refused (which one would the proxy
/// in front have meant?).
fn one<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the check carries {name} twice"));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| format!("the check's {name} is not visible ASCII"))
}

/// The path and query of an absolute URL (`X-Original-URL`), or why it is none: the scheme,
/// `://`, an authority with none of the bytes that would end it early (`?`, `#`, `@`,
/// `\\`, space or control: nginx builds this URL from the client's `Host`, and
/// `api.example.com:?/admin` must not be read as the path `/` with the query `/admin`), and
/// a path that starts with `/`.
fn url_path(url: &str) -> Result<&str, String> {
    let bad = || format!("X-Original-URL `{url}` is not an absolute http(s) URL with a path");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad());
    }
    let slash = rest.find('/').ok_or_else(bad)?;
    let authority = &rest[..slash];
    if authority.is_empty()
        || authority
            .bytes()
            .any(|b| matches!(b, b'?' | b'#' | b'@' | b'\\') || b <= b' ' || b == 0x7f)
    {
        return Err(bad());
    }
    Ok(&rest[slash..])
}

/// An origin-form target from a header (`X-Forwarded-Uri`, `X-Original-URI`).
fn origin_form<'h>(name: &str, t: &'h str) -> Result<&'h str, String> {
    if t.starts_with('/') {
        Ok(t)
    } else {
        Err(format!(
            "{name} `{t}` is not a path: it must start with `/`"
        ))
    }
}

/// Methods are case-sensitive (RFC 9110 §9.1) and privileges name them in capitals: a
/// `delete` decided as some other method than DELETE could reach a backend that uppercases
/// it. CONNECT opens a tunnel the ingress never forwards either.
pub(crate) fn decidable_method(method: &str) -> Result<(), String> {
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
        || method == "CONNECT"
    {
        return Err("the original request's method is not one that is decided (capital letters, not CONNECT)".to_string());
    }
    Ok(())
}

/// A method override among the original request's header names: the decision is taken on
/// the real method, and the backend would run another one.
pub(crate) fn method_override<'n>(mut names: impl Iterator<Item = &'n str>) -> Result<(), String> {
    match names.find(|n| crate::serve::proxy::is_method_override(n)) {
        Some(name) => Err(format!(
            "the original request carries {name}, which would make the backend run another method than the one decided: the proxy in front must remove it"
        )),
        None => Ok(()),
    }
}

/// What every door holds of an original request before deciding it: a method, decidable,
/// and a target (`method_from`, `target_from` name where they were looked for).
pub(crate) fn checked(
    method: Option<String>,
    method_from: &str,
    target: Option<Vec<u8>>,
    target_from: &str,
) -> Result<Original, String> {
    let method = method.filter(|m| !m.is_empty()).ok_or_else(|| {
        format!("the check carries no {method_from}: the original request's method is unknown")
    })?;
    decidable_method(&method)?;
    let target = target.filter(|t| !t.is_empty()).ok_or_else(|| {
        format!("the check carries no {target_from}: the original request's target is unknown")
    })?;
    Ok(Original { method, target })
}

/// The original request from an HTTP check, or why it cannot be decided (400).
pub fn original(
    api: HttpApi,
    own_method: &str,
    own_target: &[u8],
    headers: &HeaderMap,
) -> Result<Original, String> {
    // The decision is taken on the real method: a check whose original request asks the
    // backend for another one is refused (the ingress removes these headers; a proxy in
    // front forwards them unless told not to, see the guide).
    method_override(headers.keys().map(|n| n.as_str()))?;
    match api {
        HttpApi::ForwardAuth => checked(
            one(headers, "x-forwarded-method")?.map(str::to_string),
            "X-Forwarded-Method",
            one(headers, "x-forwarded-uri")?
                .map(|t| origin_form("X-Forwarded-Uri", t).map(|t| t.as_bytes().to_vec()))
                .transpose()?,
            "X-Forwarded-Uri",
        ),
        HttpApi::AuthRequest => {
            let uri = one(headers, "x-original-uri")?
                .map(|t| origin_form("X-Original-URI", t))
                .transpose()?;
            let url = one(headers, "x-original-url")?.map(url_path).transpose()?;
            // Both: they must say the same, or a client's own X-Original-URI (which the
            // proxy passes on when it sets only the URL) would choose what is decided.
            if let (Some(uri), Some(url)) = (uri, url) {
                if uri != url {
                    return Err(format!(
                        "X-Original-URI `{uri}` and X-Original-URL's path `{url}` differ: one of them was not written by the proxy"
                    ));
                }
            }
            checked(
                Some(
                    one(headers, "x-original-method")?
                        .unwrap_or(own_method)
                        .to_string(),
                ),
                "X-Original-Method",
                uri.or(url).map(|t| t.as_bytes().to_vec()),
                "X-Original-URI or X-Original-URL",
            )
        }
        HttpApi::ExtAuthz => checked(
            Some(own_method.to_string()),
            "a method",
            ext_authz_rest(own_target).map(|t| t.into_owned()),
            "a target after /authz/ext-authz",
        ),
    }
}

/// A check of the token endpoint's or the JWKS's path: public, since the token endpoint
/// authenticates its callers itself (SPEC §14). Only as its own path is written: the proxy
/// in front routes exactly that path to ords-guard, and another spelling of it
/// (`//oauth/token`, `/oauth/%74oken`, `/oauth/token;x` under `path_parameters: strip`) would
/// go to the backend instead, waved through: 400.
pub(crate) fn token_endpoint_as_written(
    target: crate::patterns::path::Target,
    raw: &[u8],
    d: &mut Decided,
) -> Result<(), Answer> {
    let as_written = target.is_wire_form(raw);
    d.target = Some(target);
    if as_written {
        pipeline::decided(d, "forwarded_public");
        return Ok(());
    }
    pipeline::decided(d, "bad_request");
    Err(Answer::problem(
        400,
        "Bad Request",
        "the target is the token endpoint's path written another way; the proxy in front sends only its own spelling to the token endpoint, so this one is not decided as it",
        None,
    ))
}

/// An `application/problem+json` answer.
fn answer(a: Answer) -> Response<Vec<u8>> {
    let mut r = Response::builder()
        .status(a.status)
        .header("Content-Type", "application/problem+json")
        .header("Content-Length", a.body.len());
    for (k, v) in &a.headers {
        r = r.header(*k, v.as_str());
    }
    r.body(a.body).expect("problem answer")
}

/// What one check was, for its access line and metrics.
pub(crate) struct Check {
    pub(crate) started: Instant,
    pub(crate) api: Option<Api>,
    pub(crate) method: String,
    pub(crate) decided: Decided,
    pub(crate) token_outcome: Option<&'static str>,
    /// Its SERVER span, with `tracing` set (SPEC §15): a check is a request of its own.
    pub(crate) trace: Option<crate::traces::RequestTrace>,
}

impl Check {
    /// A check arrives; `headers` carry its own trace context.
    pub(crate) fn new(
        guard: &Guard,
        api: Option<Api>,
        method: String,
        headers: &http::HeaderMap,
    ) -> Check {
        Check {
            started: Instant::now(),
            api,
            method,
            decided: Decided::default(),
            token_outcome: None,
            trace: guard.traces.server(headers),
        }
    }
}

impl Authz {
    /// Decide one check from a trusted peer.
    async fn check(
        &self,
        session: &ServerSession,
        reg: &Registry,
        api: HttpApi,
        peer: IpAddr,
        c: &mut Check,
    ) -> Response<Vec<u8>> {
        let h = session.req_header();
        let original = match original(api, h.method.as_str(), h.raw_path(), &h.headers) {
            Ok(o) => o,
            Err(why) => {
                pipeline::decided(&mut c.decided, "bad_request");
                return answer(Answer::problem(
                    400,
                    "Bad Request",
                    &format!("{why}; the check was not decided"),
                    None,
                ));
            }
        };
        c.method = original.method.clone();
        let xff = h.headers.get_all("x-forwarded-for");
        let view = RequestView {
            method: &original.method,
            target: &original.target,
            authorization: pipeline::authorizations(&h.headers),
            // The peer is trusted through `authz.trusted_peers`, whatever
            // `trusted_proxies` says (SPEC §14).
            client_addr: Some(
                reg.trusted_proxies
                    .forwarded_by(peer, xff.iter().map(|v| v.as_bytes())),
            ),
        };
        let parent = c.trace.as_ref().and_then(|t| t.parent());
        let run = pipeline::run(&self.guard, reg, &view, &mut c.decided);
        match crate::traces::scoped(parent, run).await {
            Next::Forward => {
                let mut r = Response::builder().status(200).header("Content-Length", 0);
                if let Some(crate::access::decision::Decision::Forward(g)) = &c.decided.decision {
                    for (name, v) in pipeline::identity_headers(g) {
                        match pipeline::identity_value(&v) {
                            Ok(v) => r = r.header(name, v),
                            Err(_) => return answer(pipeline::unsendable_identity(&mut c.decided)),
                        }
                    }
                }
                if let Some(rl) = &c.decided.rate_limit {
                    r = r.header("RateLimit", rl.as_str());
                }
                // With `tracing`, the request the proxy in front forwards continues this
                // check's trace (nginx: `auth_request_set $tp $upstream_http_traceparent`).
                if let Some(t) = &c.trace {
                    r = r.header("traceparent", t.answer_traceparent());
                }
                r.body(Vec::new()).expect("check answer")
            }
            // The token endpoint authenticates its callers itself: public (SPEC §14).
            Next::TokenEndpoint { target, .. } => {
                match token_endpoint_as_written(target, &original.target, &mut c.decided) {
                    Ok(()) => Response::builder()
                        .status(200)
                        .header("Content-Length", 0)
                        .body(Vec::new())
                        .expect("check answer"),
                    Err(a) => answer(a),
                }
            }
            Next::Refuse(a) => answer(a),
        }
    }
}

/// The access line (SPEC §6, with `api`), the metrics and the span of one check.
pub(crate) fn account(guard: &Guard, reg: &Registry, mut c: Check, status: u16) {
    let latency = c.started.elapsed();
    let d = &c.decided;
    let api = c.api.map_or("-", Api::label);
    let decision = d.label.unwrap_or("token_endpoint");
    if c.api.is_some() {
        guard
            .metrics
            .authz_checks
            .with_label_values(&[api, decision])
            .inc();
        guard.metrics.authz_duration.observe(latency.as_secs_f64());
    }
    let path = d.target.as_ref().map_or("-", |t| t.path.as_str());
    crate::logs::access::write(|l| {
        // The check's own protocol (SPEC §17's `protocol`): Envoy's gRPC API is HTTP/2, the
        // HTTP check listener HTTP/1.1.
        let protocol = if c.api == Some(Api::ExtAuthzGrpc) {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        l.str("api", api)
            .str("method", &c.method)
            .str("path", path)
            .str("protocol", protocol);
        if let Some(addr) = d.client_addr {
            l.display("client_addr", addr);
        }
        d.log(l, status, decision);
        l.float("latency_ms", latency.as_secs_f64() * 1000.0)
            .str("token_outcome", c.token_outcome.unwrap_or("-"));
        // Formatted only for a line that is written.
        if let Some((trace_id, span_id)) = c.trace.as_ref().and_then(|t| t.ids()) {
            l.str("trace_id", &trace_id).str("span_id", &span_id);
        }
    });
    if let Some(trace) = c.trace.take() {
        let mut facts = pipeline::trace_facts(d, Some(reg), &c.method, status);
        facts.door = c.api.map(|a| ("ords_guard.api", a.label()));
        trace.finish(&facts, None);
    }
}

#[async_trait]
impl ServeHttp for Authz {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let reg = self.guard.registry();
        let h = session.req_header();
        let mut c = Check::new(&self.guard, None, h.method.as_str().to_string(), &h.headers);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        let path = session.req_header().uri.path().to_string();
        let route = route(&reg, &path);
        if let Route::Check(api) = route {
            c.api = Some(api.api());
        }
        let trusted = match (&reg.authz, peer) {
            (Some(a), Some(ip)) => a.trusted_peers.trusts(ip),
            _ => false,
        };
        let response = match (route, peer) {
            // Never read: an untrusted peer's fields could say anything.
            (_, Some(ip)) if !trusted => {
                c.decided.client_addr = Some(ip);
                c.decided.label = Some("untrusted_peer");
                session.set_keepalive(None);
                answer(Answer::problem(
                    403,
                    "Forbidden",
                    "this peer is not in authz.trusted_peers: it may not ask for decisions",
                    None,
                ))
            }
            (Route::Check(api), Some(ip)) => {
                discard_body(session).await;
                self.check(session, &reg, api, ip, &mut c).await
            }
            (Route::Token { own }, ip) => {
                // Behind the proxy in front every caller shares its address: the trusted
                // peer's X-Forwarded-For names the client, for throttling and the log.
                let ip = ip.map(|peer| {
                    let xff = session.req_header().headers.get_all("x-forwarded-for");
                    reg.trusted_proxies
                        .forwarded_by(peer, xff.iter().map(|v| v.as_bytes()))
                });
                c.decided.client_addr = ip;
                // Already in normal form (the route is by equality): for the log and span.
                c.decided.target = crate::patterns::path::normalise(path.as_bytes()).ok();
                match token_reply(&self.guard, session, &reg, own, &path, ip).await {
                    Ok(reply) => {
                        count_token_reply(&self.guard, &reply, &mut c.decided);
                        c.token_outcome = Some(reply.outcome);
                        let mut r = Response::builder()
                            .status(reply.status)
                            .header("Content-Type", reply.content_type)
                            .header("Content-Length", reply.body.len());
                        for (k, v) in &reply.headers {
                            r = r.header(*k, v.as_str());
                        }
                        r.body(reply.body).expect("token answer")
                    }
                    Err(_) => {
                        session.set_keepalive(None);
                        answer(Answer::problem(
                            400,
                            "Bad Request",
                            "the request body could not be read",
                            None,
                        ))
                    }
                }
            }
            (Route::NotFound, _) | (_, None) => {
                c.decided.label = Some("not_found");
                discard_body(session).await;
                answer(Answer::problem(
                    404,
                    "Not Found",
                    "the check endpoints are /authz/forward-auth, /authz/auth-request and /authz/ext-authz/...",
                    None,
                ))
            }
        };
        account(&self.guard, &reg, c, response.status().as_u16());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn orig(method: &str, target: &str) -> Original {
        Original {
            method: method.into(),
            target: target.as_bytes().to_vec(),
        }
    }

    #[test]
    fn each_api_reads_the_original_request_where_its_proxy_puts_it() {
        let fa = headers(&[
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/ords/hr/x?q=1"),
            ("X-Forwarded-Host", "api.example.com"),
        ]);
        assert_eq!(
            original(HttpApi::ForwardAuth, "GET", b"/authz/forward-auth", &fa),
            Ok(orig("POST", "/ords/hr/x?q=1"))
        );
        // nginx: the subrequest's own method when X-Original-Method is absent.
        let ar = headers(&[("X-Original-URI", "/ords/hr/x")]);
        assert_eq!(
            original(HttpApi::AuthRequest, "GET", b"/authz/auth-request", &ar),
            Ok(orig("GET", "/ords/hr/x"))
        );
        let url = headers(&[
            ("X-Original-Method", "DELETE"),
            ("X-Original-URL", "https://api.example.com/ords/hr/x?a"),
        ]);
        assert_eq!(
            original(HttpApi::AuthRequest, "GET", b"/authz/auth-request", &url),
            Ok(orig("DELETE", "/ords/hr/x?a"))
        );
        // Both, saying the same: fine.
        let both = headers(&[
            ("X-Original-URI", "/ords/hr/x?a"),
            ("X-Original-URL", "http://api.example.com:8080/ords/hr/x?a"),
        ]);
        assert_eq!(
            original(HttpApi::AuthRequest, "GET", b"/authz/auth-request", &both),
            Ok(orig("GET", "/ords/hr/x?a"))
        );
        for (own, want) in [
            ("/authz/ext-authz/ords/hr/x?q", "/ords/hr/x?q"),
            ("/authz/ext-authz", "/"),
            ("/authz/ext-authz?q", "/?q"),
        ] {
            assert_eq!(
                original(HttpApi::ExtAuthz, "PUT", own.as_bytes(), &HeaderMap::new()),
                Ok(orig("PUT", want)),
                "{own}"
            );
        }
        assert_eq!(ext_authz_rest(b"/authz/ext-authzx"), None);
    }

    #[test]
    fn a_check_without_method_or_target_or_with_two_is_refused() {
        for (api, pairs) in [
            (HttpApi::ForwardAuth, vec![("X-Forwarded-Uri", "/x")]),
            (HttpApi::ForwardAuth, vec![("X-Forwarded-Method", "GET")]),
            (
                HttpApi::ForwardAuth,
                vec![
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-Uri", "/public"),
                    ("X-Forwarded-Uri", "/private"),
                ],
            ),
            (
                HttpApi::ForwardAuth,
                vec![("X-Forwarded-Method", "G ET"), ("X-Forwarded-Uri", "/x")],
            ),
            (HttpApi::AuthRequest, vec![("X-Original-Method", "GET")]),
            // A client's own X-Original-URI beside the proxy's URL.
            (
                HttpApi::AuthRequest,
                vec![
                    ("X-Original-URL", "http://api.example.com/admin"),
                    ("X-Original-URI", "/public/x"),
                ],
            ),
            // nginx builds the URL from the client's Host: `:?` would move the path into
            // the query.
            (
                HttpApi::AuthRequest,
                vec![("X-Original-URL", "http://api.example.com:?/admin")],
            ),
            (
                HttpApi::AuthRequest,
                vec![("X-Original-URL", "http://user@api.example.com/admin")],
            ),
            (HttpApi::AuthRequest, vec![("X-Original-URL", "ftp://h/x")]),
            (HttpApi::AuthRequest, vec![("X-Original-URI", "admin")]),
            (
                HttpApi::ForwardAuth,
                vec![("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "x/../y")],
            ),
            // Methods as privileges name them; no tunnel.
            (
                HttpApi::ForwardAuth,
                vec![("X-Forwarded-Method", "delete"), ("X-Forwarded-Uri", "/x")],
            ),
            (
                HttpApi::ForwardAuth,
                vec![("X-Forwarded-Method", "CONNECT"), ("X-Forwarded-Uri", "/x")],
            ),
            // A method override the backend would obey.
            (
                HttpApi::ForwardAuth,
                vec![
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-Uri", "/x"),
                    ("X-HTTP-Method-Override", "DELETE"),
                ],
            ),
        ] {
            let h = headers(&pairs);
            assert!(original(api, "GET", b"/authz/x", &h).is_err(), "{pairs:?}");
        }
    }
}
