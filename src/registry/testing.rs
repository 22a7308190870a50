//! The example registry the doors' unit tests decide against (`access::decision`,
//! `oauth::endpoint`): a registry compiled from YAML, and tokens minted with its keys. Here,
//! below both doors, so neither door's tests import the other's.

use crate::config;
use crate::registry::{compile, Registry};
use crate::tokens::token::{now, Claims};

pub(crate) const SHA: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn registry(extra: &str, unmatched: &str) -> (tempfile::TempDir, Registry) {
    registry_edited(extra, unmatched, |y| y)
}

/// [`registry`] with its YAML text passed through `edit` first.
pub(crate) fn registry_edited(
    extra: &str,
    unmatched: &str,
    edit: impl FnOnce(String) -> String,
) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hs.key"),
        b"0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\nupstream: http://127.0.0.1:3000\nunmatched: {unmatched}\ntoken:\n  algorithm: HS256\n  signing_key_file: hs.key\n  key_id: k\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\n  - name: example_write\n    roles: [example_admin]\n    patterns: [\"/example/orders/*\"]\n    methods: [POST, PUT, PATCH, DELETE]\n  - name: open_priv\n    patterns: [\"/open/*\"]\nclients:\n  - name: Example Client\n    client_id: c1\n    secrets: [\"{SHA}\"]\n    roles: [example_role]\n  - name: Admin Client\n    client_id: c2\n    secrets: [\"{SHA}\"]\n    privileges: [example_write]\n    roles: [example_role, example_admin]\n{extra}"
    );
    let (cfg, src) = config::parse(&edit(yaml), &dir.path().join("g.yaml")).unwrap();
    let reg = compile(&cfg, &src)
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .registry;
    (dir, reg)
}

pub(crate) fn token(reg: &Registry, client: &str, roles: &[&str], scope: &str) -> String {
    let n = now();
    reg.tokens
        .as_ref()
        .unwrap()
        .mint(&Claims {
            iss: reg.tokens.as_ref().unwrap().issuer.clone(),
            sub: client.into(),
            client_id: client.into(),
            aud: None,
            iat: n,
            nbf: n,
            exp: n + 600,
            jti: "j".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            scope: scope.into(),
        })
        .unwrap()
}
