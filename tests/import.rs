//! `ords-guard import ords` (SPEC §12): each example under `config/ords-import/` imported,
//! checked, started, and used — the client credentials flow with the printed secret, the
//! protected paths refused without the token and forwarded with it.

mod common;

use common::*;
use std::process::Command;

struct Import {
    code: i32,
    yaml: String,
    stderr: String,
}

fn import(files: &[&str]) -> Import {
    let out = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(["import", "ords"])
        .args(files)
        .output()
        .unwrap();
    Import {
        code: out.status.code().unwrap(),
        yaml: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn example(name: &str) -> String {
    format!("{}/config/ords-import/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `client "NAME": client_id ID client_secret SECRET` lines of stderr.
fn credentials(stderr: &str) -> Vec<(String, String, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("client \"")?;
            let (name, rest) = rest.split_once("\": client_id ")?;
            let (id, secret) = rest.split_once(" client_secret ")?;
            Some((name.to_string(), id.to_string(), secret.to_string()))
        })
        .collect()
}

/// Import `file`, start a guard on the result, and check that `client` reaches `path` (and
/// nobody does without a token).
async fn imported_and_used(file: &str, client: &str, paths: &[&str], skipped: &[&str]) {
    let got = import(&[&example(file)]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    for s in skipped {
        assert!(
            got.stderr.contains(&format!("{file}:{s}")),
            "{s} reported: {}",
            got.stderr
        );
    }
    let creds = credentials(&got.stderr);
    assert_eq!(creds.len(), 1, "{}", got.stderr);
    let (name, id, secret) = &creds[0];
    assert_eq!(name, client);
    assert!(secret.len() >= 32);
    assert!(
        !got.yaml.contains(secret.as_str()),
        "only the hash in the YAML"
    );
    assert!(
        got.yaml.contains(&format!("client_id: {id}")),
        "{}",
        got.yaml
    );

    let backend = Backend::start().await;
    let g = Guard::start(Options {
        base_path: "/ords/hr",
        registry: got.yaml.clone(),
        ..Options::new(&backend)
    })
    .await;
    let out = ords_guard_cli(&["check"], &g.config);
    assert!(
        out.status.success(),
        "check accepts the import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client credentials flow, as a real OAuth2 client (the `oauth2` crate) does it.
    use oauth2::{basic::BasicClient, ClientId, ClientSecret, TokenResponse, TokenUrl};
    let oauth = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_token_uri(TokenUrl::new(g.url("/oauth/token")).unwrap());
    let token = oauth
        .exchange_client_credentials()
        .request_async(&oauth2_http())
        .await
        .unwrap_or_else(|e| panic!("token for {client}: {e:?}\n{}", g.output()));
    let token = token.access_token().secret().clone();
    for path in paths {
        let r = g.http.get(g.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} is protected");
        let r = g.get_as(path, &token).await;
        assert_eq!(r.status(), 200, "{path} with the token");
        let seen = backend.last();
        assert_eq!(seen.header("x-ords-client-id"), Some(id.as_str()));
    }
}

#[tokio::test]
async fn a_module_export_with_define_privilege_arrays() {
    // The module's base path and the privilege's own pattern are both protected.
    imported_and_used(
        "hr-module-export.sql",
        "Example Client",
        &["/example/employees/", "/reports/2026"],
        &[
            "9: skipped: ORDS.ENABLE_SCHEMA",
            "23: skipped: ORDS.DEFINE_TEMPLATE",
            "31: skipped: ORDS.DEFINE_HANDLER",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_oauth_create_client_script() {
    imported_and_used(
        "oauth-clients.sql",
        "Payroll Batch",
        &["/employees/7", "/departments/"],
        &["6: skipped: SET DEFINE OFF"],
    )
    .await;
}

#[tokio::test]
async fn an_ords_security_register_client_script() {
    imported_and_used(
        "ords-security-clients.sql",
        "ERP Integration",
        &["/orders/1", "/customers/"],
        &["38: skipped: DBMS_OUTPUT.PUT_LINE"],
    )
    .await;
}

#[tokio::test]
async fn bad_input_names_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("BEGIN\n  ORDS.CREATE_ROLE('never closed);\nEND;\n/\n", ":2: unterminated string"),
        (
            "BEGIN\n  ORDS.CREATE_PRIVILEGE_MAPPING(\n    p_privilege_name => 'ghost',\n    p_pattern => '/x/*');\nEND;\n/\n",
            ":2: ORDS.CREATE_PRIVILEGE_MAPPING: unknown privilege `ghost`",
        ),
        (
            "BEGIN\n  OAUTH.CREATE_CLIENT(p_grant_type => 'client_credentials');\nEND;\n/\n",
            ":2: OAUTH.CREATE_CLIENT: p_name is required",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.sql"));
        std::fs::write(&f, text).unwrap();
        let got = import(&[f.to_str().unwrap()]);
        assert_eq!(got.code, 1, "{}", got.stderr);
        assert!(
            got.stderr.contains(&format!("bad{i}.sql{want}")),
            "{want}: {}",
            got.stderr
        );
        assert!(got.yaml.is_empty(), "nothing on stdout: {}", got.yaml);
    }
    let f = dir.path().join("latin1.sql");
    std::fs::write(&f, b"BEGIN ORDS.CREATE_ROLE('caf\xe9'); END;").unwrap();
    let got = import(&[f.to_str().unwrap()]);
    assert_eq!(got.code, 1);
    assert!(got.stderr.contains("not UTF-8"), "{}", got.stderr);
    let got = import(&[dir.path().join("missing.sql").to_str().unwrap()]);
    assert_eq!(got.code, 1);
    assert!(got.stderr.contains("missing.sql"), "{}", got.stderr);
}

/// Two files read as one script: privileges from the export, a client of them from another.
#[tokio::test]
async fn several_files_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.sql");
    std::fs::write(&clients, "BEGIN\n  ORDS_SECURITY_ADMIN.REGISTER_CLIENT(p_schema => 'HR', p_name => 'Second', p_grant_type => 'client_credentials', p_privilege_names => 'example_priv');\nEND;\n/\n").unwrap();
    let got = import(&[&example("hr-module-export.sql"), clients.to_str().unwrap()]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    let names: Vec<String> = credentials(&got.stderr).into_iter().map(|c| c.0).collect();
    assert_eq!(names, ["Example Client", "Second"]);
}
