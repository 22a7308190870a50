//! Identity providers' keys fetched from a `jwks_url` (SPEC §9), through the real binary
//! and a JWKS server the test controls: the fetch at start, rotation picked up by one
//! shared refetch, the 30 s bound on refetches, stale keys kept while the provider fails,
//! 503 until the first keys, every bound of a fetch, and https verified against `ca_file`.

mod common;

use common::idp::{Answer, Idp, JwksServer, ISS};
use common::*;
use serde_json::json;

fn issuer_yaml(url: &str, more: &str) -> String {
    format!("issuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    audience: [orders-api]\n    jwks_url: \"{url}\"\n{more}")
}

async fn guard_for(backend: &Backend, extra: String, files: &[(&str, &str)]) -> Guard {
    let o = Options {
        extra,
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    Guard::spawn(dir, config, proxy, admin, "/").await
}

const FETCHED: &str = "ords_guard_jwks_fetches_total{issuer=\"corp\",result=\"success\"}";
const FAILED: &str = "ords_guard_jwks_fetches_total{issuer=\"corp\",result=\"failure\"}";
const HELD: &str = "ords_guard_jwks_keys{issuer=\"corp\"}";

fn scoped() -> serde_json::Value {
    json!({"scope": "example_priv"})
}

/// Reload the unchanged config: every reload fetches each issuer's keys once more.
async fn reload(g: &Guard) {
    let sample = "ords_guard_config_reloads_total{result=\"success\"}";
    let before = g.metric(sample).await;
    g.signal("HUP");
    g.wait_metric(sample, |v| v > before).await;
}

#[tokio::test]
async fn keys_are_fetched_and_a_rotation_costs_the_provider_one_request() {
    let idp = Idp::with_kids(&["k1", "k2"]);
    let jwks = JwksServer::start(Answer::Keys(idp.jwks_of(&["k1"]), None)).await;
    let backend = Backend::start().await;
    let g = guard_for(&backend, issuer_yaml(&jwks.url(), ""), &[]).await;
    g.wait_metric(FETCHED, |v| v >= 1.0).await;
    assert_eq!(g.metric(HELD).await, 1.0);
    assert!(
        g.metric("ords_guard_jwks_last_success_timestamp_seconds{issuer=\"corp\"}")
            .await
            >= (now() - 60) as f64
    );
    let r = g.get_as("/example/1", idp.token("k1", scoped())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().header("x-ords-issuer"), Some("corp"));
    let hits = jwks.hits();

    // The provider rotates to k2. Fifty concurrent requests with k2 tokens share one
    // refetch and all pass.
    jwks.set(Answer::Keys(idp.jwks_of(&["k1", "k2"]), None));
    let t2 = idp.token("k2", scoped());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let req = g.http.get(g.url("/example/2")).bearer_auth(&t2);
        calls.spawn(async move { req.send().await.unwrap().status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(jwks.hits(), hits + 1, "one refetch for fifty requests");
    assert_eq!(g.metric(HELD).await, 2.0);

    // A flood of unknown kids within 30 s of that refetch costs the provider nothing.
    for i in 0..20 {
        let r = g
            .get_as("/example/3", idp.token(&format!("random-{i}"), scoped()))
            .await;
        assert_eq!(r.status(), 401);
        let www = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            www.contains("invalid_token") && www.contains("unknown key"),
            "{www}"
        );
    }
    assert_eq!(jwks.hits(), hits + 1, "no refetch within 30 s of the last");
    g.output_with("identity provider keys fetched").await;
}

/// A provider serving key `corp-1`, a guard that has fetched it, and a token it takes.
async fn serving_good_keys() -> (Idp, JwksServer, Backend, Guard, String) {
    let idp = Idp::new();
    let jwks = JwksServer::start(Answer::Keys(idp.jwks(), None)).await;
    let backend = Backend::start().await;
    let g = guard_for(&backend, issuer_yaml(&jwks.url(), ""), &[]).await;
    g.wait_metric(FETCHED, |v| v >= 1.0).await;
    let t = idp.token("corp-1", scoped());
    (idp, jwks, backend, g, t)
}

#[tokio::test]
async fn a_failing_provider_keeps_the_last_good_keys_and_a_reload_keeps_them_too() {
    let (idp, jwks, backend, g, t) = serving_good_keys().await;
    assert_eq!(g.get_as("/example/1", &t).await.status(), 200);

    // The provider fails; the reload's fetch fails; the kept keys still serve.
    jwks.set(Answer::Status(500));
    let failed = g.metric(FAILED).await;
    reload(&g).await;
    g.wait_metric(FAILED, |v| v > failed).await;
    assert_eq!(g.metric(HELD).await, 1.0);
    let t_new = idp.token("corp-1", json!({"scope": "example_priv", "sub": "user-8"}));
    assert_eq!(g.get_as("/example/1", &t_new).await.status(), 200);
    assert_eq!(backend.last().header("x-ords-subject"), Some("user-8"));
    let log = g.output_with("cannot fetch the identity provider's keys: answered HTTP 500; keeping the last good keys").await;
    assert!(
        log.contains("cannot fetch the identity provider's keys: answered HTTP 500; keeping the last good keys"),
        "{log}"
    );
}

#[tokio::test]
async fn until_the_first_keys_tokens_get_503_then_pass_without_a_restart() {
    let idp = Idp::new();
    let jwks = JwksServer::start(Answer::Status(503)).await;
    let backend = Backend::start().await;
    let g = guard_for(&backend, issuer_yaml(&jwks.url(), ""), &[]).await;
    g.wait_metric(FAILED, |v| v >= 1.0).await;
    let t = idp.token("corp-1", scoped());
    let r = g.get_as("/example/1", &t).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(backend.count(), 0);
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"issuer_unavailable\"}")
            .await,
        1.0
    );
    assert_eq!(g.metric(HELD).await, 0.0);
    // /readyz does not wait for issuers.
    let ready = g
        .http
        .get(format!("{}/readyz", g.admin_base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The provider comes back: the retries (backing off from 1 s) pick its keys up.
    jwks.set(Answer::Keys(idp.jwks(), None));
    g.wait_metric(FETCHED, |v| v >= 1.0).await;
    assert_eq!(g.get_as("/example/1", &t).await.status(), 200);
}

#[tokio::test]
async fn every_bound_of_a_fetch_holds_and_each_failure_says_why() {
    let (idp, jwks, _backend, g, t) = serving_good_keys().await;
    let many: Vec<_> = (0..101).map(|_| idp.jwk("corp-1")).collect();
    let cases = [
        (
            Answer::Redirect(format!("{}/elsewhere", jwks.url())),
            "redirects are not followed",
        ),
        (
            Answer::Body(vec![b' '; (1 << 20) + 1]),
            "over the 1048576-byte limit",
        ),
        (Answer::Endless, "no complete answer within 5000 ms"),
        (Answer::Hang, "no complete answer within 5000 ms"),
        (
            Answer::Body(b"<html>login</html>".to_vec()),
            "not a JSON object",
        ),
        (
            Answer::Keys(json!({"keys": many}), None),
            "over the limit of 100",
        ),
        (
            Answer::Keys(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), None),
            "no usable key",
        ),
        (Answer::Keys(json!({"nokeys": []}), None), "no `keys` array"),
    ];
    for (answer, why) in cases {
        jwks.set(answer.clone());
        // A retry of the case before may still be running: wait for this case's reason.
        let seen = |log: &str| {
            log.lines()
                .filter(|l| {
                    l.contains("cannot fetch the identity provider's keys") && l.contains(why)
                })
                .count()
        };
        let before = seen(&g.output());
        reload(&g).await;
        eventually(&format!("a failed fetch saying `{why}`"), || async {
            seen(&g.output()) > before
        })
        .await;
        // The good keys from before still check tokens.
        assert_eq!(g.get_as("/example/1", &t).await.status(), 200, "{answer:?}");
    }
    assert_eq!(g.metric(HELD).await, 1.0);
}

#[tokio::test]
async fn https_keys_are_verified_against_ca_file_and_not_against_the_system_roots() {
    let idp = Idp::new();
    let pki = pki("idp");
    let jwks = JwksServer::start_tls(Answer::Keys(idp.jwks(), None), &pki).await;
    let backend = Backend::start().await;
    let g = guard_for(
        &backend,
        issuer_yaml(&jwks.url(), "    ca_file: idp-ca.pem\n"),
        &[("idp-ca.pem", pki.ca.as_str())],
    )
    .await;
    g.wait_metric(FETCHED, |v| v >= 1.0).await;
    let t = idp.token("corp-1", scoped());
    assert_eq!(g.get_as("/example/1", &t).await.status(), 200);

    // Without the CA file the same provider is not trusted.
    let g2 = guard_for(&backend, issuer_yaml(&jwks.url(), ""), &[]).await;
    g2.wait_metric(FAILED, |v| v >= 1.0).await;
    assert_eq!(g2.get_as("/example/1", &t).await.status(), 503);
    let log = g2
        .output_with("invalid peer certificate: UnknownIssuer")
        .await;
    assert!(log.contains("ca_file"), "{log}");
}

#[tokio::test]
async fn cache_control_max_age_shortens_the_refresh_but_not_under_a_minute() {
    let idp = Idp::new();
    let backend = Backend::start().await;
    for (cache, next) in [
        (None, 600),
        (Some("public, max-age=300"), 300),
        (Some("max-age=5"), 60),
        (Some("no-cache"), 600),
        (Some("max-age=86400"), 600),
    ] {
        let jwks = JwksServer::start(Answer::Keys(idp.jwks(), cache)).await;
        let g = guard_for(&backend, issuer_yaml(&jwks.url(), ""), &[]).await;
        g.wait_metric(FETCHED, |v| v >= 1.0).await;
        eventually("the fetch's log line", || async {
            g.output().contains("identity provider keys fetched")
        })
        .await;
        let log = g.output();
        assert!(
            log.contains(&format!("\"next_fetch_s\":{next},")),
            "{cache:?}: {log}"
        );
    }
}
