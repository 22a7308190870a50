//! Rolling out in front of a live service (SPEC §11): report-only privileges beside
//! enforced ones, and Java matrix parameters under `path_parameters: strip`.

mod common;

use common::*;

fn report_mode(o: Options) -> Options {
    let registry = o.registry.replacen(
        "    patterns: [\"/example/*\"]\n",
        "    patterns: [\"/example/*\"]\n    mode: report\n",
        1,
    );
    Options { registry, ..o }
}

/// A privilege in `mode: report` forwards what it would refuse, exactly as a public path
/// (Authorization untouched, no identity headers, spoofed ones removed), and counts it by
/// privilege and would-be refusal; what it lets through is forwarded as under `enforce`.
/// The privilege beside it, enforced, refuses as before; 400s apply in both modes.
#[tokio::test]
async fn report_mode_forwards_and_counts_what_it_would_refuse() {
    let backend = Backend::start().await;
    let g = Guard::start(report_mode(Options::new(&backend))).await;
    let out = ords_guard_cli(&["check"], &g.config);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("example_priv")
            && String::from_utf8_lossy(&out.stdout).contains("mode: report"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // No token: would be 401 unauthenticated.
    let r = g
        .http
        .get(g.url("/example/employees/7"))
        .header("X-ORDS-Client-Id", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("www-authenticate").is_none());
    assert_eq!(r.text().await.unwrap(), "backend ok");
    let seen = backend.last();
    assert_eq!(seen.target, "/example/employees/7");
    assert!(!seen.has_header_like("x-ords-"), "{seen:?}");

    // A malformed token: would be 401 invalid_token; passed through untouched.
    let r = g.get_as("/example/employees/7", "not-a-jwt").await;
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.header("authorization"), Some("Bearer not-a-jwt"));
    assert!(!seen.has_header_like("x-ords-"), "{seen:?}");

    // A valid token whose scope lacks the privilege: would be 403.
    let narrow = g
        .token("admin-client", ADMIN_SECRET, Some("example_write"))
        .await;
    let r = g.get_as("/example/employees/7", &narrow).await;
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {narrow}").as_str())
    );
    assert!(!seen.has_header_like("x-ords-"), "{seen:?}");

    // What it lets through is treated as under enforce: identity headers, no Authorization.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g.get_as("/example/employees/7", &token).await;
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.header("x-ords-client-id"), Some("example-client"));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(seen.header("authorization"), None);

    // The enforced privilege beside it still refuses, and nothing is reported for it.
    let before = backend.count();
    let r = g
        .http
        .post(g.url("/example/orders/1"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        backend.count(),
        before,
        "an enforced refusal is not forwarded"
    );
    // Path rejections apply in report mode too.
    let (code, _) = g
        .raw(b"GET /example/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(code, 400);
    assert_eq!(backend.count(), before);

    let sample = |would: &str| {
        format!("ords_guard_report_only_total{{privilege=\"example_priv\",would=\"{would}\"}}")
    };
    for would in ["unauthenticated", "invalid_token", "forbidden"] {
        assert_eq!(g.metric(&sample(would)).await, 1.0, "{would}");
    }
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"report_only\"}")
            .await,
        3.0
    );
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"forwarded\"}")
            .await,
        1.0
    );
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"unauthenticated\"}")
            .await,
        1.0
    );
    let metrics = g.metrics().await;
    assert!(
        !metrics.contains("privilege=\"example_write\",would"),
        "{metrics}"
    );
    // The access log names what was not enforced; never the token.
    eventually("the access lines of the reported requests", || {
        let out = g.output();
        async move {
            ["unauthenticated", "invalid_token", "forbidden"]
                .iter()
                .all(|w| out.contains(&format!("\"would\":\"{w}\"")))
        }
    })
    .await;
    let out = g.output();
    assert!(out.contains("\"decision\":\"report_only\""), "{out}");
    assert!(!out.contains(&narrow) && !out.contains("not-a-jwt"));
}

/// `path_parameters: strip`: Java's `;jsessionid=` no longer gets 400; the decision reads
/// the path without it, the backend gets it as sent. `%3B` and a dot segment hidden behind a
/// parameter are still refused.
#[tokio::test]
async fn strip_decides_without_jsessionid_and_forwards_it() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "path_parameters: strip\n".into(),
        ..Options::new(&backend)
    })
    .await;
    let raw = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // Protected once the parameter is removed: no token, no entry.
    let r = g
        .http
        .get(g.url("/example/orders;jsessionid=AB12CD"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (code, _) = g.raw(&raw("/example;jsessionid=AB12CD")).await;
    assert_eq!(code, 401, "/example;x is /example to a servlet container");
    let (code, _) = g.raw(&raw("/;x/example/1")).await;
    assert_eq!(code, 401, "/;x/example/1 is /example/1");
    assert_eq!(backend.count(), 0);

    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g
        .get_as("/example/orders;jsessionid=AB12CD?page=2", &token)
        .await;
    assert_eq!(r.status(), 200);
    let seen = backend.last();
    assert_eq!(seen.target, "/example/orders;jsessionid=AB12CD?page=2");
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));

    let r = g
        .http
        .get(g.url("/public/report;jsessionid=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().target, "/public/report;jsessionid=1");

    let before = backend.count();
    for target in [
        "/example%3bjsessionid=1",
        "/example%3B/1",
        "/public/..;x/example/1",
        "/public/.;x/example",
        "/public;x%2f..%2fexample",
    ] {
        let (code, text) = g.raw(&raw(target)).await;
        assert_eq!(code, 400, "{target}: {text}");
        assert!(text.contains("application/problem+json"), "{text}");
    }
    assert_eq!(backend.count(), before, "nothing refused was forwarded");
}

/// Under the default, `path_parameters: reject`, the same Java path is a 400.
#[tokio::test]
async fn reject_is_the_default() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let r = g
        .http
        .get(g.url("/public/report;jsessionid=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(backend.count(), 0);
}
