//! The `authz` step (SPEC §14): where the check endpoints listen, and which peers may ask
//! them. The peers are what every check is judged by first: a check from anyone else is
//! refused unread, so its `X-Forwarded-*` and `X-Original-*` fields (which anyone could
//! write) never reach the decision.

use crate::client_addr::TrustedProxies;
use crate::config::{AuthzConfig, Diagnostic};
use std::net::SocketAddr;

/// What a check is judged by, in the registry (reloadable).
#[derive(Debug, Clone)]
pub struct Authz {
    pub trusted_peers: TrustedProxies,
}

/// Loopback only: a proxy on the same host or in the same pod.
const DEFAULT_TRUSTED_PEERS: [&str; 2] = ["127.0.0.0/8", "::1"];

/// The check listeners' addresses (`authz.listen`, `authz.grpc_listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthzListeners {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    /// `authz.tls`: both listeners serve TLS (set at start, like the proxy's `tls`).
    pub tls: bool,
}

/// One listener's address: parseable and not `taken`.
fn address(
    key: &str,
    v: &str,
    taken: &[SocketAddr],
    errors: &mut Vec<Diagnostic>,
) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(l) if taken.contains(&l) => {
            errors.push(Diagnostic::new(
                key,
                format!("{l} is already taken by another listener (listen, admin_listen, an egress entry or the other authz listener): give it an address of its own"),
            ));
            None
        }
        Ok(l) => Some(l),
        Err(_) => {
            errors.push(Diagnostic::new(
                key,
                format!("`{v}` is not an address:port such as 127.0.0.1:9191"),
            ));
            None
        }
    }
}

/// Check `authz`; `taken` holds the other listeners' addresses. The listeners' addresses,
/// for the `listeners` step, and the settings the registry keeps.
pub fn compile(
    authz: Option<&AuthzConfig>,
    taken: &[SocketAddr],
    errors: &mut Vec<Diagnostic>,
) -> Option<(AuthzListeners, Authz)> {
    let a = authz?;
    let listen = address("authz.listen", &a.listen, taken, errors);
    // The gRPC listener must also differ from the HTTP one.
    let taken: Vec<SocketAddr> = taken.iter().copied().chain(listen).collect();
    let grpc = a
        .grpc_listen
        .as_deref()
        .map(|g| address("authz.grpc_listen", g, &taken, errors));
    let peers: Vec<String> = match &a.trusted_peers {
        Some(p) if p.is_empty() => {
            errors.push(Diagnostic::new(
                "authz.trusted_peers",
                "no peer may ask: list the proxies that send checks (CIDRs or addresses), or leave the key out for loopback only",
            ));
            return None;
        }
        Some(p) => p.clone(),
        None => DEFAULT_TRUSTED_PEERS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let trusted_peers = TrustedProxies::parse(&peers)
        .map_err(|(i, e)| {
            errors.push(Diagnostic::new(format!("authz.trusted_peers[{i}]"), e));
        })
        .ok()?;
    // Given but not usable: the error is reported above.
    if grpc == Some(None) {
        return None;
    }
    Some((
        AuthzListeners {
            http: listen?,
            grpc: grpc.flatten(),
            tls: a.tls.is_some(),
        },
        Authz { trusted_peers },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> AuthzConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn loopback_by_default_and_errors_by_key() {
        let mut errors = Vec::new();
        let (addr, a) = compile(Some(&config("listen: 127.0.0.1:9191")), &[], &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(addr.http, "127.0.0.1:9191".parse().unwrap());
        assert_eq!(addr.grpc, None);
        assert!(a.trusted_peers.trusts("127.0.0.1".parse().unwrap()));
        assert!(a.trusted_peers.trusts("::1".parse().unwrap()));
        assert!(!a.trusted_peers.trusts("10.0.0.1".parse().unwrap()));

        let taken: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        for (yaml, key) in [
            ("listen: nine", "authz.listen"),
            ("listen: 127.0.0.1:9090", "authz.listen"),
            (
                "{listen: 127.0.0.1:1, grpc_listen: 127.0.0.1:1}",
                "authz.grpc_listen",
            ),
            (
                "{listen: 127.0.0.1:1, grpc_listen: 9192}",
                "authz.grpc_listen",
            ),
            (
                "{listen: 127.0.0.1:1, trusted_peers: []}",
                "authz.trusted_peers",
            ),
            (
                "{listen: 127.0.0.1:1, trusted_peers: [10.0.0.0/8, nope]}",
                "authz.trusted_peers[1]",
            ),
        ] {
            let mut errors = Vec::new();
            assert!(compile(Some(&config(yaml)), &[taken], &mut errors).is_none());
            assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
            assert_eq!(errors[0].path, key, "{yaml}");
        }
    }
}
