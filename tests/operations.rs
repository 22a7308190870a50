//! Operating ords-guard (SPEC §5, §6): a real Prometheus scrape, promtool, reload by
//! Kubernetes-style symlink swap, reloads under load, and logs free of secrets and tokens.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(found, "`{tool}` is not installed: run ./scripts/setup.sh (it installs Debian's prometheus package)");
}

struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    require("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ords-guard\n    static_configs:\n      - targets: [\"{target}\"]\n"),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
        ))
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_request_counts() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let sent = [
        ("forwarded_public", 3),
        ("unauthenticated", 2),
        ("forwarded", 4),
    ];
    for _ in 0..3 {
        assert_eq!(
            g.http
                .get(g.url("/public/x"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            g.http
                .get(g.url("/example/1"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    for _ in 0..4 {
        assert_eq!(g.get_as("/example/1", &token).await.status(), 200);
    }

    let prom = start_prometheus(g.admin);
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = |decision: &str| {
        format!(
            "{}/api/v1/query?query=ords_guard_requests_total{{decision=%22{decision}%22}}",
            prom.url
        )
    };
    // Wait (bounded) until the target is up and a first scrape is queryable.
    loop {
        let up = match http
            .get(format!("{}/api/v1/query?query=up", prom.url))
            .send()
            .await
        {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(|s| s == "1")
                })
                .unwrap_or(false),
            Err(_) => false,
        };
        let scraped = up
            && http
                .get(query("forwarded"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
        if scraped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped ords-guard"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (decision, n) in sent {
        let v: serde_json::Value = http
            .get(query(decision))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["data"]["result"][0]["value"][1],
            n.to_string(),
            "{decision}: {v}"
        );
    }
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    require("promtool");
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    // Populate every family: a token, a failure, each decision.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    g.http
        .post(g.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x"),
            ("client_secret", "y"),
        ])
        .send()
        .await
        .unwrap();
    g.get_as("/example/1", &token).await;
    g.http.get(g.url("/public/1")).send().await.unwrap();
    let text = g.metrics().await;
    for family in [
        "ords_guard_requests_total",
        "ords_guard_request_duration_seconds",
        "ords_guard_token_requests_total",
        "ords_guard_tokens_issued_total",
        "ords_guard_config_reloads_total",
        "ords_guard_config_last_reload_success_timestamp_seconds",
        "ords_guard_clients",
        "ords_guard_privileges",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} missing"
        );
    }
    assert!(
        !text.contains(EXAMPLE_SECRET) && !text.contains(&token) && !text.contains("/example/1")
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn kubernetes_symlink_swap_reloads_without_a_signal() {
    let backend = Backend::start().await;
    let o = Options::new(&backend);
    // The layout the kubelet makes for a ConfigMap volume.
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let mount = dir.path();
    std::fs::create_dir(mount.join("..2026_11_26_v1")).unwrap();
    std::fs::write(
        mount.join("..2026_11_26_v1/ords-guard.yaml"),
        config_text(&o, proxy, admin),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v1", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ords-guard.yaml", mount.join("ords-guard.yaml")).unwrap();
    let config = mount.join("ords-guard.yaml");
    let g = Guard::spawn(dir, config, proxy, admin, "/").await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(g.get_as("/example/1", &token).await.status(), 200);

    // The update: a new timestamped directory, then an atomic rename of `..data`.
    let revoked = Options {
        registry: registry_yaml().replacen(
            "    roles: [example_role]\n  - name: Admin Client",
            "    roles: []\n  - name: Admin Client",
            1,
        ),
        ..Options::new(&backend)
    };
    let mount = g.dir.path();
    std::fs::create_dir(mount.join("..2026_11_26_v2")).unwrap();
    std::fs::write(
        mount.join("..2026_11_26_v2/ords-guard.yaml"),
        config_text(&revoked, proxy, admin),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_11_26_v1")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = g.get_as("/example/1", &token).await.status();
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "the swap was not picked up in 10 s: {}",
            g.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        g.metric("ords_guard_config_reloads_total{result=\"success\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn twenty_reloads_under_load_fail_no_request() {
    let backend = Backend::start().await;
    let g = Arc::new(Guard::start(Options::new(&backend)).await);
    let token = g.token("admin-client", ADMIN_SECRET, None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (g, token, stop, ok, failed) = (
            g.clone(),
            token.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let path = if w % 2 == 0 {
                "/example/1"
            } else {
                "/example/orders/1"
            };
            while !stop.load(Ordering::Relaxed) {
                match g.http.get(g.url(path)).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let original = registry_yaml();
    let variant = original.replace("label: Example", "label: Example (edited)");
    for i in 0..20 {
        g.reload_with(if i % 2 == 0 { &variant } else { &original }, "success")
            .await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} requests failed during reloads ({ok} succeeded)"
    );
    assert!(ok >= 20, "the load was too light to mean anything: {ok}");
    assert!(
        g.metric("ords_guard_config_reloads_total{result=\"success\"}")
            .await
            >= 20.0
    );
}

#[tokio::test]
async fn logs_hold_no_secret_and_no_token() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        read_ms: 300,
        ..Options::new(&backend)
    })
    .await;
    let mut tokens = Vec::new();
    tokens.push(g.token("example-client", EXAMPLE_SECRET, None).await);
    tokens.push(
        g.token("admin-client", ADMIN_SECRET, Some("example_admin"))
            .await,
    );
    tokens.push(g.token("admin-client", ADMIN_OLD_SECRET, None).await);
    let r = g
        .http
        .post(g.url("/oauth/token"))
        .basic_auth("admin-client", Some(ADMIN_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    tokens.push(
        r.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let wrong = "wrong-secret-that-must-not-be-logged";
    for id in ["example-client", "ghost"] {
        let r = g
            .http
            .post(g.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", wrong),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    for t in &tokens {
        g.get_as("/example/1", &t).await;
        // Tokens in places they should not be: a query string, a failing request.
        g.http
            .get(g.url(&format!("/public/x?access_token={t}")))
            .send()
            .await
            .unwrap();
        let r = g
            .http
            .get(g.url(&format!("/public/slow?access_token={t}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 504);
        g.get_as("/example/1", format!("{t}x")).await;
    }
    // Lines reach stdout in order through the writer thread: once a last request's line is
    // there, every earlier one is too.
    g.http.get(g.url("/public/last")).send().await.unwrap();
    let all = g.output_with("/public/last").await;
    for secret in [EXAMPLE_SECRET, ADMIN_SECRET, ADMIN_OLD_SECRET, wrong] {
        assert!(!all.contains(secret), "a secret reached the logs");
    }
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!all.contains(signature), "a token reached the logs");
    }
    // JSON lines, one per request, with the SPEC §6 fields.
    let access: Vec<serde_json::Value> = all
        .lines()
        .filter(|l| l.contains("ords_guard::access"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for field in [
        "method",
        "path",
        "status",
        "decision",
        "client_id",
        "privilege",
        "latency_ms",
        "upstream_status",
    ] {
        assert!(
            access.iter().all(|l| l.get(field).is_some()),
            "{field} missing from {:?}",
            access[0]
        );
    }
    // A forwarded request's line names who was let through to which privilege.
    let forwarded = access
        .iter()
        .find(|l| l["decision"] == "forwarded" && l["client_id"] == "example-client")
        .unwrap_or_else(|| panic!("no forwarded line for example-client: {access:?}"));
    assert_eq!(forwarded["privilege"], "example_priv", "{forwarded}");
    assert_eq!(forwarded["issuer"], "-", "{forwarded}");
    assert_eq!(forwarded["status"], 200, "{forwarded}");
}

#[tokio::test]
async fn a_changed_key_file_reloads_with_the_config() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let old = g.token("example-client", EXAMPLE_SECRET, None).await;
    let before = g
        .metric("ords_guard_config_reloads_total{result=\"success\"}")
        .await;
    // Rotate the signing key in place (same kid, no verification key for the old one).
    let fresh = ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256);
    let tmp = g.keys_dir().join("signing.pem.tmp");
    std::fs::write(&tmp, &fresh.private).unwrap();
    std::fs::rename(&tmp, g.keys_dir().join("signing.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while g
        .metric("ords_guard_config_reloads_total{result=\"success\"}")
        .await
        <= before
    {
        assert!(
            Instant::now() < deadline,
            "the key change was not picked up: {}",
            g.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = g.get_as("/example/1", &old).await;
    assert_eq!(
        r.status(),
        401,
        "a token signed by the replaced key must fail"
    );
    let new = g.token("example-client", EXAMPLE_SECRET, None).await;
    assert_eq!(g.get_as("/example/1", &new).await.status(), 200);
}

#[tokio::test]
async fn grafana_dashboard_queries_name_exported_metrics_and_parse() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/ords-guard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    exprs.extend(
        dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["query"].as_str())
            .filter(|q| q.contains("ords_guard"))
            .map(|q| {
                q.trim_start_matches("label_values(")
                    .split(',')
                    .next()
                    .unwrap()
                    .to_string()
            }),
    );
    assert!(exprs.len() >= 10, "{exprs:?}");

    // Every metric a query names is exported by the binary (families from a live scrape),
    // a report-mode privilege's (SPEC §11) and a rate limit's (SPEC §13) among them.
    let backend = Backend::start().await;
    let o = Options::new(&backend);
    let registry = o.registry.replacen(
        "    patterns: [\"/example/*\"]\n",
        "    patterns: [\"/example/*\"]\n    mode: report\n",
        1,
    );
    let g = Guard::start(Options {
        registry,
        // And a rate limit's (SPEC §13).
        extra: "rate_limits:\n  - name: per_client\n    rate: 10\n    per: second\n".into(),
        ..o
    })
    .await;
    let exported: Vec<String> = g
        .metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("ords_guard_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| exported.iter().any(|x| x == f))
                .unwrap_or(&name);
            assert!(
                exported.iter().any(|x| x == family),
                "`{name}` in `{e}` is not exported; exported: {exported:?}"
            );
            rest = &rest[i + name.len()..];
        }
    }

    // And every query is valid PromQL to a real Prometheus.
    let prom = start_prometheus(g.admin);
    let http = http_client();
    for e in &exprs {
        let q = e.replace("$__rate_interval", "1m").replace("$job", ".*");
        let deadline = Instant::now() + Duration::from_secs(30);
        let body = loop {
            match http
                .get(format!("{}/api/v1/query", prom.url))
                .query(&[("query", q.as_str())])
                .send()
                .await
            {
                Ok(r) => break r.json::<serde_json::Value>().await.unwrap(),
                Err(_) => {
                    assert!(Instant::now() < deadline, "prometheus did not start");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(body["status"], "success", "`{q}`: {body}");
    }
}
