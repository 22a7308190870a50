//! The token endpoint over HTTP (SPEC §4): a real OAuth2 client, every error, throttling,
//! JWKS.

mod common;

use common::*;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};

async fn oauth_error(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status(), status, "expected {code}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], code, "{v}");
    v
}

#[tokio::test]
async fn oauth2_crate_client_credentials_exchange() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        base_path: "/ords/hr",
        ..Options::new(&backend)
    })
    .await;
    let http = oauth2_http();
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("admin-client".into()))
            .set_client_secret(ClientSecret::new(ADMIN_SECRET.into()))
            .set_auth_type(auth.clone())
            .set_token_uri(TokenUrl::new(g.url("/oauth/token")).unwrap());
        let token = client
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(
            token.expires_in().unwrap().as_secs(),
            600,
            "per-client token lifetime"
        );
        assert!(token.scopes().is_none());
        let r = g
            .http
            .get(g.url("/example/employees/"))
            .bearer_auth(token.access_token().secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{auth:?}");
        assert_eq!(backend.last().target, "/ords/hr/example/employees/");

        // Narrowed by role: the token holds example_admin only, so reads through
        // example_priv (example_role) are refused.
        let narrow = client
            .exchange_client_credentials()
            .add_scope(Scope::new("example_admin".into()))
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(narrow.scopes().unwrap()[0].as_str(), "example_admin");
        let r = g
            .http
            .get(g.url("/example/employees/"))
            .bearer_auth(narrow.access_token().secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = g
            .http
            .delete(g.url("/example/orders/9"))
            .bearer_auth(narrow.access_token().secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        g.metric("ords_guard_tokens_issued_total{client=\"admin-client\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn token_response_shape_and_claims() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        audience: Some("hr-api"),
        ..Options::new(&backend)
    })
    .await;
    let r = g
        .http
        .post(g.url("/oauth/token"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["token_type"].as_str(), v["expires_in"].as_u64()),
        (Some("bearer"), Some(3600))
    );
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(
        v["access_token"].as_str().unwrap(),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["iss"], "ords-guard");
    assert_eq!(claims["sub"], "example-client");
    assert_eq!(claims["client_id"], "example-client");
    assert_eq!(claims["aud"], "hr-api");
    assert_eq!(claims["roles"], serde_json::json!(["example_role"]));
    assert_eq!(claims["scope"], "example_priv open_priv");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16 && claims["nbf"].is_u64());
}

#[tokio::test]
async fn every_token_endpoint_error() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let url = g.url("/oauth/token");
    let post = |form: &[(&str, &str)]| g.http.post(&url).form(form).send();
    let cc = ("grant_type", "client_credentials");

    // invalid_request: missing, repeated, both auth methods, wrong content type, body over 8 KiB.
    oauth_error(
        post(&[
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
        ])
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    oauth_error(
        post(&[
            cc,
            cc,
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
        ])
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let both = g
        .http
        .post(&url)
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[
            cc,
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
        ])
        .send()
        .await
        .unwrap();
    oauth_error(both, 400, "invalid_request").await;
    let json = g
        .http
        .post(&url)
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(json, 400, "invalid_request").await;
    let big = format!("grant_type=client_credentials&client_id=example-client&client_secret={EXAMPLE_SECRET}&pad={}", "x".repeat(9000));
    let r = g
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_request").await;

    // unsupported_grant_type, invalid_scope, unauthorized_client.
    oauth_error(
        post(&[
            ("grant_type", "password"),
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
        ])
        .await
        .unwrap(),
        400,
        "unsupported_grant_type",
    )
    .await;
    oauth_error(
        post(&[
            cc,
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
            ("scope", "example_admin"),
        ])
        .await
        .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    oauth_error(
        post(&[
            cc,
            ("client_id", "example-client"),
            ("client_secret", EXAMPLE_SECRET),
            ("scope", "example_write"),
        ])
        .await
        .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    oauth_error(
        post(&[
            cc,
            ("client_id", "disabled-client"),
            ("client_secret", EXAMPLE_SECRET),
        ])
        .await
        .unwrap(),
        400,
        "unauthorized_client",
    )
    .await;

    // invalid_client: unknown id and wrong secret look the same; Basic gets a Basic challenge.
    let unknown = post(&[
        cc,
        ("client_id", "ghost"),
        ("client_secret", EXAMPLE_SECRET),
    ])
    .await
    .unwrap();
    assert!(unknown.headers().get("www-authenticate").is_none());
    let unknown = oauth_error(unknown, 401, "invalid_client").await;
    let wrong = oauth_error(
        post(&[
            cc,
            ("client_id", "example-client"),
            ("client_secret", "wrong"),
        ])
        .await
        .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(unknown, wrong);
    let basic = g
        .http
        .post(&url)
        .basic_auth("example-client", Some("wrong"))
        .form(&[cc])
        .send()
        .await
        .unwrap();
    assert_eq!(
        basic.headers()["www-authenticate"],
        r#"Basic realm="ords-guard""#
    );
    oauth_error(basic, 401, "invalid_client").await;

    // 405 for other methods.
    let r = g.http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    oauth_error(r, 405, "invalid_request").await;

    // Both secret slots work (the second is argon2id, mid-rotation).
    for s in [ADMIN_SECRET, ADMIN_OLD_SECRET, ADMIN_OLD_SECRET] {
        g.token("admin-client", s, None).await;
    }
    assert_eq!(
        g.metric("ords_guard_token_requests_total{outcome=\"invalid_client\"}")
            .await,
        3.0
    );
    let log = std::fs::read_to_string(&g.log).unwrap();
    for secret in [EXAMPLE_SECRET, ADMIN_SECRET, ADMIN_OLD_SECRET] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_client_id() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let url = g.url("/oauth/token");
    for id in ["example-client", "no-such-client"] {
        for _ in 0..ords_guard::oauth::throttle::PER_CLIENT {
            let r = g
                .http
                .post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", "guess"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = g
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", "guess"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{id}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait));
    }
    // Another client is not affected.
    g.token("admin-client", ADMIN_SECRET, None).await;
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        base_path: "/ords/hr",
        ..Options::new(&backend)
    })
    .await;
    let r = g.http.get(g.url("/oauth/jwks")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let jwks: serde_json::Value = r.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["kid"].as_str(),
            key["alg"].as_str()
        ),
        (Some("EC"), Some("test-1"), Some("ES256"))
    );
    assert!(key.get("d").is_none());
    // A backend can verify our tokens with the published key alone.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .unwrap();

    let hs_backend = Backend::start().await;
    let hs = Guard::start(Options {
        algorithm: ords_guard::config::Algorithm::HS256,
        ..Options::new(&hs_backend)
    })
    .await;
    let body = hs
        .http
        .get(hs.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#"{"keys":[]}"#);
}
