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
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let request = build(http::Request::builder()).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("an answer or a reset within 10 s");
    response.ok().map(|r| r.status().as_u16())
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
