//! Revocation (RFC 7009) and introspection (RFC 7662) of ords-guard's own tokens, and
//! `clients[].not_before`, through the real binary (SPEC §16), with the `oauth2` crate as
//! the client: a client revokes its own token and only its own; a revoked token is refused
//! at once; introspection answers for clients allowed to ask, and says nothing of a token
//! that would be refused.

mod common;

use common::*;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, IntrospectionUrl, RevocationUrl, StandardRevocableToken,
    TokenIntrospectionResponse, TokenResponse, TokenUrl,
};

/// The registry, with the admin client allowed to introspect.
fn registry() -> String {
    registry_yaml().replacen(
        "    token_lifetime_seconds: 600\n",
        "    token_lifetime_seconds: 600\n    introspect: true\n",
        1,
    )
}

async fn form(g: &Guard, endpoint: &str, auth: (&str, &str), token: &str) -> reqwest::Response {
    g.http
        .post(g.url(&format!("/oauth/{endpoint}")))
        .basic_auth(auth.0, Some(auth.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// Over TLS, as RFC 7009 requires of revocation (the `oauth2` crate will not send it over
/// plain HTTP).
async fn tls_guard(backend: &Backend) -> (Guard, oauth2::reqwest::Client) {
    let pki = pki("revocation");
    let o = Options {
        base_path: "/ords/hr",
        registry: registry(),
        extra: "tls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n".into(),
        tls: Some(TlsClient {
            ca_pem: pki.ca.clone(),
            proxy: true,
            admin: false,
        }),
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), &pki.cert).unwrap();
    std::fs::write(tls.join("key.pem"), &pki.key).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let g = Guard::spawn_tls(dir, config, proxy, admin, "/ords/hr", o.tls.as_ref()).await;
    let http = oauth2::reqwest::Client::builder()
        .no_proxy()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .add_root_certificate(oauth2::reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    (g, http)
}

#[tokio::test]
async fn a_client_revokes_its_own_token_and_introspection_follows() {
    let backend = Backend::start().await;
    let (g, http) = tls_guard(&backend).await;
    let client = |id: &str, secret: &str| {
        BasicClient::new(ClientId::new(id.into()))
            .set_client_secret(ClientSecret::new(secret.into()))
            .set_token_uri(TokenUrl::new(g.url("/oauth/token")).unwrap())
            .set_revocation_url(RevocationUrl::new(g.url("/oauth/revoke")).unwrap())
            .set_introspection_url(IntrospectionUrl::new(g.url("/oauth/introspect")).unwrap())
    };
    let example = client("example-client", EXAMPLE_SECRET);
    let admin = client("admin-client", ADMIN_SECRET);
    let issue = || async {
        example
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .unwrap()
            .access_token()
            .clone()
    };
    let (leaked, other) = (issue().await, issue().await);
    assert_eq!(g.get_as("/example/1", leaked.secret()).await.status(), 200);

    // Introspection, by a client allowed to ask.
    let about = admin
        .introspect(&leaked)
        .request_async(&http)
        .await
        .unwrap();
    assert!(about.active());
    assert_eq!(
        about.client_id().map(|c| c.as_str()),
        Some("example-client")
    );
    assert_eq!(about.iss(), Some("ords-guard"));
    assert!(about.exp().is_some() && about.iat().is_some() && about.jti().is_some());
    let scopes: Vec<String> = about
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["example_priv", "open_priv"]);
    // A client not allowed to ask is refused as an unknown one is.
    let r = form(
        &g,
        "introspect",
        ("example-client", EXAMPLE_SECRET),
        leaked.secret(),
    )
    .await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // Another client's revocation leaves the token alone (and says nothing).
    let r = form(
        &g,
        "revoke",
        ("admin-client", ADMIN_SECRET),
        leaked.secret(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(g.get_as("/example/1", leaked.secret()).await.status(), 200);
    // Without valid client authentication: 401, nothing revoked.
    let r = form(&g, "revoke", ("example-client", "wrong"), leaked.secret()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(g.get_as("/example/1", leaked.secret()).await.status(), 200);

    // Its own client revokes it: refused from now on, the other token still works.
    example
        .revoke_token(StandardRevocableToken::AccessToken(leaked.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let r = g.get_as("/example/1", leaked.secret()).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("token revoked"),
        "{challenge}"
    );
    assert_eq!(g.get_as("/example/1", other.secret()).await.status(), 200);
    let r = form(
        &g,
        "introspect",
        ("admin-client", ADMIN_SECRET),
        leaked.secret(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"active": false})
    );

    // Garbage is answered 200 too; a missing token is a bad request; POST only.
    let r = form(
        &g,
        "revoke",
        ("example-client", EXAMPLE_SECRET),
        "not.a.token",
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = g
        .http
        .post(g.url("/oauth/revoke"))
        .basic_auth("example-client", Some(EXAMPLE_SECRET))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = g.http.get(g.url("/oauth/revoke")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    assert_eq!(
        g.metric("ords_guard_token_requests_total{outcome=\"revoked\"}")
            .await,
        1.0
    );
    assert_eq!(g.metric("ords_guard_revocations").await, 1.0);
    // The endpoints are ords-guard's own: only the protected calls reached the backend.
    assert_eq!(backend.count(), 4);
    let log = g.output_with("token revoked").await;
    assert!(
        !log.contains(leaked.secret()),
        "the token never reaches the log"
    );
}

/// `not_before` refuses every token of its client issued earlier, without disabling it.
#[tokio::test]
async fn not_before_refuses_the_clients_earlier_tokens() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let old = g.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(g.get_as("/example/1", &old).await.status(), 200);

    // Every token issued before the second after this one's.
    let claims = decode_claims(&old);
    let after = chrono::DateTime::from_timestamp(claims["iat"].as_i64().unwrap() + 1, 0)
        .unwrap()
        .to_rfc3339();
    let config = std::fs::read_to_string(&g.config).unwrap().replacen(
        "    client_id: example-client\n",
        &format!("    client_id: example-client\n    not_before: \"{after}\"\n"),
        1,
    );
    std::fs::write(&g.config, config).unwrap();
    g.wait_metric("ords_guard_config_reloads_total{result=\"success\"}", |v| {
        v >= 1.0
    })
    .await;
    let r = g.get_as("/example/1", &old).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("token revoked"));
    let said = explained_revocation(&g, &old).await;
    assert!(
        said.starts_with("yes: issued at ") && said.contains("not_before"),
        "{said}"
    );
    // A token issued from then on works.
    eventually("a token issued after not_before is accepted", || async {
        let fresh = g.token("example-client", EXAMPLE_SECRET, None).await;
        g.get_as("/example/1", &fresh).await.status() == 200
    })
    .await;

    // A time that is not RFC 3339 is a config error naming the key.
    let bad = std::fs::read_to_string(&g.config)
        .unwrap()
        .replacen(&after, "yesterday", 1);
    let path = g.dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let out = ords_guard_cli(&["check"], &path);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("clients[0].not_before") && text.contains("RFC 3339"),
        "{text}"
    );
}

/// What `explain --token` says of a token's revocation (SPEC §16).
async fn explained_revocation(g: &Guard, token: &str) -> String {
    let (config, token) = (g.config.clone(), token.to_string());
    let out = tokio::task::spawn_blocking(move || {
        ords_guard_cli(
            &[
                "explain",
                "--format",
                "json",
                "--token",
                &token,
                "GET",
                "/example/1",
            ],
            &config,
        )
    })
    .await
    .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    j["token"]["revoked"]
        .as_str()
        .unwrap_or_else(|| panic!("{j:#}"))
        .to_string()
}

/// The claims of a JWT, unverified (the test reads its own token's `iat`).
fn decode_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Another replica of `of`: the same config `extra`, the same signing key (the replicas of
/// a Deployment share it).
async fn replica(of: &Guard, backend: &Backend, extra: &str) -> Guard {
    let o = Options {
        extra: extra.to_string(),
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    for f in std::fs::read_dir(of.keys_dir()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join("keys").join(f.file_name().unwrap())).unwrap();
    }
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    Guard::spawn(dir, config, proxy, admin, "/").await
}

/// Two replicas keeping revocations in `redis`, and their config's extra lines.
async fn two_replicas(redis: &common::redis::Redis, backend: &Backend) -> (Guard, Guard, String) {
    let extra = format!(
        "rate_limit_store:\n  url: \"{}\"\nrevocation:\n  store: redis\n",
        redis.url()
    );
    let a = Guard::start(Options {
        extra: extra.clone(),
        ..Options::new(backend)
    })
    .await;
    let b = replica(&a, backend, &extra).await;
    (a, b, extra)
}

/// `revocation: {store: redis}`: a revocation at one replica is refused by every replica
/// within 2 s (waited for, bounded), and a replica that starts afterwards refuses it from
/// its first answer (it is not ready before it has read the revocations).
#[tokio::test]
async fn replicas_sharing_redis_refuse_a_token_revoked_at_any_of_them() {
    let redis = common::redis::Redis::start();
    let backend = Backend::start().await;
    let (a, b, extra) = two_replicas(&redis, &backend).await;
    let token = a.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(b.get_as("/example/1", &token).await.status(), 200);

    let r = form(&a, "revoke", ("example-client", EXAMPLE_SECRET), &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        a.get_as("/example/1", &token).await.status(),
        401,
        "at once here"
    );
    eventually("refused by the other replica", || async {
        b.get_as("/example/1", &token).await.status() == 401
    })
    .await;
    assert!(!redis
        .cli(&["KEYS", "ords-guard:revoked:*"])
        .trim()
        .is_empty());
    let ttl = redis.pttl(redis.cli(&["KEYS", "ords-guard:revoked:*"]).trim());
    assert!(ttl > 0, "the key expires with the token: {ttl}");

    // `explain` reads the shared store as a replica does, and says so.
    assert_eq!(
        explained_revocation(&a, &token).await,
        format!(
            "yes: revoked at /oauth/revoke (jti {})",
            decode_claims(&token)["jti"].as_str().unwrap()
        )
    );
    let other = a.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(
        explained_revocation(&a, &other).await,
        "no: not among the revocations in the shared store"
    );

    // A replica started now refuses it from the start.
    let c = replica(&a, &backend, &extra).await;
    let r = c.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("token revoked"));
    assert!(!a.output().contains(&token));
}

/// A revocation Redis did not take is answered 503 (revoked at that replica only), and the
/// client's retry shares it: the other replica refuses the token once Redis answers again.
#[tokio::test]
async fn a_revocation_the_store_missed_is_shared_when_sent_again() {
    let mut redis = common::redis::Redis::start();
    let backend = Backend::start().await;
    let (a, b, _) = two_replicas(&redis, &backend).await;
    let token = a.token("example-client", EXAMPLE_SECRET, None).await;

    redis.kill();
    let r = form(&a, "revoke", ("example-client", EXAMPLE_SECRET), &token).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        a.get_as("/example/1", &token).await.status(),
        401,
        "revoked here"
    );
    assert_eq!(
        b.get_as("/example/1", &token).await.status(),
        200,
        "not known there"
    );

    redis.run();
    let r = form(&a, "revoke", ("example-client", EXAMPLE_SECRET), &token).await;
    assert_eq!(r.status(), 200);
    eventually(
        "refused by the other replica once the retry is shared",
        || async { b.get_as("/example/1", &token).await.status() == 401 },
    )
    .await;
}
