//! The pingora glue: reads request facts, runs the decision `pipeline` (or asks the token
//! `endpoint`), and carries out the answer. No access rule lives here.

use crate::access::decision::Decision;
use crate::oauth::endpoint::{self, Reply, TokenRequest};
use crate::patterns::path::Target;
use crate::registry::{Own, Registry};
use crate::serve::conn::clipper;
use crate::serve::conn::framing::ChunkError;
use crate::serve::pipeline::{self, Answer, Decided, Next, RequestView};
use crate::serve::state::Guard;
use crate::serve::upstream_slots::{Slot, UpstreamSlots};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// What the decision pipeline learnt: target, decision, who, which privilege, limits.
    decided: Decided,
    upstream_status: Option<u16>,
    /// The token endpoint's outcome label, for the access log.
    token_outcome: Option<&'static str>,
    /// Held while the request is at the upstream (`limits.max_upstream_connections`).
    upstream_slot: Option<Slot>,
    /// Its spans, with `tracing` set (SPEC §15).
    trace: Option<crate::traces::RequestTrace>,
    /// A WebSocket handshake (the connection guard passed its `Upgrade` on), read once.
    websocket: bool,
    /// Its `Sec-WebSocket-Accept` the upstream owes for the key ords-guard sent it in
    /// place of the client's (see `websocket_key`).
    websocket_accept: Option<String>,
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
    // HTTP/2 only, when asked (ALPN `h2` on TLS; prior knowledge on a plain connection),
    // with streams multiplexed on a connection as h2 means them to be.
    if up.protocol != crate::config::UpstreamProtocol::Http1 {
        o.set_http_version(2, 2);
        o.max_h2_streams = H2_UPSTREAM_STREAMS;
    }
    Ok(peer)
}

/// Requests at once on one HTTP/2 connection to the upstream (pingora's default is 1).
const H2_UPSTREAM_STREAMS: usize = 100;

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
    respond_answer(session, Answer::problem(status, title, detail, header)).await
}

/// Write a local answer: its problem document, with its headers; to a gRPC call, as gRPC
/// answers (SPEC §17).
async fn respond_answer(session: &mut Session, a: Answer) -> Result<()> {
    if super::grpc::is_call(&session.req_header().headers) {
        let head = super::grpc::trailers_only(&a, !session.is_http2())?;
        // As a task, so HTTP/2 ends the stream with the HEADERS frame (trailers-only):
        // `write_response_header` leaves an HTTP/2 stream open for a body.
        let task = pingora::protocols::http::HttpTask::Header(Box::new(head), true);
        session
            .downstream_session
            .response_duplex_vec(vec![task])
            .await?;
        return Ok(());
    }
    respond(
        session,
        a.status,
        "application/problem+json",
        &a.headers,
        a.body,
    )
    .await
}

/// Read the body of a denied request before answering, so the connection can be reused
/// (pingora closes it otherwise); large bodies are not worth reading: close instead.
pub(crate) async fn discard_body(session: &mut ServerSession) {
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
async fn read_limited_body(session: &mut ServerSession, max: usize) -> Result<Option<Vec<u8>>> {
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
pub(crate) fn is_identity_header(name: &str) -> bool {
    canonical(name).take(7).eq(b"x-ords-".iter().copied())
}

/// Headers with which a client asks a legacy backend to treat the request as another
/// method (Spring, Jersey, ASP.NET honour them): the decision was taken on the real method,
/// so they never pass.
pub(crate) fn is_method_override(name: &str) -> bool {
    [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ]
    .iter()
    .any(|o| canonical(name).eq(o.bytes()))
}

/// ords-guard's own endpoints (SPEC §4, §16), read from any door's session: the token
/// endpoint's body read within `limits.max_token_body_bytes`, argon2 on the endpoint's own
/// pool; the JWKS and the metadata at `path`.
pub(crate) async fn token_reply(
    guard: &Guard,
    session: &mut ServerSession,
    reg: &Registry,
    own: Own,
    path: &str,
    client_addr: Option<std::net::IpAddr>,
) -> Result<Reply> {
    let method = session.req_header().method.as_str().to_string();
    match own {
        Own::Token | Own::Introspect | Own::Revoke => {}
        Own::Jwks => {
            discard_body(session).await;
            return Ok(endpoint::jwks(reg, &method));
        }
        Own::Metadata => {
            discard_body(session).await;
            return Ok(endpoint::metadata(reg, &method, path));
        }
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
    let reply = match own {
        Own::Introspect => guard.endpoint.introspect(reg, &req).await,
        Own::Revoke => guard.endpoint.revoke(reg, &req).await,
        _ => guard.endpoint.handle(reg, &req).await,
    };
    Ok(match &reply.revoked {
        Some((client, what)) if reg.revocations_in_redis => {
            match guard.revocations.publish(client, what).await {
                Ok(()) => reply,
                // Revoked here; the other replicas may not know: the client is told to
                // try again (revoking again is harmless).
                Err(e) => {
                    tracing::error!(target: "ords_guard::token", client_id = %client, "revocation not shared: {e}");
                    // Counted as the endpoint counted it: `revoked` only when it was new.
                    let mut r = endpoint::revocation_not_shared();
                    r.outcome = reply.outcome;
                    r
                }
            }
        }
        _ => reply,
    })
}

/// A token endpoint reply counted (outcome, limits, tokens per client); who got a token is
/// kept for the access line.
pub(crate) fn count_token_reply(guard: &Guard, reply: &Reply, decided: &mut Decided) {
    guard.metrics.token_requests.inc(reply.outcome);
    if let Some(limit) = reply.limit {
        guard.metrics.limit_rejections.inc(limit);
    }
    if let Some(client) = &reply.issued_to {
        guard
            .metrics
            .tokens_issued
            .with_label_values(&[client])
            .inc();
        decided.client_id = Some(client.clone());
    }
}

impl Proxy {
    /// The token endpoint or the JWKS, which the pipeline recognised: served, counted, and
    /// answered.
    async fn serve_token_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reg: Arc<Registry>,
        target: Target,
        own: Own,
    ) -> Result<bool> {
        let path = target.decision_path().to_string();
        let reply = token_reply(
            &self.guard,
            session,
            &reg,
            own,
            &path,
            ctx.decided.client_addr,
        )
        .await?;
        count_token_reply(&self.guard, &reply, &mut ctx.decided);
        ctx.token_outcome = Some(reply.outcome);
        ctx.decided.target = Some(target);
        respond(
            session,
            reply.status,
            reply.content_type,
            &reply.headers,
            reply.body,
        )
        .await?;
        Ok(true)
    }
}

/// A WebSocket handshake goes upstream with a key ords-guard chose, not the client's: the
/// client could compute the accept for its own key, so only an upstream that answers the
/// guard's key has shown it read the handshake (an HTTP endpoint relaying a status and
/// headers the client chose could not). The accept the upstream owes.
fn websocket_key(req: &mut RequestHeader) -> Result<String> {
    use base64::Engine;
    let mut key = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    req.insert_header("Sec-WebSocket-Key", key.as_str())?;
    Ok(crate::serve::conn::head::websocket_accept(key.as_bytes()))
}

/// The upstream's 101 to a WebSocket handshake: when it carries the accept owed for the
/// guard's key, the client's own accept goes downstream (the connection then opens the
/// tunnel); otherwise it is left as it is, and the connection, not finding the client's
/// accept, opens nothing.
fn websocket_answer(
    session: &Session,
    resp: &mut ResponseHeader,
    owed: Option<&str>,
) -> Result<()> {
    let (Some(owed), Some(client_key)) =
        (owed, session.req_header().headers.get("sec-websocket-key"))
    else {
        return Ok(());
    };
    let answered = resp
        .headers
        .get("sec-websocket-accept")
        .is_some_and(|v| v.as_bytes() == owed.as_bytes());
    if answered {
        let accept = crate::serve::conn::head::websocket_accept(client_key.as_bytes());
        resp.insert_header("Sec-WebSocket-Accept", accept)?;
    } else {
        resp.remove_header("sec-websocket-accept");
    }
    Ok(())
}

/// A body that stalls ends by the request's deadline (408), not pingora's 60 s. A WebSocket
/// handshake's waits are its tunnel's: `client_idle` (pingora renews them whenever a byte
/// passes either way), not clipped to a deadline the tunnel outlives.
fn bound_downstream_waits(session: &mut Session, websocket: bool, tunnel_idle: Duration) {
    if websocket {
        session.set_read_timeout(Some(tunnel_idle));
        session.set_write_timeout(Some(tunnel_idle));
        return;
    }
    let wait = clipper()(DOWNSTREAM_READ);
    session.set_read_timeout(Some(wait));
    session.set_write_timeout(Some(wait));
    // HTTP/2 reads take no read timeout: a refused request's body is drained within this.
    session.set_total_drain_timeout(Some(wait));
}

/// What the decision pipeline reads of the request: its method, target and `Authorization`
/// values, and the client's address.
fn request_view<'s>(session: &'s Session, reg: &Registry) -> RequestView<'s> {
    let h = session.req_header();
    RequestView {
        method: h.method.as_str(),
        target: h.raw_path(),
        authorization: pipeline::authorizations(&h.headers),
        client_addr: client_addr(session, reg),
    }
}

/// A refusal answered: the body read first (or the connection closed), then the answer.
async fn refuse(session: &mut Session, answer: Answer) -> Result<bool> {
    discard_body(session).await;
    respond_answer(session, answer).await?;
    Ok(true)
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
            decided: Decided::default(),
            upstream_status: None,
            token_outcome: None,
            upstream_slot: None,
            trace: None,
            websocket: false,
            websocket_accept: None,
        }
    }

    /// No downstream modules: pingora's default adds a (disabled) compression module that
    /// still inspects every response.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let reg = self.guard.registry();
        ctx.websocket = session.is_upgrade_req();
        bound_downstream_waits(session, ctx.websocket, reg.limits.client_idle);
        ctx.trace = self.guard.traces.server(&session.req_header().headers);
        ctx.registry = Some(reg.clone());
        let view = request_view(session, &reg);
        let parent = ctx.trace.as_ref().and_then(|t| t.parent());
        let run = pipeline::run(&self.guard, &reg, &view, &mut ctx.decided);
        let next = crate::traces::scoped(parent, run).await;
        if let Some(label) = ctx.decided.label {
            self.guard.metrics.requests.inc(label);
        }
        match next {
            Next::Forward => Ok(false),
            Next::TokenEndpoint { target, own } => {
                self.serve_token_endpoint(session, ctx, reg, target, own)
                    .await
            }
            Next::Refuse(answer) => refuse(session, answer).await,
        }
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
        if ctx.websocket {
            // The upstream's reads and writes in a WebSocket tunnel: see bound_downstream_waits.
            let idle = Some(reg.limits.client_idle);
            (peer.options.read_timeout, peer.options.write_timeout) = (idle, idle);
        }
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
        let target = ctx.decided.target.as_ref().expect("set in request_filter");
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
        if let Some(Decision::Forward(g)) = &ctx.decided.decision {
            req.remove_header(&http::header::AUTHORIZATION);
            for (name, v) in pipeline::identity_headers(g) {
                let v = pipeline::identity_value(&v)
                    .map_err(|e| Error::because(ErrorType::InternalError, name, e))?;
                req.insert_header(name, v)?;
            }
        }
        if ctx.websocket {
            ctx.websocket_accept = Some(websocket_key(req)?);
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
        if let Some(up) = ctx.registry.as_ref().and_then(|r| r.upstream.as_ref()) {
            super::propagate_trace(req, ctx.trace.as_mut(), &up.addr)?;
        }
        // HTTP/2 names the host in `:authority` (pingora 400s a differing `Host`).
        let head = session.req_header();
        let host = match head.headers.get(http::header::HOST) {
            Some(h) => Some(h.clone()),
            None => head
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
        };
        if let Some(host) = host {
            req.insert_header("X-Forwarded-Host", host)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        if resp.status == 101 {
            websocket_answer(session, resp, ctx.websocket_accept.as_deref())?;
        }
        if let Some(trace) = &mut ctx.trace {
            trace.upstream_answered(resp.status.as_u16());
        }
        if let Some(v) = &ctx.decided.rate_limit {
            resp.insert_header("RateLimit", v.as_str())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        if session.was_upgraded() {
            // A WebSocket tunnel ended: idle for client_idle_ms (the read and write waits
            // in it), or a side went away. Its 101 is written; nothing is owed.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
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
        if ctx.decided.label.is_none() && ctx.decided.target.is_none() {
            // Failed before a decision: the request could not be read.
            pipeline::decided(&mut ctx.decided, "bad_request");
            self.guard.metrics.requests.inc("bad_request");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A WebSocket tunnel closed for want of a byte within client_idle_ms ends as pingora's
    /// read or write timeout: routine, not an error line (the access line says `error`).
    fn suppress_error_log(&self, session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        session.was_upgraded()
            && matches!(
                e.etype(),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout
            )
    }

    /// Used by pingora's own error lines: method and normalised path, never the query
    /// (which may carry credentials).
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let path = ctx
            .decided
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
        let d = &ctx.decided;
        let path = d.target.as_ref().map_or("-", |t| t.path.as_str());
        let method = session.req_header().method.as_str();
        crate::logs::access::write(|l| {
            l.str("method", method)
                .str("path", path)
                .str("protocol", super::protocol(session));
            if let Some(addr) = d.client_addr {
                l.display("client_addr", addr);
            }
            d.log(l, status, d.label.unwrap_or("token_endpoint"));
            l.float("latency_ms", latency.as_secs_f64() * 1000.0)
                .uint("upstream_status", ctx.upstream_status.unwrap_or(0).into())
                .str("token_outcome", ctx.token_outcome.unwrap_or("-"))
                .str("error", e.map(|e| e.etype().as_str()).unwrap_or("-"));
            // Formatted only for a line that is written.
            if let Some((trace_id, span_id)) = ctx.trace.as_ref().and_then(|t| t.ids()) {
                l.str("trace_id", &trace_id).str("span_id", &span_id);
            }
        });
        if let Some(trace) = ctx.trace.take() {
            let facts = pipeline::trace_facts(d, ctx.registry.as_deref(), method, status);
            trace.finish(&facts, e.map(|e| e.etype().as_str()));
        }
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
