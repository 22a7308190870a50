//! The registry-management commands (SPEC §7): what they print, what they write, and that
//! secrets are printed once and never written in plain text.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn hash_secret_drops_one_trailing_newline() {
    for (input, scheme) in [
        (&b"s3cret\r\n"[..], "sha256"),
        (b"s3cret\n", "argon2id"),
        (b"s3cret", "sha256"),
    ] {
        let out = stdout(&run(&["hash-secret", "--scheme", scheme], Some(input)));
        let h = ords_guard::oauth::secret::SecretHash::parse(out.trim()).unwrap();
        assert!(h.verify(b"s3cret"), "{scheme} {input:?}");
    }
    let out = run(&["hash-secret"], Some(b""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret on stdin"));
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_reads() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["ES256", "EdDSA", "HS256"] {
        let out_dir = dir.path().join(alg);
        let out = stdout(&run(
            &[
                "keygen",
                "--algorithm",
                alg,
                "--out",
                out_dir.to_str().unwrap(),
            ],
            None,
        ));
        assert!(out.contains(&format!("algorithm: {alg}")), "{out}");
        let mode = std::fs::metadata(out_dir.join("signing.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{alg}");
        assert_eq!(out_dir.join("signing.pub.pem").exists(), alg != "HS256");
        let parsed: ords_guard::config::Algorithm = alg.parse().unwrap();
        ords_guard::oauth::keys::load_signing(&out_dir.join("signing.pem"), parsed, "k")
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn client_create_prints_the_secret_once_and_stores_only_its_hash() {
    let out = stdout(&run(
        &[
            "client",
            "create",
            "--name",
            "Example Client",
            "--role",
            "example_role",
            "--privilege",
            "example_priv",
        ],
        None,
    ));
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (id, secret) = (field("client_id:"), field("client_secret:"));
    assert!(secret.len() >= 43 && id.len() >= 22);
    assert_eq!(
        out.matches(&secret).count(),
        1,
        "the secret is printed once"
    );
    let yaml: String = out
        .lines()
        .skip_while(|l| !l.starts_with("- "))
        .map(|l| format!("{l}\n"))
        .collect();
    let entries: Vec<ords_guard::config::ClientConfig> = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        (entries[0].name.as_str(), entries[0].client_id.as_str()),
        ("Example Client", id.as_str())
    );
    assert_eq!(entries[0].roles, ["example_role"]);
    let h = ords_guard::oauth::secret::SecretHash::parse(&entries[0].secrets[0]).unwrap();
    assert!(h.verify(secret.as_bytes()));
}

fn registry_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    ords_guard::oauth::keys::write_generated(
        &dir.path().join("keys"),
        &ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256),
    )
    .unwrap();
    let sha = ords_guard::oauth::secret::hash(
        b"the-old-secret-0123456789abcdef",
        ords_guard::oauth::secret::Scheme::Sha256,
    );
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\ntoken:\n  algorithm: ES256\n  signing_key_file: keys/signing.pem\n  key_id: k\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\nclients:\n  - name: Example Client\n    client_id: c1\n    owner: Example Corp\n    secrets: [\"{sha}\"]\n    roles: [example_role]\n"
        ),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn rotate_secret_fills_the_second_slot() {
    let (_dir, config) = registry_dir();
    let before = std::fs::read(&config).unwrap();
    let out = stdout(&run(
        &[
            "client",
            "rotate-secret",
            "--config",
            config.to_str().unwrap(),
            "--client-id",
            "c1",
        ],
        None,
    ));
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .unwrap()
        .trim()
        .to_string();
    let line = out.lines().find(|l| l.starts_with("secrets: [")).unwrap();
    let slots: Vec<String> = serde_yaml::from_str::<serde_yaml::Value>(line).unwrap()["secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(slots.len(), 2);
    assert!(ords_guard::oauth::secret::SecretHash::parse(&slots[0])
        .unwrap()
        .verify(b"the-old-secret-0123456789abcdef"));
    assert!(ords_guard::oauth::secret::SecretHash::parse(&slots[1])
        .unwrap()
        .verify(secret.as_bytes()));
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "nothing is written"
    );
    let out = run(
        &[
            "client",
            "rotate-secret",
            "--config",
            config.to_str().unwrap(),
            "--client-id",
            "nobody",
        ],
        None,
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("no client with client_id `nobody`")
    );
}

#[test]
fn clients_list_never_shows_secrets() {
    let (_dir, config) = registry_dir();
    let out = stdout(&run(
        &["clients", "list", "--config", config.to_str().unwrap()],
        None,
    ));
    assert!(
        out.contains("c1")
            && out.contains("Example Client")
            && out.contains("Example Corp")
            && out.contains("example_priv"),
        "{out}"
    );
    assert!(!out.contains("sha256:"), "{out}");
}

#[test]
fn every_command_has_an_example_and_version_names_the_revision() {
    for cmd in [
        &["run", "--help"][..],
        &["check", "--help"],
        &["demo", "--help"],
        &["client", "create", "--help"],
        &["client", "rotate-secret", "--help"],
        &["clients", "list", "--help"],
        &["hash-secret", "--help"],
        &["keygen", "--help"],
    ] {
        let out = stdout(&run(cmd, None));
        assert!(
            out.contains("Example: ") && out.contains("ords-guard "),
            "{cmd:?}: {out}"
        );
    }
    let v = stdout(&run(&["--version"], None));
    assert!(v.starts_with("ords-guard 0.") && v.contains("(rev "), "{v}");
}
