//! panva's oidc-provider (tests/idp, `npm ci` in scripts/setup.sh) on a loopback port: a
//! real OpenID provider issuing JWT (or opaque) access tokens to one client_credentials
//! client, and answering for them at its introspection endpoint.

use super::free_port;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const CLIENT_ID: &str = "orders-app";
pub const CLIENT_SECRET: &str = "orders-app-secret-0123456789abcdef";
/// The client ords-guard authenticates as at `/token/introspection`.
pub const INTROSPECT_ID: &str = "ords-guard";
pub const INTROSPECT_SECRET: &str = "ords-guard-introspect-secret-0123456789";

/// `node tests/idp/oidc.mjs` on a loopback port, stopped on drop.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
}

impl OidcProvider {
    pub fn start() -> OidcProvider {
        Self::issuing("jwt")
    }

    /// Issuing opaque access tokens (SPEC §16).
    pub fn start_opaque() -> OidcProvider {
        Self::issuing("opaque")
    }

    fn issuing(format: &str) -> OidcProvider {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run ./scripts/setup.sh (it runs `npm ci` in tests/idp)"
        );
        let port = free_port();
        let mut child = Command::new("node")
            .arg("oidc.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("INTROSPECT_ID", INTROSPECT_ID)
            .env("INTROSPECT_SECRET", INTROSPECT_SECRET)
            .env("TOKEN_FORMAT", format)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (Node.js 20 or later is needed for the identity-provider tests)");
        // Wait for its "listening" line, bounded: a reader thread hands lines over.
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let issuer = format!("http://127.0.0.1:{port}");
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(&format!("listening on {issuer}")) => break,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    panic!("oidc-provider did not start within 20 s: {e}");
                }
            }
        }
        OidcProvider { child, issuer }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
