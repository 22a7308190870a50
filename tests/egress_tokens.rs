//! The egress token manager (SPEC §10) against a token server the test controls (hyper, on
//! loopback), which counts requests and can fail, hang, refuse or answer garbage: single
//! flight, renewal before expiry, backoff and recovery, the 401 rule, the secret file
//! re-read, and every bad answer a failure rather than a panic or a hang.

mod common;

use common::eventually;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ords_guard::egress::tokens::{AuthMethod, Failure, Request, Tokens};
use ords_guard::outbound::{self, Tls, Trust};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
enum Mode {
    /// A token `t<n>` (n counts requests) living this many seconds.
    Token(u64),
    Status(u16, &'static str),
    Body(Vec<u8>),
    Hang,
}

struct TokenServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    /// The Authorization header and the form of the last request.
    last: Arc<Mutex<(String, String)>>,
}

impl TokenServer {
    async fn start(mode: Mode) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new((String::new(), String::new())));
        let (m, h, l) = (mode.clone(), hits.clone(), last.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (m, h, l) = (m.clone(), h.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (m, h, l) = (m.clone(), h.clone(), l.clone());
                        async move {
                            let n = h.fetch_add(1, Ordering::AcqRel) + 1;
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let form = req.into_body().collect().await.unwrap().to_bytes();
                            *l.lock().unwrap() = (auth, String::from_utf8_lossy(&form).into());
                            let mode = m.lock().unwrap().clone();
                            let (status, body) = match mode {
                                Mode::Token(life) => (
                                    200,
                                    json!({"access_token": format!("t{n}"), "token_type": "bearer", "expires_in": life})
                                        .to_string()
                                        .into_bytes(),
                                ),
                                Mode::Status(s, b) => (s, b.as_bytes().to_vec()),
                                Mode::Body(b) => (200, b),
                                Mode::Hang => std::future::pending().await,
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        TokenServer {
            addr,
            mode,
            hits,
            last,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Acquire)
    }
}

/// Results the manager reported, by kind.
#[derive(Default)]
struct Seen {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
    invalid_client: AtomicUsize,
}

struct Setup {
    tokens: Arc<Tokens>,
    seen: Arc<Seen>,
    secret: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn manager(server: &TokenServer, auth: AuthMethod, refresh_before: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("orders.secret");
    std::fs::write(&secret, "first-secret\n").unwrap();
    let request = Request {
        egress: "orders".into(),
        token_url: format!("http://{}/token", server.addr),
        client_id: "orders-client".into(),
        secret_file: secret.clone(),
        auth,
        scope: Some("orders_read".into()),
        params: vec![("audience".into(), "https://orders.test".into())],
        refresh_before: Duration::from_secs(refresh_before),
    };
    let client = outbound::client(&Tls::trusting(Trust::System), Duration::from_secs(5)).unwrap();
    let tokens = Tokens::new(request, client);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(tokens.clone().run(move |r| match r {
        Ok(_) => {
            s.ok.fetch_add(1, Ordering::AcqRel);
        }
        Err(e) => {
            if matches!(e, Failure::Refused(r) if r.is_invalid_client()) {
                s.invalid_client.fetch_add(1, Ordering::AcqRel);
            }
            s.failures.lock().unwrap().push(e.to_string());
        }
    }));
    Setup {
        tokens,
        seen,
        secret,
        _dir: dir,
    }
}

#[tokio::test]
async fn fifty_cold_callers_cost_one_token_request() {
    let server = TokenServer::start(Mode::Token(3600)).await;
    let m = manager(&server, AuthMethod::Basic, 60);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let t = m.tokens.clone();
        calls.spawn(async move { t.get().await });
    }
    while let Some(r) = calls.join_next().await {
        assert_eq!(&*r.unwrap().unwrap().token, "t1");
    }
    assert_eq!(server.hits(), 1);
    // client_secret_basic with the secret file's content, less its newline; the form.
    let (auth, form) = server.last.lock().unwrap().clone();
    assert_eq!(auth, "Basic b3JkZXJzLWNsaWVudDpmaXJzdC1zZWNyZXQ="); // orders-client:first-secret
    assert_eq!(
        form,
        "grant_type=client_credentials&scope=orders_read&audience=https%3A%2F%2Forders.test"
    );
    let expires = m.tokens.expires().unwrap();
    assert!(expires > std::time::Instant::now() + Duration::from_secs(3500));
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires_and_a_401_evicts_only_the_current_one() {
    let server = TokenServer::start(Mode::Token(4)).await;
    // A 4 s token, 60 s margin: renewed at half its life, 2 s in.
    let m = manager(&server, AuthMethod::Post, 60);
    let first = m.tokens.get().await.unwrap();
    assert_eq!(&*first.token, "t1");
    eventually("the renewal", || async { server.hits() >= 2 }).await;
    eventually("the renewed token in use", || async {
        m.tokens.get().await.unwrap().generation > first.generation
    })
    .await;
    let (auth, form) = server.last.lock().unwrap().clone();
    assert_eq!(auth, "", "client_secret_post sends no Authorization");
    assert!(
        form.ends_with("&client_id=orders-client&client_secret=first-secret"),
        "{form}"
    );

    // Long-lived tokens from here; a 401 to the old token evicts nothing.
    server.set(Mode::Token(3600));
    eventually("a long token", || async {
        m.tokens.get().await.unwrap().life.expires
            > std::time::Instant::now() + Duration::from_secs(60)
    })
    .await;
    let current = m.tokens.get().await.unwrap();
    let hits = server.hits();
    m.tokens.rejected(&first);
    assert_eq!(m.tokens.get().await.unwrap().generation, current.generation);
    assert_eq!(server.hits(), hits);
    // A 401 to the current one: dropped, and the next caller gets a fresh token.
    m.tokens.rejected(&current);
    let fresh = m.tokens.get().await.unwrap();
    assert!(fresh.generation > current.generation);
    assert_eq!(server.hits(), hits + 1);
}

#[tokio::test]
async fn a_failing_endpoint_backs_off_serves_503_then_recovers_and_reads_the_new_secret() {
    let server = TokenServer::start(Mode::Status(503, "<html>down</html>")).await;
    let m = manager(&server, AuthMethod::Basic, 60);
    let err = m.tokens.get().await.unwrap_err();
    assert!(err.retry_after >= Duration::from_millis(500), "{err:?}");
    assert_eq!(
        server.hits(),
        1,
        "one request; the next waits for the backoff"
    );
    // Asked again at once: refused from the backoff, no request sent.
    assert!(m.tokens.get().await.is_err());
    assert_eq!(server.hits(), 1);
    assert!(
        m.seen.failures.lock().unwrap()[0].contains("answered 503, without an OAuth error body")
    );

    // invalid_client is reported as such.
    server.set(Mode::Status(401, r#"{"error":"invalid_client"}"#));
    eventually("an invalid_client failure", || async {
        m.seen.invalid_client.load(Ordering::Acquire) >= 1
    })
    .await;
    // The secret is rotated and the endpoint comes back: the next request uses the new one.
    std::fs::write(&m.secret, "second-secret\r\n").unwrap();
    server.set(Mode::Token(3600));
    eventually("a token after the backoff", || async {
        m.tokens.get().await.is_ok()
    })
    .await;
    // orders-client:second-secret (its CRLF dropped).
    assert_eq!(
        server.last.lock().unwrap().0,
        "Basic b3JkZXJzLWNsaWVudDpzZWNvbmQtc2VjcmV0"
    );
    assert!(m.seen.ok.load(Ordering::Acquire) >= 1);
}

#[tokio::test]
async fn bad_answers_are_failures_never_a_panic_or_a_token() {
    let big = format!(
        "{{\"access_token\":\"{}\",\"token_type\":\"bearer\"}}",
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(Mode, &str)> = vec![
        (
            Mode::Body(b"<html>login</html>".to_vec()),
            "not a JSON object",
        ),
        (
            Mode::Body(br#"{"token_type":"bearer"}"#.to_vec()),
            "without access_token",
        ),
        (
            Mode::Body(br#"{"access_token":"a","token_type":"mac"}"#.to_vec()),
            "other than bearer",
        ),
        (Mode::Body(big.into_bytes()), "over the 65536-byte limit"),
        (
            Mode::Status(400, r#"{"error":"invalid_scope"}"#),
            "error `invalid_scope`",
        ),
        (Mode::Hang, "no complete answer within 5000 ms"),
    ];
    for (mode, why) in cases {
        let server = TokenServer::start(mode.clone()).await;
        let m = manager(&server, AuthMethod::Basic, 60);
        assert!(m.tokens.get().await.is_err(), "{mode:?}");
        let failures = m.seen.failures.lock().unwrap().clone();
        assert!(
            failures.iter().any(|f| f.contains(why)),
            "{mode:?}: {failures:?}"
        );
        assert!(
            failures.iter().all(|f| !f.contains("first-secret")),
            "never the secret in a failure: {failures:?}"
        );
    }
}

/// `token_tls` takes `server_name` and `insecure_skip_verify` as the ingress's
/// `upstream_tls` (SPEC §10): a token endpoint reached by address whose certificate names
/// it otherwise, and one with a certificate nobody vouches for.
#[tokio::test]
async fn token_tls_server_name_and_insecure_skip_verify() {
    let pki = common::pki_for("idp", &["idp.test"]);
    let server = common::idp::JwksServer::start_tls(common::idp::Answer::Status(200), &pki).await;
    let url = server.url();
    let ca = rustls_pemfile::certs(&mut pki.ca.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let fetch = |tls: Tls| {
        let url = url.clone();
        async move {
            let client = outbound::client(&tls, Duration::from_secs(5)).unwrap();
            outbound::send(client.get(&url), 1024, Duration::from_secs(5))
                .await
                .map(|a| a.status)
        }
    };
    let with = |trust: Trust, server_name: Option<&str>, skip_verify: bool| Tls {
        trust,
        server_name: server_name.map(String::from),
        skip_verify,
    };
    // The certificate is for idp.test, the URL names 127.0.0.1.
    let e = fetch(with(Trust::Only(ca.clone()), None, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(
        fetch(with(Trust::Only(ca.clone()), Some("idp.test"), false)).await,
        Ok(200)
    );
    let e = fetch(with(Trust::Only(ca.clone()), Some("other.test"), false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // Nobody vouches for it: refused, unless verification is off.
    let e = fetch(with(Trust::System, None, false)).await.unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(fetch(with(Trust::System, None, true)).await, Ok(200));
    assert!(server.hits() >= 2);
}
