//! Rate limits per client and per address (SPEC §13), local store, through the real binary:
//! statuses, the IETF RateLimit fields, what the backend received, metrics, the access
//! log, and reloads that keep or restart the counts.

mod common;

use common::*;

const LIMITS: &str = "rate_limits:\n  - name: per_client\n    by: client\n    privileges: [example_priv]\n    rate: 2\n    per: minute\n  - name: per_addr\n    by: address\n    privileges: [open_priv]\n    rate: 1\n    per: hour\n    burst: 1\n";

async fn guard(backend: &Backend, limits: &str) -> Guard {
    Guard::start(Options {
        extra: limits.to_string(),
        ..Options::new(backend)
    })
    .await
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_with_the_ratelimit_fields() {
    let backend = Backend::start().await;
    let g = guard(&backend, LIMITS).await;
    let out = ords_guard_cli(&["check"], &g.config);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("rate limit per_client: 2 per 60 s, burst 2, by Client, example_priv"),
        "{summary}"
    );
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    // Two a minute, two at once: the answers say what remains.
    for remaining in [1, 0] {
        let r = g.get_as("/example/1", &token).await;
        assert_eq!(r.status(), 200);
        let v = header(&r, "ratelimit").expect("RateLimit on a counted answer");
        assert!(
            v.starts_with(&format!("\"per_client\";r={remaining};t=")),
            "{v}"
        );
        assert!(header(&r, "ratelimit-policy").is_none());
    }
    // A request refused by the decision is not counted (and not forwarded).
    let r = g.http.get(g.url("/example/1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "ratelimit").is_none());

    let before = backend.count();
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "one more in 30 s: {retry}");
    assert_eq!(
        header(&r, "ratelimit-policy").unwrap(),
        "\"per_client\";q=2;w=60"
    );
    let v = header(&r, "ratelimit").unwrap();
    let t: u64 = v
        .strip_prefix("\"per_client\";r=0;t=")
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    assert!((31..=60).contains(&t), "full again within a minute: {v}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(body["detail"].as_str().unwrap().contains("per_client"));
    assert!(!body.to_string().contains(&token));
    assert_eq!(
        backend.count(),
        before,
        "a limited request is not forwarded"
    );

    // Another client has its own count; public paths are never counted.
    let admin = g.token("admin-client", ADMIN_SECRET, None).await;
    let r = g.get_as("/example/1", &admin).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit").unwrap().contains(";r=1;"));
    for _ in 0..3 {
        let r = g.http.get(g.url("/public/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit").is_none());
    }

    assert_eq!(
        g.metric("ords_guard_rate_limited_total{limit=\"per_client\"}")
            .await,
        1.0
    );
    assert_eq!(
        g.metric("ords_guard_rate_limited_total{limit=\"per_addr\"}")
            .await,
        0.0,
        "every limit has its series from the start"
    );
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"rate_limited\"}")
            .await,
        1.0
    );
    eventually("the access line naming the limit", || {
        let out = g.output();
        async move {
            out.contains("\"decision\":\"rate_limited\"")
                && out.contains("\"limit\":\"per_client\"")
        }
    })
    .await;
}

/// `by: address`: the client address counts, token or not (a privilege without roles).
#[tokio::test]
async fn a_limit_by_address_counts_the_callers_address() {
    let backend = Backend::start().await;
    let g = guard(&backend, LIMITS).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g.get_as("/open/x", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "ratelimit").unwrap(), "\"per_addr\";r=0;t=3600");
    // The same address with another client's token: the same count.
    let admin = g.token("admin-client", ADMIN_SECRET, None).await;
    let r = g.get_as("/open/x", &admin).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry), "{retry}");
    // Another privilege's paths are not this limit's.
    let r = g.get_as("/example/1", &admin).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit")
        .unwrap()
        .starts_with("\"per_client\""));
}

/// SPEC §13 reload: an unchanged limit's count carries on; a changed one starts afresh.
#[tokio::test]
async fn a_reload_keeps_unchanged_counts_and_restarts_changed_ones() {
    let backend = Backend::start().await;
    let g = guard(&backend, LIMITS).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    for _ in 0..2 {
        assert_eq!(g.get_as("/example/1", &token).await.status(), 200);
    }
    assert_eq!(g.get_as("/example/1", &token).await.status(), 429);

    // A reload that leaves the limit alone (another limit's privileges change): still full.
    let reload = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&g.config).unwrap();
        assert!(text.contains(from));
        let tmp = g.config.with_extension("tmp");
        std::fs::write(&tmp, text.replacen(from, to, 1)).unwrap();
        std::fs::rename(&tmp, &g.config).unwrap();
    };
    let sample = "ords_guard_config_reloads_total{result=\"success\"}";
    let before = g.metric(sample).await;
    let widened = LIMITS.replace(
        "privileges: [open_priv]",
        "privileges: [open_priv, example_write]",
    );
    reload(LIMITS, &widened);
    g.signal("HUP");
    g.wait_metric(sample, |v| v > before).await;
    assert_eq!(g.get_as("/example/1", &token).await.status(), 429);

    // A new rate: a fresh burst.
    let before = g.metric(sample).await;
    reload(&widened, &widened.replace("rate: 2\n", "rate: 3\n"));
    g.signal("HUP");
    g.wait_metric(sample, |v| v > before).await;
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 200, "{}", g.output());
    assert!(header(&r, "ratelimit")
        .unwrap()
        .starts_with("\"per_client\";r=2;"));
}

#[tokio::test]
async fn bad_limits_are_config_errors_with_their_key() {
    let backend = Backend::start().await;
    let g = guard(&backend, "").await;
    let text = std::fs::read_to_string(&g.config).unwrap();
    let bad = g.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        text.replacen(
            "privileges:",
            "rate_limits:\n  - name: x\n    rate: 1\n    per: second\n    store: redis\n  - name: x\n    rate: 1\n    per: second\n    privileges: [nope]\nprivileges:",
            1,
        ),
    )
    .unwrap();
    let out = ords_guard_cli(&["check"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for key in [
        "key `rate_limits[0].store`: store: redis needs a `rate_limit_store`",
        "key `rate_limits[1].name`: limit `x` is defined twice",
        "key `rate_limits[1].privileges[0]`: unknown privilege `nope`",
    ] {
        assert!(err.contains(key), "{key}: {err}");
    }
}
