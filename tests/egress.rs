//! Egress listeners (SPEC §10) through the real binary: a legacy caller's plain HTTP goes
//! out with a token ords-guard fetched. Both sides at once: ords-guard as egress in front
//! of a second ords-guard as ingress (its own token endpoint, `/example/*` protected) in
//! front of a real backend; and a remote API that refuses a token, for the 401 rule.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An `egress` entry; `{LISTEN}` is filled in with a free port.
fn egress_yaml(upstream: &str, token_url: &str, client_id: &str) -> String {
    format!("egress:\n  - name: orders\n    listen: \"{{LISTEN}}\"\n    upstream: \"{upstream}\"\n    token_url: \"{token_url}\"\n    client_id: {client_id}\n    client_secret_file: orders.secret\n")
}

/// An ords-guard whose only job here is egress (its ingress has nothing to protect).
async fn egress_guard(backend: &Backend, egress: String, secret: &str) -> (Guard, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let o = Options {
        extra: egress.replace("{LISTEN}", &listen.to_string()),
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(dir.path().join("orders.secret"), format!("{secret}\n")).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    (Guard::spawn(dir, config, proxy, admin, "/").await, listen)
}

#[tokio::test]
async fn a_legacy_callers_plain_get_reaches_an_ords_guarded_backend() {
    let backend = Backend::start().await;
    let ingress = Guard::start(Options::new(&backend)).await;
    let (g, listen) = egress_guard(
        &backend,
        egress_yaml(
            &ingress.base,
            &format!("{}/oauth/token", ingress.base),
            "example-client",
        ),
        EXAMPLE_SECRET,
    )
    .await;
    // `check` summarises the entry, never the secret.
    let out = ords_guard_cli(&["check"], &g.config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("orders  listen {listen}  -> http://"))
            && text.contains("client_id example-client")
            && !text.contains(EXAMPLE_SECRET),
        "{text}"
    );
    let caller = http_client();
    let url = format!("http://{listen}/example/employees/?page=2");
    for auth in [None, Some("Bearer the-callers-own")] {
        let mut req = caller
            .get(&url)
            .header("Connection", "X-Hop")
            .header("X-Hop", "1");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", g.output());
        assert_eq!(r.text().await.unwrap(), "backend ok");
        let seen = backend.last();
        assert_eq!(seen.target, "/example/employees/?page=2");
        assert_eq!(seen.header("x-ords-client-id"), Some("example-client"));
        assert_eq!(seen.header("x-hop"), None, "hop-by-hop named by Connection");
    }
    assert_eq!(
        g.metric("ords_guard_egress_token_fetches_total{egress=\"orders\",result=\"success\"}")
            .await,
        1.0,
        "one token for both calls"
    );
    // Counted when the access line is written, just after the answer.
    g.wait_metric(
        "ords_guard_egress_requests_total{egress=\"orders\",outcome=\"forwarded\"}",
        |v| v == 2.0,
    )
    .await;
    assert!(
        g.metric("ords_guard_egress_token_expiry_timestamp_seconds{egress=\"orders\"}")
            .await
            > (now() + 3000) as f64
    );
    let log = g.output_with("\"egress\":\"orders\"").await;
    assert!(!log.contains(EXAMPLE_SECRET), "never the secret in a log");

    // The client is revoked in the ingress registry: its token is refused (401), a new one
    // cannot be had, so the caller gets the remote's 401.
    let revoked = registry_yaml().replace(
        "    client_id: example-client\n",
        "    client_id: example-client\n    disabled: true\n",
    );
    ingress.reload_with(&revoked, "success").await;
    let r = caller.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // ords-guard's token endpoint answers a disabled client `unauthorized_client`.
    eventually("the refusal logged", || async {
        g.output()
            .contains("the token endpoint answered 400 with error `unauthorized_client`")
    })
    .await;
    // Nothing to send now: 503 with Retry-After, the request not sent.
    let before = backend.count();
    let r = caller.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(backend.count(), before);
}

/// A remote API that refuses the tokens in `refused` and takes any other, and a token
/// endpoint handing out `t1`, `t2`, ...
struct Remote {
    addr: SocketAddr,
    tokens_issued: Arc<AtomicUsize>,
    refused: Arc<Mutex<Vec<String>>>,
    /// (authorization, body) of each request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn remote() -> Remote {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issued = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(vec!["Bearer t1".to_string()]));
    let (i, s, f) = (issued.clone(), seen.clone(), refused.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (i, s, f) = (i.clone(), s.clone(), f.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (i, s, f) = (i.clone(), s.clone(), f.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let (status, out) = if path == "/token" {
                            let n = i.fetch_add(1, Ordering::AcqRel) + 1;
                            (200, format!("{{\"access_token\":\"t{n}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}"))
                        } else {
                            s.lock()
                                .unwrap()
                                .push((auth.clone(), String::from_utf8_lossy(&body).into()));
                            if f.lock().unwrap().contains(&auth) {
                                (401, "token refused".to_string())
                            } else {
                                (200, format!("ok with {auth}"))
                            }
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(out)))
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
    Remote {
        addr,
        tokens_issued: issued,
        refused,
        seen,
    }
}

#[tokio::test]
async fn a_401_to_the_current_token_is_resent_once_for_idempotent_requests_only() {
    let backend = Backend::start().await;
    let api = remote().await;
    let base = format!("http://{}", api.addr);
    let (g, listen) = egress_guard(
        &backend,
        egress_yaml(&base, &format!("{base}/token"), "c"),
        "s",
    )
    .await;
    let caller = http_client();

    // A PUT with a body: 401 to t1, sent again with t2, the body replayed.
    let r = caller
        .put(format!("http://{listen}/orders/1"))
        .body("{\"qty\":2}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok with Bearer t2");
    assert_eq!(
        api.seen.lock().unwrap().clone(),
        [
            ("Bearer t1".to_string(), "{\"qty\":2}".to_string()),
            ("Bearer t2".to_string(), "{\"qty\":2}".to_string())
        ]
    );
    assert_eq!(api.tokens_issued.load(Ordering::Acquire), 2);
    g.wait_metric(
        "ords_guard_egress_requests_total{egress=\"orders\",outcome=\"retried\"}",
        |v| v == 1.0,
    )
    .await;
    // t2 is current now and taken: later calls pass at once.
    let post = || caller.post(format!("http://{listen}/orders")).body("x");
    assert_eq!(post().send().await.unwrap().status(), 200);
    assert_eq!(api.tokens_issued.load(Ordering::Acquire), 2);

    // The remote stops taking t2 and t3. A POST is not sent twice: the caller gets the 401
    // (and t2 is dropped); a POST with Idempotency-Key gets t3, a 401, then t4.
    api.refused
        .lock()
        .unwrap()
        .extend(["Bearer t2".to_string(), "Bearer t3".to_string()]);
    let r = post().send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "token refused");
    let r = post()
        .header("Idempotency-Key", "k-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok with Bearer t4");
    assert_eq!(api.tokens_issued.load(Ordering::Acquire), 4);
    g.wait_metric(
        "ords_guard_egress_requests_total{egress=\"orders\",outcome=\"retried\"}",
        |v| v == 2.0,
    )
    .await;
}

/// The whole exchange with a real OAuth2 server: oidc-provider issues the token to the
/// egress guard, an ingress guard that trusts oidc-provider (`issuers`) checks it, and the
/// backend sees who called.
#[tokio::test]
async fn oidc_provider_as_the_token_endpoint_of_an_egress_entry() {
    use common::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
    let idp = OidcProvider::start();
    let backend = Backend::start().await;
    let ingress = Guard::start(Options {
        extra: format!(
            "issuers:\n  - name: oidc\n    issuer: \"{iss}\"\n    audience: [orders-api]\n    jwks_url: \"{iss}/jwks\"\n    roles_claim: /roles\n",
            iss = idp.issuer
        ),
        ..Options::new(&backend)
    })
    .await;
    let yaml = egress_yaml(&ingress.base, &format!("{}/token", idp.issuer), CLIENT_ID)
        + "    scope: example_priv\n";
    let (g, listen) = egress_guard(&backend, yaml, CLIENT_SECRET).await;
    let r = http_client()
        .get(format!("http://{listen}/example/employees/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}\n{}", g.output(), ingress.output());
    let seen = backend.last();
    assert_eq!(seen.header("x-ords-issuer"), Some("oidc"));
    assert_eq!(seen.header("x-ords-client-id"), Some(CLIENT_ID));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(
        g.metric("ords_guard_egress_token_fetches_total{egress=\"orders\",result=\"success\"}")
            .await,
        1.0
    );
    // oidc-provider's tokens live 300 s (its accessTokenTTL): renewed at half of that.
    let expiry = g
        .metric("ords_guard_egress_token_expiry_timestamp_seconds{egress=\"orders\"}")
        .await;
    assert!(
        (now() + 200) as f64 <= expiry && expiry <= (now() + 301) as f64,
        "{expiry}"
    );
}

/// SPEC §10: a config may serve egress alone: no `listen`, `upstream` or `token`.
#[tokio::test]
async fn an_egress_only_config_needs_no_ingress() {
    let api = remote().await;
    api.refused.lock().unwrap().clear();
    let base = format!("http://{}", api.addr);
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(dir.path().join("orders.secret"), "s\n").unwrap();
    let config = dir.path().join("ords-guard.yaml");
    let yaml =
        egress_yaml(&base, &format!("{base}/token"), "c").replace("{LISTEN}", &listen.to_string());
    std::fs::write(&config, format!("admin_listen: \"{admin}\"\n{yaml}")).unwrap();
    let out = ords_guard_cli(&["check"], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("no ingress (no `listen`): egress only"),
        "{text}"
    );
    // Ready means the admin port answers and the egress listener accepts.
    let g = Guard::spawn(dir, config, listen, admin, "/").await;
    let r = http_client()
        .get(format!("http://{listen}/orders/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", g.output());
    assert_eq!(r.text().await.unwrap(), "ok with Bearer t1");
    // No ingress listener in the starting line (log lines reach stdout a little later).
    g.output_with("\"listen\":\"-\"").await;
    // Without `listen` nor `egress` the config says what to give.
    let bare = g.dir.path().join("bare.yaml");
    std::fs::write(&bare, format!("admin_listen: \"{admin}\"\n")).unwrap();
    let out = ords_guard_cli(&["check"], &bare);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("key `listen`") && err.contains("egress"),
        "{err}"
    );
}

/// Upstream host names are looked up when a request needs them, not at load (SPEC §10
/// egress in a Kubernetes sidecar: the remote's name may not resolve when the pod starts).
/// A name that resolves is used; one that does not is a 502 for its requests only.
#[tokio::test]
async fn upstream_names_are_looked_up_per_request_not_at_load() {
    let api = remote().await;
    api.refused.lock().unwrap().clear();
    let by_name = format!("http://localhost:{}", api.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(dir.path().join("orders.secret"), "s\n").unwrap();
    let config = dir.path().join("ords-guard.yaml");
    let live = egress_yaml(&by_name, &format!("{by_name}/token"), "c")
        .replace("{LISTEN}", &listen.to_string());
    let gone = format!("  - name: gone\n    listen: \"{dead}\"\n    upstream: \"http://orders.invalid\"\n    token_url: \"{by_name}/token\"\n    client_id: c\n    client_secret_file: orders.secret\n");
    std::fs::write(
        &config,
        format!("admin_listen: \"{admin}\"\ntimeouts:\n  upstream_connect_ms: 1000\n{live}{gone}"),
    )
    .unwrap();
    let out = ords_guard_cli(&["check"], &config);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let g = Guard::spawn(dir, config, listen, admin, "/").await;
    let r = http_client()
        .get(format!("http://{listen}/orders/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", g.output());
    // Both entries' managers fetch from the same endpoint at start: t1 or t2.
    let body = r.text().await.unwrap();
    assert!(body.starts_with("ok with Bearer t"), "{body}");
    let r = http_client()
        .get(format!("http://{dead}/orders/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "{}", g.output());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    g.wait_metric(
        "ords_guard_egress_requests_total{egress=\"gone\",outcome=\"upstream_error\"}",
        |v| v == 1.0,
    )
    .await;
    eventually("the lookup failure is logged", || {
        let out = g.output();
        async move { out.contains("upstream lookup failed") }
    })
    .await;

    // A reload that adds an entry says it waits for a restart, and starts no token manager
    // for it (its series would appear at once if one ran).
    let text = std::fs::read_to_string(&g.config).unwrap();
    let later = gone
        .replace("name: gone", "name: later")
        .replace(&dead.to_string(), &format!("127.0.0.1:{}", free_port()));
    let tmp = g.config.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}{later}")).unwrap();
    std::fs::rename(&tmp, &g.config).unwrap();
    let sample = "ords_guard_config_reloads_total{result=\"success\"}";
    let before = g.metric(sample).await;
    g.signal("HUP");
    g.wait_metric(sample, |v| v > before).await;
    g.output_with("egress entry `later` is new").await;
    assert!(!g.metrics().await.contains("egress=\"later\""));
}
