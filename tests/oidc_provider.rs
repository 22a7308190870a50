//! A real OpenID provider in front of ords-guard (SPEC §9): panva's `oidc-provider` from npm
//! (tests/idp, installed by `npm ci` in scripts/setup.sh) issues a JWT access token to a
//! client_credentials client; a real OAuth2 client (the `oauth2` crate) fetches it; the
//! token goes through ords-guard, which fetched the provider's keys from its `/jwks`, to a
//! backend that sees who called.

mod common;

use common::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
use common::*;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};

#[tokio::test]
async fn a_token_from_oidc_provider_opens_privileges_through_ords_guard() {
    let idp = OidcProvider::start();
    let backend = Backend::start().await;
    let o = Options {
        extra: format!(
            "issuers:\n  - name: oidc\n    issuer: \"{iss}\"\n    audience: [orders-api]\n    jwks_url: \"{iss}/jwks\"\n    algorithms: [ES256]\n    roles_claim: /roles\n    privileges: [example_priv]\n",
            iss = idp.issuer
        ),
        ..Options::new(&backend)
    };
    let g = Guard::start(o).await;
    g.wait_metric(
        "ords_guard_jwks_fetches_total{issuer=\"oidc\",result=\"success\"}",
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(g.metric("ords_guard_jwks_keys{issuer=\"oidc\"}").await, 1.0);

    let http = oauth2_http();
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(format!("{}/token", idp.issuer)).unwrap());

    // Scope names the privilege.
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("example_priv".into()))
        .request_async(&http)
        .await
        .unwrap();
    let r = g
        .get_as("/example/employees/", token.access_token().secret())
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = backend.last();
    assert_eq!(seen.target, "/example/employees/");
    assert_eq!(seen.header("x-ords-issuer"), Some("oidc"));
    assert_eq!(seen.header("x-ords-client-id"), Some(CLIENT_ID));
    assert_eq!(seen.header("x-ords-subject"), Some(CLIENT_ID));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(seen.header("x-ords-roles"), Some("example_role"));
    assert_eq!(seen.header("authorization"), None);

    // A token scoped to example_write only still opens example_priv through the role claim,
    // but the entry's `privileges` bound keeps example_write closed even to a token whose
    // scope names it.
    let write = client
        .exchange_client_credentials()
        .add_scope(Scope::new("example_write".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(write.scopes().unwrap()[0].as_str(), "example_write");
    let secret = write.access_token().secret();
    assert_eq!(g.get_as("/example/employees/", secret).await.status(), 200);
    let r = g
        .http
        .post(g.url("/example/orders/1"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));

    // The token, tampered with, is refused.
    let t = token.access_token().secret();
    let at = t.rfind('.').unwrap() + 6;
    let swap = if &t[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{swap}{}", &t[..at], &t[at + 1..]);
    let r = g.get_as("/example/employees/", &forged).await;
    assert_eq!(r.status(), 401);
}
