//! RFC 8414 authorization server metadata through the real binary (SPEC §16): served when
//! `token.issuer` is a URL whose path is empty or base_path, at the well-known path and
//! under base_path; a standard OAuth client (the `oauth2` crate) configured from the
//! metadata alone gets a token that opens a protected path; otherwise the well-known paths
//! are 404, never forwarded.

mod common;

use common::*;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, TokenResponse, TokenUrl};

const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// A guard whose issuer is its own proxy URL (loopback http is allowed), base_path
/// `/ords/hr`.
async fn guard_issuing_as_url(backend: &Backend) -> (Guard, String) {
    let o = Options {
        base_path: "/ords/hr",
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let issuer = format!("http://{proxy}");
    let text = config_text(&o, proxy, admin).replacen(
        "issuer: ords-guard",
        &format!("issuer: \"{issuer}\""),
        1,
    );
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, text).unwrap();
    (
        Guard::spawn(dir, config, proxy, admin, "/ords/hr").await,
        issuer,
    )
}

/// GET `path` as it is, outside base_path too.
async fn get(g: &Guard, path: &str) -> reqwest::Response {
    g.http
        .get(format!("http://{}{path}", g.proxy))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_configured_from_the_metadata_alone_gets_a_working_token() {
    let backend = Backend::start().await;
    let (g, issuer) = guard_issuing_as_url(&backend).await;
    let mut documents = Vec::new();
    for path in [WELL_KNOWN.to_string(), format!("/ords/hr{WELL_KNOWN}")] {
        let r = get(&g, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        documents.push(r.json::<serde_json::Value>().await.unwrap());
    }
    assert_eq!(documents[0], documents[1]);
    let meta = &documents[0];
    assert_eq!(meta["issuer"], issuer.as_str());
    let endpoint = |name: &str| format!("{issuer}/ords/hr/oauth/{name}");
    assert_eq!(meta["token_endpoint"], endpoint("token"));
    assert_eq!(meta["jwks_uri"], endpoint("jwks"));
    assert_eq!(meta["introspection_endpoint"], endpoint("introspect"));
    assert_eq!(meta["revocation_endpoint"], endpoint("revoke"));
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(meta["response_types_supported"], serde_json::json!([]));

    // The keys are where the metadata says.
    let jwks = g
        .http
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);

    // A standard client, told only the token endpoint the metadata names.
    let client = BasicClient::new(ClientId::new("example-client".into()))
        .set_client_secret(ClientSecret::new(EXAMPLE_SECRET.into()))
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap());
    let token = client
        .exchange_client_credentials()
        .request_async(&oauth2_http())
        .await
        .unwrap();
    let r = g.get_as("/example/1", token.access_token().secret()).await;
    assert_eq!(r.status(), 200);
    // Only that request reached the backend: the metadata is ords-guard's own.
    assert_eq!(backend.count(), 1);

    // GET only; counted.
    let r = g
        .http
        .post(format!("http://{}{WELL_KNOWN}", g.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert!(
        g.metric("ords_guard_token_requests_total{outcome=\"metadata\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn without_a_url_issuer_the_well_known_paths_are_404_and_never_forwarded() {
    let backend = Backend::start().await;
    // The default issuer, `ords-guard`, is not a URL.
    let g = Guard::start(Options {
        base_path: "/ords/hr",
        ..Options::new(&backend)
    })
    .await;
    for path in [
        WELL_KNOWN.to_string(),
        format!("{WELL_KNOWN}/ords/hr"),
        format!("/ords/hr{WELL_KNOWN}"),
    ] {
        let r = get(&g, &path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("token.issuer"),
            "{body}"
        );
    }
    assert_eq!(backend.count(), 0);
    // Other well-known paths are the backend's.
    let r = g
        .http
        .get(format!(
            "http://{}/ords/hr/.well-known/openid-configuration",
            g.proxy
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.count(), 1);
}

/// `check` says why a URL issuer with another path is not described.
#[test]
fn check_warns_about_an_issuer_url_with_another_path() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256);
    ords_guard::oauth::keys::write_generated(&dir.path().join("keys"), &keys).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nbase_path: /ords/hr\ntoken:\n  issuer: https://auth.example.com/elsewhere\n  algorithm: ES256\n  signing_key_file: keys/signing.pem\n  key_id: k1\nprivileges: []\n",
    )
    .unwrap();
    let out = ords_guard_cli(&["check"], &config);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("token.issuer") && text.contains("RFC 8414"),
        "{text}"
    );
}
