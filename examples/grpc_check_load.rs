//! A load client for unary gRPC calls, by `concurrency` tasks on one thread for `seconds`
//! (ghz is not on these machines). It prints what `bench/load.sh` reads from wrk: the
//! request count, req/s, the 99th percentile and the answers that were not OK. Two calls:
//!
//! - the gRPC check API (SPEC §14): Envoy's `Authorization/Check`, sent as Envoy sends it,
//!   for the original request `PATH` with `TOKEN` (the default);
//! - `GRPC_CALL=health`: `grpc.health.v1.Health/Check` with `TOKEN` as `authorization`
//!   metadata, for a gRPC service called directly or through ords-guard (SPEC §17).
//!
//! Usage: [GRPC_CALL=health] grpc_check_load HOST:PORT CONCURRENCY SECONDS [PATH] [TOKEN]
//! Loopback only, bounded in time.

use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context::{HttpRequest, Peer, Request},
    authorization_client::AuthorizationClient,
    AttributeContext, CheckRequest,
};
use std::time::{Duration, Instant};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// One kind of call, on one channel.
enum Caller {
    Check(AuthorizationClient<tonic::transport::Channel>, CheckRequest),
    Health(HealthClient<tonic::transport::Channel>, Option<String>),
}

impl Caller {
    /// One call; whether it was answered OK.
    async fn call(&mut self) -> bool {
        match self {
            Caller::Check(client, request) => match client.check(request.clone()).await {
                Ok(r) => r.into_inner().status.map_or(0, |s| s.code) == 0,
                Err(_) => false,
            },
            Caller::Health(client, token) => {
                let mut request = tonic::Request::new(HealthCheckRequest::default());
                if let Some(t) = token {
                    let value = format!("Bearer {t}").parse().expect("a token is ASCII");
                    request.metadata_mut().insert("authorization", value);
                }
                client.check(request).await.is_ok()
            }
        }
    }
}

/// Envoy multiplexes its checks over a few h2 connections to the authz cluster.
const CONNECTIONS: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: grpc_check_load HOST:PORT CONCURRENCY SECONDS [PATH] [TOKEN]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let concurrency: usize = args[2].parse().expect("CONCURRENCY is a number");
    let seconds: u64 = args[3].parse().expect("SECONDS is a number");
    let path = args.get(4).cloned().unwrap_or_else(|| "/example/1".into());
    let token = args.get(5).cloned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(addr, concurrency, seconds, path, token));
}

async fn run(addr: String, concurrency: usize, seconds: u64, path: String, token: Option<String>) {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS.min(concurrency) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("the gRPC service answers");
        channels.push(channel);
    }
    let request = check_request(&path, token.as_deref());
    let health = std::env::var("GRPC_CALL").is_ok_and(|c| c == "health");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let mut caller = if health {
                Caller::Health(HealthClient::new(channel), token.clone())
            } else {
                Caller::Check(AuthorizationClient::new(channel), request.clone())
            };
            tokio::spawn(async move {
                let (mut latencies, mut not_ok) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = caller.call().await;
                    latencies.push(t.elapsed().as_micros() as u64);
                    not_ok += u64::from(!ok);
                }
                (latencies, not_ok)
            })
        })
        .collect();
    let (mut latencies, mut not_ok) = (Vec::new(), 0);
    for t in tasks {
        let (l, n) = t.await.unwrap();
        latencies.extend(l);
        not_ok += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    // wrk's words, so the bench script reads both the same way.
    println!("  {} requests in {elapsed:.2}s", latencies.len());
    println!("     99%  {}us", p99);
    if not_ok > 0 {
        println!("  Non-2xx or 3xx responses: {not_ok}");
    }
    println!("Requests/sec: {:.2}", latencies.len() as f64 / elapsed);
}

/// One original request, as Envoy describes it: the client's address as the source.
fn check_request(path: &str, token: Option<&str>) -> CheckRequest {
    let source = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "203.0.113.9".into(),
                port_specifier: Some(PortSpecifier::PortValue(40000)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let mut headers = std::collections::HashMap::new();
    if let Some(t) = token {
        headers.insert("authorization".to_string(), format!("Bearer {t}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}
