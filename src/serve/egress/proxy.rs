//! An egress listener (SPEC §10): a legacy caller's plain HTTP request goes to the remote
//! API as it was sent, with `Authorization: Bearer <token>` from the entry's token manager,
//! `Host` the remote's, and hop-by-hop headers dropped. A 401 to the current token drops
//! it; an idempotent request (or one with `Idempotency-Key`) whose body was kept is then
//! sent once more with a fresh token, through pingora's own retry loop and retry buffer.

use crate::egress::retry::{may_retry, Sent, MAX_RETRY_BODY};
use crate::egress::tokens::Held;
use crate::registry::egress::EgressEntry;
use crate::registry::Registry;
use crate::serve::proxy::{discard_body, peer_for, respond_problem, InFlight};
use crate::serve::state::Guard;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use std::borrow::Cow;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

/// The retry signal: an error that pingora's loop retries, raised by a 401 we resend.
const RESEND: ErrorType = ErrorType::Custom("egress 401: resent with a new token");

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy-only ones SPEC §10 lists.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

pub struct EgressProxy {
    pub guard: Arc<Guard>,
    /// The entry this listener was bound for.
    pub name: String,
    /// Requests in flight, ingress and egress together: the drain waits for them.
    pub in_flight: Arc<AtomicUsize>,
}

pub struct Ctx {
    _in_flight: InFlight,
    start: Instant,
    registry: Option<Arc<Registry>>,
    entry: Option<usize>,
    held: Option<Held>,
    attempts: u8,
    /// Set while a 401 is being resent, for `error_while_proxy`.
    resending: bool,
    outcome: &'static str,
    upstream_status: Option<u16>,
    /// Its spans, with `tracing` set (SPEC §15).
    trace: Option<crate::traces::RequestTrace>,
}

/// The hop-by-hop headers of a message: the fixed ones (borrowed: no allocation per
/// request), and those its `Connection` names.
fn hop_by_hop(headers: &http::HeaderMap) -> Vec<Cow<'static, str>> {
    let named = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !HOP_BY_HOP.contains(&n.as_str()))
        .map(Cow::Owned);
    HOP_BY_HOP
        .iter()
        .map(|n| Cow::Borrowed(*n))
        .chain(named)
        .collect()
}

impl EgressProxy {
    fn entry<'r>(&self, ctx: &'r Ctx) -> Option<&'r EgressEntry> {
        Some(&ctx.registry.as_ref()?.egress[ctx.entry?])
    }
}

#[async_trait]
impl ProxyHttp for EgressProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _in_flight: InFlight::enter(&self.in_flight),
            start: Instant::now(),
            registry: None,
            entry: None,
            held: None,
            attempts: 0,
            resending: false,
            outcome: "forwarded",
            upstream_status: None,
            trace: None,
        }
    }

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.trace = self.guard.traces.server(&session.req_header().headers);
        let reg = self.guard.registry();
        let Some(idx) = reg.egress.iter().position(|e| e.name == self.name) else {
            ctx.outcome = "token_unavailable";
            discard_body(session).await;
            let detail = format!("egress `{}` is no longer in the config: restore it, or restart ords-guard to close this listener", self.name);
            respond_problem(session, 503, "Service Unavailable", &detail, None).await?;
            return Ok(true);
        };
        ctx.registry = Some(reg.clone());
        ctx.entry = Some(idx);
        let parent = ctx.trace.as_ref().and_then(|t| t.parent());
        match crate::traces::scoped(parent, reg.egress[idx].tokens.get()).await {
            Ok(h) => ctx.held = Some(h),
            Err(u) => {
                ctx.outcome = "token_unavailable";
                discard_body(session).await;
                let secs = u.retry_after.as_secs().max(1);
                let detail = format!("no token for egress `{}` could be had from its token endpoint; the request was not sent", self.name);
                respond_problem(
                    session,
                    503,
                    "Service Unavailable",
                    &detail,
                    Some(("Retry-After", secs.to_string())),
                )
                .await?;
                return Ok(true);
            }
        }
        // Kept so a 401 can be answered by sending the request again (SPEC §10: 64 KiB).
        session.enable_retry_buffering();
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        let entry = self
            .entry(ctx)
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        Ok(Box::new(peer_for(&entry.upstream).await?))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The fields apart (not `self.entry(ctx)`): the trace below is borrowed mutably.
        let entry = match (&ctx.registry, ctx.entry) {
            (Some(r), Some(i)) => &r.egress[i],
            _ => return Err(Error::new(ErrorType::InternalError)),
        };
        let held = ctx
            .held
            .as_ref()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        for n in hop_by_hop(&req.headers) {
            req.remove_header(n.as_ref());
        }
        req.remove_header(&http::header::AUTHORIZATION);
        req.insert_header(http::header::AUTHORIZATION, held.bearer.clone())?;
        req.insert_header(http::header::HOST, entry.authority.as_str())?;
        crate::serve::propagate_trace(req, ctx.trace.as_mut(), &entry.upstream.addr)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        if let Some(trace) = &mut ctx.trace {
            trace.upstream_answered(resp.status.as_u16());
        }
        for n in hop_by_hop(&resp.headers) {
            resp.remove_header(n.as_ref());
        }
        if resp.status != http::StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        let (Some(entry), Some(held)) = (self.entry(ctx), ctx.held.clone()) else {
            return Ok(());
        };
        entry.tokens.rejected(&held);
        let req = session.req_header();
        let sent = Sent {
            method: req.method.as_str(),
            idempotency_key: req.headers.contains_key("idempotency-key"),
            // pingora's retry buffer holds 64 KiB (MAX_RETRY_BODY) and says when it
            // overflowed; a declared length says it too for a body the remote answered
            // before it was all read.
            body_kept: !session.as_ref().retry_buffer_truncated()
                && req
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                    .is_none_or(|n| n <= MAX_RETRY_BODY),
        };
        if ctx.attempts > 1 || !may_retry(entry.retry, sent) {
            return Ok(());
        }
        let tokens = entry.tokens.clone();
        let Ok(fresh) = tokens.get().await else {
            // No new token: the caller gets the remote's 401.
            return Ok(());
        };
        ctx.held = Some(fresh);
        ctx.resending = true;
        ctx.outcome = "retried";
        let mut e = Error::explain(RESEND, "the remote API refused the token");
        e.set_retry(true);
        Err(e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut ctx.resending) && e.etype() == &RESEND {
            return e;
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let (code, title, detail) = match e.etype() {
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                (502, "Bad Gateway", "the remote API could not be reached")
            }
            ReadTimedout | WriteTimedout => (
                504,
                "Gateway Timeout",
                "the remote API did not answer in time",
            ),
            HTTPStatus(c) => (*c, "Error", "the request failed"),
            _ => (
                502,
                "Bad Gateway",
                "the remote API's answer could not be read",
            ),
        };
        ctx.outcome = "upstream_error";
        session.set_keepalive(None);
        let _ = respond_problem(session, code, title, detail, None).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        format!(
            "egress {} {} {}",
            self.name,
            session.req_header().method,
            session.req_header().uri.path()
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let latency = ctx.start.elapsed();
        self.guard
            .metrics
            .egress
            .requests
            .with_label_values(&[self.name.as_str(), ctx.outcome])
            .inc();
        // The path only: a query may carry credentials.
        let (method, path) = (
            session.req_header().method.as_str(),
            session.req_header().uri.path(),
        );
        crate::logs::access::write(|l| {
            l.str("egress", self.name.as_str())
                .str("method", method)
                .str("path", path)
                .str("protocol", crate::serve::protocol(session))
                .uint("status", status.into())
                .str("outcome", ctx.outcome)
                .float("latency_ms", latency.as_secs_f64() * 1000.0)
                .uint("upstream_status", ctx.upstream_status.unwrap_or(0).into())
                .str("error", e.map(|e| e.etype().as_str()).unwrap_or("-"));
            // Formatted only for a line that is written.
            if let Some((trace_id, span_id)) = ctx.trace.as_ref().and_then(|t| t.ids()) {
                l.str("trace_id", &trace_id).str("span_id", &span_id);
            }
        });
        if let Some(trace) = ctx.trace.take() {
            // No pattern decides here: the caller is trusted by where it stands (SPEC §10).
            let facts = crate::traces::Facts {
                method,
                path: Some(path),
                route: None,
                token_endpoint: false,
                status,
                client_addr: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip().to_canonical()),
                decision: ctx.outcome,
                privilege: None,
                client_id: None,
                issuer: None,
                door: Some(("ords_guard.egress", self.name.as_str())),
            };
            trace.finish(&facts, e.map(|e| e.etype().as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret-Hop , ".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        let names: Vec<String> = hop_by_hop(&h).into_iter().map(Cow::into_owned).collect();
        assert!(names.contains(&"x-secret-hop".to_string()));
        assert!(names.contains(&"proxy-authorization".to_string()));
        assert!(!names.contains(&"x-kept".to_string()));
        assert!(!names.iter().any(|n| n.is_empty()));
    }
}
