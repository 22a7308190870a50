//! `ords-guard explain` (SPEC §11) agrees with a running guard: the same config, the same
//! request, the same status and decision label, on every row of the decision table.

mod common;

use common::idp::{Idp, ISS};
use common::*;
use serde_json::{json, Value};

enum Who {
    Anonymous,
    Token(String),
    /// The token this client gets (`explain --client ID [--scope S]`).
    Client(&'static str, &'static str, Option<&'static str>),
}

const BASE: &str = "/ords/hr";

fn with_report_privilege(o: Options) -> Options {
    let registry = o.registry.replacen(
        "clients:\n",
        "  - name: reported_priv\n    roles: [example_admin]\n    patterns: [\"/reported/*\"]\n    mode: report\nclients:\n",
        1,
    );
    Options { registry, ..o }
}

/// Run `explain --format json` for one row; (exit code, the JSON object).
fn explain(g: &Guard, method: &str, target: &str, who: &[&str]) -> (i32, Value) {
    let mut args = vec!["explain", "--format", "json"];
    args.extend_from_slice(who);
    args.extend_from_slice(&[method, target]);
    let out = ords_guard_cli(&args, &g.config);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{method} {target}: not JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

/// Send the row's request to the guard; its status and the decision label it counted.
async fn send(g: &Guard, method: &str, target: &str, auth: Option<&str>) -> (u16, String) {
    let before = g.metrics().await;
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (code, text) = g
        .raw(
            format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert!(code > 0, "{text}");
    // Counted before the answer is written: one scrape after it suffices.
    let label = counted(&before, &g.metrics().await)
        .unwrap_or_else(|| panic!("{method} {target}: no decision counted"));
    (code, label)
}

/// The `decision` whose `ords_guard_requests_total` series moved between two scrapes.
fn counted(before: &str, after: &str) -> Option<String> {
    let series = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("ords_guard_requests_total{decision=\""))
            .filter_map(|l| {
                let (label, v) = l.split_once("\"} ")?;
                Some((label.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let old = series(before);
    series(after)
        .into_iter()
        .find(|(l, v)| {
            old.iter()
                .find(|(o, _)| o == l)
                .map_or(*v > 0.0, |(_, ov)| v > ov)
        })
        .map(|(l, _)| l)
}

#[tokio::test]
async fn explain_agrees_with_the_running_guard_on_every_row() {
    let backend = Backend::start().await;
    // With identity providers: one whose keys are a file, one whose keys never come.
    let idp = Idp::new();
    let mut o = with_report_privilege(Options {
        base_path: BASE,
        audience: Some("hr-api"),
        ..Options::new(&backend)
    });
    o.extra = format!("issuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    audience: [orders-api]\n    jwks_file: keys/corp.jwks.json\n    roles_claim: /realm_access/roles\n  - name: later\n    issuer: https://later.test\n    jwks_url: \"http://127.0.0.1:{}/jwks\"\n", free_port());
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(
        dir.path().join("keys/corp.jwks.json"),
        idp.jwks().to_string(),
    )
    .unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    let g = Guard::spawn(dir, config, proxy, admin, BASE).await;
    let corp = |roles: Value| idp.token("corp-1", json!({"realm_access": {"roles": roles}}));
    let n = now();
    let keys = g.keys_dir();
    let sign = |over: Value| {
        let mut c = json!({"iss": "ords-guard", "sub": "example-client", "client_id": "example-client", "aud": "hr-api",
            "iat": n, "nbf": n, "exp": n + 600, "jti": "t", "roles": ["example_role"], "scope": "example_priv"});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign_es256(&keys, "test-1", &c)
    };
    let good = sign(json!({}));
    let tampered = format!("{}x", &good[..good.len() - 1]);
    let p = |path: &str| format!("{BASE}{path}");
    use Who::*;
    let rows: Vec<(&str, String, Who, u16)> = vec![
        ("GET", p("/public/info?x=1"), Anonymous, 200),
        ("GET", p("/example/employees/7"), Anonymous, 401),
        ("GET", p("/example"), Anonymous, 401),
        (
            "GET",
            p("/example/employees/7"),
            Token("not-a-jwt".into()),
            401,
        ),
        ("GET", p("/example/employees/7"), Token("a.b".into()), 401),
        ("GET", p("/example/employees/7"), Token(tampered), 401),
        (
            "GET",
            p("/example/1"),
            Token(sign(
                json!({"exp": n - 3600, "iat": n - 7200, "nbf": n - 7200}),
            )),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(json!({"nbf": n + 3600, "exp": n + 7200}))),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(json!({"iss": "evil"}))),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(json!({"aud": "other"}))),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(json!({"client_id": "ghost", "sub": "ghost"}))),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(
                json!({"client_id": "disabled-client", "sub": "disabled-client"}),
            )),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(sign(json!({"scope": ""}))),
            403,
        ),
        ("GET", p("/example/1"), Token(good), 200),
        (
            "GET",
            p("/example/1"),
            Client("example-client", EXAMPLE_SECRET, None),
            200,
        ),
        (
            "GET",
            p("/example/1"),
            Client("admin-client", ADMIN_SECRET, Some("example_write")),
            403,
        ),
        (
            "POST",
            p("/example/orders/1"),
            Client("example-client", EXAMPLE_SECRET, None),
            403,
        ),
        (
            "GET",
            p("/example/orders/1"),
            Client("example-client", EXAMPLE_SECRET, None),
            200,
        ),
        (
            "POST",
            p("/example/orders/1"),
            Client("admin-client", ADMIN_SECRET, None),
            200,
        ),
        (
            "GET",
            p("/example/1"),
            Token(corp(json!(["example_role"]))),
            200,
        ),
        ("GET", p("/example/1"), Token(corp(json!([]))), 403),
        (
            "GET",
            p("/example/1"),
            Token(idp.token(
                "corp-9",
                json!({"realm_access": {"roles": ["example_role"]}}),
            )),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(corp(json!(["example_role"])).replace("ey", "eY")),
            401,
        ),
        (
            "GET",
            p("/example/1"),
            Token(idp.token("corp-1", json!({"iss": "https://later.test"}))),
            503,
        ),
        ("GET", p("/open/x"), Anonymous, 401),
        (
            "GET",
            p("/open/x"),
            Client("example-client", EXAMPLE_SECRET, None),
            200,
        ),
        ("GET", p("/reported/x"), Anonymous, 200),
        (
            "GET",
            p("/reported/x"),
            Client("example-client", EXAMPLE_SECRET, None),
            200,
        ),
        (
            "GET",
            p("/reported/x"),
            Client("admin-client", ADMIN_SECRET, None),
            200,
        ),
        ("GET", p("/example/../admin"), Anonymous, 400),
        ("GET", p("/example/%2e%2e/admin"), Anonymous, 400),
        ("GET", p("/example%2fx"), Anonymous, 400),
        ("GET", p("/example;jsessionid=1"), Anonymous, 400),
        ("GET", p("/example/%zz"), Anonymous, 400),
        ("GET", "/elsewhere".into(), Anonymous, 200),
    ];
    for (method, target, who, want) in rows {
        let (token, args): (Option<String>, Vec<String>) = match who {
            Anonymous => (None, vec![]),
            Token(t) => (Some(t.clone()), vec!["--token".into(), t]),
            Client(id, secret, scope) => {
                let t = g.token(id, secret, scope).await;
                let mut a = vec!["--client".to_string(), id.to_string()];
                if let Some(s) = scope {
                    a.extend(["--scope".to_string(), s.to_string()]);
                }
                (Some(t), a)
            }
        };
        let (status, label) = send(&g, method, &target, token.as_deref()).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, x) = explain(&g, method, &target, &args);
        let row = format!("{method} {target} {args:?}: {x}");
        assert_eq!(status, want, "the guard: {row}");
        let said = x["status"].as_u64().map_or(200, |s| s as u16);
        assert_eq!(said, status, "explain's status: {row}");

        assert_eq!(x["decision"], label.as_str(), "explain's decision: {row}");
        assert_eq!(code, if status == 200 { 0 } else { 1 }, "exit code: {row}");
        if status == 400 {
            assert!(x["path"].is_null(), "{row}");
        } else {
            let path = target.split('?').next().unwrap();
            assert_eq!(x["path"], path, "{row}");
        }
        let privilege = match x["privilege"].as_str() {
            Some(p) => p.to_string(),
            None => "-".into(),
        };
        if target.contains("/example") && status != 400 {
            assert!(privilege.starts_with("example_"), "{row}");
        }
    }
    // An identity provider's token is verified with its keys and told as its.
    let t = corp(json!(["example_role"]));
    let (code, x) = explain(&g, "GET", &p("/example/1"), &["--token", &t]);
    assert_eq!(code, 0, "{x}");
    assert_eq!(x["token"]["issuer"], "corp", "{x}");
    assert_eq!(x["token"]["client_id"], "orders-app", "{x}");
    assert_eq!(x["token"]["roles"][0], "example_role", "{x}");
    // One whose keys cannot be fetched: explain tried, and says so.
    let t = idp.token("corp-1", json!({"iss": "https://later.test"}));
    let (code, x) = explain(&g, "GET", &p("/example/1"), &["--token", &t]);
    assert_eq!((code, &x["status"]), (1, &json!(503)), "{x}");
    assert!(x["reason"].as_str().unwrap().contains("`later`"), "{x}");
}

#[tokio::test]
async fn explain_in_words_and_its_usage_errors() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        unmatched: "deny",
        ..with_report_privilege(Options::new(&backend))
    })
    .await;
    let text = |args: &[&str]| {
        let mut a = vec!["explain"];
        a.extend_from_slice(args);
        let out = ords_guard_cli(&a, &g.config);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Unmatched deny: the rule is named; same as the guard.
    let (code, out, _) = text(&["GET", "/public/info"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unmatched: deny") && out.contains("403"),
        "{out}"
    );
    let r = g.http.get(g.url("/public/info")).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // The deciding pattern, privilege, roles, methods and mode; the token's client, roles,
    // scope and expiry; why. The token itself is never printed.
    let (code, out, _) = text(&["--client", "example-client", "POST", "/example/orders/1"]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "/example/orders/*",
        "example_write",
        "roles [example_admin]",
        "methods POST, PUT, PATCH, DELETE",
        "mode enforce",
        "client example-client (Example Client)",
        "scope \"example_priv open_priv\"",
        "expires at",
        "does not grant `example_write`",
        "403, decision forbidden",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(!out.contains("eyJ"), "no token in the output: {out}");

    // Report mode: forwarded, with what it would have been.
    let (code, out, _) = text(&["--format", "json", "GET", "/reported/1"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "report_only");
    assert_eq!(v["would"], "unauthenticated");
    assert_eq!(v["status"], Value::Null);
    assert_eq!(v["privilege"], "reported_priv");
    assert_eq!(v["mode"], "report");

    // A malformed token: what is malformed.
    let (code, out, _) = text(&["--token", "eyJhbGciOiJub25lIn0.e30.", "GET", "/example/1"]);
    assert_eq!(code, 1);
    assert!(out.contains("malformed") && out.contains("alg"), "{out}");
    let (_, out, _) = text(&["--token", "a.b.c.d", "GET", "/example/1"]);
    assert!(
        out.contains("three base64url parts") && out.contains("has 4"),
        "{out}"
    );
    let (_, out, _) = text(&["--token", "!!.e30.c2ln", "GET", "/example/1"]);
    assert!(out.contains("header is not base64url"), "{out}");

    // A token the proxy would read as ambiguous (a space in it) is ambiguous here too.
    let (code, out, _) = text(&["--format", "json", "--token", "a b", "GET", "/example/1"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["decision"].as_str()),
        (Some(401), Some("invalid_token"))
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("exactly one Authorization"),
        "{v}"
    );

    // A sound token that does not verify: what it claims, and why it fails.
    let n = now();
    let expired = sign_es256(
        &g.keys_dir(),
        "test-1",
        &json!({"iss": "ords-guard", "sub": "example-client", "client_id": "example-client",
            "iat": n - 7200, "nbf": n - 7200, "exp": n - 3600, "jti": "t", "roles": [], "scope": ""}),
    );
    let (code, out, _) = text(&["--token", &expired, "GET", "/example/1"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("not verified")
            && out.contains("\"example-client\"")
            && out.contains(&format!("exp {}", n - 3600))
            && out.contains("the token has expired"),
        "{out}"
    );

    // Usage and config errors exit 2 and say what to do.
    let (code, _, err) = text(&["--client", "nobody", "GET", "/example/1"]);
    assert_eq!(code, 2);
    assert!(err.contains("no client has client_id `nobody`"), "{err}");
    let (code, _, err) = text(&["--client", "disabled-client", "GET", "/example/1"]);
    assert_eq!(code, 2);
    assert!(err.contains("unauthorized_client"), "{err}");
    let (code, _, err) = text(&["--client", "example-client", "--scope", "nope", "GET", "/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid_scope"), "{err}");
    let (code, _, _) = text(&["--token", "t", "--client", "example-client", "GET", "/x"]);
    assert_eq!(code, 2, "--token and --client together");
    let (code, _, err) = text(&["G E T", "/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an HTTP method"), "{err}");
    let bad = g.dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: [\n").unwrap();
    let out = ords_guard_cli(&["explain", "GET", "/x"], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
