//! Identity providers' tokens (SPEC §9), through the real binary: an issuer whose JWK Set
//! is a file, tokens signed in the test with that key, the privilege model applied through
//! scope and role claims, the X-ORDS-* headers the backend receives, and an issuer whose
//! keys were never had (503).

mod common;

use common::idp::{Idp, ISS};
use common::*;
use serde_json::json;

#[tokio::test]
async fn identity_provider_tokens_open_privileges_by_scope_and_roles() {
    let idp = Idp::new();
    let backend = Backend::start().await;
    let mut o = Options::new(&backend);
    o.extra = format!(
        "issuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    audience: [orders-api]\n    jwks_file: keys/corp.jwks.json\n    roles_claim: /realm_access/roles\n  - name: later\n    issuer: https://later.test\n    jwks_url: \"http://127.0.0.1:9/jwks\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(
        dir.path().join("keys/corp.jwks.json"),
        idp.jwks().to_string(),
    )
    .unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    // `check` and `clients list` show the issuers.
    for args in [&["check"][..], &["clients", "list"]] {
        let out = ords_guard_cli(args, &config);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            text.contains(&format!("corp  iss {ISS}  jwks_file"))
                && text.contains("(1 key(s))")
                && text.contains("later  iss https://later.test  jwks_url"),
            "{args:?}: {text}"
        );
    }
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;

    // Scope names the privilege.
    let t = idp.token("corp-1", json!({"scope": "openid example_priv"}));
    let r = g
        .http
        .get(g.url("/example/1"))
        .bearer_auth(&t)
        .header("X-ORDS-Issuer", "spoofed")
        .header("X_ORDS_Subject", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = backend.last();
    assert_eq!(seen.header("x-ords-issuer"), Some("corp"));
    assert_eq!(seen.header("x-ords-client-id"), Some("orders-app"));
    assert_eq!(seen.header("x-ords-subject"), Some("user-7"));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(seen.header("x-ords-client-name"), None);
    assert_eq!(seen.header("authorization"), None);
    assert!(
        !seen.headers.iter().any(|(_, v)| v == "spoofed"),
        "{seen:?}"
    );
    // The access log names the issuer, and never the token.
    let access = |log: &str| {
        log.lines()
            .find(|l| l.contains("\"path\":\"/example/1\""))
            .map(str::to_string)
    };
    eventually("the access line", || async {
        access(&std::fs::read_to_string(&g.log).unwrap()).is_some()
    })
    .await;
    let log = std::fs::read_to_string(&g.log).unwrap();
    let line = access(&log).unwrap();
    assert!(
        line.contains("\"issuer\":\"corp\"") && line.contains("\"client_id\":\"orders-app\""),
        "{line}"
    );
    assert!(!log.contains(&t), "the token reached the log");

    // A role in the role claim opens it; roles no privilege names are not forwarded.
    let t = idp.token(
        "corp-1",
        json!({"realm_access": {"roles": ["example_role", "offline_access"]}}),
    );
    let r = g.get_as("/example/2", &t).await;
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().header("x-ords-roles"), Some("example_role"));

    // Authenticated, opens nothing: 403 insufficient_scope.
    let t = idp.token("corp-1", json!({"scope": "openid"}));
    let r = g.get_as("/example/3", &t).await;
    assert_eq!(r.status(), 403);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("insufficient_scope"), "{www}");

    // Refused: 401 invalid_token, each saying why.
    // One signature character changed (not the last: its low bits may not count).
    let signed = idp.token("corp-1", json!({"scope": "example_priv"}));
    let at = signed.len() - 10;
    let flipped = if &signed[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);
    for (token, why) in [
        (
            idp.token(
                "corp-1",
                json!({"scope": "example_priv", "exp": now() - 120}),
            ),
            "expired",
        ),
        (
            idp.token("corp-1", json!({"scope": "example_priv", "aud": "other"})),
            "audience",
        ),
        (
            idp.token("corp-2", json!({"scope": "example_priv"})),
            "unknown key",
        ),
        (
            idp.token(
                "corp-1",
                json!({"scope": "example_priv", "iss": "https://evil.test"}),
            ),
            "issuer",
        ),
        (forged, "signature"),
    ] {
        let r = g.get_as("/example/4", &token).await;
        assert_eq!(r.status(), 401, "{why}");
        let www = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            www.contains("invalid_token") && www.contains(why),
            "{why}: {www}"
        );
    }
    // An HS256 token naming the issuer is refused whatever it is signed with.
    let hs = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("corp-1".into());
        let claims = json!({"iss": ISS, "aud": "orders-api", "sub": "x", "exp": now() + 60, "scope": "example_priv"});
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    };
    assert_eq!(g.get_as("/example/5", &hs).await.status(), 401);

    // An issuer whose keys were never had: 503 with Retry-After, never forwarded.
    let before = backend.count();
    let t = idp.token(
        "corp-1",
        json!({"iss": "https://later.test", "scope": "example_priv"}),
    );
    let r = g.get_as("/example/6", &t).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.text().await.unwrap().contains("later"));
    assert_eq!(backend.count(), before);
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"issuer_unavailable\"}")
            .await,
        1.0
    );

    // The proxy's own tokens still work beside them.
    let own = g.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(g.get_as("/example/7", &own).await.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.header("x-ords-client-name"), Some("Example Client"));
    assert_eq!(seen.header("x-ords-issuer"), None);
}

#[tokio::test]
async fn issuer_config_errors_name_the_key() {
    let backend = Backend::start().await;
    let mut o = Options::new(&backend);
    o.extra = "issuers:\n  - name: Corp!\n    issuer: ords-guard\n    jwks_url: \"http://idp.example/certs\"\n    algorithms: [RS256, HS256]\n    roles_claim: realm_access.roles\n    privileges: [nope]\n    allowed_skew_seconds: 61\n    refresh_seconds: 10\n".into();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let out = ords_guard_cli(&["check"], &config);
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for key in [
        "issuers[0].name",
        "issuers[0].issuer",
        "issuers[0].jwks_url",
        "issuers[0].algorithms[1]",
        "issuers[0].roles_claim",
        "issuers[0].privileges[0]",
        "issuers[0].allowed_skew_seconds",
        "issuers[0].refresh_seconds",
    ] {
        assert!(text.contains(&format!("key `{key}`")), "{key}: {text}");
    }
    assert!(
        text.contains("ords-guard.yaml:"),
        "file:line:column: {text}"
    );
}

#[tokio::test]
async fn without_token_only_identity_providers_tokens_pass_and_oauth_paths_are_ordinary() {
    let idp = Idp::new();
    let backend = Backend::start().await;
    let o = Options::new(&backend);
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(dir.path().join("corp.jwks.json"), idp.jwks().to_string()).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(
        &config,
        format!("listen: \"{proxy}\"\nadmin_listen: \"{admin}\"\nupstream: \"http://{}\"\nissuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    audience: [orders-api]\n    jwks_file: corp.jwks.json\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\n", backend.addr),
    )
    .unwrap();
    let out = ords_guard_cli(&["check"], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no token endpoint"), "{text}");
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;

    let t = idp.token("corp-1", json!({"scope": "example_priv"}));
    assert_eq!(g.get_as("/example/1", &t).await.status(), 200);
    // A token of any other issuer, ords-guard's own name included, authenticates nothing.
    let other = idp.token(
        "corp-1",
        json!({"iss": "ords-guard", "scope": "example_priv"}),
    );
    let r = g.get_as("/example/1", &other).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // No token endpoint: its paths go to the backend like any other.
    let before = backend.count();
    let r = g
        .http
        .post(g.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "backend ok");
    let r = g.http.get(g.url("/oauth/jwks")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "backend ok");
    assert_eq!(backend.count(), before + 2);
    assert_eq!(backend.last().target, "/oauth/jwks");
}

/// The token shapes of the common providers, each through its own `issuers[]` entry.
#[tokio::test]
async fn keycloak_entra_auth0_and_okta_token_shapes() {
    let idp = Idp::new();
    let backend = Backend::start().await;
    let entry = |name: &str, iss: &str, aud: &str, more: &str| {
        format!("  - name: {name}\n    issuer: \"{iss}\"\n    audience: [\"{aud}\"]\n    jwks_file: idp.jwks.json\n{more}")
    };
    let o = Options {
        extra: format!(
            "issuers:\n{}{}{}{}",
            entry(
                "keycloak",
                "https://kc.test/realms/corp",
                "orders-api",
                "    roles_claim: /realm_access/roles\n"
            ),
            entry(
                "entra",
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                "api://orders",
                "    tenants: [tenant-a]\n    roles_claim: /roles\n"
            ),
            entry(
                "auth0",
                "https://corp.auth0.test/",
                "orders-api",
                "    roles_claim: /https:~1~1orders.test~1roles\n"
            ),
            entry(
                "okta",
                "https://corp.okta.test/oauth2/default",
                "api://default",
                "    client_id_claim: /cid\n"
            ),
        ),
        ..Options::new(&backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(dir.path().join("idp.jwks.json"), idp.jwks().to_string()).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;
    // Claims the providers put in and the test does not need: removed (null).
    let bare = json!({"azp": null, "sub": null, "aud": null});
    let shape = |claims: serde_json::Value| {
        let mut c = bare.clone();
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        idp.token("corp-1", c)
    };
    let cases = [
        // Keycloak: realm roles nested under realm_access, the client in azp, aud an array.
        (
            "keycloak",
            shape(
                json!({"iss": "https://kc.test/realms/corp", "aud": ["orders-api", "account"], "azp": "orders-app", "sub": "f81d4fae-7dec", "scope": "profile email", "realm_access": {"roles": ["example_role", "offline_access"]}}),
            ),
            "orders-app",
            Some("example_role"),
        ),
        // Entra ID v2 (multi-tenant): tid in the issuer, app roles in `roles`, the client in appid.
        (
            "entra",
            shape(
                json!({"iss": "https://login.microsoftonline.com/tenant-a/v2.0", "tid": "tenant-a", "aud": "api://orders", "appid": "11111111-2222", "sub": "obj-1", "roles": ["example_role"]}),
            ),
            "11111111-2222",
            Some("example_role"),
        ),
        // Auth0: aud an array with userinfo, roles in a namespaced claim, scope names the privilege.
        (
            "auth0",
            shape(
                json!({"iss": "https://corp.auth0.test/", "aud": ["orders-api", "https://corp.auth0.test/userinfo"], "azp": "auth0-app", "sub": "auth0-app@clients", "scope": "example_priv", "https://orders.test/roles": "other, example_role"}),
            ),
            "auth0-app",
            Some("example_role"),
        ),
        // Okta: scp an array, the client in cid.
        (
            "okta",
            shape(
                json!({"iss": "https://corp.okta.test/oauth2/default", "aud": "api://default", "cid": "0oa-orders", "sub": "0oa-orders", "scp": ["example_priv"]}),
            ),
            "0oa-orders",
            Some(""),
        ),
    ];
    for (issuer, token, client, roles) in cases {
        let r = g.get_as("/example/1", &token).await;
        assert_eq!(r.status(), 200, "{issuer}: {}", r.text().await.unwrap());
        let seen = backend.last();
        assert_eq!(seen.header("x-ords-issuer"), Some(issuer));
        assert_eq!(seen.header("x-ords-client-id"), Some(client), "{issuer}");
        assert_eq!(seen.header("x-ords-roles"), roles, "{issuer}");
        assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    }
    // Entra: another tenant, or a tid that does not match its issuer, is not accepted.
    for (iss, tid) in [
        (
            "https://login.microsoftonline.com/tenant-b/v2.0",
            "tenant-b",
        ),
        (
            "https://login.microsoftonline.com/tenant-a/v2.0",
            "tenant-b",
        ),
        ("https://login.microsoftonline.com/a/b/v2.0", "a/b"),
    ] {
        let t = shape(
            json!({"iss": iss, "tid": tid, "aud": "api://orders", "appid": "x", "roles": ["example_role"]}),
        );
        let r = g.get_as("/example/1", &t).await;
        assert_eq!(r.status(), 401, "{iss} {tid}");
    }
    // Okta: a scope that names no privilege opens nothing.
    let t = shape(
        json!({"iss": "https://corp.okta.test/oauth2/default", "aud": "api://default", "cid": "c", "scp": ["openid"]}),
    );
    assert_eq!(g.get_as("/example/1", &t).await.status(), 403);
}
