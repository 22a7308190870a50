//! Everything that listens: the server's assembly and signals (`server`), the connection
//! guard in front of pingora (`conn`), the decision pipeline every door runs (`pipeline`)
//! and the doors: the ingress proxy (`proxy`), the authz check endpoints (`authz`, and Envoy's gRPC API in `authz_grpc`), the egress listeners and their token managers' tasks
//! (`egress`), the bound on requests at the upstream (`upstream_slots`), listener
//! certificates (`tls`), the admin port (`admin`) and its Prometheus metrics (`metrics`),
//! and the live state requests read with its reloads (`state`, `reload`).
//!
//! Layer: the doors' top, above `registry` and the doors that read it (`access`, `oauth`);
//! below only the commands (`cli`, `demo`).

pub mod admin;
pub mod authz;
pub mod authz_grpc;
pub mod conn;
pub mod egress;
pub mod grpc;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream_slots;

/// A forwarded request's trace context (SPEC §15), for the ingress and egress proxies alike:
/// its `traceparent` names the upstream exchange (a CLIENT span when recorded), and the
/// client's `tracestate` goes on only with the trace it belongs to.
pub fn propagate_trace(
    req: &mut pingora::http::RequestHeader,
    trace: Option<&mut crate::traces::RequestTrace>,
    upstream: &crate::resolve::Address,
) -> pingora::Result<()> {
    let Some(trace) = trace else {
        return Ok(());
    };
    let (host, port) = upstream.host_port();
    let p = trace.upstream(&host, port);
    req.insert_header("traceparent", p.traceparent)?;
    if !p.keep_tracestate {
        req.remove_header("tracestate");
    }
    Ok(())
}

/// The access log's `protocol` (SPEC §17): what the client spoke.
pub fn protocol(session: &pingora::protocols::http::ServerSession) -> &'static str {
    if session.is_http2() {
        "HTTP/2"
    } else if session.was_upgraded() {
        "WebSocket"
    } else {
        "HTTP/1.1"
    }
}
