//! Rate limits shared across replicas through a real Redis (SPEC §13 `store: redis`),
//! through the real binary: two replicas share one count; a frozen, down, restarted,
//! garbage-speaking or hanging store is `on_error`'s, never a hang or a panic; keys expire;
//! the URL from `url_file` reloads; the password never shows.

mod common;

use common::redis::{impostor, Redis};
use common::*;

/// A limit on `example_priv` per client in the shared store.
fn shared(url: &str, rate: u32, on_error: &str, timeout_ms: u32) -> String {
    format!("rate_limits:\n  - name: per_client\n    privileges: [example_priv]\n    rate: {rate}\n    per: minute\n    store: redis\nrate_limit_store:\n  {url}\n  timeout_ms: {timeout_ms}\n  on_error: {on_error}\n")
}

async fn guard(backend: &Backend, extra: String) -> Guard {
    Guard::start(Options {
        extra,
        ..Options::new(backend)
    })
    .await
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The RateLimit field's remaining count, when the answer has one.
fn remaining(r: &reqwest::Response) -> Option<u64> {
    let v = header(r, "ratelimit")?;
    let rest = v.strip_prefix("\"per_client\";r=")?;
    rest.split(';').next()?.parse().ok()
}

#[tokio::test]
async fn two_replicas_sharing_one_redis_share_one_count() {
    let redis = Redis::with_password("hunter2-redis");
    let backend = Backend::start().await;
    let extra = shared(&format!("url: \"{}\"", redis.url()), 3, "deny", 2000);
    let a = guard(&backend, extra.clone()).await;
    let b = guard(&backend, extra).await;
    let out = ords_guard_cli(&["check"], &a.config);
    let summary = String::from_utf8_lossy(&out.stdout);
    let store = format!(
        "shared store redis://127.0.0.1:{}/0 (timeout 2000 ms, on_error: deny)",
        redis.port
    );
    assert!(summary.contains(&store), "{summary}");
    assert!(!summary.contains("hunter2"), "{summary}");
    // Each replica signs its own tokens; the client, and so the count, is the same.
    let ta = a.token("example-client", EXAMPLE_SECRET, None).await;
    let tb = b.token("example-client", EXAMPLE_SECRET, None).await;

    // Three a minute between both replicas.
    for (g, t, left) in [(&a, &ta, 2), (&b, &tb, 1), (&a, &ta, 0)] {
        let r = g.get_as("/example/1", t).await;
        assert_eq!(r.status(), 200, "{}", g.output());
        let v = header(&r, "ratelimit").unwrap();
        assert!(v.starts_with(&format!("\"per_client\";r={left};t=")), "{v}");
    }
    let before = backend.count();
    let r = b.get_as("/example/1", &tb).await;
    assert_eq!(r.status(), 429, "the other replica's requests counted");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one more every 20 s: {retry}");
    assert_eq!(
        header(&r, "ratelimit-policy").unwrap(),
        "\"per_client\";q=3;w=60"
    );
    let v = header(&r, "ratelimit").unwrap();
    let t: u64 = v
        .strip_prefix("\"per_client\";r=0;t=")
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    assert!((41..=60).contains(&t), "full again within a minute: {v}");
    assert_eq!(
        backend.count(),
        before,
        "a limited request is not forwarded"
    );
    assert_eq!(
        b.metric("ords_guard_rate_limited_total{limit=\"per_client\"}")
            .await,
        1.0
    );
    assert_eq!(
        b.metric("ords_guard_requests_total{decision=\"rate_limited\"}")
            .await,
        1.0
    );

    // The key is SPEC's, and expires when the bucket is full again.
    let pttl = redis.pttl("ords-guard:rl:per_client:example-client");
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl}");

    // Another client has its own count.
    let admin = a.token("admin-client", ADMIN_SECRET, None).await;
    assert_eq!(remaining(&a.get_as("/example/1", &admin).await), Some(2));

    assert!(
        a.metric("ords_guard_rate_limit_store_duration_seconds_count")
            .await
            >= 3.0
    );
    assert_eq!(
        a.metric("ords_guard_rate_limit_store_errors_total").await,
        0.0
    );
    eventually("the access line naming the limit", || {
        let out = b.output();
        async move { out.contains("\"limit\":\"per_client\"") }
    })
    .await;
    let port = redis.port;
    eventually("the connected line, with the URL redacted", || {
        let out = a.output();
        let store = format!("redis://127.0.0.1:{port}/0");
        async move { out.contains("connected to the rate-limit store") && out.contains(&store) }
    })
    .await;
    for g in [&a, &b] {
        assert!(!g.output().contains("hunter2"), "{}", g.output());
        assert!(!g.metrics().await.contains("hunter2"));
    }

    // A reload that changes the limit's rate starts it afresh, in Redis too.
    let text = std::fs::read_to_string(&a.config).unwrap();
    let tmp = a.config.with_extension("tmp");
    std::fs::write(&tmp, text.replacen("rate: 3\n", "rate: 4\n", 1)).unwrap();
    std::fs::rename(&tmp, &a.config).unwrap();
    a.wait_metric("ords_guard_config_reloads_total{result=\"success\"}", |v| {
        v >= 1.0
    })
    .await;
    assert_eq!(remaining(&a.get_as("/example/1", &ta).await), Some(3));
}

#[tokio::test]
async fn a_frozen_redis_is_answered_by_on_error() {
    let redis = Redis::start();
    let backend = Backend::start().await;
    let url = format!("url: \"{}\"", redis.url());
    let allow = guard(&backend, shared(&url, 1000, "allow", 200)).await;
    let deny = guard(&backend, shared(&url, 1000, "deny", 200)).await;
    let ta = allow.token("example-client", EXAMPLE_SECRET, None).await;
    let td = deny.token("example-client", EXAMPLE_SECRET, None).await;
    assert!(remaining(&allow.get_as("/example/1", &ta).await).is_some());
    assert!(remaining(&deny.get_as("/example/1", &td).await).is_some());

    redis.freeze();
    // allow: forwarded, uncounted, no RateLimit that could mislead.
    let before = backend.count();
    let r = allow.get_as("/example/1", &ta).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit").is_none());
    assert_eq!(backend.count(), before + 1);
    // deny: 503, not forwarded.
    let r = deny.get_as("/example/1", &td).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(backend.count(), before + 1);
    assert_eq!(
        deny.metric("ords_guard_requests_total{decision=\"rate_limit_unavailable\"}")
            .await,
        1.0
    );
    for g in [&allow, &deny] {
        assert!(g.metric("ords_guard_rate_limit_store_errors_total").await >= 1.0);
    }
    // Paths no shared limit counts do not wait for the store.
    let r = allow.http.get(allow.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    eventually("the outage logged once it began", || {
        let out = allow.output();
        async move { out.contains("rate-limit store unavailable") && out.contains("on_error: allow") }
    })
    .await;

    redis.thaw();
    eventually("counted again once Redis answers", || async {
        remaining(&allow.get_as("/example/1", &ta).await).is_some()
    })
    .await;
    let r = deny.get_as("/example/1", &td).await;
    assert_eq!(r.status(), 200);
    assert!(remaining(&r).is_some());
    eventually("the recovery logged", || {
        let out = allow.output();
        async move { out.contains("the rate-limit store answers again") }
    })
    .await;
}

#[tokio::test]
async fn it_starts_without_redis_and_counts_once_redis_answers_and_after_a_restart() {
    let mut redis = Redis::stopped();
    let backend = Backend::start().await;
    let url = format!("url: \"{}\"", redis.url());
    // Ready although nothing listens on the store's port.
    let g = guard(&backend, shared(&url, 1000, "allow", 500)).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit").is_none());
    assert!(g.metric("ords_guard_rate_limit_store_errors_total").await >= 1.0);

    redis.run();
    eventually("counted once Redis answers", || async {
        remaining(&g.get_as("/example/1", &token).await).is_some()
    })
    .await;

    // Restarted (every connection dropped, every count gone): used again, no restart of
    // ords-guard, the count afresh.
    redis.kill();
    redis.run();
    eventually("counted again after Redis restarted", || async {
        remaining(&g.get_as("/example/1", &token).await).is_some()
    })
    .await;
    let left = remaining(&g.get_as("/example/1", &token).await);
    assert!(left.unwrap() >= 990, "a fresh count: {left:?}");
    assert!(!g.output().contains("panicked"), "{}", g.output());
}

/// Each proxy thread has its own connection to the store. Once the store answers again
/// after a restart, every thread uses it: none waits out its own reconnect's backoff
/// while the others are counted (seen as "answers again", then "no answer within 200 ms"
/// from the other thread).
#[tokio::test]
async fn after_a_restart_every_proxy_thread_counts_again() {
    let mut redis = Redis::start();
    let backend = Backend::start().await;
    let url = format!("url: \"{}\"", redis.url());
    let g = Guard::start(Options {
        extra: shared(&url, 100_000, "allow", 200),
        threads: 2,
        ..Options::new(&backend)
    })
    .await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    // A connection per request, so that both threads serve requests.
    let fresh = || async {
        reqwest::Client::new()
            .get(g.url("/example/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
    };
    for _ in 0..16 {
        assert!(remaining(&fresh().await).is_some(), "{}", g.output());
    }

    redis.kill();
    for _ in 0..16 {
        let r = fresh().await;
        assert_eq!(r.status(), 200, "on_error: allow");
        assert!(remaining(&r).is_none());
    }
    redis.run();
    eventually("counted once Redis is back", || async {
        remaining(&fresh().await).is_some()
    })
    .await;
    for i in 0..32 {
        let r = fresh().await;
        assert!(
            remaining(&r).is_some(),
            "request {i} after the store answered again was not counted: {}",
            g.output()
        );
    }
    assert!(!g.output().contains("panicked"), "{}", g.output());
}

/// A peer that is not Redis (it answers garbage, or nothing) is an error for on_error;
/// `url_file` (a Kubernetes Secret) moves the store without a restart.
#[tokio::test]
async fn a_store_that_answers_garbage_or_hangs_is_an_error_and_url_file_reloads() {
    let garbage = impostor(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n")).await;
    let hangs = impostor(None).await;
    let redis = Redis::start();
    let backend = Backend::start().await;
    let o = Options {
        extra: shared("url_file: secret/redis-url", 1000, "deny", 200),
        ..Options::new(&backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    let url_file = secret.join("redis-url");
    std::fs::write(&url_file, format!("redis://127.0.0.1:{garbage}/0\n")).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    let before = backend.count();
    for _ in 0..3 {
        let r = g.get_as("/example/1", &token).await;
        assert_eq!(r.status(), 503, "{}", g.output());
    }
    assert_eq!(backend.count(), before);
    let errors = g.metric("ords_guard_rate_limit_store_errors_total").await;
    assert!(errors >= 3.0);

    // The Secret changes (atomically, as the kubelet does): a reload, a new connection.
    let point_at = |port: u16| {
        let tmp = url_file.with_extension("tmp");
        std::fs::write(&tmp, format!("redis://127.0.0.1:{port}/0\n")).unwrap();
        std::fs::rename(&tmp, &url_file).unwrap();
    };
    let reloads = "ords_guard_config_reloads_total{result=\"success\"}";
    point_at(hangs);
    g.wait_metric(reloads, |v| v >= 1.0).await;
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 503);
    assert!(g.metric("ords_guard_rate_limit_store_errors_total").await > errors);
    // The proxy itself answers meanwhile.
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    point_at(redis.port);
    g.wait_metric(reloads, |v| v >= 2.0).await;
    eventually("counted once the URL names Redis", || async {
        let r = g.get_as("/example/1", &token).await;
        r.status() == 200 && remaining(&r).is_some()
    })
    .await;
    assert!(!g.output().contains("panicked"), "{}", g.output());
}

/// A flood of distinct addresses leaves keys that all expire (none without a TTL).
#[tokio::test]
async fn a_flood_of_distinct_addresses_leaves_only_expiring_keys() {
    let redis = Redis::start();
    let backend = Backend::start().await;
    let extra = format!("trusted_proxies: [\"127.0.0.1/32\"]\nrate_limits:\n  - name: per_addr\n    by: address\n    privileges: [open_priv]\n    rate: 1\n    per: hour\n    store: redis\nrate_limit_store:\n  url: \"{}\"\n  timeout_ms: 2000\n", redis.url());
    let g = guard(&backend, extra).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let get = |addr: String| {
        g.http
            .get(g.url("/open/x"))
            .bearer_auth(&token)
            .header("X-Forwarded-For", addr)
            .send()
    };
    for i in 0..300u32 {
        let r = get(format!("10.9.{}.{}", i / 256, i % 256)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit").unwrap(), "\"per_addr\";r=0;t=3600");
    }
    let r = get("10.9.0.7".into()).await.unwrap();
    assert_eq!(r.status(), 429, "the address's one an hour is spent");
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "300");
    let no_ttl = redis.cli(&[
        "EVAL",
        "local n = 0 for _, k in ipairs(redis.call('KEYS', 'ords-guard:rl:per_addr:*')) do if redis.call('PTTL', k) < 0 then n = n + 1 end end return n",
        "0",
    ]);
    assert_eq!(no_ttl.trim(), "0", "every key expires");
    let ttl = redis.pttl("ords-guard:rl:per_addr:10.9.0.7");
    assert!((3_500_000..=3_600_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn rediss_is_tls_verified_against_the_system_roots() {
    let redis_pki = pki("redis");
    let redis = Redis::with_tls(&redis_pki);
    let backend = Backend::start().await;
    let url = format!("url: \"{}\"", redis.url());
    let roots = tempfile::tempdir().unwrap();
    let own_ca = roots.path().join("redis-ca.pem");
    std::fs::write(&own_ca, &redis_pki.ca).unwrap();
    let other_ca = roots.path().join("other-ca.pem");
    std::fs::write(&other_ca, pki("other").ca).unwrap();
    let start = |ca: &std::path::Path, timeout_ms| {
        Guard::start(Options {
            extra: shared(&url, 2, "deny", timeout_ms),
            // rustls-native-certs reads the bundle SSL_CERT_FILE names instead of the system's.
            env: vec![("SSL_CERT_FILE", ca.display().to_string())],
            ..Options::new(&backend)
        })
    };

    // Trusting the store's CA: counted over TLS.
    let trusting = start(&own_ca, 2000).await;
    let token = trusting.token("example-client", EXAMPLE_SECRET, None).await;
    for left in [1, 0] {
        let r = trusting.get_as("/example/1", &token).await;
        assert_eq!(r.status(), 200, "{}", trusting.output());
        assert_eq!(remaining(&r), Some(left));
    }
    assert_eq!(trusting.get_as("/example/1", &token).await.status(), 429);
    let pttl = redis.pttl("ords-guard:rl:per_client:example-client");
    assert!((1..=60_000).contains(&pttl), "PTTL {pttl}");

    // Trusting another CA: the store's certificate is refused, which is on_error's (deny).
    // Its first connection logs why; requests wait at most timeout_ms (the manager keeps
    // trying to connect meanwhile).
    let doubting = start(&other_ca, 300).await;
    let token = doubting.token("example-client", EXAMPLE_SECRET, None).await;
    let before = backend.count();
    let r = doubting.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(backend.count(), before);
    assert!(
        doubting
            .metric("ords_guard_rate_limit_store_errors_total")
            .await
            >= 1.0
    );
    eventually("the refused certificate named in the log", || {
        let out = doubting.output();
        async move { out.contains("does not answer yet (invalid peer certificate: UnknownIssuer)") }
    })
    .await;
}
