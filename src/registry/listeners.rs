//! The `listeners` step and the `limits` section: the addresses and TLS that are bound at
//! start, and what one client connection may send, hold and wait for.

use super::{Limits, ListenerTls, Listeners, PINGORA_MAX_HEADERS, PINGORA_MAX_HEADER_BYTES};
use crate::clients::secret::pool::PoolLimits;
use crate::config::{Config, Diagnostic, Source, TlsConfig};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The listeners and what every request is timed by: present, parseable, distinct, positive.
pub(super) fn check_listeners(cfg: &Config, errors: &mut Vec<Diagnostic>) {
    if cfg.listen.is_none() && cfg.egress.is_empty() && cfg.authz.is_none() {
        errors.push(Diagnostic::new("listen", "`listen` is missing: give `listen` (the ingress, protecting `upstream`), `egress` (remote APIs called for legacy callers), `authz` (the decision for a proxy already in the path), or several"));
    }
    if cfg.listen.is_some() && cfg.upstream.is_none() {
        errors.push(Diagnostic::new("upstream", "`upstream` is missing: the ingress (`listen`) needs the backend it protects, e.g. http://127.0.0.1:3000"));
    }
    for (key, v) in [
        ("listen", cfg.listen.as_ref()),
        ("admin_listen", Some(&cfg.admin_listen)),
    ] {
        let Some(v) = v else { continue };
        if v.parse::<SocketAddr>().is_err() {
            errors.push(Diagnostic::new(
                key,
                format!("`{v}` is not an address:port such as 0.0.0.0:8080"),
            ));
        }
    }
    if cfg.listen.as_ref() == Some(&cfg.admin_listen) {
        errors.push(Diagnostic::new(
            "admin_listen",
            "admin_listen must differ from listen: metrics and health never share the proxy port",
        ));
    }
    if cfg.threads == Some(0) {
        errors.push(Diagnostic::new("threads", "threads must be at least 1"));
    }
    let t = &cfg.timeouts;
    for (key, v) in [
        ("timeouts.upstream_connect_ms", t.upstream_connect_ms),
        ("timeouts.upstream_read_ms", t.upstream_read_ms),
        ("timeouts.upstream_idle_ms", t.upstream_idle_ms),
        ("timeouts.client_header_ms", t.client_header_ms),
        ("timeouts.client_idle_ms", t.client_idle_ms),
        ("timeouts.request_total_ms", t.request_total_ms),
    ] {
        if v == 0 {
            errors.push(Diagnostic::new(key, "must be positive"));
        }
    }
}

/// The `listeners` step: what is bound at start (a reload cannot move a bound socket).
pub(super) fn listeners(cfg: &Config) -> Listeners {
    let l = &cfg.limits;
    Listeners {
        listen: cfg.listen.clone(),
        admin_listen: cfg.admin_listen.clone(),
        threads: cfg.threads,
        tls: cfg.tls.is_some(),
        admin_tls: cfg.admin_tls.is_some(),
        http2: cfg.http2,
        // No more idle connections than the upstream may be sent at once.
        upstream_keepalive: l.upstream_keepalive.unwrap_or(
            l.max_connections
                .min(l.max_upstream_connections.unwrap_or(usize::MAX)),
        ),
        max_upstream_connections: l.max_upstream_connections,
        egress: cfg
            .egress
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.listen.parse().ok()?)))
            .collect(),
        // Set by `compile` from the `authz` step.
        authz: None,
    }
}

pub(super) fn check_limits(cfg: &Config, errors: &mut Vec<Diagnostic>) {
    let l = &cfg.limits;
    let mut within = |key: &str, v: usize, min: usize, max: usize, why: &str| {
        if v < min || v > max {
            errors.push(Diagnostic::new(
                format!("limits.{key}"),
                format!("{v} is out of range: use {min} to {max}{why}"),
            ));
        }
    };
    within("max_connections", l.max_connections, 1, 1_000_000, "");
    if let Some(k) = l.upstream_keepalive {
        within("upstream_keepalive", k, 1, 1_000_000, "");
    }
    if let Some(k) = l.max_upstream_connections {
        within("max_upstream_connections", k, 1, 1_000_000, "");
    }
    within(
        "max_header_bytes",
        l.max_header_bytes,
        1024,
        PINGORA_MAX_HEADER_BYTES,
        " (pingora's own ceiling)",
    );
    within(
        "max_headers",
        l.max_headers,
        1,
        PINGORA_MAX_HEADERS,
        " (pingora's own ceiling)",
    );
    within(
        "h2_max_concurrent_streams",
        l.h2_max_concurrent_streams as usize,
        1,
        10_000,
        "",
    );
    within(
        "max_token_body_bytes",
        l.max_token_body_bytes,
        64,
        1 << 20,
        "",
    );
    within(
        "max_bearer_bytes",
        l.max_bearer_bytes,
        256,
        PINGORA_MAX_HEADER_BYTES,
        "",
    );
    within(
        "argon2_per_second",
        l.argon2_per_second as usize,
        1,
        10_000,
        "",
    );
    within(
        "argon2_concurrency",
        l.argon2_concurrency,
        1,
        MAX_ARGON2_CONCURRENCY,
        " (each running check holds its argon2 memory)",
    );
    within("argon2_queue", l.argon2_queue, 0, 1024, "");
}

/// At most this many argon2 checks at once: each holds its memory cost (19 MiB by default).
const MAX_ARGON2_CONCURRENCY: usize = 4;

/// The listeners' own certificates (`tls`, `admin_tls`, `authz.tls`).
pub(super) fn listener_tls(
    cfg: &Config,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> ListenerTls {
    ListenerTls {
        proxy: cfg
            .tls
            .as_ref()
            .and_then(|c| load_listener_tls(c, "tls", src, errors)),
        admin: cfg
            .admin_tls
            .as_ref()
            .and_then(|c| load_listener_tls(c, "admin_tls", src, errors)),
        authz: cfg
            .authz
            .as_ref()
            .and_then(|a| a.tls.as_ref())
            .and_then(|c| load_listener_tls(c, "authz.tls", src, errors)),
    }
}

fn load_listener_tls(
    c: &TlsConfig,
    key: &str,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> Option<Arc<CertifiedKey>> {
    crate::certs::load_certified_key(&src.resolve(&c.cert_file), &src.resolve(&c.key_file))
        .map_err(|e| errors.push(Diagnostic::new(format!("{key}.cert_file"), e)))
        .ok()
}

/// What one client connection may send and hold (`limits`, `timeouts.client_*`).
pub(super) fn client_limits(cfg: &Config) -> Limits {
    let (l, t) = (&cfg.limits, &cfg.timeouts);
    Limits {
        max_connections: l.max_connections,
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        h2_max_concurrent_streams: l.h2_max_concurrent_streams,
        max_token_body_bytes: l.max_token_body_bytes,
        argon2: PoolLimits {
            per_second: l.argon2_per_second,
            concurrency: l.argon2_concurrency,
            queue: l.argon2_queue,
        },
        client_header: Duration::from_millis(t.client_header_ms),
        client_idle: Duration::from_millis(t.client_idle_ms),
        request_total: Duration::from_millis(t.request_total_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::{parsed, paths};

    #[test]
    fn the_listeners_step_checks_addresses_threads_and_timeouts() {
        let (cfg, _) = parsed("listen: 127.0.0.1:9090\nadmin_listen: 127.0.0.1:9090\nthreads: 0\ntimeouts:\n  client_idle_ms: 0\n");
        let mut errors = Vec::new();
        check_listeners(&cfg, &mut errors);
        assert_eq!(
            paths(&errors),
            [
                "upstream",
                "admin_listen",
                "threads",
                "timeouts.client_idle_ms"
            ]
        );
        let (cfg, _) = parsed("listen: localhost\nupstream: http://b\n");
        let mut errors = Vec::new();
        check_listeners(&cfg, &mut errors);
        assert_eq!(paths(&errors), ["listen"]);
        assert!(
            errors[0].message.contains("address:port"),
            "{}",
            errors[0].message
        );
        let (cfg, _) = parsed("listen: 127.0.0.1:8080\nupstream: http://b\nlimits:\n  max_connections: 300\n  max_upstream_connections: 40\n");
        let l = listeners(&cfg);
        assert_eq!(
            (l.upstream_keepalive, l.max_upstream_connections),
            (40, Some(40))
        );
    }
}
