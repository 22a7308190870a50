//! Shared fixtures and oracles for the fuzz targets.

use ords_guard::config::{self, Algorithm};
use ords_guard::registry::{self, Registry};
use std::sync::OnceLock;

/// A registry with protected and public paths, per-method privileges and two clients.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<(tempfile::TempDir, Registry)> = OnceLock::new();
    &REG.get_or_init(|| build("")).1
}

/// The same registry under `path_parameters: strip` (SPEC §11).
pub fn strip_registry() -> &'static Registry {
    static REG: OnceLock<(tempfile::TempDir, Registry)> = OnceLock::new();
    &REG.get_or_init(|| build("path_parameters: strip\n")).1
}

fn build(head: &str) -> (tempfile::TempDir, Registry) {
    {
        let dir = tempfile::tempdir().unwrap();
        ords_guard::oauth::keys::write_generated(
            dir.path(),
            &ords_guard::oauth::keys::generate(Algorithm::ES256),
        )
        .unwrap();
        let sha = ords_guard::oauth::secret::hash(
            b"fuzz-secret",
            ords_guard::oauth::secret::Scheme::Sha256,
        );
        let yaml = format!(
            "{head}listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nbase_path: /ords/hr\ntoken:\n  algorithm: ES256\n  signing_key_file: signing.pem\n  key_id: k\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\", \"/admin\"]\n  - name: example_write\n    roles: [example_admin]\n    patterns: [\"/example/orders/*\"]\n    methods: [POST]\nclients:\n  - name: Example Client\n    client_id: c1\n    secrets: [\"{sha}\"]\n    roles: [example_role]\n  - name: Admin\n    client_id: c2\n    secrets: [\"{sha}\"]\n    roles: [example_admin]\n"
        );
        let compile = |yaml: &str| {
            let (cfg, src) = config::parse(yaml, &dir.path().join("fuzz.yaml")).unwrap();
            registry::compile(&cfg, &src)
                .map_err(|e| format!("{e:?}"))
                .unwrap()
                .registry
        };
        // An identity provider holding the same public key under another issuer: a fuzzed
        // token routed to it verifies only if it was signed with the key, which it cannot be.
        std::fs::write(
            dir.path().join("idp.json"),
            compile(&yaml).tokens.as_ref().unwrap().jwks(),
        )
        .unwrap();
        let yaml = yaml.replacen(
            "privileges:",
            "issuers:\n  - name: idp\n    issuer: https://idp.fuzz\n    jwks_file: idp.json\n    roles_claim: /roles\nprivileges:",
            1,
        );
        let reg = compile(&yaml);
        assert_eq!(reg.issuers.len(), 1);
        (dir, reg)
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// How lenient backends might read a path they receive: decoded twice, `\\` as `/`, NULs
/// ending the string, dot segments resolved, `//` merged; matrix parameters dropped per
/// segment (servlet containers) or kept as part of the segment (most others).
pub fn lenient_backend_views(path: &str) -> [String; 2] {
    [view(path, true), view(path, false)]
}

fn view(path: &str, drop_parameters: bool) -> String {
    let mut p = percent_decode(&percent_decode(path.as_bytes()));
    if let Some(nul) = p.iter().position(|&b| b == 0) {
        p.truncate(nul);
    }
    let p = String::from_utf8_lossy(&p).replace('\\', "/");
    let mut segs: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        let seg = match seg.split_once(';') {
            Some((name, _)) if drop_parameters => name,
            _ => seg,
        };
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let trailing = p.ends_with('/') && !segs.is_empty();
    format!("/{}{}", segs.join("/"), if trailing { "/" } else { "" })
}
