//! SPEC §14: the decision for a proxy already in the path. The real binary serves the HTTP
//! check endpoints on `authz.listen`; the tests ask them as each proxy asks (Traefik's and
//! Caddy's `X-Forwarded-*`, nginx's `X-Original-*`, Envoy's path prefix), and put Debian's
//! real nginx (`auth_request`) and Caddy (`forward_auth`) in front of them with a backend
//! behind, speaking to it as a client would.

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A guard with an ingress and the check endpoints; `trusted_peers` when given.
async fn start(backend: &Backend, trusted_peers: Option<&str>) -> (Guard, SocketAddr) {
    start_with(Options::new(backend), trusted_peers, "").await
}

async fn start_with(
    mut o: Options,
    trusted_peers: Option<&str>,
    more: &str,
) -> (Guard, SocketAddr) {
    let authz: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    o.extra = format!(
        "authz:\n  listen: \"{authz}\"\n{}",
        trusted_peers
            .map(|p| format!("  trusted_peers: {p}\n"))
            .unwrap_or_default()
    ) + more;
    let g = Guard::start(o).await;
    listening(authz, "the check endpoints").await;
    (g, authz)
}

async fn forward_auth(
    authz: SocketAddr,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut r = http_client()
        .get(format!("http://{authz}/authz/forward-auth"))
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Uri", uri)
        .header("X-Forwarded-Host", "api.example.com")
        .header("X-Forwarded-For", "203.0.113.7");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

fn header<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn forward_auth_answers_as_the_proxy_would_decide() {
    let backend = Backend::start().await;
    let (g, authz) = start(&backend, None).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    // Protected, no token: the §3 refusal, relayed as it is.
    let r = forward_auth(authz, "GET", "/example/1", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        Some("Bearer realm=\"ords-guard\"")
    );
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);

    // Protected, with the token: 200, empty, with the identity headers to copy.
    let r = forward_auth(authz, "GET", "/example/1?q=1", Some(&token)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ords-client-id"), Some("example-client"));
    assert_eq!(header(&r, "x-ords-client-name"), Some("Example Client"));
    assert_eq!(header(&r, "x-ords-roles"), Some("example_role"));
    assert_eq!(header(&r, "x-ords-privilege"), Some("example_priv"));
    assert!(r.bytes().await.unwrap().is_empty());

    // The method decides too: POST under /example/orders/ needs example_admin (403).
    let r = forward_auth(authz, "POST", "/example/orders/7", Some(&token)).await;
    assert_eq!(r.status(), 403);
    assert!(header(&r, "www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));

    // Public: 200 and no identity at all.
    let r = forward_auth(authz, "GET", "/public/x", None).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().keys().any(|k| k.as_str().starts_with("x-ords")));

    // Normalisation and its 400s, as for the proxy.
    let r = forward_auth(authz, "GET", "/example/../admin", Some(&token)).await;
    assert_eq!(r.status(), 400);
    let r = forward_auth(authz, "GET", "/example/%2e%2e/x", None).await;
    assert_eq!(r.status(), 400);

    // A check that does not say what it checks.
    let r = http_client()
        .get(format!("http://{authz}/authz/forward-auth"))
        .header("X-Forwarded-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("X-Forwarded-Uri"));

    // Counted by API and decision, not as proxy requests; one access line per check.
    g.wait_metric(
        "ords_guard_authz_checks_total{api=\"forward_auth\",decision=\"forwarded\"}",
        |v| v == 1.0,
    )
    .await;
    for (decision, n) in [
        ("unauthenticated", 1.0),
        ("forbidden", 1.0),
        ("forwarded_public", 1.0),
        ("bad_request", 3.0),
    ] {
        let sample = format!(
            "ords_guard_authz_checks_total{{api=\"forward_auth\",decision=\"{decision}\"}}"
        );
        assert_eq!(g.metric(&sample).await, n, "{sample}");
    }
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"forwarded\"}")
            .await,
        0.0
    );
    let log = g
        .output_with(r#""api":"forward_auth","method":"GET","path":"/example/1""#)
        .await;
    let line = log
        .lines()
        .find(|l| l.contains(r#""api":"forward_auth""#) && l.contains(r#""decision":"forwarded""#))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    // The check came from loopback, a trusted peer: its X-Forwarded-For names the client.
    assert_eq!(line["client_addr"], "203.0.113.7");
    assert_eq!(line["client_id"], "example-client");
    assert!(!log.contains(&token), "a token reached the log");
}

#[tokio::test]
async fn auth_request_and_ext_authz_read_the_original_request_their_way() {
    let backend = Backend::start().await;
    let (g, authz) = start(&backend, None).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let http = http_client();

    // nginx: X-Original-URI; the subrequest's own method without X-Original-Method.
    let r = http
        .get(format!("http://{authz}/authz/auth-request"))
        .header("X-Original-URI", "/example/1")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ords-privilege"), Some("example_priv"));
    let r = http
        .get(format!("http://{authz}/authz/auth-request"))
        .header("X-Original-Method", "DELETE")
        .header("X-Original-URL", "https://api.example.com/example/orders/1")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Envoy: the check's own method and target, without the prefix; the query stays.
    let r = http
        .post(format!("http://{authz}/authz/ext-authz/example/1?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("http://{authz}/authz/ext-authz/open/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ords-privilege"), Some("open_priv"));

    // The token endpoint and JWKS are served here too; a check of the token endpoint's
    // path is public (it authenticates its callers itself).
    let r = http
        .post(format!("http://{authz}/oauth/token"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("http://{authz}/oauth/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = forward_auth(authz, "POST", "/oauth/token", None).await;
    assert_eq!(r.status(), 200);
    // Written another way, the front proxy would route it to the backend: not waved through.
    for other in ["//oauth/token", "/oauth/%74oken"] {
        let r = forward_auth(authz, "POST", other, None).await;
        assert_eq!(r.status(), 400, "{other}");
    }

    for (api, decision, n) in [
        ("auth_request", "forwarded", 1.0),
        ("auth_request", "forbidden", 1.0),
        ("ext_authz_http", "unauthenticated", 1.0),
        ("ext_authz_http", "forwarded", 1.0),
    ] {
        let sample =
            format!("ords_guard_authz_checks_total{{api=\"{api}\",decision=\"{decision}\"}}");
        assert_eq!(g.metric(&sample).await, n, "{sample}");
    }
    assert_eq!(
        g.metric("ords_guard_token_requests_total{outcome=\"issued\"}")
            .await,
        2.0
    );
}

/// SPEC §13 and §11 through a check: a counted request's `RateLimit` on the 200, the 429
/// with its fields once the limit is spent; a `mode: report` privilege's refusal answered
/// 200 with no identity, and counted as report-only.
#[tokio::test]
async fn rate_limits_and_report_mode_answer_as_for_the_proxy() {
    let backend = Backend::start().await;
    let mut o = Options::new(&backend);
    o.registry = o.registry.replace(
        "  - name: open_priv\n    patterns: [\"/open/*\"]\n",
        "  - name: open_priv\n    patterns: [\"/open/*\"]\n  - name: reported\n    roles: [nobody_has_it]\n    patterns: [\"/reported/*\"]\n    mode: report\n",
    );
    let limits = "rate_limits:\n  - name: per_client\n    by: client\n    privileges: [example_priv]\n    rate: 1\n    per: hour\n    burst: 1\n";
    let (g, authz) = start_with(o, None, limits).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    let r = forward_auth(authz, "GET", "/example/1", Some(&token)).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit").unwrap().contains("per_client"));
    let r = forward_auth(authz, "GET", "/example/1", Some(&token)).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").is_some());
    assert!(header(&r, "ratelimit-policy")
        .unwrap()
        .contains("per_client"));
    assert!(header(&r, "ratelimit").is_some());
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));

    let r = forward_auth(authz, "GET", "/reported/x", None).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().keys().any(|k| k.as_str().starts_with("x-ords")));
    for (decision, n) in [("rate_limited", 1.0), ("report_only", 1.0)] {
        let sample = format!(
            "ords_guard_authz_checks_total{{api=\"forward_auth\",decision=\"{decision}\"}}"
        );
        assert_eq!(g.metric(&sample).await, n, "{sample}");
    }
}

#[tokio::test]
async fn an_untrusted_peer_is_refused_unread() {
    let backend = Backend::start().await;
    // Loopback (the test) is not among the trusted peers.
    let (g, authz) = start(&backend, Some("[10.0.0.0/8]")).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = forward_auth(authz, "GET", "/example/1", Some(&token)).await;
    assert_eq!(r.status(), 403);
    assert!(!r.headers().keys().any(|k| k.as_str().starts_with("x-ords")));
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("authz.trusted_peers"));
    assert_eq!(
        g.metric("ords_guard_authz_checks_total{api=\"forward_auth\",decision=\"untrusted_peer\"}")
            .await,
        1.0
    );
    // Its fields were never read: no path, and the peer, not X-Forwarded-For, as client.
    let log = g.output_with(r#""decision":"untrusted_peer""#).await;
    let line = log.lines().find(|l| l.contains("untrusted_peer")).unwrap();
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["path"], "-");
    assert_eq!(line["client_addr"], "127.0.0.1");
}

#[tokio::test]
async fn authz_alone_needs_no_ingress() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start().await;
    let (_, admin) = Guard::prepare(&dir, &Options::new(&backend));
    let authz: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(
        &config,
        format!(
            "admin_listen: \"{admin}\"\nauthz:\n  listen: \"{authz}\"\ntoken:\n  algorithm: ES256\n  signing_key_file: keys/signing.pem\n  key_id: k\n{}",
            registry_yaml()
        ),
    )
    .unwrap();
    // The check endpoints are the listener the harness waits for.
    let g = Guard::spawn(dir, config, authz, admin, "/").await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = forward_auth(authz, "GET", "/example/1", Some(&token)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ords-client-id"), Some("example-client"));
}

// ---- Real proxies in front ----

/// A process that is killed with the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Until `addr` accepts connections (bounded).
async fn listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The identity headers a client may try to spoof, in every spelling a backend may read as
/// one of them, and a method override a backend would obey.
const SPOOFED: [(&str, &str); 10] = [
    ("X-ORDS-Client-Id", "spoof-id"),
    ("x-ords-privilege", "spoof-privilege"),
    ("X-ORDS-Roles", "spoof-roles"),
    ("X-ORDS-Client-Name", "spoof-name"),
    ("X-ORDS-Issuer", "spoof-issuer"),
    ("X-ORDS-Subject", "spoof-subject"),
    ("X_ORDS_Client_Id", "spoof-underscore"),
    ("X-ORDS_Privilege", "spoof-mixed"),
    ("x_ords_roles", "spoof-lower-underscore"),
    ("X-HTTP-Method-Override", "DELETE"),
];

/// No spoofed value anywhere in what the backend received, and each identity header at
/// most once.
fn clean(seen: &Seen) {
    for (_, v) in &seen.headers {
        assert!(
            !v.starts_with("spoof-") && v != "DELETE",
            "a client-sent value reached the backend: {:?}",
            seen.headers
        );
    }
    for (k, _) in &seen.headers {
        let canonical = k.to_ascii_lowercase().replace('_', "-");
        assert!(
            !canonical.starts_with("x-http-method"),
            "{:?}",
            seen.headers
        );
        let n = seen
            .headers
            .iter()
            .filter(|(k2, _)| k2.to_ascii_lowercase().replace('_', "-") == canonical)
            .count();
        assert_eq!(n, 1, "{k} twice: {:?}", seen.headers);
    }
}

/// A client through `front`: the token from the token endpoint behind it; 401 without a
/// token; with one, the backend sees the identity the check answered and nothing the
/// client wrote; public paths pass with no identity at all.
async fn through(front: SocketAddr, backend: &Backend) {
    let http = http_client();
    let answer: serde_json::Value = http
        .post(format!("http://{front}/oauth/token"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["access_token"]
        .as_str()
        .expect("a token through the front");
    let spoofing =
        |r: reqwest::RequestBuilder| SPOOFED.iter().fold(r, |r, (k, v)| r.header(*k, *v));
    let before = backend.count();
    let r = spoofing(http.get(format!("http://{front}/example/1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers().get_all("www-authenticate").iter().count(),
        1,
        "{:?}",
        r.headers()
    );
    assert_eq!(
        backend.count(),
        before,
        "a refused request reached the backend"
    );

    let r = spoofing(http.get(format!("http://{front}/example/1?q=2")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/example/1?q=2");
    assert_eq!(seen.header("x-ords-client-id"), Some("example-client"));
    assert_eq!(seen.header("x-ords-client-name"), Some("Example Client"));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(seen.header("x-ords-roles"), Some("example_role"));
    assert_eq!(seen.header("x-ords-issuer"), None);
    assert_eq!(seen.header("x-ords-subject"), None);
    clean(&seen);

    let r = spoofing(http.get(format!("http://{front}/public/1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert!(!seen.has_header_like("x-ords"), "{:?}", seen.headers);
    clean(&seen);
}

#[tokio::test]
async fn nginx_auth_request_in_front() {
    let backend = Backend::start().await;
    let (g, authz) = start(&backend, None).await;
    let dir = tempfile::tempdir().unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let conf = format!(
        r#"
daemon off;
master_process off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{}}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen {front};
{location}
  }}
}}
"#,
        dir = dir.path().display(),
        location = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/src/guides/authz-nginx.conf")
        )
        .unwrap()
        .replace("127.0.0.1:9191", &authz.to_string())
        .replace("127.0.0.1:8081", &backend.addr.to_string()),
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let nginx = Command::new("nginx")
        .args(["-p"])
        .arg(dir.path())
        .args(["-c"])
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (run ./scripts/setup.sh)");
    let _nginx = Running(nginx);
    listening(front, "nginx").await;
    through(front, &backend).await;
    // The token request came through nginx: its X-Forwarded-For named the client.
    let log = g.output_with(r#""token_outcome":"issued""#).await;
    assert!(log.contains(r#""client_addr":"127.0.0.1""#), "{log}");
    assert_eq!(
        g.metric("ords_guard_authz_checks_total{api=\"auth_request\",decision=\"forwarded\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn caddy_forward_auth_in_front() {
    let backend = Backend::start().await;
    let (g, authz) = start(&backend, None).await;
    let dir = tempfile::tempdir().unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let site = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/guides/authz-Caddyfile"),
    )
    .unwrap()
    .replace("127.0.0.1:9191", &authz.to_string())
    .replace("127.0.0.1:8081", &backend.addr.to_string())
    .replace("http://api.example.com", &format!("http://{front}"));
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!("{{\n  admin off\n  auto_https off\n}}\n{site}"),
    )
    .unwrap();
    let caddy = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy (run ./scripts/setup.sh)");
    let _caddy = Running(caddy);
    listening(front, "caddy").await;
    through(front, &backend).await;
    assert_eq!(
        g.metric("ords_guard_authz_checks_total{api=\"forward_auth\",decision=\"forwarded\"}")
            .await,
        1.0
    );
}

// ---- Envoy's gRPC API ----

mod grpc {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{
        address, socket_address::PortSpecifier, Address, SocketAddress,
    };
    use envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Peer, Request},
        authorization_client::AuthorizationClient,
        check_response::HttpResponse,
        AttributeContext, CheckRequest, CheckResponse,
    };
    use std::collections::HashMap;

    /// A guard with an ingress, the HTTP check endpoints and the gRPC API.
    pub async fn start(backend: &Backend, trusted_peers: Option<&str>) -> (Guard, SocketAddr) {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let authz: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut o = Options::new(backend);
        o.extra = format!(
            "authz:\n  listen: \"{authz}\"\n  grpc_listen: \"{grpc}\"\n{}",
            trusted_peers
                .map(|p| format!("  trusted_peers: {p}\n"))
                .unwrap_or_default()
        );
        let g = Guard::start(o).await;
        listening(grpc, "the gRPC check endpoint").await;
        (g, grpc)
    }

    /// One Check, as Envoy sends it: the client's address as the source, the original
    /// request's method, path and headers.
    pub async fn check(
        grpc: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> CheckResponse {
        let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        client
            .check(request(method, path, headers))
            .await
            .unwrap()
            .into_inner()
    }

    /// The CheckRequest Envoy sends for one original request.
    pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
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
        let http = HttpRequest {
            method: method.into(),
            path: path.into(),
            host: "api.example.com".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(source),
                request: Some(Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    pub fn code(r: &CheckResponse) -> i32 {
        r.status.as_ref().map_or(0, |s| s.code)
    }

    /// A denied answer's HTTP status, headers and body.
    pub fn denied(r: &CheckResponse) -> (i32, Vec<(String, String)>, String) {
        match &r.http_response {
            Some(HttpResponse::DeniedResponse(d)) => (
                d.status.as_ref().unwrap().code,
                d.headers
                    .iter()
                    .map(|h| {
                        let h = h.header.as_ref().unwrap();
                        (h.key.to_ascii_lowercase(), h.value.clone())
                    })
                    .collect(),
                d.body.clone(),
            ),
            other => panic!("not denied: {other:?}"),
        }
    }

    /// An OK answer: the headers it sets (name, value, append), those it removes, and those
    /// it adds to the client's answer.
    pub type OkAnswer = (
        Vec<(String, String, Option<bool>)>,
        Vec<String>,
        Vec<String>,
    );

    #[allow(deprecated)]
    pub fn ok(r: &CheckResponse) -> OkAnswer {
        match &r.http_response {
            Some(HttpResponse::OkResponse(o)) => (
                o.headers
                    .iter()
                    .map(|h| {
                        let v = h.header.as_ref().unwrap();
                        (
                            v.key.clone(),
                            v.value.clone(),
                            h.append.as_ref().map(|b| b.value),
                        )
                    })
                    .collect(),
                o.headers_to_remove.clone(),
                o.response_headers_to_add
                    .iter()
                    .map(|h| h.header.as_ref().unwrap().key.clone())
                    .collect(),
            ),
            other => panic!("not OK: {other:?}"),
        }
    }
}

#[tokio::test]
async fn envoy_grpc_check_answers_as_the_proxy_would_decide() {
    let backend = Backend::start().await;
    let (g, grpc) = grpc::start(&backend, None).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let bearer = format!("Bearer {token}");

    // Protected, no token: UNAUTHENTICATED and the 401 Envoy relays.
    let r = grpc::check(grpc, "GET", "/example/1", &[]).await;
    assert_eq!(grpc::code(&r), 16);
    let (status, headers, body) = grpc::denied(&r);
    assert_eq!(status, 401);
    assert!(headers.contains(&(
        "www-authenticate".into(),
        "Bearer realm=\"ords-guard\"".into()
    )));
    assert!(headers.contains(&("content-type".into(), "application/problem+json".into())));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], 401);

    // With the token, and identity headers the client wrote in several spellings: OK, the
    // identity set with append false, the client's other spellings and the token removed.
    let r = grpc::check(
        grpc,
        "GET",
        "/example/1?q=1",
        &[
            ("authorization", &bearer),
            ("x-ords-client-id", "spoof"),
            ("x_ords_roles", "spoof"),
            ("x-ords-issuer", "spoof"),
        ],
    )
    .await;
    assert_eq!(grpc::code(&r), 0);
    let (set, removed, _) = grpc::ok(&r);
    assert!(set.contains(&(
        "X-ORDS-Client-Id".into(),
        "example-client".into(),
        Some(false)
    )));
    assert!(set.contains(&(
        "X-ORDS-Privilege".into(),
        "example_priv".into(),
        Some(false)
    )));
    assert!(set.contains(&("X-ORDS-Roles".into(), "example_role".into(), Some(false))));
    for r in ["authorization", "x_ords_roles", "x-ords-issuer"] {
        assert!(
            removed.contains(&r.to_string()),
            "{r} not removed: {removed:?}"
        );
    }
    assert!(
        !removed.contains(&"x-ords-client-id".to_string()),
        "{removed:?}"
    );

    // Public: OK with no identity, the client's copies removed, the Authorization kept.
    let r = grpc::check(grpc, "GET", "/public/x", &[("x-ords-client-id", "spoof")]).await;
    assert_eq!(grpc::code(&r), 0);
    let (set, removed, _) = grpc::ok(&r);
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(removed, ["x-ords-client-id"]);

    // The method decides; a method override or a target that is no path is refused.
    let r = grpc::check(
        grpc,
        "POST",
        "/example/orders/1",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(grpc::code(&r), 7);
    assert_eq!(grpc::denied(&r).0, 403);
    let r = grpc::check(
        grpc,
        "GET",
        "/example/1",
        &[
            ("authorization", &bearer),
            ("x-http-method-override", "DELETE"),
        ],
    )
    .await;
    assert_eq!((grpc::code(&r), grpc::denied(&r).0), (3, 400));
    let r = grpc::check(grpc, "GET", "/example/../x", &[]).await;
    assert_eq!((grpc::code(&r), grpc::denied(&r).0), (3, 400));

    g.wait_metric(
        "ords_guard_authz_checks_total{api=\"ext_authz_grpc\",decision=\"forwarded\"}",
        |v| v == 1.0,
    )
    .await;
    // The client is the source Envoy saw.
    let log = g.output_with(r#""api":"ext_authz_grpc""#).await;
    let line = log
        .lines()
        .find(|l| {
            l.contains(r#""api":"ext_authz_grpc""#) && l.contains(r#""decision":"forwarded""#)
        })
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["client_addr"], "203.0.113.9");
    assert!(!log.contains(&token), "a token reached the log");
}

#[tokio::test]
async fn envoy_grpc_from_an_untrusted_peer_is_refused_unread() {
    let backend = Backend::start().await;
    let (g, grpc) = grpc::start(&backend, Some("[10.0.0.0/8]")).await;
    let r = grpc::check(grpc, "GET", "/public/x", &[]).await;
    assert_eq!(grpc::code(&r), 7);
    assert_eq!(grpc::denied(&r).0, 403);
    assert_eq!(
        g.metric(
            "ords_guard_authz_checks_total{api=\"ext_authz_grpc\",decision=\"untrusted_peer\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn authz_tls_serves_both_check_listeners() {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

    let backend = Backend::start().await;
    let p = pki("authz");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, &p.cert).unwrap();
    std::fs::write(&key, &p.key).unwrap();
    let authz_tls = format!(
        "  tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
        cert.display(),
        key.display()
    );
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let more = format!("  grpc_listen: \"{grpc}\"\n{authz_tls}");
    let (g, authz) = start_with(Options::new(&backend), None, &more).await;
    listening(grpc, "the gRPC check endpoint").await;
    let https = client_trusting(Some(&p.ca));
    let port = authz.port();

    // The token endpoint and the checks, over HTTPS only.
    let r = https
        .post(format!("https://localhost:{port}/oauth/token"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let check = |token: Option<String>| {
        let mut r = https
            .get(format!("https://localhost:{port}/authz/forward-auth"))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/example/1");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = check(Some(token.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ords-client-id"), Some("example-client"));
    let r = check(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").is_some());
    let plain = http_client()
        .get(format!("http://{authz}/authz/forward-auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", "/public/x")
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain http was answered"
    );

    // Envoy's gRPC API over TLS (ALPN h2), the client trusting only the test CA.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&p.ca))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://localhost:{}", grpc.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthorizationClient::new(channel);
    let auth = format!("Bearer {token}");
    let r = client
        .check(grpc::request(
            "GET",
            "/example/1",
            &[("authorization", &auth)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc::code(&r), 0);
    let (set, _, _) = grpc::ok(&r);
    assert!(
        set.iter()
            .any(|(k, v, _)| k.eq_ignore_ascii_case("x-ords-client-id") && v == "example-client"),
        "{set:?}"
    );
    let r = client
        .check(grpc::request("GET", "/example/1", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((grpc::code(&r), grpc::denied(&r).0), (16, 401));
    // h2c on the TLS port is not served.
    let h2c = tokio::time::timeout(
        Duration::from_secs(10),
        AuthorizationClient::connect(format!("http://{grpc}")),
    )
    .await
    .expect("an h2c client is refused, not left hanging");
    if let Ok(mut c) = h2c {
        let checked = tokio::time::timeout(
            Duration::from_secs(10),
            c.check(grpc::request("GET", "/public/x", &[])),
        )
        .await
        .expect("an h2c check is refused, not left hanging");
        assert!(checked.is_err(), "h2c was answered on the TLS port");
    }

    // A reload cannot drop `authz.tls` from the bound listeners; they keep serving.
    let text = std::fs::read_to_string(&g.config).unwrap();
    std::fs::write(&g.config, text.replace(&authz_tls, "")).unwrap();
    eventually("the reload that would drop authz.tls to be refused", || {
        let out = g.output();
        async move { out.contains("key `authz.tls`: the listener serves TLS") }
    })
    .await;
    assert_eq!(check(Some(token)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_grpc_tls_listener_gives_no_handshake_to_untrusted_peers() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let backend = Backend::start().await;
    let p = pki("authz");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, &p.cert).unwrap();
    std::fs::write(&key, &p.key).unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let more = format!(
        "  grpc_listen: \"{grpc}\"\n  tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
        cert.display(),
        key.display()
    );
    let (_g, _) = start_with(Options::new(&backend), Some("[10.0.0.0/8]"), &more).await;
    listening(grpc, "the gRPC check endpoint").await;
    // Closed at accept: no handshake, so no TLS client gets a channel.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&p.ca))
        .domain_name("localhost");
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        Endpoint::from_shared(format!("https://localhost:{}", grpc.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect(),
    )
    .await
    .expect("refused at once, not left hanging");
    assert!(connected.is_err(), "an untrusted peer got a TLS channel");
}
