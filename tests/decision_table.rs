//! Every row of SPEC §3's decision table, over HTTP against the real binary.

mod common;

use common::*;
use serde_json::json;

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
    v
}

#[tokio::test]
async fn unmatched_allow_forwards_without_a_token() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let r = g
        .http
        .get(g.url("/public/info?x=1"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "backend ok");
    let seen = backend.last();
    assert_eq!(seen.target, "/public/info?x=1");
    // Public paths pass Authorization through untouched.
    assert_eq!(seen.header("authorization"), Some("Basic abc"));
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"forwarded_public\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn unmatched_deny_is_403_whatever_the_token() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        unmatched: "deny",
        ..Options::new(&backend)
    })
    .await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    for auth in [None, Some(format!("Bearer {token}"))] {
        let mut req = g.http.get(g.url("/public/info"));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert!(challenge(&r).is_empty());
        problem(r, 403).await;
    }
    assert_eq!(backend.count(), 0, "a denied request reached the backend");
    // Protected paths still work under deny.
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn protected_without_bearer_is_401_with_challenge() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    for path in [
        "/example",
        "/example/",
        "/example/employees/7",
        "/example/orders/1",
    ] {
        let r = g.http.get(g.url(path)).send().await.unwrap();
        assert_eq!(challenge(&r), r#"Bearer realm="ords-guard""#, "{path}");
        problem(r, 401).await;
    }
    // Another scheme is no bearer.
    let r = g
        .http
        .get(g.url("/example/1"))
        .header("Authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(challenge(&r), r#"Bearer realm="ords-guard""#);
    assert_eq!(backend.count(), 0);
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"unauthenticated\"}")
            .await,
        5.0
    );
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        audience: Some("hr-api"),
        ..Options::new(&backend)
    })
    .await;
    let good = g.token("example-client", EXAMPLE_SECRET, None).await;
    let n = now();
    let claims = |over: serde_json::Value| {
        let mut c = json!({"iss": "ords-guard", "sub": "example-client", "client_id": "example-client", "aud": "hr-api",
            "iat": n, "nbf": n, "exp": n + 600, "jti": "t", "roles": ["example_role"], "scope": "example_priv"});
        for (k, v) in over.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let keys = g.keys_dir();
    let sign = |c: serde_json::Value| sign_es256(&keys, "test-1", &c);
    // The control: a hand-signed token with the right claims is accepted.
    let control = sign(claims(json!({})));
    assert_eq!(g.get_as("/example/1", &control).await.status(), 200);

    let public_pem = std::fs::read(keys.join("signing.pub.pem")).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("test-1".into());
    let alg_confusion = jsonwebtoken::encode(
        &hs,
        &claims(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_sig = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        parts[2].chars().rev().collect::<String>()
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "not-a-jwt".into(), "malformed"),
        ("bad signature", tampered_sig, ""),
        ("alg confusion", alg_confusion, "alg"),
        (
            "wrong issuer",
            sign(claims(json!({"iss": "evil"}))),
            "issuer",
        ),
        (
            "wrong audience",
            sign(claims(json!({"aud": "other-api"}))),
            "audience",
        ),
        (
            "expired",
            sign(claims(
                json!({"iat": n - 7200, "nbf": n - 7200, "exp": n - 3600}),
            )),
            "expired",
        ),
        (
            "not yet valid",
            sign(claims(json!({"nbf": n + 3600, "exp": n + 7200}))),
            "not yet valid",
        ),
        ("missing exp", sign(claims(json!({"exp": null}))), "exp"),
        (
            "unknown client",
            sign(claims(json!({"sub": "ghost", "client_id": "ghost"}))),
            "unknown or disabled",
        ),
        (
            "disabled client",
            sign(claims(
                json!({"sub": "disabled-client", "client_id": "disabled-client"}),
            )),
            "unknown or disabled",
        ),
    ];
    for (name, token, description) in &cases {
        let r = g.get_as("/example/1", &token).await;
        let c = challenge(&r);
        assert!(
            c.starts_with(
                r#"Bearer realm="ords-guard", error="invalid_token", error_description=""#
            ),
            "{name}: {c}"
        );
        assert!(c.contains(description), "{name}: {c}");
        let body = problem(r, 401).await.to_string();
        assert!(
            !body.contains(token.as_str()) && !c.contains(token.as_str()),
            "{name}: the token was echoed"
        );
    }
    // Two Authorization headers: refused, not guessed.
    let r = g
        .http
        .get(g.url("/example/1"))
        .header("Authorization", format!("Bearer {good}"))
        .header("Authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
    assert_eq!(
        backend.count(),
        1,
        "only the control request may reach the backend"
    );
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"invalid_token\"}")
            .await,
        cases.len() as f64 + 1.0
    );
}

#[tokio::test]
async fn valid_token_without_the_privilege_is_403_insufficient_scope() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    // POST to orders needs example_write (example_admin), which Example Client lacks.
    let r = g
        .http
        .post(g.url("/example/orders/1"))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        challenge(&r),
        r#"Bearer realm="ords-guard", error="insufficient_scope""#
    );
    problem(r, 403).await;
    // A token narrowed to example_write cannot read through example_priv.
    let narrow = g
        .token("admin-client", ADMIN_SECRET, Some("example_write"))
        .await;
    let r = g.get_as("/example/1", &narrow).await;
    problem(r, 403).await;
    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn valid_token_with_the_privilege_is_forwarded() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("admin-client", ADMIN_SECRET, None).await;
    let r = g
        .http
        .post(g.url("/example/orders/1?dry=1"))
        .bearer_auth(&token)
        .body("{\"qty\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/example/orders/1?dry=1")
    );
    assert_eq!(seen.header("x-ords-privilege"), Some("example_write"));
    // GET there falls back to example_priv through /example/*.
    let r = g.get_as("/example/orders/1", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        backend.last().header("x-ords-privilege"),
        Some("example_priv")
    );
    // A privilege without roles opens to any valid token.
    let r = g.get_as("/open/doc", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"forwarded\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn hostile_paths_are_400_and_never_forwarded() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let targets = [
        "/public/../example/1",
        "/public/%2e%2e/example/1",
        "/public%2f..%2fexample/1",
        "/example%5c1",
        "/example/1;jsessionid=x",
        "/admin%3bx",
        "/example/%",
        "/example/%c0%ae",
        "/example/%00",
        "/public/%252e%252e/example/1",
        "*",
        "example.com:443",
    ];
    for t in targets {
        let (code, text) = g
            .raw(format!("GET {t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
        assert_eq!(code, 400, "{t}: {text}");
        assert!(text.contains("application/problem+json"), "{t}: {text}");
    }
    assert_eq!(
        backend.count(),
        0,
        "a rejected path reached the backend: {:?}",
        backend.requests()
    );
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"bad_request\"}")
            .await,
        targets.len() as f64
    );
}
