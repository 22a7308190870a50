//! What the backend receives, revocation through the registry, upstream failures, the demo,
//! and `check`.

mod common;

use common::*;
use std::process::Command;

#[tokio::test]
async fn identity_headers_are_ours_and_the_path_is_normalised() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        base_path: "/ords/hr",
        ..Options::new(&backend)
    })
    .await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let spoof = [
        ("X-ORDS-Client-Id", "admin-client"),
        ("x-ords-roles", "example_admin"),
        ("X_ORDS_Client_Id", "admin-client"),
        ("x_ords_privilege", "example_write"),
        ("X-Ords-Client-Name", "Admin Client"),
        ("X_HTTP_Method_Override", "DELETE"),
    ];

    // Protected: Authorization removed, identity set from the token and registry.
    let mut req = g
        .http
        .get(format!(
            "http://{}/ords/hr//example/%7Eemp/%41?q=a%2Fb&r=1",
            g.proxy
        ))
        .bearer_auth(&token)
        .header("Host", "api.example.com");
    for (k, v) in spoof {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = backend.last();
    assert_eq!(seen.target, "/ords/hr/example/~emp/A?q=a%2Fb&r=1");
    assert_eq!(seen.header("authorization"), None);
    assert!(!seen.has_header_like("x-http-method"), "{seen:?}");
    assert_eq!(seen.header("x-ords-client-id"), Some("example-client"));
    assert_eq!(seen.header("x-ords-client-name"), Some("Example Client"));
    assert_eq!(seen.header("x-ords-roles"), Some("example_role"));
    assert_eq!(seen.header("x-ords-privilege"), Some("example_priv"));
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(k, _)| k
                .to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-ords-"))
            .count(),
        4,
        "{seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.example.com"));

    // Public: Authorization passed through, spoofed identity still removed.
    let mut req = g
        .http
        .get(g.url("/public/x"))
        .header("Authorization", "Bearer opaque-legacy-token")
        .header("X-Forwarded-For", "10.1.1.1");
    for (k, v) in spoof {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = backend.last();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer opaque-legacy-token")
    );
    assert!(!seen.has_header_like("x-ords-"), "{seen:?}");
    assert!(!seen.has_header_like("x-http-method"), "{seen:?}");
    assert_eq!(seen.header("x-forwarded-for"), Some("10.1.1.1, 127.0.0.1"));
}

#[tokio::test]
async fn absolute_form_targets_are_reduced_to_their_path() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let (code, _) = g.raw(b"GET http://api.example/example/1 HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 401, "absolute-form must not bypass the decision");
    let (code, _) = g.raw(b"GET http://api.example//public/%61?b=1 HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 200);
    assert_eq!(backend.last().target, "/public/a?b=1");
    assert_eq!(
        backend.last().header("x-forwarded-host"),
        Some("api.example")
    );
    // RFC 9112 §3.2.2: the target's authority is the host, whatever Host says.
    let (code, _) = g.raw(b"GET http://other.example:8080/public/b HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 200);
    let seen = backend.last();
    assert_eq!(seen.target, "/public/b");
    assert_eq!(seen.header("x-forwarded-host"), Some("other.example:8080"));
    // The reduced path meets every path rule, and a protected one its privilege.
    for target in [
        "http://a/public/../example/1",
        "http://a/public/%2e%2e/x",
        "http://a/public;x",
    ] {
        let (code, text) = g
            .raw(
                format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(code, 400, "{target}: {text}");
        assert!(text.contains("application/problem+json"), "{text}");
    }
    let (code, _) = g
        .raw(b"GET HTTP://A.example/example/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(code, 401);
    // Userinfo, other schemes, authority-form and CONNECT: problem+json 400, never forwarded.
    for line in [
        "GET http://user@evil.example/public/a HTTP/1.1",
        "GET ftp://a/public/a HTTP/1.1",
        "GET a.example:443 HTTP/1.1",
        "CONNECT a.example:443 HTTP/1.1",
    ] {
        let (code, text) = g.raw(format!("{line}\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert_eq!(code, 400, "{line}: {text}");
        assert!(
            text.contains("application/problem+json") && text.contains("\"status\":400"),
            "{text}"
        );
    }
    assert_eq!(backend.count(), 2);
}

#[tokio::test]
async fn registry_changes_revoke_without_waiting_for_expiry() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let example = g.token("example-client", EXAMPLE_SECRET, None).await;
    let admin = g.token("admin-client", ADMIN_SECRET, None).await;
    let get = |t: &str| {
        g.http
            .get(g.url("/example/1"))
            .bearer_auth(t.to_string())
            .send()
    };
    assert_eq!(get(&example).await.unwrap().status(), 200);

    // REVOKE_CLIENT_ROLE: example_role taken from Example Client -> 403.
    let revoked = registry_yaml().replacen(
        "    roles: [example_role]\n  - name: Admin Client",
        "    roles: []\n  - name: Admin Client",
        1,
    );
    assert_ne!(revoked, registry_yaml());
    g.reload_with(&revoked, "success").await;
    assert_eq!(get(&example).await.unwrap().status(), 403);
    assert_eq!(get(&admin).await.unwrap().status(), 200);

    // An invalid file is rejected; the previous registry keeps serving.
    g.reload_with(
        "privileges: [{name: broken, patterns: [\"no-slash\"]}]\n",
        "failure",
    )
    .await;
    assert_eq!(get(&example).await.unwrap().status(), 403);
    assert_eq!(get(&admin).await.unwrap().status(), 200);
    // The rejection is logged with its reason.
    g.output_with("no-slash").await;

    // Client removed -> 401.
    let without_admin = {
        let y = registry_yaml();
        let start = y.find("  - name: Admin Client").unwrap();
        let end = y.find("  - name: Disabled Client").unwrap();
        format!("{}{}", &y[..start], &y[end..])
    };
    g.reload_with(&without_admin, "success").await;
    let r = get(&admin).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("unknown or disabled"));
    assert_eq!(g.metric("ords_guard_clients").await, 2.0);
}

#[tokio::test]
async fn upstream_down_is_502_and_the_proxy_keeps_serving() {
    let backend = Backend::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let g = Guard::start(Options {
        upstream: dead,
        ..Options::new(&backend)
    })
    .await;
    for _ in 0..2 {
        let r = g.http.get(g.url("/public/x")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], 502);
    }
    // Local answers still work.
    g.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(
        g.http
            .get(g.url("/example/1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        g.metric("ords_guard_upstream_errors_total{kind=\"connect\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        read_ms: 300,
        ..Options::new(&backend)
    })
    .await;
    let r = g.http.get(g.url("/public/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        g.http
            .get(g.url("/public/fast"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        g.metric("ords_guard_upstream_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
}

#[test]
fn check_reports_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    ords_guard::oauth::keys::write_generated(
        &dir.path().join("keys"),
        &ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256),
    )
    .unwrap();
    let backend_addr = "127.0.0.1:3000".parse().unwrap();
    let o = Options {
        upstream: "http://127.0.0.1:3000".into(),
        base_path: "/",
        unmatched: "allow",
        algorithm: ords_guard::config::Algorithm::ES256,
        audience: None,
        read_ms: 1000,
        connect_ms: 1000,
        registry: registry_yaml(),
        timeouts: String::new(),
        extra: String::new(),
        tls: None,
        env: Vec::new(),
        threads: 2,
    };
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        config_text(&o, backend_addr, "127.0.0.1:3001".parse().unwrap()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 privilege(s)") && stdout.contains("3 client(s)"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    let text = config_text(&o, backend_addr, "127.0.0.1:3001".parse().unwrap())
        .replace("patterns: [\"/open/*\"]", "patterns: [\"/open/*/x\"]");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:", bad.display()))
            && stderr.contains("key `privileges[2].patterns[0]`")
            && stderr.contains("`*` may only stand"),
        "{stderr}"
    );
    let line_col = stderr.split(&format!("{}:", bad.display())).nth(1).unwrap();
    let mut parts = line_col.split(':');
    assert!(
        parts.next().unwrap().parse::<u32>().is_ok()
            && parts.next().unwrap().parse::<u32>().is_ok(),
        "{stderr}"
    );
}

#[tokio::test]
async fn demo_shows_401_then_token_then_200() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin, backend) = (free_port(), free_port(), free_port());
    let log = dir.path().join("demo.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{proxy}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--backend-listen",
            &format!("127.0.0.1:{backend}"),
            "--dir",
        ])
        .arg(dir.path().join("demo"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    let http = http_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(http.get(format!("http://127.0.0.1:{admin}/readyz")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "demo not ready: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let out = std::fs::read_to_string(&log).unwrap();
    let field = |name: &str| {
        out.split(name)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (id, secret) = (field("client_id "), field("client_secret "));
    let url = format!("http://127.0.0.1:{proxy}/ords/hr/example/employees/");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let r = http
        .post(format!("http://127.0.0.1:{proxy}/ords/hr/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echoed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-ords-client-id"], id);
    assert!(
        out.contains(&format!("curl -i {url}")),
        "the curl lines are printed"
    );
}

#[tokio::test]
async fn sigterm_drains_a_request_in_flight_and_exits_0() {
    let backend = Backend::start().await;
    let mut g = Guard::start(Options::new(&backend)).await;
    let slow = tokio::spawn(g.http.get(g.url("/public/slow")).send());
    // Wait (bounded) until the request is at the backend, i.e. in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while backend.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never reached the backend"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    g.signal("TERM");
    let ready = format!("http://{}/readyz", g.admin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let status = g
            .http
            .get(&ready)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readiness did not turn 503 while draining (last {status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "backend ok");
    let status = g.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", g.output());
}
