//! The `upstream` step: the protected backend, how it is reached (`upstream_tls`), and whom
//! the proxy's outbound clients trust.

use super::Upstream;
use crate::config::{Config, Diagnostic, Source};
use pingora::protocols::tls::CaType;
use std::sync::Arc;
use std::time::Duration;

/// The `upstream` step: the protected backend and how it is reached (`upstream_tls`).
pub(super) fn upstream(
    cfg: &Config,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<Upstream> {
    let parsed = cfg.upstream.as_ref().and_then(|u| {
        parse_upstream(u)
            .map_err(|e| errors.push(Diagnostic::new("upstream", e)))
            .ok()
    });
    let upstream_tls = cfg.upstream_tls.clone().unwrap_or_default();
    let ca = upstream_tls.ca_file.as_ref().and_then(|file| {
        crate::certs::load_ca(&src.resolve(file))
            .map_err(|e| errors.push(Diagnostic::new("upstream_tls.ca_file", e)))
            .ok()
    });
    if cfg.upstream_tls.is_some() && matches!(&parsed, Some((_, false, _))) {
        warnings.push(Diagnostic::new(
            "upstream_tls",
            "the upstream is http://, so upstream_tls has no effect; use https:// to encrypt",
        ));
    }
    if upstream_tls.insecure_skip_verify {
        warnings.push(Diagnostic::new("upstream_tls.insecure_skip_verify", "the upstream's certificate is not verified: anyone on the path can impersonate it; give its CA in ca_file instead"));
    }
    if let Some((_, tls, _)) = &parsed {
        if let Err(e) = cfg.upstream_protocol.check(*tls) {
            errors.push(Diagnostic::new("upstream_protocol", e));
        }
    }
    parsed.map(|u| Upstream::new(u, &upstream_tls, ca, &cfg.timeouts, cfg.upstream_protocol))
}

/// `scheme://host[:port]`: its address (a name is looked up later, per request), whether it
/// is TLS, and the host.
pub(super) fn parse_upstream(s: &str) -> Result<(crate::resolve::Address, bool, String), String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("upstream `{s}` is not a URL such as http://127.0.0.1:3000"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "upstream `{s}` must start with http:// or https://"
            ))
        }
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || authority.contains('@') {
        return Err(format!("upstream `{s}` must be scheme://host[:port] with no path (the upstream receives the request's own path)"));
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // `http::Uri` takes `h:x` and reports no port: the port is read from the text here.
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    if let Some((_, p)) = after_host.split_once(':') {
        if p.parse::<u16>().is_err() {
            return Err(format!("upstream `{s}`: `{p}` is not a port (0 to 65535)"));
        }
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if host.is_empty() {
        return Err(format!("upstream `{s}` names no host"));
    }
    Ok((crate::resolve::Address::new(&host, port), tls, host))
}

impl Upstream {
    /// An upstream as parsed by [`parse_upstream`], verified per `tls`, with the
    /// `timeouts.upstream_*` of the config (the ingress's and egress entries' alike).
    pub(super) fn new(
        (addr, tls, host): (crate::resolve::Address, bool, String),
        tls_cfg: &crate::config::UpstreamTlsConfig,
        ca: Option<Arc<CaType>>,
        t: &crate::config::Timeouts,
        protocol: crate::config::UpstreamProtocol,
    ) -> Upstream {
        Upstream {
            addr,
            tls,
            host: tls_cfg.server_name.clone().unwrap_or(host),
            connect_timeout: Duration::from_millis(t.upstream_connect_ms),
            read_timeout: Duration::from_millis(t.upstream_read_ms),
            idle_timeout: Duration::from_millis(t.upstream_idle_ms),
            ca,
            verify: !tls_cfg.insecure_skip_verify,
            protocol,
        }
    }
}

/// Whom an outbound client trusts: the certificates of `ca_file` (relative to the config),
/// else the system roots. A bad file is an error at `key`.
pub(crate) fn trust(
    ca_file: Option<&std::path::Path>,
    key: String,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> crate::outbound::Trust {
    use crate::outbound::Trust;
    let Some(f) = ca_file else {
        return Trust::System;
    };
    match crate::certs::load_ca_certs(&src.resolve(f)) {
        Ok(certs) => Trust::Only(certs),
        Err(e) => {
            errors.push(Diagnostic::new(key, e));
            Trust::System
        }
    }
}

/// Whether a URL's host is loopback (`localhost` included): plain http is tolerated there.
pub(crate) fn is_loopback_url(uri: &http::Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::{parsed, paths};

    #[test]
    fn upstream_forms() {
        let addr = |u: &str| parse_upstream(u).unwrap().0.to_string();
        assert_eq!(addr("http://127.0.0.1:3000"), "127.0.0.1:3000");
        assert_eq!(addr("https://127.0.0.1"), "127.0.0.1:443");
        assert_eq!(addr("http://[::1]:8081/"), "[::1]:8081");
        // A name is kept as given, looked up per request: it need not resolve at load.
        assert_eq!(
            addr("https://orders.svc.cluster.local"),
            "orders.svc.cluster.local:443"
        );
        assert_eq!(
            parse_upstream("http://localhost:3000").unwrap().2,
            "localhost"
        );
        for bad in [
            "127.0.0.1:3000",
            "http://h:3000/api",
            "http://h:x",
            "ftp://h",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_upstream_step_warns_of_tls_that_does_nothing_or_verifies_nothing() {
        let (cfg, src) =
            parsed("upstream: http://b:3000\nupstream_tls:\n  insecure_skip_verify: true\n");
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let up = upstream(&cfg, &src, &mut errors, &mut warnings).unwrap();
        assert!(errors.is_empty());
        assert_eq!(
            paths(&warnings),
            ["upstream_tls", "upstream_tls.insecure_skip_verify"]
        );
        assert_eq!((up.tls, up.host.as_str()), (false, "b"));
        let (cfg, src) = parsed("upstream: ftp://b\n");
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        assert!(upstream(&cfg, &src, &mut errors, &mut warnings).is_none());
        assert_eq!(paths(&errors), ["upstream"]);
    }
}
