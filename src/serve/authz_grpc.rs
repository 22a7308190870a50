//! Envoy's gRPC external authorization API (SPEC §14): `envoy.service.auth.v3.Authorization/
//! Check` over h2c on `authz.grpc_listen`. The same door as the HTTP check endpoints
//! (`authz`), with Envoy's protobuf types (`envoy-types`) served by tonic: the request's
//! `attributes.request.http` become the [`RequestView`] the proxy would have built, the same
//! pipeline decides, and the answer is Envoy's `CheckResponse`.

use crate::access::decision::Decision;
use crate::registry::Registry;
use crate::serve::authz::{
    account, checked, method_override, token_endpoint_as_written, Api, Check,
};
use crate::serve::pipeline::{self, Answer, Next, RequestView};
use crate::serve::state::Guard;
use crate::serve::tls;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::google::rpc;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// gRPC status codes of a refusal (SPEC §14): `INVALID_ARGUMENT`, `UNAUTHENTICATED`,
/// `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`.
fn grpc_code(status: u16) -> i32 {
    match status {
        400 => 3,
        401 => 16,
        403 => 7,
        429 => 8,
        503 => 14,
        _ => 2,
    }
}

/// A header for Envoy: `overwrite` on the request, replacing the client's copy
/// (`append: false`), or added to the client's answer.
fn header(key: &str, value: &str, overwrite: bool) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: overwrite.then_some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        append_action: if overwrite {
            HeaderAppendAction::OverwriteIfExistsOrAdd
        } else {
            HeaderAppendAction::AppendIfExistsOrAdd
        }
        .into(),
        keep_empty_value: false,
    }
}

fn status(code: i32, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code,
        message: message.to_string(),
        details: Vec::new(),
    })
}

/// A refusal as Envoy relays it: the status, headers and problem document, and the gRPC
/// code that goes with the status.
fn denied(a: Answer) -> CheckResponse {
    let code = grpc_code(a.status);
    CheckResponse {
        status: status(code, "refused"),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: a.status as i32,
            }),
            headers: std::iter::once(("content-type", "application/problem+json"))
                .chain(a.headers.iter().map(|(k, v)| (*k, v.as_str())))
                .map(|(k, v)| header(k, v, false))
                .collect(),
            body: String::from_utf8_lossy(&a.body).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

/// The original request's headers (lower-case names): Envoy sends `headers`, or `header_map`
/// when told to send raw values.
fn original_headers(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> HashMap<String, String> {
    if !http.headers.is_empty() {
        return http
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
    }
    http.header_map
        .iter()
        .flat_map(|m| &m.headers)
        .map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            (h.key.to_ascii_lowercase(), value)
        })
        .collect()
}

pub struct GrpcAuthz {
    pub guard: Arc<Guard>,
}

impl GrpcAuthz {
    /// Decide one check from a trusted peer.
    async fn decide(
        &self,
        reg: &Registry,
        req: &CheckRequest,
        peer: IpAddr,
        c: &mut Check,
    ) -> CheckResponse {
        let bad = |c: &mut Check, why: String| {
            pipeline::decided(&mut c.decided, "bad_request");
            denied(Answer::problem(
                400,
                "Bad Request",
                &format!("{why}; the check was not decided"),
                None,
            ))
        };
        let attributes = req.attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return bad(c, "the check carries no attributes.request.http".into());
        };
        let headers = original_headers(http);
        // The checks of the HTTP doors: no method override, a decidable method, a path.
        let original = method_override(headers.keys().map(String::as_str)).and_then(|()| {
            let path = Some(&http.path)
                .filter(|p| p.starts_with('/'))
                .map(|p| p.as_bytes().to_vec());
            checked(
                Some(http.method.clone()),
                "attributes.request.http.method",
                path,
                "attributes.request.http.path starting with `/`",
            )
        });
        let original = match original {
            Ok(o) => o,
            Err(why) => return bad(c, why),
        };
        c.method = original.method.clone();
        // The client: the source Envoy saw (its port, and any X-Forwarded-For, ignored).
        let client = attributes
            .and_then(|a| a.source.as_ref())
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok(),
                _ => None,
            })
            .map(|ip| ip.to_canonical())
            .unwrap_or(peer);
        let authorization: Vec<&[u8]> = headers
            .get("authorization")
            .map(|v| v.as_bytes())
            .into_iter()
            .collect();
        let view = RequestView {
            method: &original.method,
            target: &original.target,
            authorization,
            client_addr: Some(client),
        };
        match pipeline::run(&self.guard, reg, &view, &mut c.decided).await {
            Next::Forward => {
                let mut ok = OkHttpResponse::default();
                let mut set = Vec::new();
                if let Some(Decision::Forward(g)) = &c.decided.decision {
                    for (name, v) in pipeline::identity_headers(g) {
                        if pipeline::identity_value(&v).is_err() {
                            return denied(pipeline::unsendable_identity(&mut c.decided));
                        }
                        ok.headers.push(header(name, &v, true));
                        set.push(name.to_ascii_lowercase());
                    }
                    // The token stays here on protected paths, as the proxy removes it.
                    ok.headers_to_remove.push("authorization".into());
                }
                // Every other spelling of an identity header the client sent (Envoy removes
                // after it sets, so not the names set above).
                let mut remove: Vec<String> = headers
                    .keys()
                    .filter(|k| crate::serve::proxy::is_identity_header(k))
                    .filter(|k| !set.contains(k))
                    .cloned()
                    .collect();
                remove.sort();
                ok.headers_to_remove.extend(remove);
                if let Some(rl) = &c.decided.rate_limit {
                    ok.response_headers_to_add
                        .push(header("RateLimit", rl, false));
                }
                allowed(ok)
            }
            Next::TokenEndpoint { target, .. } => {
                match token_endpoint_as_written(target, &original.target, &mut c.decided) {
                    Ok(()) => allowed(OkHttpResponse::default()),
                    Err(a) => denied(a),
                }
            }
            Next::Refuse(a) => denied(a),
        }
    }
}

fn allowed(ok: OkHttpResponse) -> CheckResponse {
    CheckResponse {
        status: status(0, "ok"),
        http_response: Some(HttpResponse::OkResponse(ok)),
        dynamic_metadata: None,
    }
}

/// The HTTP status a `CheckResponse` stands for, for the access line.
fn http_status(r: &CheckResponse) -> u16 {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(403, |s| s.code as u16),
        _ => 200,
    }
}

#[tonic::async_trait]
impl Authorization for GrpcAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let peer = request.remote_addr().map(|a| a.ip().to_canonical());
        let reg = self.guard.registry();
        let trusted = match (&reg.authz, peer) {
            (Some(a), Some(ip)) => a.trusted_peers.trusts(ip),
            _ => false,
        };
        // The trace context of the call itself (Envoy's, when it traces), else, from a
        // trusted peer only, the original request's.
        let mut trace_headers = request.metadata().clone().into_headers();
        if trusted && !trace_headers.contains_key("traceparent") {
            let original = request
                .get_ref()
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref())
                .map(original_headers)
                .unwrap_or_default();
            for k in ["traceparent", "tracestate"] {
                if let Some(v) = original
                    .get(k)
                    .and_then(|v| http::HeaderValue::from_str(v).ok())
                {
                    trace_headers.insert(k, v);
                }
            }
        }
        let mut c = Check::new(
            &self.guard,
            Some(Api::ExtAuthzGrpc),
            "-".into(),
            &trace_headers,
        );
        let response = match peer {
            Some(ip) if trusted => {
                let parent = c.trace.as_ref().and_then(|t| t.parent());
                let decided = self.decide(&reg, request.get_ref(), ip, &mut c);
                crate::traces::scoped(parent, decided).await
            }
            // Never read: an untrusted peer's attributes could say anything.
            _ => {
                c.decided.client_addr = peer;
                c.decided.label = Some("untrusted_peer");
                denied(Answer::problem(
                    403,
                    "Forbidden",
                    "this peer is not in authz.trusted_peers: it may not ask for decisions",
                    None,
                ))
            }
        };
        account(&self.guard, &reg, c, http_status(&response));
        Ok(tonic::Response::new(response))
    }
}

/// The gRPC listener, bound at start like the others and served by tonic (h2c, or h2 over
/// TLS with `authz.tls`) on a pingora background service until shutdown.
pub struct GrpcService {
    pub guard: Arc<Guard>,
    listener: Mutex<Option<std::net::TcpListener>>,
    tls: bool,
}

impl GrpcService {
    pub fn bind(guard: Arc<Guard>, addr: SocketAddr, tls: bool) -> Result<GrpcService, String> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on authz.grpc_listen {addr}: {e}"))?;
        Ok(GrpcService {
            guard,
            listener: Mutex::new(Some(listener)),
            tls,
        })
    }
}

#[async_trait::async_trait]
impl BackgroundService for GrpcService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(target: "ords_guard", "authz.grpc_listen: {e}");
                return;
            }
        };
        // The HTTP listeners' connection guard does not stand in front of tonic: the same
        // limits, set on tonic itself (a check is one request head, never more).
        let l = self.guard.registry().limits.clone();
        let service = AuthorizationServer::new(GrpcAuthz {
            guard: self.guard.clone(),
        })
        .max_decoding_message_size((l.max_header_bytes * 2).max(64 * 1024));
        let router = tonic::transport::Server::builder()
            .timeout(l.request_total)
            .http2_max_header_list_size(l.max_header_bytes as u32)
            .max_concurrent_streams(100)
            .http2_max_pending_accept_reset_streams(Some(20))
            .add_service(service);
        let stopped = async move {
            let _ = shutdown.changed().await;
        };
        let served = if self.tls {
            let config = tls::server_config(self.guard.clone(), tls::Listener::Authz, b"h2");
            // Only `authz.trusted_peers` (of the current generation) get a handshake: anyone
            // else could hold every handshake's place and lock the proxy in front out.
            let guard = self.guard.clone();
            let admit = move |ip| {
                guard
                    .registry()
                    .authz
                    .as_ref()
                    .is_some_and(|a| a.trusted_peers.trusts(ip))
            };
            let incoming = tls::incoming(listener, config, l.client_header, admit);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        } else {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        };
        if let Err(e) = served {
            tracing::error!(target: "ords_guard", "authz.grpc_listen stopped: {e}");
        }
    }
}
