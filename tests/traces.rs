//! SPEC §15: traces. The real binary exports to an OTLP/HTTP receiver that decodes the
//! official OpenTelemetry protobuf messages; the tests read the spans' names, kinds,
//! parent links, attributes and resource, the trace context the backend received, the
//! access log's ids, and scan every exported byte for secrets.

mod common;

use common::otlp::{Receiver, ANSWER_HANG, ANSWER_OK, ANSWER_UNAVAILABLE};
use common::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn traced(backend: &Backend, receiver: &Receiver, more: &str) -> Guard {
    let mut o = Options::new(backend);
    o.extra = format!(
        "tracing:\n  otlp_endpoint: \"{}\"\n  service_name: orders-guard\n{more}",
        receiver.endpoint()
    );
    Guard::start(o).await
}

/// GET `url` carrying `traceparent`.
async fn get_traced(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    traceparent: &str,
) -> reqwest::Response {
    http.get(url)
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap()
}

/// `traceparent` split into (version, trace id, parent id, flags).
fn parts(traceparent: &str) -> (String, String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    (p[0].into(), p[1].into(), p[2].into(), p[3].into())
}

#[tokio::test]
async fn a_protected_request_continues_the_callers_trace() {
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_OK).await;
    let g = traced(&backend, &receiver, "").await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    let r = g
        .http
        .get(g.url("/example/1?apikey=query-secret"))
        .bearer_auth(&token)
        // Flag bits other than sampled are ignored: 03 is a sampled parent.
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-03"))
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    let (version, trace_id, parent, flags) = parts(seen.header("traceparent").unwrap());
    assert_eq!(
        (version.as_str(), trace_id.as_str(), flags.as_str()),
        ("00", TRACE_ID, "01")
    );
    assert_ne!(
        parent, PARENT_ID,
        "the backend's parent is ords-guard's CLIENT span"
    );
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));

    let server = receiver
        .span("GET /example/*", |s| s.span.name == "GET /example/*")
        .await;
    assert_eq!(server.service, "orders-guard");
    assert_eq!(server.span.kind, 2, "SERVER");
    assert_eq!(
        (server.trace_id(), server.parent_id()),
        (TRACE_ID.to_string(), PARENT_ID.to_string())
    );
    for (k, v) in [
        ("http.request.method", "GET"),
        ("url.path", "/example/1"),
        ("http.route", "/example/*"),
        ("http.response.status_code", "200"),
        ("client.address", "127.0.0.1"),
        ("ords_guard.decision", "forwarded"),
        ("ords_guard.privilege", "example_priv"),
        ("ords_guard.client_id", "example-client"),
    ] {
        assert_eq!(server.attr(k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(server.attr("ords_guard.issuer"), None);
    assert_eq!(
        server.span.status.as_ref().map_or(0, |s| s.code),
        0,
        "UNSET"
    );

    let client = receiver
        .span("the upstream exchange", |s| s.span.kind == 3)
        .await;
    assert_eq!(client.trace_id(), TRACE_ID);
    assert_eq!(client.parent_id(), server.span_id());
    assert_eq!(client.span_id(), parent, "the backend's parent-id");
    assert_eq!(client.attr("server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        client.attr("server.port"),
        Some(backend.addr.port().to_string())
    );
    assert_eq!(
        client.attr("http.response.status_code").as_deref(),
        Some("200")
    );

    // The token request was a SERVER span of its own.
    let minted = receiver
        .span("POST oauth/token", |s| s.span.name == "POST oauth/token")
        .await;
    assert_eq!(
        minted.attr("ords_guard.decision").as_deref(),
        Some("token_endpoint")
    );
    assert_eq!(minted.attr("http.route"), None);

    // The access line of the recorded request names the SERVER span.
    let log = g
        .output_with(&format!("\"span_id\":\"{}\"", server.span_id()))
        .await;
    assert!(
        log.contains(&format!("\"trace_id\":\"{TRACE_ID}\"")),
        "{log}"
    );

    // A refusal: its privilege, no client; the route that decided it.
    let r = g.http.get(g.url("/example/2")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let refused = receiver
        .span("the 401", |s| {
            s.attr("url.path").as_deref() == Some("/example/2")
        })
        .await;
    assert_eq!(refused.span.name, "GET /example/*");
    assert_eq!(
        refused.attr("ords_guard.decision").as_deref(),
        Some("unauthenticated")
    );
    assert_eq!(
        refused.attr("ords_guard.privilege").as_deref(),
        Some("example_priv")
    );
    assert_eq!(refused.attr("ords_guard.client_id"), None);
    assert_eq!(
        refused.attr("http.response.status_code").as_deref(),
        Some("401")
    );
    // A public path: no route.
    let r = g.http.get(g.url("/public/x?q=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let public = receiver
        .span("GET public", |s| {
            s.attr("url.path").as_deref() == Some("/public/x")
        })
        .await;
    assert_eq!(public.span.name, "GET public");
    assert_eq!(public.attr("http.route"), None);

    // Nothing exported holds the token, the secret, an Authorization value or a query.
    let raw = receiver.raw();
    let text = String::from_utf8_lossy(&raw);
    for secret in [
        token.as_str(),
        EXAMPLE_SECRET,
        "query-secret",
        "apikey",
        "Bearer",
        "q=1",
    ] {
        assert!(!text.contains(secret), "{secret:?} was exported");
    }
    let export = receiver.exports.lock().unwrap()[0].clone();
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.content_type, "application/x-protobuf");
    assert!(g.metric("ords_guard_trace_spans_exported_total").await >= 5.0);
}

#[tokio::test]
async fn unsampled_parents_and_ratio_zero_are_propagated_not_exported() {
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_OK).await;
    let g = traced(&backend, &receiver, "  sample_ratio: 0\n").await;

    // A parent that is not sampled: followed, not recorded.
    let r = get_traced(
        &g.http,
        g.url("/public/1"),
        &format!("00-{TRACE_ID}-{PARENT_ID}-00"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, trace_id, parent, flags) = parts(backend.last().header("traceparent").unwrap());
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE_ID, "00"));
    assert_ne!(parent, PARENT_ID);

    // A malformed one (upper-case hex) starts a trace, sampled at 0; its tracestate goes.
    let r = g
        .http
        .get(g.url("/public/2"))
        .header(
            "traceparent",
            format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        )
        .header("tracestate", "vendor=stale")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    let (_, trace_id, _, flags) = parts(seen.header("traceparent").unwrap());
    assert_ne!(trace_id, TRACE_ID.to_lowercase());
    assert_eq!(flags, "00");
    assert_eq!(seen.header("tracestate"), None);

    // A sampled parent is recorded even at ratio 0: the bounded wait below sees it
    // exported, and nothing of the two requests before.
    let r = get_traced(
        &g.http,
        g.url("/public/3"),
        &format!("00-{TRACE_ID}-{PARENT_ID}-01"),
    )
    .await;
    assert_eq!(r.status(), 200);
    receiver
        .span("GET public", |s| {
            s.attr("url.path").as_deref() == Some("/public/3")
        })
        .await;
    let paths: Vec<_> = receiver
        .spans()
        .iter()
        .filter_map(|s| s.attr("url.path"))
        .collect();
    assert_eq!(
        paths,
        ["/public/3"],
        "only the sampled request was exported"
    );
    let log = g.output_with("\"path\":\"/public/2\"").await;
    let unsampled = log
        .lines()
        .find(|l| l.contains("\"path\":\"/public/2\""))
        .unwrap();
    assert!(!unsampled.contains("trace_id"), "{unsampled}");
}

#[tokio::test]
async fn without_tracing_trace_headers_pass_unchanged() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let r = g
        .http
        .get(g.url("/public/1"))
        .header("traceparent", &traceparent)
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.header("traceparent"), Some(traceparent.as_str()));
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));
    let log = g.output_with("\"path\":\"/public/1\"").await;
    assert!(!log.contains("trace_id"), "{log}");
}

#[tokio::test]
async fn a_collector_that_fails_or_hangs_costs_requests_nothing() {
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_UNAVAILABLE).await;
    let g = traced(&backend, &receiver, "").await;
    for i in 0..50 {
        let r = g
            .http
            .get(g.url(&format!("/public/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The batch went out within 5 s, was refused, and its spans were counted as dropped.
    g.wait_metric("ords_guard_trace_spans_dropped_total", |v| v >= 50.0)
        .await;
    assert_eq!(g.metric("ords_guard_trace_spans_exported_total").await, 0.0);

    // A collector that never answers: requests are still answered at once.
    receiver.answer(ANSWER_HANG);
    for i in 0..50 {
        let r = g
            .http
            .get(g.url(&format!("/public/h{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Memory stays flat however long the collector hangs: the queue holds at most 2,048
    // spans and the hung export one batch. 20,000 recorded requests (SPEC §15), 16 at a
    // time.
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", g.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss();
    let dropped = g.metric("ords_guard_trace_spans_dropped_total").await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (http, base) = (g.http.clone(), g.url("/public/m"));
            tokio::spawn(async move {
                for i in 0..20_000 / 16 {
                    let r = http.get(format!("{base}{t}-{i}")).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let grown_kib = rss().saturating_sub(before);
    assert!(
        grown_kib < 8 * 1024,
        "RSS grew {grown_kib} KiB with the collector hung"
    );
    // Beyond the queue's 2,048, the rest were dropped and counted, not held.
    g.wait_metric("ords_guard_trace_spans_dropped_total", |v| {
        v - dropped >= 2_000.0
    })
    .await;

    // Back to health: the next batches are accepted.
    receiver.answer(ANSWER_OK);
    g.wait_metric("ords_guard_trace_spans_exported_total", |v| v > 0.0)
        .await;
}

#[tokio::test]
async fn a_reload_applies_a_changed_tracing_section() {
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_OK).await;
    let second = Receiver::start(ANSWER_OK).await;
    let g = traced(&backend, &receiver, "").await;
    let r = g.http.get(g.url("/public/before")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    receiver
        .span("before the reload", |s| {
            s.attr("url.path").as_deref() == Some("/public/before")
        })
        .await;

    // Another collector and another name, with a headers file: applied without a restart.
    std::fs::write(
        g.config.with_file_name("otlp-headers"),
        "X-Tenant: orders\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&g.config).unwrap().replace(
        &format!(
            "otlp_endpoint: \"{}\"\n  service_name: orders-guard",
            receiver.endpoint()
        ),
        &format!(
            "otlp_endpoint: \"{}\"\n  service_name: renamed\n  headers_file: otlp-headers",
            second.endpoint()
        ),
    );
    let tmp = g.config.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    let reloads = "ords_guard_config_reloads_total{result=\"success\"}";
    let before = g.metric(reloads).await;
    std::fs::rename(&tmp, &g.config).unwrap();
    g.wait_metric(reloads, |v| v > before).await;

    let r = g.http.get(g.url("/public/after")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after = second
        .span("after the reload", |s| {
            s.attr("url.path").as_deref() == Some("/public/after")
        })
        .await;
    assert_eq!(after.service, "renamed");
    let export = second.exports.lock().unwrap()[0].clone();
    assert!(
        export
            .headers
            .iter()
            .any(|(k, v)| k == "x-tenant" && v == "orders"),
        "{:?}",
        export.headers
    );
    assert!(receiver
        .spans()
        .iter()
        .all(|s| s.attr("url.path").as_deref() != Some("/public/after")));
}

#[tokio::test]
async fn egress_and_authz_checks_are_server_spans_of_their_own() {
    use envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Request},
        authorization_client::AuthorizationClient,
        AttributeContext, CheckRequest,
    };
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_OK).await;
    let port = || -> std::net::SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, authz, grpc) = (port(), port(), port());
    let mut o = Options::new(&backend);
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    // A legacy caller's egress entry calls this guard's own ingress with a token from its
    // own token endpoint: one trace crosses both doors.
    o.extra = format!(
        "tracing:\n  otlp_endpoint: \"{}\"\nauthz:\n  listen: \"{authz}\"\n  grpc_listen: \"{grpc}\"\negress:\n  - name: orders\n    listen: \"{listen}\"\n    upstream: \"http://{proxy}\"\n    token_url: \"http://{proxy}/oauth/token\"\n    client_id: example-client\n    client_secret_file: orders.secret\n",
        receiver.endpoint()
    );
    std::fs::write(
        dir.path().join("orders.secret"),
        format!("{EXAMPLE_SECRET}\n"),
    )
    .unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;
    // The entry's first token may be fetched before the ingress listens: until it has one.
    eventually("the egress entry to hold a token", || {
        let http = g.http.clone();
        async move {
            let r = http.get(format!("http://{listen}/example/0")).send().await;
            matches!(r, Ok(r) if r.status() == 200)
        }
    })
    .await;

    let r = get_traced(
        &g.http,
        format!("http://{listen}/example/1?k=query-secret"),
        &format!("00-{TRACE_ID}-{PARENT_ID}-01"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let egress = receiver
        .span("the egress request", |s| s.parent_id() == PARENT_ID)
        .await;
    assert_eq!(
        (egress.span.kind, egress.span.name.as_str()),
        (2, "GET public")
    );
    assert_eq!(
        (egress.trace_id(), egress.parent_id()),
        (TRACE_ID.to_string(), PARENT_ID.to_string())
    );
    assert_eq!(egress.attr("ords_guard.egress").as_deref(), Some("orders"));
    assert_eq!(
        egress.attr("ords_guard.decision").as_deref(),
        Some("forwarded")
    );
    let egress_out = receiver
        .span("the egress exchange", |s| {
            s.span.kind == 3 && s.parent_id() == egress.span_id()
        })
        .await;
    assert_eq!(
        egress_out.attr("server.port"),
        Some(proxy.port().to_string())
    );
    // The ingress continued the egress's trace: its parent is the egress CLIENT span.
    let ingress = receiver
        .span("the ingress request", |s| {
            s.span.kind == 2 && s.parent_id() == egress_out.span_id()
        })
        .await;
    assert_eq!(ingress.span.name, "GET /example/*");
    assert_eq!(
        ingress.attr("ords_guard.client_id").as_deref(),
        Some("example-client")
    );
    let ingress_out = receiver
        .span("the backend exchange", |s| {
            s.span.kind == 3 && s.parent_id() == ingress.span_id()
        })
        .await;
    let (_, trace_id, parent, _) = parts(backend.last().header("traceparent").unwrap());
    assert_eq!(
        (trace_id, parent),
        (TRACE_ID.to_string(), ingress_out.span_id())
    );

    // A check is a SERVER span of its own, named by the original request's route.
    let check_parent = "1111111111111111";
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g
        .http
        .get(format!("http://{authz}/authz/forward-auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/example/7?k=query-secret")
        .header("traceparent", format!("00-{TRACE_ID}-{check_parent}-01"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let check = receiver
        .span("the forward-auth check", |s| s.parent_id() == check_parent)
        .await;
    assert_eq!(
        (check.span.kind, check.span.name.as_str()),
        (2, "GET /example/*")
    );
    assert_eq!(
        check.attr("ords_guard.api").as_deref(),
        Some("forward_auth")
    );
    assert_eq!(check.attr("url.path").as_deref(), Some("/example/7"));
    assert_eq!(
        check.attr("ords_guard.client_id").as_deref(),
        Some("example-client")
    );
    // The answer hands the proxy in front the trace to continue: the check as the parent.
    let (_, trace_id, parent, flags) = parts(r.headers()["traceparent"].to_str().unwrap());
    assert_eq!(
        (trace_id.as_str(), parent, flags.as_str()),
        (TRACE_ID, check.span_id(), "01")
    );

    // gRPC: Envoy's Check with the original request's trace context.
    let grpc_parent = "2222222222222222";
    let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let http = HttpRequest {
        method: "GET".into(),
        path: "/example/8".into(),
        headers: [(
            "traceparent".to_string(),
            format!("00-{TRACE_ID}-{grpc_parent}-01"),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let checked = client
        .check(CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.status.map(|s| s.code), Some(16), "no token: 401");
    let check = receiver
        .span("the gRPC check", |s| s.parent_id() == grpc_parent)
        .await;
    assert_eq!(check.span.name, "GET /example/*");
    assert_eq!(
        check.attr("ords_guard.api").as_deref(),
        Some("ext_authz_grpc")
    );
    assert_eq!(
        check.attr("ords_guard.decision").as_deref(),
        Some("unauthenticated")
    );

    let text = String::from_utf8_lossy(&receiver.raw()).into_owned();
    for secret in [token.as_str(), EXAMPLE_SECRET, "query-secret"] {
        assert!(!text.contains(secret), "{secret:?} was exported");
    }
}

#[tokio::test]
async fn a_shared_limits_redis_round_trip_is_a_child_of_the_request() {
    let redis = common::redis::Redis::start();
    let backend = Backend::start().await;
    let receiver = Receiver::start(ANSWER_OK).await;
    let limit = format!(
        "rate_limits:\n  - name: per_client\n    privileges: [example_priv]\n    rate: 1000\n    per: minute\n    store: redis\nrate_limit_store:\n  url: \"{}\"\n",
        redis.url()
    );
    let g = traced(&backend, &receiver, &limit).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g
        .http
        .get(g.url("/example/1"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let server = receiver
        .span("the request", |s| s.parent_id() == PARENT_ID)
        .await;
    let round_trip = receiver
        .span("the Redis round trip", |s| {
            s.span.name == "redis rate limit"
        })
        .await;
    assert_eq!(round_trip.span.kind, 3, "CLIENT");
    assert_eq!(round_trip.parent_id(), server.span_id());
    assert_eq!(round_trip.attr("db.system.name").as_deref(), Some("redis"));
    // The URL (and any password in it) is not an attribute.
    assert!(!String::from_utf8_lossy(&receiver.raw()).contains(&redis.url()));
}

/// A backend that continues the trace it is sent: a SERVER span of its own, child of the
/// `traceparent` ords-guard forwarded, recorded with OpenTelemetry's SDK.
async fn traced_backend(tracer: opentelemetry_sdk::trace::SdkTracer) -> std::net::SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tracer = tracer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
                            .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
                        let mut span = tracer
                            .span_builder("backend GET")
                            .with_kind(SpanKind::Server)
                            .start_with_context(&tracer, &parent);
                        span.end();
                        async {
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_traced_client_and_backend_hold_one_trace_through_ords_guard() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
    use ords_guard::traces::{export, Settings};
    let receiver = Receiver::start(ANSWER_OK).await;
    // The client and the backend trace with OpenTelemetry's SDK and OTLP exporter (the
    // same crates ords-guard uses), to the same collector.
    let sdk = |name: &str| {
        let settings = Settings {
            endpoint: format!("{}/v1/traces", receiver.endpoint()),
            sample_ratio: 1.0,
            service_name: name.into(),
            headers: Vec::new(),
        };
        export::provider(
            &settings,
            export::Counts::default(),
            &tokio::runtime::Handle::current(),
        )
        .unwrap()
    };
    let (client_sdk, backend_sdk) = (sdk("client"), sdk("backend"));
    let backend_addr = traced_backend(backend_sdk.tracer("backend")).await;
    let mut o = Options::new(&Backend::start().await);
    o.upstream = format!("http://{backend_addr}");
    o.extra = format!("tracing:\n  otlp_endpoint: \"{}\"\n", receiver.endpoint());
    let g = Guard::start(o).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    let tracer = client_sdk.tracer("client");
    let span = tracer
        .span_builder("client GET /example/1")
        .with_kind(SpanKind::Client)
        .start(&tracer);
    let cx = opentelemetry::Context::new().with_span(span);
    let mut headers = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&cx, &mut headers);
    let mut request = g.http.get(g.url("/example/1")).bearer_auth(&token);
    for (k, v) in &headers {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    cx.span().end();
    // Dropping the providers sends what they hold.
    drop(cx);
    drop((tracer, client_sdk, backend_sdk));

    let client = receiver
        .span("the client's", |s| s.service == "client")
        .await;
    let backend = receiver
        .span("the backend's", |s| s.service == "backend")
        .await;
    let server = receiver
        .span("ords-guard's SERVER span", |s| {
            s.service == "ords-guard" && s.parent_id() == client.span_id()
        })
        .await;
    let upstream = receiver
        .span("ords-guard's CLIENT span", |s| {
            s.span.kind == 3 && s.parent_id() == server.span_id()
        })
        .await;
    assert_eq!(backend.parent_id(), upstream.span_id());
    for s in [&server, &upstream, &backend] {
        assert_eq!(s.trace_id(), client.trace_id(), "one trace");
    }
    assert_eq!(server.span.name, "GET /example/*");
}
