//! Opaque tokens checked at an identity provider's RFC 7662 endpoint (SPEC §16), through
//! the real binary: panva's oidc-provider issuing opaque tokens and answering for them, and
//! a counting provider in the test whose answer each token's prefix chooses (active,
//! inactive, garbage, huge, slow, held) — one call per token however many requests carry
//! it, answers remembered and decided afresh, 503 when a token cannot be checked, and the
//! calls bounded in concurrency and rate.

mod common;

use bytes::Bytes;
use common::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET, INTROSPECT_ID, INTROSPECT_SECRET};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const ISS: &str = "https://idp.test";
const SECRET: &str = "introspection-secret-0123456789";

/// The provider's record: calls per token, what the last call carried, calls in flight.
struct Calls {
    per_token: Mutex<HashMap<String, usize>>,
    last_auth: Mutex<Option<String>>,
    last_form: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// `held-*` calls wait for a permit.
    held: tokio::sync::Semaphore,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            per_token: Default::default(),
            last_auth: Default::default(),
            last_form: Default::default(),
            in_flight: Default::default(),
            most_in_flight: Default::default(),
            held: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Calls {
    fn of(&self, token: &str) -> usize {
        self.per_token
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.per_token.lock().unwrap().values().sum()
    }
}

/// The answer a token's prefix chooses.
fn answer(token: &str) -> (u16, Vec<u8>) {
    let active = |scope: &str| {
        serde_json::json!({"active": true, "client_id": "svc", "sub": "user-1", "scope": scope,
            "roles": ["example_role"], "iss": ISS, "exp": now() + 600, "token_type": "Bearer"})
        .to_string()
        .into_bytes()
    };
    // A JWT (SPEC §16: one naming the introspecting issuer is asked about too).
    if token.starts_with("eyJ") {
        return (200, active("example_priv"));
    }
    let prefix = token.split('-').next().unwrap_or_default();
    match prefix {
        "active" => (200, active("example_priv")),
        "inactive" => (200, br#"{"active": false}"#.to_vec()),
        "garbage" => (200, b"<html>not json</html>".to_vec()),
        "huge" => (
            200,
            format!(r#"{{"active": true, "pad": "{}"}}"#, "x".repeat(100 * 1024)).into_bytes(),
        ),
        "array" => (200, b"[{\"active\": true}]".to_vec()),
        "notbool" => (200, br#"{"active": "true", "sub": "u"}"#.to_vec()),
        "error" => (500, br#"{"active": true, "sub": "u"}"#.to_vec()),
        _ => (200, br#"{"active": false}"#.to_vec()),
    }
}

/// A counting RFC 7662 endpoint on a loopback port. `slow-*` never answers; `held-*`
/// answers active once [`Calls::held`] has a permit for it.
async fn provider() -> (SocketAddr, Arc<Calls>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Calls::default());
    let record = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let calls = record.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let calls = calls.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let form: Vec<(String, String)> = form_urlencoded::parse(&body)
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        let token = form
                            .iter()
                            .find(|(k, _)| k == "token")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        *calls.last_auth.lock().unwrap() = auth;
                        *calls.last_form.lock().unwrap() = form;
                        *calls
                            .per_token
                            .lock()
                            .unwrap()
                            .entry(token.clone())
                            .or_default() += 1;
                        let n = calls.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
                        calls.most_in_flight.fetch_max(n, Ordering::AcqRel);
                        if token.starts_with("slow-") {
                            std::future::pending::<()>().await;
                        }
                        let (status, body) = if token.starts_with("held-") {
                            calls.held.acquire().await.unwrap().forget();
                            answer("active")
                        } else {
                            answer(&token)
                        };
                        calls.in_flight.fetch_sub(1, Ordering::AcqRel);
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

/// The counting provider, a backend, and ords-guard in front of it whose `corp` issuer
/// introspects there as `ords-guard` (`more`: lines under `introspection:`).
async fn setup(more: &str) -> (Arc<Calls>, Backend, Guard, tempfile::TempDir) {
    let (addr, calls) = provider().await;
    let backend = Backend::start().await;
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("introspect.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let o = Options {
        extra: format!(
            "issuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    roles_claim: /roles\n    introspection:\n      url: \"http://{addr}/introspect\"\n      client_id: ords-guard\n      client_secret_file: \"{}\"\n{more}",
            secret_file.display()
        ),
        ..Options::new(&backend)
    };
    (calls, backend, Guard::start(o).await, files)
}

/// An unsigned JWT of `claims` (the introspecting entry never checks a signature).
fn jwt(claims: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"ES256","typ":"JWT","kid":"k"}"#),
        B64.encode(claims.to_string()),
        B64.encode([7u8; 64])
    )
}

fn introspections(result: &str) -> String {
    format!("ords_guard_introspections_total{{issuer=\"corp\",result=\"{result}\"}}")
}

#[tokio::test]
async fn opaque_tokens_of_oidc_provider_open_privileges_through_ords_guard() {
    let idp = OidcProvider::start_opaque();
    let backend = Backend::start().await;
    let url = format!("{}/token/introspection", idp.issuer);
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("introspect.secret");
    std::fs::write(&secret_file, INTROSPECT_SECRET).unwrap();
    let o = Options {
        extra: format!(
            "issuers:\n  - name: oidc\n    issuer: \"{iss}\"\n    audience: [orders-api]\n    roles_claim: /roles\n    introspection:\n      url: \"{url}\"\n      client_id: {INTROSPECT_ID}\n      client_secret_file: \"{}\"\n      auth_method: basic\n",
            secret_file.display(),
            iss = idp.issuer
        ),
        ..Options::new(&backend)
    };
    let g = Guard::start(o).await;

    // A real client's opaque token from the provider's token endpoint.
    let http = http_client();
    let got: serde_json::Value = http
        .post(format!("{}/token", idp.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "example_priv"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = got["access_token"].as_str().unwrap().to_string();
    assert_eq!(token.matches('.').count(), 0, "not opaque: {token}");

    let r = g.get_as("/example/employees/", &token).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = backend.last();
    assert_eq!(seen.header("x-ords-issuer"), Some("oidc"));
    assert_eq!(seen.header("x-ords-client-id"), Some(CLIENT_ID));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(seen.header("x-ords-roles"), Some("example_role"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(
        g.metric(&introspections("active").replace("corp", "oidc"))
            .await,
        1.0
    );

    // Remembered, and decided again: the write privilege wants a role it does not have.
    let r = g
        .http
        .post(g.url("/example/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        g.metric(&introspections("active").replace("corp", "oidc"))
            .await,
        1.0
    );
    assert_eq!(
        g.metric(&introspections("cached").replace("corp", "oidc"))
            .await,
        1.0
    );

    // A token the provider never issued: it says inactive, 401.
    let r = g
        .get_as("/example/employees/", "n0t-a-t0ken-of-theirs")
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(
        g.metric(&introspections("inactive").replace("corp", "oidc"))
            .await,
        1.0
    );
    assert!(!g.output().contains(&token), "the token reached the log");
}

#[tokio::test]
async fn one_call_per_token_remembered_and_decided_afresh() {
    let (calls, backend, g, _files) = setup("").await;

    // Twenty requests at once with one token held at the provider: one call.
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let http = g.http.clone();
            let url = g.url("/example/1");
            tokio::spawn(async move { http.get(url).bearer_auth("held-1").send().await.unwrap() })
        })
        .collect();
    eventually("the call to reach the provider", || async {
        calls.of("held-1") == 1
    })
    .await;
    calls.held.add_permits(1);
    for r in requests {
        assert_eq!(r.await.unwrap().status(), 200);
    }
    assert_eq!(calls.of("held-1"), 1);
    assert_eq!(backend.count(), 20);
    assert_eq!(backend.last().header("x-ords-client-id"), Some("svc"));
    assert_eq!(backend.last().header("x-ords-subject"), Some("user-1"));

    // The client authenticated with client_secret_basic, and sent the token in a form.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("ords-guard:{SECRET}")
        )
    );
    assert_eq!(
        calls.last_auth.lock().unwrap().as_deref(),
        Some(basic.as_str())
    );
    let form = calls.last_form.lock().unwrap().clone();
    assert!(
        form.contains(&("token".into(), "held-1".into())),
        "{form:?}"
    );
    assert!(!form.iter().any(|(k, _)| k == "client_secret"), "{form:?}");

    // Active and inactive answers are remembered.
    for _ in 0..3 {
        assert_eq!(g.get_as("/example/1", "active-1").await.status(), 200);
        assert_eq!(g.get_as("/example/1", "inactive-1").await.status(), 401);
    }
    assert_eq!((calls.of("active-1"), calls.of("inactive-1")), (1, 1));
    assert_eq!(g.metric(&introspections("active")).await, 2.0);
    assert_eq!(g.metric(&introspections("inactive")).await, 1.0);
    assert!(g.metric(&introspections("cached")).await >= 23.0);

    // The registry decides at every request, remembered answer or not: a reload that takes
    // example_role's privilege away refuses the token without asking again.
    let narrowed = registry_yaml().replace(
        "  - name: example_priv\n    roles: [example_role]",
        "  - name: example_read\n    roles: [example_other]",
    );
    g.reload_with(&narrowed, "success").await;
    let r = g.get_as("/example/1", "active-1").await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        calls.of("active-1"),
        1,
        "the unchanged entry kept its answers"
    );
    // The scope still names privileges on paths it covers.
    assert_eq!(g.get_as("/open/x", "active-1").await.status(), 200);
}

#[tokio::test]
async fn a_token_that_cannot_be_checked_is_503_and_never_forwarded() {
    let (calls, backend, g, _files) = setup("").await;
    let kinds = ["garbage-1", "huge-1", "array-1", "notbool-1", "error-1"];
    for token in kinds {
        for _ in 0..2 {
            let r = g.get_as("/example/1", token).await;
            assert_eq!(r.status(), 503, "{token}");
            assert_eq!(r.headers()["retry-after"], "5", "{token}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let body = r.text().await.unwrap();
            assert!(
                body.contains("could not be asked about the token"),
                "{body}"
            );
            assert!(!body.contains(token), "the token was echoed: {body}");
        }
        // Not remembered: each request asks again.
        assert_eq!(calls.of(token), 2, "{token}");
    }
    assert_eq!(backend.count(), 0);
    assert_eq!(g.metric(&introspections("failure")).await, 10.0);
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"issuer_unavailable\"}")
            .await,
        10.0
    );
    // No answer in 5 s: 503 too; other tokens are answered meanwhile.
    let slow = {
        let http = g.http.clone();
        let url = g.url("/example/1");
        tokio::spawn(async move { http.get(url).bearer_auth("slow-1").send().await.unwrap() })
    };
    eventually("the slow call to start", || async {
        calls.of("slow-1") == 1
    })
    .await;
    assert_eq!(g.get_as("/example/1", "active-2").await.status(), 200);
    let r = slow.await.unwrap();
    assert_eq!(r.status(), 503);
    // One request left without an answer, one failure (the call's own end is not another).
    assert_eq!(g.metric(&introspections("failure")).await, 11.0);
    let out = g.output();
    for token in kinds.iter().chain(&["slow-1", "active-2"]) {
        assert!(!out.contains(token), "{token} reached the log");
    }
}

#[tokio::test]
async fn calls_are_bounded_in_concurrency_and_rate() {
    let (calls, backend, g, _files) = setup("").await;
    let first_call = Instant::now();

    // 24 distinct tokens held at the provider: 16 calls at most; the others are not made.
    let requests: Vec<_> = (0..24)
        .map(|n| {
            let http = g.http.clone();
            let url = g.url("/example/1");
            tokio::spawn(async move {
                http.get(url)
                    .bearer_auth(format!("held-{n}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    eventually("16 calls in flight and 8 refused", || async {
        calls.total() == 16
            && g.metric("ords_guard_requests_total{decision=\"issuer_unavailable\"}")
                .await
                == 8.0
    })
    .await;
    calls.held.add_permits(16);
    let mut statuses: Vec<u16> = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [vec![200; 16], vec![503; 8]].concat());
    assert_eq!(calls.most_in_flight.load(Ordering::Acquire), 16);

    // A flood of distinct random tokens: never more calls than the bucket allows (100,
    // refilled at 100 a second, since before the first call); each one asked or refused.
    let mut refused = 0;
    for n in 0..400 {
        let r = g.get_as("/example/1", format!("flood-{n}")).await;
        match r.status().as_u16() {
            401 => {}
            503 => refused += 1,
            s => panic!("flood-{n}: {s}"),
        }
    }
    let elapsed = first_call.elapsed().as_secs_f64();
    let made = calls.total();
    let allowed = 100.0 + elapsed * 100.0;
    assert!(
        (made as f64) <= allowed,
        "{made} calls in {elapsed:.2} s (at most {allowed:.0})"
    );
    assert_eq!(made - 16 + refused, 400);
    assert_eq!(backend.count(), 16);
}

/// `explain` asks the provider once, as the proxy would, and says what it answered.
#[tokio::test]
async fn explain_says_what_the_provider_answered() {
    let (calls, _backend, g, _files) = setup("").await;
    let explain = |token: &'static str| {
        let config = g.config.clone();
        tokio::task::spawn_blocking(move || {
            let out = ords_guard_cli(
                &[
                    "explain",
                    "--format",
                    "json",
                    "--token",
                    token,
                    "GET",
                    "/example/1",
                ],
                &config,
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            (out.status.code().unwrap(), json)
        })
    };
    let (code, j) = explain("active-7").await.unwrap();
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(
        j["introspection"], "`corp` says the token is active",
        "{j:#}"
    );
    assert_eq!(j["token"]["introspected"], true, "{j:#}");
    assert_eq!(j["token"]["client_id"], "svc", "{j:#}");
    let (code, j) = explain("inactive-7").await.unwrap();
    assert_eq!(code, 1, "{j:#}");
    assert_eq!(j["status"], 401, "{j:#}");
    assert_eq!(j["token"]["active"], false, "{j:#}");
    let (code, j) = explain("garbage-7").await.unwrap();
    assert_eq!(
        (code, &j["status"], &j["decision"]),
        (1, &503.into(), &"issuer_unavailable".into()),
        "{j:#}"
    );
    assert_eq!(
        (
            calls.of("active-7"),
            calls.of("inactive-7"),
            calls.of("garbage-7")
        ),
        (1, 1, 1)
    );
    // The running proxy has asked nothing yet: explain is a process of its own.
    assert_eq!(g.metric(&introspections("active")).await, 0.0);
}

/// A JWT naming the introspecting issuer is asked about, never verified by keys; other
/// JWTs are routed by `iss` as before.
#[tokio::test]
async fn a_jwt_naming_the_introspecting_issuer_is_asked_about_too() {
    let (calls, backend, g, _files) = setup("").await;
    let theirs = jwt(serde_json::json!({"iss": ISS, "sub": "x", "exp": now() + 60}));
    assert_eq!(g.get_as("/example/1", &theirs).await.status(), 200);
    assert_eq!(calls.of(&theirs), 1);
    assert_eq!(backend.last().header("x-ords-issuer"), Some("corp"));
    let other = jwt(serde_json::json!({"iss": "https://elsewhere", "sub": "x", "exp": now() + 60}));
    let r = g.get_as("/example/1", &other).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("wrong issuer"));
    assert_eq!(
        calls.total(),
        1,
        "only the introspecting issuer's JWT was asked about"
    );
}

/// `auth_method: post` sends the client in the form; a secret file that cannot be read at
/// the first call leaves the token unchecked (503); a reload that changes the entry asks
/// again.
#[tokio::test]
async fn client_secret_post_an_unreadable_secret_and_a_changed_entry() {
    let (calls, _backend, g, files) = setup("      auth_method: post\n").await;
    let secret_file = files.path().join("introspect.secret");
    std::fs::remove_file(&secret_file).unwrap();
    let r = g.get_as("/example/1", "active-1").await;
    assert_eq!(r.status(), 503);
    assert_eq!(calls.total(), 0, "no call without the secret");
    eventually("the failure to be logged", || async {
        g.output().contains("cannot read client_secret_file")
    })
    .await;
    assert!(!g.output().contains(SECRET));

    std::fs::write(&secret_file, SECRET).unwrap();
    assert_eq!(g.get_as("/example/1", "active-1").await.status(), 200);
    assert_eq!(calls.last_auth.lock().unwrap().as_deref(), None);
    let form = calls.last_form.lock().unwrap().clone();
    for (k, v) in [
        ("client_id", "ords-guard"),
        ("client_secret", SECRET),
        ("token", "active-1"),
    ] {
        assert!(form.contains(&(k.to_string(), v.to_string())), "{form:?}");
    }

    // An unchanged reload keeps the answer; a changed entry is asked again.
    let config = std::fs::read_to_string(&g.config).unwrap();
    let reloads = "ords_guard_config_reloads_total{result=\"success\"}";
    let reload = |text: String| {
        let (g, before) = (&g, text);
        async move {
            let n = g.metric(reloads).await;
            std::fs::write(&g.config, before).unwrap();
            g.signal("HUP");
            g.wait_metric(reloads, |v| v > n).await;
        }
    };
    reload(config.clone()).await;
    assert_eq!(g.get_as("/example/1", "active-1").await.status(), 200);
    assert_eq!(calls.of("active-1"), 1);
    reload(config.replace(
        "      auth_method: post\n",
        "      auth_method: post\n      cache_seconds: 30\n",
    ))
    .await;
    assert_eq!(g.get_as("/example/1", "active-1").await.status(), 200);
    assert_eq!(calls.of("active-1"), 2);
}
