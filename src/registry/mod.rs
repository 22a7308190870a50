//! The compiled, immutable registry every request reads (SPEC §1–§3).
//!
//! `compile` is the validation: it turns a parsed [`Config`] into a [`Registry`] or into the
//! full list of [`Diagnostic`]s. A reload compiles a new one and swaps it in atomically, so a
//! request always sees one consistent generation.
//!
//! It runs in steps, a module each with its own tests: `listeners` (addresses, listener TLS
//! and the `limits` section), `upstream`, `privileges` (with `base_path`), `egress`, `limits`
//! (rate limits), `issuers`, `clients`, `traces` (the `tracing` section), and the proxy's
//! own token keys (`own_tokens`, here).
//! Files (keys, certificates, CAs) are read through `certs` and `tokens`, below the registry.

pub mod authz;
pub mod clients;
pub mod discovery;
pub mod egress;
pub mod issuers;
pub mod limits;
pub mod listeners;
pub mod privileges;
#[cfg(test)]
pub(crate) mod testing;
pub mod traces;
pub mod upstream;

use crate::client_addr::TrustedProxies;
use crate::clients::secret::pool::PoolLimits;
use crate::clients::secret::SecretHash;
use crate::config::{Config, Diagnostic, Source, Unmatched};
use crate::patterns::pattern::Matcher;
use crate::tokens::token::Tokens;
use pingora::protocols::tls::CaType;
use rustls::sign::CertifiedKey;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// pingora's own ceilings on a request head (pingora-core `http/v1/common.rs`): ours must
/// sit below them, or pingora's plain 400 would answer first.
pub const PINGORA_MAX_HEADERS: usize = 256;
pub const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;

pub struct Privilege {
    pub name: String,
    pub roles: Vec<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub patterns: Vec<String>,
    pub methods: Option<Vec<String>>,
    /// `report`: its refusals are forwarded and counted instead (SPEC §11).
    pub mode: crate::config::Mode,
}

pub struct Client {
    pub name: String,
    pub client_id: String,
    pub secrets: Vec<SecretHash>,
    pub grant_type: String,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub support_email: Option<String>,
    /// Privileges granted directly by name (ORDS `p_privilege_names`).
    pub privileges: Vec<String>,
    pub roles: Vec<String>,
    pub token_lifetime_seconds: Option<u64>,
    pub disabled: bool,
    /// May introspect ords-guard's tokens (SPEC §16).
    pub introspect: bool,
    /// Unix seconds: tokens issued (`iat`) earlier are refused (SPEC §16).
    pub not_before: Option<u64>,
    /// Indices of every privilege this client holds, computed once at load.
    held: HashSet<usize>,
}

impl Client {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether one of this client's tokens was revoked (SPEC §16): at `/oauth/revoke`
    /// (this process's list), or with all its tokens issued before `not_before`.
    pub fn revoked(&self, claims: &crate::tokens::token::Claims) -> bool {
        self.not_before.is_some_and(|nb| claims.iat < nb)
            || crate::tokens::revoked::REVOKED.is_revoked(
                &self.client_id,
                &claims.jti,
                claims.iat,
                crate::tokens::token::now(),
            )
    }
}

/// The protected backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Looked up per request when it is a name (`resolve`).
    pub addr: crate::resolve::Address,
    pub tls: bool,
    pub host: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Trust these instead of the system roots (`upstream_tls.ca_file`).
    pub ca: Option<Arc<CaType>>,
    pub verify: bool,
    /// `upstream_protocol`, checked against the scheme.
    pub protocol: crate::config::UpstreamProtocol,
}

/// What one client may send and hold, and for how long (`limits`, `timeouts.client_*`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    pub max_token_body_bytes: usize,
    /// The argon2 pool's admission bounds.
    pub argon2: PoolLimits,
    pub client_header: Duration,
    pub client_idle: Duration,
    pub request_total: Duration,
}

/// The certificates the listeners serve, when they serve TLS.
#[derive(Default)]
pub struct ListenerTls {
    pub proxy: Option<Arc<CertifiedKey>>,
    pub admin: Option<Arc<CertifiedKey>>,
    /// `authz.tls`: both check listeners.
    pub authz: Option<Arc<CertifiedKey>>,
}

pub const GRANT_TYPES: [&str; 3] = ["client_credentials", "authorization_code", "implicit"];

pub struct Registry {
    /// base_path without its trailing `/`; `""` for `/`.
    pub base: String,
    /// `{base_path}/oauth/token` and `/oauth/jwks`, computed once: every request is compared
    /// with them. `None` without `token:`: then they are ordinary paths.
    token_path: Option<String>,
    jwks_path: Option<String>,
    /// `{base_path}/oauth/`, under which the own endpoints are named.
    oauth_path: Option<String>,
    /// RFC 8414 metadata, when `token.issuer` is a URL it can describe (SPEC §16).
    discovery: Option<discovery::Discovery>,
    pub unmatched: Unmatched,
    /// How a `;` in a path is read (SPEC §11).
    pub path_parameters: crate::config::PathParameters,
    pub privileges: Vec<Privilege>,
    pub clients: HashMap<String, Client>,
    /// The proxy's own keys; `None` when it only accepts identity providers' tokens.
    pub tokens: Option<Tokens>,
    /// Longest bearer token parsed (`limits.max_bearer_bytes`), ours or an issuer's.
    pub max_bearer: usize,
    /// Identity providers whose tokens are accepted (SPEC §9).
    pub issuers: Vec<issuers::IssuerEntry>,
    /// The `issuers` entry that introspects, which opaque tokens go to (SPEC §16).
    pub introspecting: Option<usize>,
    /// Remote APIs called for legacy callers (SPEC §10).
    pub egress: Vec<egress::EgressEntry>,
    /// Requests per client or address (SPEC §13).
    pub rate_limits: Vec<crate::ratelimit::Limit>,
    /// Where limits with `store: redis` count; `None` when none does.
    pub rate_limit_store: Option<crate::ratelimit::shared::StoreSettings>,
    /// `revocation: {store: redis}`: revocations are shared through `rate_limit_store`'s
    /// Redis (SPEC §16).
    pub revocations_in_redis: bool,
    /// Every role some privilege names: the only ones an issuer's token forwards.
    pub role_names: HashSet<String>,
    /// Identity providers' tokens verified in this generation (a reload empties it).
    pub issuer_tokens: crate::tokens::token::Verified<crate::tokens::issuer::IssuerVerified>,
    /// The backend the ingress protects; `None` in an egress-only config.
    pub upstream: Option<Upstream>,
    pub limits: Limits,
    /// Whose `X-Forwarded-For` names the client, for throttling and logs.
    pub trusted_proxies: TrustedProxies,
    /// `authz:` (SPEC §14): who may ask the check endpoints.
    pub authz: Option<authz::Authz>,
    pub tls: ListenerTls,
    /// `tracing` (SPEC §15): where spans go; `None`: nothing is exported.
    pub tracing: Option<crate::traces::Settings>,
    pub shutdown_grace: Duration,
    by_name: HashMap<String, usize>,
    /// Each pattern's privilege and its place in that privilege's `patterns`.
    matcher: Matcher<(usize, usize)>,
    /// Some client stores an argon2id hash: unknown ids then pay the same cost (timing).
    pub has_argon2: bool,
    /// The files this registry was built from (config and key files): a change to any of
    /// them triggers a reload.
    pub sources: Vec<PathBuf>,
}

impl Registry {
    pub fn privilege(&self, idx: usize) -> &Privilege {
        &self.privileges[idx]
    }

    pub fn privilege_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    /// SPEC §3: P is in the client's `privileges`, or the client has one of P's roles, or P
    /// has no roles.
    pub fn holds(&self, client: &Client, idx: usize) -> bool {
        client.held.contains(&idx)
    }

    /// The privilege deciding `path` (already normalised) for `method`, or `None` when no
    /// privilege covers it (including paths outside base_path).
    pub fn protecting(&self, path: &str, method: &str) -> Option<usize> {
        let rel = self.relative(path)?;
        self.matcher.lookup(rel, method).map(|&(p, _)| p)
    }

    /// The pattern deciding `path` for `method`, as the config wrote it (a span's route).
    pub fn route(&self, path: &str, method: &str) -> Option<&str> {
        let rel = self.relative(path)?;
        let &(p, j) = self.matcher.lookup(rel, method)?;
        Some(self.privileges[p].patterns[j].as_str())
    }

    /// `path` relative to base_path, or `None` when it lies outside.
    pub fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.base.is_empty() {
            return Some(path);
        }
        match path.strip_prefix(self.base.as_str()) {
            Some("") => Some("/"),
            Some(rest) if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }

    pub fn token_path(&self) -> Option<&str> {
        self.token_path.as_deref()
    }

    pub fn jwks_path(&self) -> Option<&str> {
        self.jwks_path.as_deref()
    }

    /// Which of ords-guard's own endpoints `path` (absolute, normalised) is: answered here,
    /// never forwarded. None without `token:`.
    pub fn own_endpoint(&self, path: &str) -> Option<Own> {
        let oauth = self.oauth_path.as_deref()?;
        // The endpoint's name, with or without one trailing `/` (never forwarded either
        // way: the request carries a client's secret).
        let name = path
            .strip_prefix(oauth)
            .map(|n| n.strip_suffix('/').unwrap_or(n));
        match name {
            Some("token") => return Some(Own::Token),
            Some("jwks") => return Some(Own::Jwks),
            Some("introspect") => return Some(Own::Introspect),
            Some("revoke") => return Some(Own::Revoke),
            _ => {}
        }
        if discovery::reserved(path, &self.base) {
            Some(Own::Metadata)
        } else {
            None
        }
    }

    /// The RFC 8414 document served at `path`, if any.
    pub fn metadata(&self, path: &str) -> Option<&[u8]> {
        self.discovery.as_ref()?.at(path)
    }
}

/// ords-guard's own endpoints (SPEC §4, §16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    Token,
    Jwks,
    /// RFC 7662, for clients with `introspect: true`.
    Introspect,
    /// RFC 7009: a client revokes one of its own tokens.
    Revoke,
    /// RFC 8414 metadata (or 404 on a well-known path it does not serve).
    Metadata,
}

/// Listener settings: read at start only (a reload cannot move a bound socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// The ingress listener; `None` in an egress-only config.
    pub listen: Option<String>,
    pub admin_listen: String,
    pub threads: Option<usize>,
    pub tls: bool,
    pub admin_tls: bool,
    /// `http2`: whether the proxy and egress listeners speak HTTP/2 (TLS offers it in ALPN,
    /// fixed when the listener starts).
    pub http2: bool,
    /// pingora's upstream keep-alive pool size (`limits.upstream_keepalive`).
    pub upstream_keepalive: usize,
    /// `limits.max_upstream_connections`.
    pub max_upstream_connections: Option<usize>,
    /// The egress listeners, by entry name.
    pub egress: Vec<(String, SocketAddr)>,
    /// The check endpoints' listeners (`authz.listen`, `authz.grpc_listen`, SPEC §14).
    pub authz: Option<authz::AuthzListeners>,
}

/// A registry, the listeners, and the warnings its config earned.
pub struct Compiled {
    pub registry: Registry,
    pub listeners: Listeners,
    pub warnings: Vec<Diagnostic>,
}

/// RFC 6749 Appendix A.1: client-id = *VSCHAR (%x20-7E), the space included (Basic
/// form-encodes it).
pub(crate) fn is_vschar(s: &str) -> bool {
    s.chars().all(|ch| (' '..='~').contains(&ch))
}

/// Whether `name` may name an entry in logs, metrics label values and headers:
/// A `client_secret_file` (egress, introspection), resolved against the config file: it
/// must exist and hold a secret at load (it is read again for every request made with it).
fn secret_file(
    src: &Source,
    file: &std::path::Path,
    at: &str,
    errors: &mut Vec<Diagnostic>,
) -> PathBuf {
    let path = src.resolve(file);
    match std::fs::read(&path) {
        Ok(b) if !crate::outbound::secret_from(&b).is_empty() => {}
        Ok(_) => errors.push(Diagnostic::new(
            at,
            format!("{} is empty: it holds the client secret", path.display()),
        )),
        Err(e) => errors.push(Diagnostic::new(
            at,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
    path
}

/// 1 to 32 of `a-z`, `0-9`, `_`, `-` (`issuers[].name`, `egress[].name`).
pub(crate) fn is_entry_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_name(errors: &mut Vec<Diagnostic>, path: String, what: &str, v: &str) {
    if v.trim().is_empty() {
        errors.push(Diagnostic::new(path, format!("{what} is empty")));
    } else if v.chars().any(|c| c.is_control()) {
        errors.push(Diagnostic::new(
            path,
            format!("{what} contains a control character"),
        ));
    }
}

/// The `token` step: the proxy's own keys, or none when only identity providers' tokens
/// are accepted (SPEC §9: then `clients` must be empty, as nothing would mint for them).
fn own_tokens(cfg: &Config, src: &Source, errors: &mut Vec<Diagnostic>) -> Option<Tokens> {
    let Some(tc) = &cfg.token else {
        // An egress-only config (no `listen`) needs no token endpoint and no issuers.
        if cfg.issuers.is_empty() && cfg.listen.is_some() {
            errors.push(Diagnostic::new("token", "`token` is missing: give `token` (the proxy's own token endpoint and signing key), `issuers` (identity providers whose tokens are accepted), or both"));
        } else if !cfg.clients.is_empty() {
            errors.push(Diagnostic::new("clients", "clients need the token endpoint, and there is none without `token`: add `token`, or remove the clients (an identity provider's clients are its own)"));
        }
        return None;
    };
    Tokens::load(tc, |p| src.resolve(p))
        .map_err(|es| errors.extend(es.into_iter().map(|(k, m)| Diagnostic::new(k, m))))
        .ok()
        .map(|mut t| {
            t.max_len = cfg.limits.max_bearer_bytes;
            t
        })
}

/// Validate `cfg` and build its registry: one step per part of the config, each reporting
/// every problem it finds, so a user sees them all at once.
pub fn compile(cfg: &Config, src: &Source) -> Result<Compiled, Vec<Diagnostic>> {
    // Every step adds to both: errors refuse the config, warnings are logged.
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    listeners::check_listeners(cfg, &mut errors);
    listeners::check_limits(cfg, &mut errors);
    let trusted_proxies = TrustedProxies::parse(&cfg.trusted_proxies)
        .map_err(|(i, e)| errors.push(Diagnostic::new(format!("trusted_proxies[{i}]"), e)))
        .unwrap_or_default();
    let upstream = upstream::upstream(cfg, src, &mut errors, &mut warnings);
    let listener_tls = listeners::listener_tls(cfg, src, &mut errors);
    let base = privileges::base_path(cfg, &mut errors);
    let privileges::Privileges {
        privileges,
        by_name,
        matcher,
    } = privileges::privileges(cfg, &mut errors, &mut warnings);

    let taken: Vec<SocketAddr> = cfg
        .listen
        .iter()
        .chain([&cfg.admin_listen])
        .filter_map(|a| a.parse().ok())
        .collect();
    let egress = egress::compile(cfg, &taken, src, &mut errors, &mut warnings);
    let taken: Vec<SocketAddr> = taken
        .into_iter()
        .chain(cfg.egress.iter().filter_map(|e| e.listen.parse().ok()))
        .collect();
    let authz = authz::compile(cfg.authz.as_ref(), &taken, &mut errors);
    let revocations_in_redis = cfg
        .revocation
        .as_ref()
        .is_some_and(|r| r.store == crate::config::LimitStore::Redis);
    if revocations_in_redis && cfg.rate_limit_store.is_none() {
        errors.push(Diagnostic::new(
            "revocation.store",
            "store: redis keeps revocations in the Redis of `rate_limit_store`: add that section (url or url_file)",
        ));
    }
    let (rate_limits, rate_limit_store) = limits::compile(
        &cfg.rate_limits,
        cfg.rate_limit_store.as_ref(),
        revocations_in_redis,
        &by_name,
        src,
        &mut errors,
    );
    let issuers = issuers::compile(
        &cfg.issuers,
        cfg.token.as_ref().map(|t| t.issuer.as_str()),
        &by_name,
        src,
        &mut errors,
        &mut warnings,
    );
    let role_names = privileges
        .iter()
        .flat_map(|p| p.roles.iter().cloned())
        .collect();
    let (clients, has_argon2) =
        clients::clients(cfg, &privileges, &by_name, &mut errors, &mut warnings);
    let tokens = own_tokens(cfg, src, &mut errors);
    let discovery = cfg
        .token
        .as_ref()
        .and_then(|t| discovery::compile(&t.issuer, &base, &mut warnings));
    let tracing = traces::compile(
        cfg.tracing.as_ref(),
        &|k| std::env::var(k).ok(),
        src,
        &mut errors,
    );

    if !errors.is_empty() {
        return Err(errors);
    }
    let t = &cfg.timeouts;
    Ok(Compiled {
        registry: Registry {
            token_path: tokens.is_some().then(|| format!("{base}/oauth/token")),
            jwks_path: tokens.is_some().then(|| format!("{base}/oauth/jwks")),
            oauth_path: tokens.is_some().then(|| format!("{base}/oauth/")),
            discovery,
            max_bearer: cfg.limits.max_bearer_bytes,
            base,
            unmatched: cfg.unmatched,
            path_parameters: cfg.path_parameters,
            privileges,
            clients,
            tokens,
            introspecting: issuers.iter().position(|e| e.introspector.is_some()),
            issuers,
            egress,
            rate_limits,
            rate_limit_store,
            revocations_in_redis,
            role_names,
            issuer_tokens: Default::default(),
            upstream,
            limits: listeners::client_limits(cfg),
            trusted_proxies,
            authz: authz.as_ref().map(|(_, a)| a.clone()),
            tls: listener_tls,
            tracing,
            shutdown_grace: Duration::from_millis(t.shutdown_grace_ms),
            by_name,
            matcher,
            has_argon2,
            sources: sources(cfg, src),
        },
        listeners: Listeners {
            authz: authz.map(|(addr, _)| addr),
            ..listeners::listeners(cfg)
        },
        warnings,
    })
}

/// Every file the registry is built from (config, clients, keys, certificates, CAs, the
/// store's URL): a change to any of them triggers a reload.
fn sources(cfg: &Config, src: &Source) -> Vec<PathBuf> {
    std::iter::once(src.file.clone())
        .chain(cfg.clients_file.iter().map(|f| src.resolve(f)))
        .chain(
            cfg.tracing
                .iter()
                .flat_map(|t| &t.headers_file)
                .map(|f| src.resolve(f)),
        )
        .chain(cfg.token.iter().map(|t| src.resolve(&t.signing_key_file)))
        .chain(cfg.issuers.iter().flat_map(|i| {
            i.jwks_file
                .iter()
                .chain(i.ca_file.iter())
                .map(|f| src.resolve(f))
        }))
        .chain(
            cfg.token
                .iter()
                .flat_map(|t| &t.verification_keys)
                .map(|v| src.resolve(&v.file)),
        )
        .chain(
            cfg.tls
                .iter()
                .chain(&cfg.admin_tls)
                .chain(cfg.authz.iter().flat_map(|a| &a.tls))
                .flat_map(|c| [src.resolve(&c.cert_file), src.resolve(&c.key_file)]),
        )
        .chain(
            cfg.upstream_tls
                .iter()
                .flat_map(|t| t.ca_file.iter())
                .map(|f| src.resolve(f)),
        )
        .chain(
            cfg.rate_limit_store
                .iter()
                .flat_map(|s| s.url_file.iter())
                .map(|f| src.resolve(f)),
        )
        .chain(cfg.egress.iter().flat_map(|e| {
            e.upstream_tls
                .iter()
                .chain(&e.token_tls)
                .flat_map(|t| t.ca_file.iter())
                .map(|f| src.resolve(f))
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::secret::Scheme;
    use crate::config;

    pub(crate) fn source_with_key(yaml: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hs.key"),
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        (dir, yaml.to_string())
    }

    fn compile_str(yaml: &str) -> Result<Compiled, Vec<String>> {
        let (dir, text) = source_with_key(yaml);
        let file = dir.path().join("g.yaml");
        let (cfg, src) = config::parse(&text, &file).unwrap();
        compile(&cfg, &src).map_err(|ds| {
            ds.iter()
                .map(|d| {
                    src.render(d)
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        })
    }

    /// The `key `...`` each rendered error names, in order.
    fn error_keys(errs: &[String]) -> Vec<&str> {
        errs.iter()
            .map(|e| e.split("key `").nth(1).unwrap().split('`').next().unwrap())
            .collect()
    }

    const HEAD: &str = "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\nupstream: http://127.0.0.1:3000\ntoken:\n  algorithm: HS256\n  signing_key_file: hs.key\n  key_id: k\n";
    pub(super) const SHA: &str =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn the_example_shape_compiles() {
        let y = format!(
            "{HEAD}base_path: /ords/hr\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\n  - name: example_write\n    roles: [example_admin]\n    patterns: [\"/example/orders/*\"]\n    methods: [POST]\nclients:\n  - name: Example Client\n    client_id: c1\n    secrets: [\"{SHA}\"]\n    roles: [example_role]\n"
        );
        let c = compile_str(&y).unwrap();
        let r = &c.registry;
        assert_eq!(r.protecting("/ords/hr/example/x", "GET"), Some(0));
        assert_eq!(r.protecting("/ords/hr/example/orders/1", "POST"), Some(1));
        assert_eq!(r.protecting("/ords/hr/example/orders/1", "GET"), Some(0));
        assert_eq!(r.protecting("/example/x", "GET"), None);
        assert_eq!(r.protecting("/ords/hrx/example", "GET"), None);
        assert_eq!(r.token_path(), Some("/ords/hr/oauth/token"));
        let client = r.client("c1").unwrap();
        assert!(r.holds(client, 0));
        assert!(!r.holds(client, 1));
        // Warnings: unmatched allow without /*, example_write reachable by nobody.
        let w: Vec<_> = c.warnings.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(w, ["unmatched", "privileges[1]"]);
    }

    #[test]
    fn egress_errors_name_the_key() {
        let y = format!(
            "{HEAD}egress:\n  - name: Orders!\n    listen: 0.0.0.0:8081\n    upstream: http://127.0.0.1:3000\n    token_url: ftp://x\n    token_tls: {{server_name: \"not a name\"}}\n    client_id: c\n    client_secret_file: nope.secret\n    token_params: {{grant_type: password, audience: a}}\n  - name: b\n    listen: 127.0.0.1:8080\n    upstream: http://127.0.0.1:3000\n    token_url: https://idp.test/token\n    client_id: c\n    client_secret_file: hs.key\n"
        );
        let errs = compile_str(&y).err().unwrap();
        let keys = error_keys(&errs);
        assert_eq!(
            keys,
            [
                "egress[0].name",
                "egress[0].listen",
                "egress[0].token_url",
                "egress[0].token_params.grant_type",
                "egress[0].token_tls.server_name",
                "egress[0].client_secret_file",
                "egress[1].listen",
            ],
            "{errs:#?}"
        );
        assert!(errs[1].contains("allow_remote"), "{}", errs[1]);
        assert!(errs[6].contains("already a listen address"), "{}", errs[6]);
        assert!(errs[0].starts_with("g.yaml:9:5: "), "{}", errs[0]);
    }

    /// SPEC §16: `introspection` instead of keys, checked by key; one entry at most.
    #[test]
    fn introspection_errors_name_the_key() {
        let entry = |name: &str, rest: &str| {
            format!("  - name: {name}\n    issuer: https://{name}.test\n    introspection:\n      url: http://127.0.0.1:9/introspect\n      client_id: ords\n      client_secret_file: hs.key\n{rest}")
        };
        let y = format!(
            "{HEAD}issuers:\n{}{}{}{}",
            entry("a", ""),
            entry("b", "      cache_seconds: 0\n"),
            entry("c", "      url: http://idp.example/introspect\n      client_secret_file: nope.secret\n      client_id: \"\"\n      cache_seconds: 301\n")
                .replace("      url: http://127.0.0.1:9/introspect\n", "")
                .replace("      client_id: ords\n", "")
                .replace("      client_secret_file: hs.key\n", ""),
            entry("d", "    jwks_url: https://d.test/jwks\n"),
        );
        let errs = compile_str(&y).err().unwrap();
        assert_eq!(
            error_keys(&errs),
            [
                "issuers[1].introspection",
                "issuers[1].introspection.cache_seconds",
                "issuers[2].introspection",
                "issuers[2].introspection.url",
                "issuers[2].introspection.client_id",
                "issuers[2].introspection.cache_seconds",
                "issuers[2].introspection.client_secret_file",
                "issuers[3]",
            ],
            "{errs:#?}"
        );
        assert!(
            errs[0].contains("only one issuer may introspect"),
            "{}",
            errs[0]
        );
        assert!(errs[3].contains("https://"), "{}", errs[3]);
        assert!(
            errs[7].contains("exactly one of jwks_url, jwks_file and introspection"),
            "{}",
            errs[7]
        );
        // One is fine, and opaque tokens go to it.
        let c = compile_str(&format!("{HEAD}issuers:\n{}", entry("a", ""))).unwrap();
        assert_eq!(c.registry.introspecting, Some(0));
    }

    /// SPEC §13 validation: each error names its key, line and column.
    #[test]
    fn rate_limit_errors_name_the_key() {
        let y = format!(
            "{HEAD}privileges:\n  - name: p\n    patterns: [\"/x/*\"]\nrate_limits:\n  - name: Bad Name\n    rate: 0\n    per: second\n  - name: ok\n    rate: 5\n    per: minute\n    burst: 0\n    privileges: [p, nope]\n  - name: ok\n    rate: 1\n    per: hour\n    store: redis\n"
        );
        let errs = compile_str(&y).err().unwrap();
        let keys = error_keys(&errs);
        assert_eq!(
            keys,
            [
                "rate_limits[0].name",
                "rate_limits[0].rate",
                "rate_limits[1].burst",
                "rate_limits[1].privileges[1]",
                "rate_limits[2].name",
                "rate_limits[2].store",
            ],
            "{errs:#?}"
        );
        let limit =
            "rate_limits:\n  - name: shared\n    rate: 1\n    per: hour\n    store: redis\n";
        for (store, key) in [
            ("  url: http://x\n", "rate_limit_store.url"),
            ("  url: redis://h\n  url_file: u\n", "rate_limit_store"),
            (
                "  url: redis://h\n  timeout_ms: 0\n",
                "rate_limit_store.timeout_ms",
            ),
            ("  url_file: missing.url\n", "rate_limit_store.url_file"),
        ] {
            let y = format!("{HEAD}{limit}rate_limit_store:\n{store}");
            let errs = compile_str(&y).err().unwrap();
            assert_eq!(error_keys(&errs), [key], "{errs:#?}");
        }
        assert!(errs[0].starts_with("g.yaml:12:5: "), "{}", errs[0]);
        let ok = format!("{HEAD}privileges:\n  - name: p\n    patterns: [\"/x/*\"]\nrate_limits:\n  - name: per_client\n    rate: 100\n    per: second\n    burst: 200\n    privileges: [p]\n");
        let r = compile_str(&ok).unwrap().registry;
        assert_eq!(r.rate_limits.len(), 1);
        assert_eq!(r.rate_limits[0].gcra.burst, 200);
        assert_eq!(r.rate_limits[0].privileges, Some(vec![0]));
        let unknown = format!("{HEAD}rate_limits:\n  - name: x\n    rate: 1\n    per: fortnight\n");
        let e = config::parse(&unknown, std::path::Path::new("g.yaml")).unwrap_err();
        assert!(
            e.to_string().contains("g.yaml:11:10")
                && e.to_string().contains("`second`, `minute`, `hour`"),
            "{e}"
        );
    }

    /// `url_file` (a Kubernetes Secret): read with the config, one trailing newline dropped,
    /// a source (its change reloads), its content never in an error.
    #[test]
    fn the_store_url_comes_from_url_file() {
        let (dir, _) = source_with_key("");
        let file = dir.path().join("g.yaml");
        let url_file = dir.path().join("redis.url");
        let y = format!("{HEAD}rate_limits:\n  - name: shared\n    rate: 1\n    per: hour\n    store: redis\nrate_limit_store:\n  url_file: redis.url\n  on_error: deny\n");
        let (cfg, src) = config::parse(&y, &file).unwrap();
        std::fs::write(&url_file, "redis://:hunter2@10.0.0.5:6379/2\n").unwrap();
        let r = compile(&cfg, &src).unwrap().registry;
        let s = r.rate_limit_store.as_ref().unwrap();
        assert_eq!(s.url, "redis://:hunter2@10.0.0.5:6379/2");
        assert_eq!(s.on_error, config::OnStoreError::Deny);
        assert_eq!(s.timeout, Duration::from_millis(20));
        assert!(r.sources.contains(&url_file));
        std::fs::write(&url_file, "redis://:hunter2@h:6379/notadb\n").unwrap();
        let e = compile(&cfg, &src).err().unwrap();
        let msg = src.render(&e[0]);
        assert!(
            msg.contains("rate_limit_store.url_file") && msg.contains("redis.url"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        // Without a limit that uses it, the store is not opened.
        let unused = format!("{HEAD}rate_limit_store:\n  url: redis://h\n");
        let (cfg, src) = config::parse(&unused, &file).unwrap();
        assert!(compile(&cfg, &src)
            .unwrap()
            .registry
            .rate_limit_store
            .is_none());
    }

    #[test]
    fn the_upstream_keepalive_pool_covers_max_connections_by_default() {
        let c = compile_str(HEAD).unwrap();
        assert_eq!(c.listeners.upstream_keepalive, 10_000);
        let c = compile_str(&format!("{HEAD}limits:\n  max_connections: 500\n")).unwrap();
        assert_eq!(c.listeners.upstream_keepalive, 500);
        let c = compile_str(&format!("{HEAD}limits:\n  upstream_keepalive: 64\n")).unwrap();
        assert_eq!(c.listeners.upstream_keepalive, 64);
        let errs = compile_str(&format!("{HEAD}limits:\n  upstream_keepalive: 0\n"))
            .err()
            .unwrap();
        assert!(
            errs[0].starts_with("g.yaml:9:3: key `limits.upstream_keepalive`: 0 is out of range"),
            "{errs:?}"
        );
    }

    #[test]
    fn max_upstream_connections_bounds_the_pool_and_its_range_is_checked() {
        let c = compile_str(HEAD).unwrap();
        assert_eq!(c.listeners.max_upstream_connections, None);
        let c = compile_str(&format!("{HEAD}limits:\n  max_upstream_connections: 16\n")).unwrap();
        assert_eq!(c.listeners.max_upstream_connections, Some(16));
        assert_eq!(
            c.listeners.upstream_keepalive, 16,
            "no more idle than may be used"
        );
        let c = compile_str(&format!(
            "{HEAD}limits:\n  max_upstream_connections: 16\n  upstream_keepalive: 4\n"
        ))
        .unwrap();
        assert_eq!(c.listeners.upstream_keepalive, 4);
        let errs = compile_str(&format!("{HEAD}limits:\n  max_upstream_connections: 0\n"))
            .err()
            .unwrap();
        assert!(
            errs[0].starts_with(
                "g.yaml:9:3: key `limits.max_upstream_connections`: 0 is out of range: use 1 to"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn token_is_optional_with_issuers_and_then_clients_are_refused() {
        let bare = "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\nupstream: http://127.0.0.1:3000\n";
        let privileges = "privileges:\n  - name: p\n    roles: [r]\n    patterns: [\"/x/*\"]\n";
        let errs = compile_str(&format!("{bare}{privileges}")).err().unwrap();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("key `token`") && errs[0].contains("issuers"),
            "{errs:?}"
        );

        let issuers = "issuers:\n  - name: corp\n    issuer: https://idp.test\n    jwks_url: https://idp.test/certs\n";
        let c = compile_str(&format!("{bare}{issuers}{privileges}")).unwrap();
        let r = &c.registry;
        assert!(r.tokens.is_none());
        assert_eq!((r.token_path(), r.jwks_path()), (None, None));
        assert_eq!(r.issuers.len(), 1);

        let clients = format!(
            "clients:\n  - name: a\n    client_id: a\n    secrets: [\"{SHA}\"]\n    roles: [r]\n"
        );
        let errs = compile_str(&format!("{bare}{issuers}{privileges}{clients}"))
            .err()
            .unwrap();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("g.yaml:12:1: key `clients`") && errs[0].contains("add `token`"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_names_line_and_key() {
        let y = format!(
            "{HEAD}privileges:\n  - name: p\n    patterns: [\"/x/*\", \"x\"]\n  - name: p\n    patterns: [\"/x/*\"]\nclients:\n  - name: a\n    client_id: c1\n    secrets: [\"hunter2-pasted\"]\n    privileges: [nope]\n  - name: b\n    client_id: c1\n    secrets: [\"{SHA}\"]\n"
        );
        let errs = compile_str(&y).err().unwrap();
        let expect = [
            "g.yaml:10:24: key `privileges[0].patterns[1]`: the pattern `x` must start with `/`",
            "g.yaml:11:5: key `privileges[1].name`: duplicate privilege name `p`",
            "g.yaml:12:16: key `privileges[1].patterns[0]`: pattern `/x/*` is already mapped by privilege `p`",
            "g.yaml:16:15: key `clients[0].secrets[0]`: not a recognised secret hash",
            "g.yaml:17:18: key `clients[0].privileges[0]`: privilege `nope` does not exist",
            "g.yaml:19:5: key `clients[1].client_id`: duplicate client_id",
        ];
        for want in expect {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        assert!(
            errs.iter().all(|e| !e.contains("hunter2")),
            "a secret value was echoed: {errs:#?}"
        );
    }

    #[test]
    fn missing_key_file_is_an_error() {
        let y = HEAD.replace("hs.key", "missing.key");
        let errs = compile_str(&y).err().unwrap();
        assert!(
            errs[0].contains("key `token.signing_key_file`")
                && errs[0].contains("cannot read key file"),
            "{errs:?}"
        );
    }

    #[test]
    fn per_method_privileges_may_share_a_pattern() {
        let y = format!("{HEAD}unmatched: deny\nprivileges:\n  - name: r\n    patterns: [\"/x/*\"]\n    methods: [GET]\n  - name: w\n    patterns: [\"/x/*\"]\n    methods: [POST, PUT]\n");
        let c = compile_str(&y).unwrap();
        assert_eq!(c.registry.protecting("/x/1", "PUT"), Some(1));
        assert_eq!(c.registry.protecting("/x/1", "GET"), Some(0));
        assert_eq!(c.registry.protecting("/x/1", "DELETE"), None);
    }

    #[test]
    fn new_limits_and_trusted_proxies_are_validated_by_key() {
        let sha = crate::clients::secret::hash(b"x", Scheme::Sha256);
        let y = format!(
            "{HEAD}trusted_proxies: [\"10.0.0.0/8\", \"not-a-cidr\"]\nlimits:\n  argon2_concurrency: 9\n  argon2_per_second: 0\nclients:\n  - name: a\n    client_id: \"with space\"\n    secrets: [\"{sha}\"]\n  - name: b\n    client_id: \"caf\u{e9}\"\n    secrets: [\"{sha}\"]\n"
        );
        let errs = compile_str(&y).err().unwrap();
        let expect = [
            "g.yaml:8:33: key `trusted_proxies[1]`: `not-a-cidr` is not a CIDR",
            "g.yaml:10:3: key `limits.argon2_concurrency`: 9 is out of range: use 1 to 4",
            "g.yaml:11:3: key `limits.argon2_per_second`: 0 is out of range",
            "g.yaml:17:5: key `clients[1].client_id`: client_id may hold only printable ASCII",
        ];
        for want in expect {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "a space is a VSCHAR: {errs:#?}");
    }

    #[test]
    fn limits_and_tls_errors_name_line_and_key() {
        let y = format!(
            "{HEAD}limits:\n  max_headers: 1000\n  max_header_bytes: 100\n  max_connections: 0\ntimeouts:\n  client_header_ms: 0\ntls:\n  cert_file: nope.pem\n  key_file: nope.key\nupstream_tls:\n  ca_file: hs.key\n"
        );
        let errs = compile_str(&y).err().unwrap();
        let expect = [
            "g.yaml:9:3: key `limits.max_headers`: 1000 is out of range: use 1 to 256 (pingora's own ceiling)",
            "g.yaml:10:3: key `limits.max_header_bytes`: 100 is out of range: use 1024 to 1048575",
            "g.yaml:11:3: key `limits.max_connections`: 0 is out of range",
            "g.yaml:13:3: key `timeouts.client_header_ms`: must be positive",
            "g.yaml:15:3: key `tls.cert_file`: cannot read certificate file",
            "g.yaml:18:3: key `upstream_tls.ca_file`: CA file hs.key holds no `BEGIN CERTIFICATE` block",
        ];
        for want in expect {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn limits_default_to_the_spec_and_reach_the_token_verifier() {
        let c = compile_str(HEAD).unwrap();
        let l = &c.registry.limits;
        assert_eq!(l.max_token_body_bytes, 8 * 1024);
        assert_eq!(c.registry.max_bearer, 8 * 1024);
        assert!(c.registry.tls.proxy.is_none() && !c.listeners.tls);
        let y = format!("{HEAD}limits:\n  max_bearer_bytes: 600\n");
        assert_eq!(compile_str(&y).unwrap().registry.max_bearer, 600);
    }

    // Each compile step on its own: what it builds and which keys its findings name.

    /// `yaml` parsed (with an `admin_listen`, which parsing requires), not compiled.
    pub(super) fn parsed(yaml: &str) -> (Config, Source) {
        let yaml = if yaml.contains("admin_listen") {
            yaml.to_string()
        } else {
            format!("admin_listen: 127.0.0.1:9090\n{yaml}")
        };
        config::parse(&yaml, std::path::Path::new("/etc/og/g.yaml")).unwrap()
    }

    pub(super) fn paths(ds: &[Diagnostic]) -> Vec<&str> {
        ds.iter().map(|d| d.path.as_str()).collect()
    }

    #[test]
    fn the_sources_are_every_file_the_registry_was_built_from() {
        let (cfg, src) = parsed("clients_file: c.yaml\ntoken: {algorithm: HS256, signing_key_file: k/hs.key, key_id: k}\ntls: {cert_file: t.crt, key_file: t.key}\nupstream_tls: {ca_file: up.pem}\n");
        let got: Vec<_> = sources(&cfg, &src)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "/etc/og/g.yaml",
                "/etc/og/c.yaml",
                "/etc/og/k/hs.key",
                "/etc/og/t.crt",
                "/etc/og/t.key",
                "/etc/og/up.pem"
            ]
        );
    }
}
