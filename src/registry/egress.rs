//! The `egress` step of compilation (SPEC §10): each entry checked and compiled into what
//! its listener serves with: the remote API as an [`Upstream`], and the token manager that
//! holds its token, kept across reloads that leave its token request unchanged.

use super::upstream::parse_upstream;
use super::Upstream;
use crate::config::{Config, Diagnostic, EgressAuth, EgressConfig, RetryOn401Config, Source};
use crate::egress::retry::RetryOn401;
use crate::egress::tokens::{self, AuthMethod, Request, Tokens};
use crate::outbound::{self, Trust};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One compiled `egress[]` entry.
pub struct EgressEntry {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    /// `Host` as the remote API expects it: the upstream URL's authority.
    pub authority: String,
    pub retry: RetryOn401,
    /// Shared with the previous generation when a reload keeps the token request
    /// ([`keep_tokens`]).
    pub tokens: Arc<Tokens>,
    token_tls: outbound::Tls,
}

/// Form fields a `token_params` entry may not set: the grant's own.
const RESERVED_PARAMS: [&str; 4] = ["grant_type", "scope", "client_id", "client_secret"];

fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// `token_tls`: whom the token request trusts, and how (`server_name`,
/// `insecure_skip_verify` as the ingress's `upstream_tls`).
fn token_tls(
    tls: Option<&crate::config::UpstreamTlsConfig>,
    at: &str,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> outbound::Tls {
    let Some(t) = tls else {
        return outbound::Tls::trusting(Trust::System);
    };
    if t.insecure_skip_verify {
        warnings.push(Diagnostic::new(format!("{at}.insecure_skip_verify"), "the token endpoint's certificate is not verified: anyone on the path can impersonate it and collect the client secret; give its CA in ca_file instead"));
    }
    if let Some(n) = &t.server_name {
        if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
            errors.push(Diagnostic::new(
                format!("{at}.server_name"),
                format!("`{n}` is not a DNS name or IP address"),
            ));
        }
    }
    outbound::Tls {
        trust: super::upstream::trust(t.ca_file.as_deref(), format!("{at}.ca_file"), src, errors),
        server_name: t.server_name.clone(),
        skip_verify: t.insecure_skip_verify,
    }
}

/// Check and compile `cfg.egress`. `taken` holds the ingress's listen addresses.
pub fn compile(
    cfg: &Config,
    taken: &[SocketAddr],
    src: &Source,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Vec<EgressEntry> {
    let mut names = HashSet::new();
    let mut listens: HashSet<SocketAddr> = taken.iter().copied().collect();
    let mut out = Vec::new();
    for (i, e) in cfg.egress.iter().enumerate() {
        let at = format!("egress[{i}]");
        let n = errors.len();
        let listen = check_entry(e, &at, &mut names, &mut listens, errors, warnings);
        let upstream = parse_upstream(&e.upstream)
            .map_err(|m| errors.push(Diagnostic::new(format!("{at}.upstream"), m)))
            .ok();
        if let Some((_, tls, _)) = &upstream {
            if let Err(m) = e.upstream_protocol.check(*tls) {
                errors.push(Diagnostic::new(format!("{at}.upstream_protocol"), m));
            }
        }
        let up_tls = e.upstream_tls.clone().unwrap_or_default();
        let ca = up_tls.ca_file.as_ref().and_then(|f| {
            crate::certs::load_ca(&src.resolve(f))
                .map_err(|m| errors.push(Diagnostic::new(format!("{at}.upstream_tls.ca_file"), m)))
                .ok()
        });
        let token_tls = token_tls(
            e.token_tls.as_ref(),
            &format!("{at}.token_tls"),
            src,
            errors,
            warnings,
        );
        let secret_file = super::secret_file(
            src,
            &e.client_secret_file,
            &format!("{at}.client_secret_file"),
            errors,
        );
        // Built only from a token_tls without errors: a bad one is already reported.
        let client = (errors.len() == n)
            .then(|| {
                outbound::client(&token_tls, tokens::REQUEST_TIMEOUT)
                    .map_err(|m| errors.push(Diagnostic::new(format!("{at}.token_tls"), m)))
                    .ok()
            })
            .flatten();
        let (Some((addr, tls, host)), Some(client), Some(listen), true) =
            (upstream, client, listen, errors.len() == n)
        else {
            continue;
        };
        let authority = e
            .upstream
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| host.clone());
        let request = Request {
            egress: e.name.clone(),
            token_url: e.token_url.clone(),
            client_id: e.client_id.clone(),
            secret_file,
            auth: match e.auth_method {
                EgressAuth::Basic => AuthMethod::Basic,
                EgressAuth::Post => AuthMethod::Post,
            },
            scope: e.scope.clone(),
            params: e
                .token_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            refresh_before: Duration::from_secs(e.refresh_before_seconds),
        };
        out.push(EgressEntry {
            name: e.name.clone(),
            listen,
            upstream: Upstream::new(
                (addr, tls, host),
                &up_tls,
                ca,
                &cfg.timeouts,
                e.upstream_protocol,
            ),
            authority,
            retry: match e.retry_on_401 {
                RetryOn401Config::Idempotent => RetryOn401::Idempotent,
                RetryOn401Config::Never => RetryOn401::Never,
            },
            tokens: Tokens::new(request, client),
            token_tls,
        });
    }
    out
}

fn check_entry(
    e: &EgressConfig,
    at: &str,
    names: &mut HashSet<String>,
    listens: &mut HashSet<SocketAddr>,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<SocketAddr> {
    if !super::is_entry_name(&e.name) {
        errors.push(Diagnostic::new(format!("{at}.name"), format!("`{}` must be 1 to 32 of a-z, 0-9, `_` and `-` (it names the entry in logs and metrics)", e.name)));
    } else if !names.insert(e.name.clone()) {
        errors.push(Diagnostic::new(
            format!("{at}.name"),
            format!("duplicate egress name `{}`", e.name),
        ));
    }
    let listen = match e.listen.parse::<SocketAddr>() {
        Err(_) => {
            errors.push(Diagnostic::new(
                format!("{at}.listen"),
                format!(
                    "`{}` is not an address:port such as 127.0.0.1:8081",
                    e.listen
                ),
            ));
            None
        }
        Ok(a) if !listens.insert(a) => {
            errors.push(Diagnostic::new(format!("{at}.listen"), format!("`{a}` is already a listen address of this config: every listener needs its own")));
            None
        }
        Ok(a) if !loopback(&a) && !e.allow_remote => {
            errors.push(Diagnostic::new(format!("{at}.listen"), format!("`{a}` is not a loopback address: anyone who reaches it calls the remote API as client `{}`; listen on 127.0.0.1, or set allow_remote: true", e.client_id)));
            None
        }
        Ok(a) => Some(a),
    };
    match e.token_url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https")) && u.host().is_some() => {}
        Ok(u) if matches!(u.scheme_str(), Some("http")) && u.host().is_some() => {
            if !super::upstream::is_loopback_url(&u) {
                warnings.push(Diagnostic::new(format!("{at}.token_url"), "token_url is http:// to a host that is not loopback: the client secret and the token travel unencrypted; use https://"));
            }
        }
        _ => errors.push(Diagnostic::new(
            format!("{at}.token_url"),
            format!("`{}` is not an http:// or https:// URL", e.token_url),
        )),
    }
    if e.client_id.is_empty() || !super::is_vschar(&e.client_id) {
        errors.push(Diagnostic::new(
            format!("{at}.client_id"),
            "client_id must be printable ASCII (RFC 6749 VSCHARs), and not empty",
        ));
    }
    for k in e.token_params.keys() {
        if RESERVED_PARAMS.contains(&k.as_str()) {
            errors.push(Diagnostic::new(format!("{at}.token_params.{k}"), format!("`{k}` is set by ords-guard itself (client credentials grant); use `scope`, `client_id` or `client_secret_file` for those")));
        }
    }
    listen
}

/// Carry the token managers of `old` over to the entries of `new` whose name and token
/// request are unchanged (a reload): their token stays in use, no new one is fetched.
pub fn keep_tokens(new: &mut [EgressEntry], old: &[EgressEntry]) {
    for n in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| {
            o.name == n.name && o.tokens.request == n.tokens.request && o.token_tls == n.token_tls
        }) {
            n.tokens = o.tokens.clone();
        }
    }
}
