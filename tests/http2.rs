//! HTTP/2 from clients (SPEC §17, issue #35): h2c with prior knowledge beside HTTP/1.1 on
//! the plain proxy port, h2 by ALPN on a TLS one, `http2: false`, and every stream decided
//! and bounded like an HTTP/1.1 request. The clients are curl (nghttp2) and reqwest's
//! HTTP/2 (hyper, the `h2` crate).

mod common;

use common::*;
use std::process::Command;

/// curl with `args`; the status line's code, the HTTP version it spoke, and the body.
async fn curl(args: Vec<String>) -> (u16, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args(&args)
            .output()
            .expect("curl runs (scripts/setup.sh installs it)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut words = last.split(' ');
    let code = words.next().unwrap_or("0").parse().unwrap_or(0);
    let version = words.next().unwrap_or("").to_string();
    (code, version, body.to_string())
}

/// One request over a fresh h2c connection from the `h2` crate, which sends what it is
/// given; its status, or `None` when the stream was reset.
async fn raw_h2(
    proxy: std::net::SocketAddr,
    build: impl FnOnce(http::request::Builder) -> http::request::Builder,
) -> Option<u16> {
    raw_h2_head(proxy, build).await.map(|(status, _, _)| status)
}

/// As [`raw_h2`]: the status, the headers, and whether the HEADERS frame ended the stream
/// (a trailers-only answer).
async fn raw_h2_head(
    proxy: std::net::SocketAddr,
    build: impl FnOnce(http::request::Builder) -> http::request::Builder,
) -> Option<(u16, http::HeaderMap, bool)> {
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let request = build(http::Request::builder()).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("an answer or a reset within 10 s");
    response.ok().map(|r| {
        let ended = r.body().is_end_stream();
        (r.status().as_u16(), r.headers().clone(), ended)
    })
}

fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn h2c_and_http1_on_one_port_are_decided_alike() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let url = g.url("/example/1");

    // No token: 401 with its challenge, over HTTP/2, never forwarded.
    let (code, version, _) = curl(vec!["--http2-prior-knowledge".into(), url.clone()]).await;
    assert_eq!((code, version.as_str()), (401, "2"));
    assert_eq!(backend.count(), 0);

    // The token: forwarded (over HTTP/1.1 to this backend) with the identity headers, the
    // host from :authority.
    let (code, version, body) = curl(vec![
        "--http2-prior-knowledge".into(),
        "-H".into(),
        format!("Authorization: Bearer {token}"),
        url.clone(),
    ])
    .await;
    assert_eq!(
        (code, version.as_str(), body.as_str()),
        (200, "2", "backend ok")
    );
    let seen = backend.last();
    assert_eq!(seen.target, "/example/1");
    assert_eq!(seen.header("x-ords-client-id"), Some("example-client"));
    assert_eq!(seen.header("host"), Some(g.proxy.to_string().as_str()));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(g.proxy.to_string().as_str())
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

    // HTTP/1.1 on the same port, as before.
    let (code, version, _) = curl(vec!["--http1.1".into(), url.clone()]).await;
    assert_eq!((code, version.as_str()), (401, "1.1"));

    // The token endpoint over HTTP/2 too.
    let r = h2c_client()
        .post(g.url("/oauth/token"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 3600);

    // A path normalised as for HTTP/1.1: dot segments that climb out are refused 400.
    let (code, version, _) = curl(vec![
        "--http2-prior-knowledge".into(),
        "--path-as-is".into(),
        "-H".into(),
        format!("Authorization: Bearer {token}"),
        g.url("/example/../../etc/passwd"),
    ])
    .await;
    assert_eq!((code, version.as_str()), (400, "2"));

    // Counted and logged like any request, with the protocol.
    let log = g.output_with("\"protocol\":\"HTTP/2\"").await;
    assert!(log.contains("\"protocol\":\"HTTP/1.1\""), "{log}");
    assert!(
        g.metric("ords_guard_requests_total{decision=\"forwarded\"}")
            .await
            >= 1.0
    );
    assert!(
        g.metric("ords_guard_requests_total{decision=\"unauthenticated\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn h2_streams_get_the_guards_limits() {
    let backend = Backend::start().await;
    let o = Options {
        extra: "limits:\n  max_headers: 12\n  max_header_bytes: 2048\n".into(),
        timeouts: "  request_total_ms: 1000\n".into(),
        ..Options::new(&backend)
    };
    let g = Guard::start(o).await;
    let client = h2c_client();

    // 12 fields with the 4 pseudo-header fields: served. 13: 431 problem+json.
    let with = |n: usize| {
        let mut r = client.get(g.url("/public/x"));
        for i in 0..n {
            r = r.header(format!("x-extra-{i}"), "1");
        }
        r
    };
    // reqwest adds `accept: */*`: 4 pseudo + accept + 7 = 12.
    let r = with(7).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let forwarded = backend.count();
    let r = with(8).send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{:?}",
        r.headers()
    );
    assert!(r.text().await.unwrap().contains("limits.max_headers"));
    assert_eq!(backend.count(), forwarded);

    // A header list over max_header_bytes: h2's own 431, never forwarded.
    let r = client
        .get(g.url("/public/x"))
        .header("x-big", "a".repeat(3000))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        // h2 resets the stream after its 431; a client may see the reset first.
        Err(e) => assert!(
            format!("{e:?}").contains("PROTOCOL_ERROR") || e.is_request(),
            "{e:?}"
        ),
    }
    assert_eq!(backend.count(), forwarded);

    // A Host differing from :authority (curl and hyper never send one): 400, never
    // forwarded.
    let status = raw_h2(g.proxy, |r| {
        r.uri(format!("http://{}/public/x", g.proxy))
            .header("host", "elsewhere.example")
    })
    .await;
    assert_eq!(status, Some(400));
    assert_eq!(backend.count(), forwarded);

    // Content-Length spelled with `_`: 400, as the HTTP/1.1 reader answers it.
    let (status, head, _) = raw_h2_head(g.proxy, |r| {
        r.uri(format!("http://{}/public/x", g.proxy))
            .header("content_length", "5")
    })
    .await
    .expect("an answer");
    assert_eq!(status, 400);
    assert_eq!(head["content-type"], "application/problem+json");
    assert_eq!(backend.count(), forwarded);

    // Each stream has the request's deadline (timeouts.request_total_ms): the upstream
    // that answers after 5 s is given up on at 1 s, 504.
    let r = client.get(g.url("/public/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);

    // The connection serves the next stream.
    let r = client.get(g.url("/public/y")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().target, "/public/y");
    assert!(
        g.metric("ords_guard_limit_rejections_total{limit=\"max_headers\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn tls_offers_h2_by_alpn_and_http2_false_turns_it_off() {
    let backend = Backend::start().await;
    let pki = pki("h2");
    for http2 in [true, false] {
        let o = Options {
            extra: format!(
                "http2: {http2}\ntls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n"
            ),
            tls: Some(TlsClient {
                ca_pem: pki.ca.clone(),
                proxy: true,
                admin: false,
            }),
            ..Options::new(&backend)
        };
        let dir = tempfile::tempdir().unwrap();
        let (proxy, admin) = Guard::prepare(&dir, &o);
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/cert.pem"), &pki.cert).unwrap();
        std::fs::write(dir.path().join("tls/key.pem"), &pki.key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca).unwrap();
        let config = dir.path().join("ords-guard.yaml");
        std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
        let g = Guard::spawn_tls(dir, config, proxy, admin, "/", o.tls.as_ref()).await;

        let https = format!("https://localhost:{}/public/x", proxy.port());
        let resolve = format!("localhost:{}:127.0.0.1", proxy.port());
        let (code, version, body) = curl(vec![
            "--http2".into(),
            "--cacert".into(),
            ca.display().to_string(),
            "--resolve".into(),
            resolve,
            https,
        ])
        .await;
        assert_eq!(code, 200, "http2: {http2}");
        assert_eq!(body, "backend ok");
        assert_eq!(version, if http2 { "2" } else { "1.1" }, "http2: {http2}");
        assert_eq!(backend.last().header("x-forwarded-proto"), Some("https"));
        drop(g);
    }

    // Plain, with `http2: false`: the preface is no HTTP/1.1 request.
    let o = Options {
        extra: "http2: false\n".into(),
        ..Options::new(&backend)
    };
    let g = Guard::start(o).await;
    let before = backend.count();
    let (code, _, _) = curl(vec!["--http2-prior-knowledge".into(), g.url("/public/x")]).await;
    assert_ne!(code, 200);
    assert_eq!(backend.count(), before);
    let (code, version, _) = curl(vec![g.url("/public/x")]).await;
    assert_eq!((code, version.as_str()), (200, "1.1"));
}

/// A gRPC service as the backend: Envoy's Authorization API (its types are in the build),
/// answering each Check with what it was sent, or with PERMISSION_DENIED and a message of
/// its own when the check's path is `/deny`, so the call's status travels in trailers.
mod grpc_backend {
    use envoy_types::pb::envoy::service::auth::v3::{
        authorization_server::{Authorization, AuthorizationServer},
        CheckRequest, CheckResponse,
    };
    use envoy_types::pb::google::rpc::Status;

    struct Echo;

    #[tonic::async_trait]
    impl Authorization for Echo {
        async fn check(
            &self,
            request: tonic::Request<CheckRequest>,
        ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
            let client = request
                .metadata()
                .get("x-ords-client-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let path = request
                .get_ref()
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref())
                .map(|h| h.path.clone())
                .unwrap_or_default();
            if path == "/deny" {
                return Err(tonic::Status::permission_denied("the backend says no"));
            }
            Ok(tonic::Response::new(CheckResponse {
                status: Some(Status {
                    code: 0,
                    message: format!("backend saw {client}"),
                    details: vec![],
                }),
                ..Default::default()
            }))
        }
    }

    pub async fn start() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AuthorizationServer::new(Echo))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }
}

/// A gRPC client's call through ords-guard to a gRPC backend over h2c
/// (`upstream_protocol: h2c`): decided on the method path, answered with the backend's
/// trailers (its status and message).
#[tokio::test]
async fn grpc_calls_pass_to_an_h2c_upstream_with_their_trailers() {
    use envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Request},
        authorization_client::AuthorizationClient,
        AttributeContext, CheckRequest,
    };
    let backend = grpc_backend::start().await;
    let http_backend = Backend::start().await;
    let o = Options {
        upstream: format!("http://{backend}"),
        extra: "upstream_protocol: h2c\n".into(),
        registry: registry_yaml().replacen(
            "privileges:\n",
            "privileges:\n  - name: grpc_priv\n    roles: [example_role]\n    patterns: [\"/envoy.service.auth.v3.Authorization/*\"]\n",
            1,
        ),
        ..Options::new(&http_backend)
    };
    let g = Guard::start(o).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let call = |path: &str| {
        let mut r = tonic::Request::new(CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        path: path.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let mut client = AuthorizationClient::connect(format!("http://{}", g.proxy))
        .await
        .unwrap();
    let answer = client.check(call("/x")).await.unwrap().into_inner();
    assert_eq!(
        answer.status.unwrap().message,
        "backend saw example-client",
        "the identity headers reach the gRPC backend as metadata"
    );
    // The backend's error status and message arrive in its trailers.
    let refused = client.check(call("/deny")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(refused.message(), "the backend says no");
    // Without the token the call never reaches the backend.
    let mut anonymous = call("/x");
    anonymous.metadata_mut().remove("authorization");
    let refused = client.check(anonymous).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("send Authorization: Bearer"),
        "{refused:?}"
    );
    // As gRPC answers: HTTP 200, one HEADERS frame that ends the stream, grpc-status 16.
    let (status, head, ended) = raw_h2_head(g.proxy, |r| {
        r.method("POST")
            .uri(format!(
                "http://{}/envoy.service.auth.v3.Authorization/Check",
                g.proxy
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
    })
    .await
    .expect("an answer");
    assert_eq!((status, ended), (200, true));
    assert_eq!(head["grpc-status"], "16");
    assert_eq!(head["content-type"], "application/grpc");
    assert!(head["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // Counted as any refusal.
    assert!(
        g.metric("ords_guard_requests_total{decision=\"unauthenticated\"}")
            .await
            >= 2.0
    );

    // h2 with an http:// upstream (and h2c with https://) is a config error.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("listen: \"127.0.0.1:1\"\nadmin_listen: \"127.0.0.1:2\"\nupstream: \"http://{backend}\"\nupstream_protocol: h2\nprivileges: []\n"),
    )
    .unwrap();
    let out = ords_guard_cli(&["check"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("key `upstream_protocol`") && err.contains("use an https:// upstream"),
        "{err}"
    );
}

/// Malformed streams answered 400 by pingora (a `Host` that differs from `:authority`) are
/// answers, not stream errors: a connection sending many is served, none forwarded.
#[tokio::test]
async fn malformed_streams_are_answered_and_the_connection_served() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let tcp = tokio::net::TcpStream::connect(g.proxy).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    for i in 0..40 {
        client = client.ready().await.unwrap();
        let request = http::Request::get(format!("http://{}/public/x", g.proxy))
            .header("host", "elsewhere.example")
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 400, "stream {i}");
    }
    assert_eq!(backend.count(), 0);
    assert!(
        g.metric("ords_guard_requests_total{decision=\"bad_request\"}")
            .await
            >= 40.0
    );
    assert_eq!(
        g.metric("ords_guard_h2_abuse_total{kind=\"invalid_frames\"}")
            .await,
        0.0
    );
}

/// SPEC §17's windowed bounds, with frames by hand: 100 streams reset by the client, or
/// 100 streams the server resets for what the client sent (a connection-specific field,
/// the MadeYouReset family's cheapest form), within 10 s leave the connection served; the
/// 101st is answered with GOAWAY and counted. Another client is answered meanwhile.
#[tokio::test]
async fn resets_and_provoked_stream_errors_over_100_in_10_s_end_the_connection() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    const CANCEL: u32 = 0x8;

    // Each stream opened, then reset by the client.
    let mut resets = raw::connect(g.proxy).await;
    let open_and_reset = |id: u32| {
        let mut f = raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            id,
            &raw::block(0),
        );
        f.extend(raw::frame(raw::RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        f
    };
    let frames: Vec<u8> = (0..100).flat_map(|i| open_and_reset(2 * i + 1)).collect();
    resets.write_all(&frames).await.unwrap();
    let served = raw::frame(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        201,
        &raw::block(0),
    );
    resets.write_all(&served).await.unwrap();
    assert_eq!(
        raw::answer(&mut resets, 201).await,
        raw::Answer::Headers,
        "served after 100 resets"
    );
    resets.write_all(&open_and_reset(203)).await.unwrap();
    assert_eq!(raw::goaway(&mut resets).await, Some(ENHANCE_YOUR_CALM));
    g.wait_metric("ords_guard_h2_abuse_total{kind=\"rapid_reset\"}", |v| {
        v == 1.0
    })
    .await;

    // Each stream reset by the server: `connection` is not allowed in HTTP/2 (RFC 9113
    // §8.2.2), a malformed request and a stream error.
    let mut provoking = raw::connect(g.proxy).await;
    let malformed = |id: u32| {
        let mut block = raw::block(0);
        block.extend([0x00, 10]);
        block.extend(b"connection");
        block.extend([5]);
        block.extend(b"close");
        raw::frame(raw::HEADERS, raw::END_HEADERS | raw::END_STREAM, id, &block)
    };
    let frames: Vec<u8> = (0..100).flat_map(|i| malformed(2 * i + 1)).collect();
    provoking.write_all(&frames).await.unwrap();
    provoking.write_all(&served).await.unwrap();
    assert_eq!(
        raw::answer(&mut provoking, 201).await,
        raw::Answer::Headers,
        "served after 100 stream errors"
    );
    provoking.write_all(&malformed(203)).await.unwrap();
    assert_eq!(raw::goaway(&mut provoking).await, Some(ENHANCE_YOUR_CALM));
    g.wait_metric("ords_guard_h2_abuse_total{kind=\"invalid_frames\"}", |v| {
        v == 1.0
    })
    .await;

    let r = h2c_client().get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Each logged (just after it was counted), with its kind.
    for kind in ["rapid_reset", "invalid_frames"] {
        let log = g.output_with(&format!("\"kind\":\"{kind}\"")).await;
        assert!(log.contains("HTTP/2 connection closed for abuse"), "{log}");
    }
}

/// Raw HTTP/2 frames, for what no client library sends: the preface, frames by hand, and
/// the GOAWAY the server answers with.
mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), the H bit off.
    fn integer(mut n: usize, out: &mut Vec<u8>) {
        if n < 127 {
            out.push(n as u8);
            return;
        }
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// A GET of `/` whose header block carries one more field of `extra` bytes (a literal,
    /// not indexed, new name).
    pub fn block(extra: usize) -> Vec<u8> {
        // :method GET, :scheme http, :path /, then :authority as a literal.
        let mut b = vec![0x82, 0x86, 0x84, 0x41, 9];
        b.extend_from_slice(b"localhost");
        if extra > 0 {
            b.push(0x00);
            integer(5, &mut b);
            b.extend_from_slice(b"x-big");
            integer(extra, &mut b);
            b.extend(std::iter::repeat_n(b'a', extra));
        }
        b
    }

    /// A connection that has sent the preface and an empty SETTINGS.
    pub async fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        s
    }

    /// How the server answered a stream.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Answer {
        Headers,
        Reset(u32),
        GoAway(u32),
        Closed,
    }

    /// The server's answer to stream `id`, reading frames for at most 10 s (a GOAWAY or a
    /// close ends the wait).
    pub async fn answer(s: &mut TcpStream, id: u32) -> Answer {
        let read = async {
            loop {
                let mut head = [0u8; 9];
                if s.read_exact(&mut head).await.is_err() {
                    return Answer::Closed;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                if s.read_exact(&mut payload).await.is_err() {
                    return Answer::Closed;
                }
                match head[3] {
                    0x7 if len >= 8 => {
                        return Answer::GoAway(u32::from_be_bytes(
                            payload[4..8].try_into().unwrap(),
                        ))
                    }
                    0x1 if stream == id => return Answer::Headers,
                    0x3 if stream == id => {
                        return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("an answer within 10 s")
    }

    /// The error code of the GOAWAY the server sends, reading frames for at most 10 s.
    pub async fn goaway(s: &mut TcpStream) -> Option<u32> {
        let read = async {
            loop {
                let mut head = [0u8; 9];
                s.read_exact(&mut head).await.ok()?;
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                s.read_exact(&mut payload).await.ok()?;
                if head[3] == 0x7 && len >= 8 {
                    return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("a GOAWAY or a close within 10 s")
    }
}

/// SPEC §17's header-block abuse, answered with GOAWAY, counted by kind, and without
/// effect on another client: CONTINUATION floods (CVE-2024-27316: more frames than `h2`'s
/// bound of 5 without END_HEADERS, or a continued block over `max_header_bytes`), and HPACK
/// abuse (a header list that decodes to over 4 times `max_header_bytes` from a few KiB, and
/// a dynamic-table size update above the 4,096 bytes announced).
#[tokio::test]
async fn continuation_floods_and_hpack_bombs_end_the_connection() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    const ENHANCE_YOUR_CALM: u32 = 0xb;

    let mut flood = raw::connect(g.proxy).await;
    let block = raw::block(0);
    let mut frames = raw::frame(raw::HEADERS, raw::END_STREAM, 1, &block[..2]);
    for i in 2..block.len() {
        frames.extend(raw::frame(raw::CONTINUATION, 0, 1, &block[i..i + 1]));
    }
    // 11 CONTINUATION frames, none with END_HEADERS (the block's last byte never comes).
    let _ = flood.write_all(&frames[..frames.len() - 10]).await;
    assert_eq!(raw::goaway(&mut flood).await, Some(ENHANCE_YOUR_CALM));

    // 80 KiB of header list (the default max_header_bytes is 16 KiB) in 16 KiB frames.
    let mut huge = raw::connect(g.proxy).await;
    let block = raw::block(80 * 1024);
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut frames = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let flags = if last { raw::END_HEADERS } else { 0 };
        frames.extend(if i == 0 {
            raw::frame(raw::HEADERS, flags | raw::END_STREAM, 1, c)
        } else {
            raw::frame(raw::CONTINUATION, flags, 1, c)
        });
    }
    let _ = huge.write_all(&frames).await;
    assert_eq!(raw::goaway(&mut huge).await, Some(ENHANCE_YOUR_CALM));

    g.wait_metric(
        "ords_guard_h2_abuse_total{kind=\"continuation_flood\"}",
        |v| v == 2.0,
    )
    .await;

    // An HPACK bomb: one 4,000-byte field put in the dynamic table, then referred to by
    // its index, one byte each, 20 times (84 KB decoded from 4 KB).
    let mut bomb = raw::connect(g.proxy).await;
    let mut block = raw::block(0);
    block.extend([0x40, 5]);
    block.extend(b"x-bom");
    block.extend([0x7f, 0xa1, 0x1e]); // 4000 = 127 + 3873 (0xa1 0x1e)
    block.extend(std::iter::repeat_n(b'b', 4000));
    block.extend(std::iter::repeat_n(0xbe, 20)); // indexed: 62, the newest entry
    let _ = bomb
        .write_all(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            1,
            &block,
        ))
        .await;
    assert_eq!(raw::goaway(&mut bomb).await, Some(ENHANCE_YOUR_CALM));

    // A table size update to 4,097 bytes, over the 4,096 announced.
    let mut resize = raw::connect(g.proxy).await;
    let mut block = vec![0x3f, 0xe2, 0x1f];
    block.extend(raw::block(0));
    let _ = resize
        .write_all(&raw::frame(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            1,
            &block,
        ))
        .await;
    assert!(raw::goaway(&mut resize).await.is_some(), "a GOAWAY");
    g.wait_metric("ords_guard_h2_abuse_total{kind=\"hpack\"}", |v| v == 2.0)
        .await;

    // None reached the backend; another client is answered.
    assert_eq!(backend.count(), 0);
    let r = h2c_client().get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
