//! The compiled, immutable registry every request reads (SPEC §1–§3).
//!
//! `compile` is the validation: it turns a parsed [`Config`] into a [`Registry`] or into the
//! full list of [`Diagnostic`]s. A reload compiles a new one and swaps it in atomically, so a
//! request always sees one consistent generation.
//!
//! It runs in steps, one function each with its own tests: listeners and limits, the
//! upstream, base_path, privileges, then `egress`, `limits` (rate limits) and `issuers` in
//! their modules, clients, and the proxy's own token keys. Files (keys, certificates, CAs)
//! are read through `certs` and `oauth`, below the registry.

pub mod egress;
pub mod issuers;
pub mod limits;

use crate::access::client_addr::TrustedProxies;
use crate::access::pattern::{Matcher, Methods, Pattern};
use crate::config::{ClientConfig, Config, Diagnostic, Source, TlsConfig, Unmatched};
use crate::oauth::secret::pool::PoolLimits;
use crate::oauth::secret::{Scheme, SecretHash};
use crate::oauth::token::Tokens;
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
    /// Indices of every privilege this client holds, computed once at load.
    held: HashSet<usize>,
}

impl Client {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
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
}

/// What one client may send and hold, and for how long (`limits`, `timeouts.client_*`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
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
}

pub const GRANT_TYPES: [&str; 3] = ["client_credentials", "authorization_code", "implicit"];

pub struct Registry {
    /// base_path without its trailing `/`; `""` for `/`.
    pub base: String,
    /// `{base_path}/oauth/token` and `/oauth/jwks`, computed once: every request is compared
    /// with them. `None` without `token:`: then they are ordinary paths.
    token_path: Option<String>,
    jwks_path: Option<String>,
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
    /// Remote APIs called for legacy callers (SPEC §10).
    pub egress: Vec<egress::EgressEntry>,
    /// Requests per client or address (SPEC §13).
    pub rate_limits: Vec<crate::ratelimit::Limit>,
    /// Where limits with `store: redis` count; `None` when none does.
    pub rate_limit_store: Option<crate::ratelimit::shared::StoreSettings>,
    /// Every role some privilege names: the only ones an issuer's token forwards.
    pub role_names: HashSet<String>,
    /// Identity providers' tokens verified in this generation (a reload empties it).
    pub issuer_tokens: crate::oauth::token::Verified<crate::oauth::issuer::IssuerVerified>,
    /// The backend the ingress protects; `None` in an egress-only config.
    pub upstream: Option<Upstream>,
    pub limits: Limits,
    /// Whose `X-Forwarded-For` names the client, for throttling and logs.
    pub trusted_proxies: TrustedProxies,
    pub tls: ListenerTls,
    pub shutdown_grace: Duration,
    by_name: HashMap<String, usize>,
    matcher: Matcher<usize>,
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
        self.matcher.lookup(rel, method).copied()
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
    /// pingora's upstream keep-alive pool size (`limits.upstream_keepalive`).
    pub upstream_keepalive: usize,
    /// `limits.max_upstream_connections`.
    pub max_upstream_connections: Option<usize>,
    /// The egress listeners, by entry name.
    pub egress: Vec<(String, SocketAddr)>,
}

/// A registry, the listeners, and the warnings its config earned.
pub struct Compiled {
    pub registry: Registry,
    pub listeners: Listeners,
    pub warnings: Vec<Diagnostic>,
}

/// `scheme://host[:port]`: its address (a name is looked up later, per request), whether it
/// is TLS, and the host.
fn parse_upstream(s: &str) -> Result<(crate::resolve::Address, bool, String), String> {
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

/// RFC 6749 Appendix A.1: client-id = *VSCHAR (%x20-7E), the space included (Basic
/// form-encodes it).
pub(crate) fn is_vschar(s: &str) -> bool {
    s.chars().all(|ch| (' '..='~').contains(&ch))
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

impl Upstream {
    /// An upstream as parsed by [`parse_upstream`], verified per `tls`, with the
    /// `timeouts.upstream_*` of the config (the ingress's and egress entries' alike).
    fn new(
        (addr, tls, host): (crate::resolve::Address, bool, String),
        tls_cfg: &crate::config::UpstreamTlsConfig,
        ca: Option<Arc<CaType>>,
        t: &crate::config::Timeouts,
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
        }
    }
}

/// Whether `name` may name an entry in logs, metrics label values and headers:
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

fn check_limits(cfg: &Config, errors: &mut Vec<Diagnostic>) {
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
    check_listeners(cfg, &mut errors);
    check_limits(cfg, &mut errors);
    let trusted_proxies = TrustedProxies::parse(&cfg.trusted_proxies)
        .map_err(|(i, e)| errors.push(Diagnostic::new(format!("trusted_proxies[{i}]"), e)))
        .unwrap_or_default();
    let upstream = upstream(cfg, src, &mut errors, &mut warnings);
    let listener_tls = ListenerTls {
        proxy: cfg
            .tls
            .as_ref()
            .and_then(|c| load_listener_tls(c, "tls", src, &mut errors)),
        admin: cfg
            .admin_tls
            .as_ref()
            .and_then(|c| load_listener_tls(c, "admin_tls", src, &mut errors)),
    };
    let base = base_path(cfg, &mut errors);
    let Privileges {
        privileges,
        by_name,
        matcher,
    } = privileges(cfg, &mut errors, &mut warnings);

    let taken: Vec<SocketAddr> = cfg
        .listen
        .iter()
        .chain([&cfg.admin_listen])
        .filter_map(|a| a.parse().ok())
        .collect();
    let egress = egress::compile(cfg, &taken, src, &mut errors, &mut warnings);
    let (rate_limits, rate_limit_store) = limits::compile(
        &cfg.rate_limits,
        cfg.rate_limit_store.as_ref(),
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
    let (clients, has_argon2) = clients(cfg, &privileges, &by_name, &mut errors, &mut warnings);
    let tokens = own_tokens(cfg, src, &mut errors);

    if !errors.is_empty() {
        return Err(errors);
    }
    let t = &cfg.timeouts;
    Ok(Compiled {
        registry: Registry {
            token_path: tokens.is_some().then(|| format!("{base}/oauth/token")),
            jwks_path: tokens.is_some().then(|| format!("{base}/oauth/jwks")),
            max_bearer: cfg.limits.max_bearer_bytes,
            base,
            unmatched: cfg.unmatched,
            path_parameters: cfg.path_parameters,
            privileges,
            clients,
            tokens,
            issuers,
            egress,
            rate_limits,
            rate_limit_store,
            role_names,
            issuer_tokens: Default::default(),
            upstream,
            limits: client_limits(cfg),
            trusted_proxies,
            tls: listener_tls,
            shutdown_grace: Duration::from_millis(t.shutdown_grace_ms),
            by_name,
            matcher,
            has_argon2,
            sources: sources(cfg, src),
        },
        listeners: listeners(cfg),
        warnings,
    })
}

/// The listeners and what every request is timed by: present, parseable, distinct, positive.
fn check_listeners(cfg: &Config, errors: &mut Vec<Diagnostic>) {
    if cfg.listen.is_none() && cfg.egress.is_empty() {
        errors.push(Diagnostic::new("listen", "`listen` is missing: give `listen` (the ingress, protecting `upstream`), `egress` (remote APIs called for legacy callers), or both"));
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

/// The `upstream` step: the protected backend and how it is reached (`upstream_tls`).
fn upstream(
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
    parsed.map(|u| Upstream::new(u, &upstream_tls, ca, &cfg.timeouts))
}

/// `base_path` without its trailing `/` (`""` for `/`); it must be in normal form already.
fn base_path(cfg: &Config, errors: &mut Vec<Diagnostic>) -> String {
    match crate::access::path::normalise_path(cfg.base_path.as_bytes()) {
        Ok(p) if p == cfg.base_path && !p.contains('*') => p.trim_end_matches('/').to_string(),
        Ok(p) => {
            errors.push(Diagnostic::new(
                "base_path",
                format!(
                    "base_path `{}` is not in normal form; write `{}`",
                    cfg.base_path, p
                ),
            ));
            String::new()
        }
        Err(e) => {
            errors.push(Diagnostic::new(
                "base_path",
                format!("base_path `{}` is malformed: {e}", cfg.base_path),
            ));
            String::new()
        }
    }
}

/// What the `privileges` step builds: the privileges, their index by name, and the pattern
/// matcher that finds which one protects a path.
struct Privileges {
    privileges: Vec<Privilege>,
    by_name: HashMap<String, usize>,
    matcher: Matcher<usize>,
}

/// The `privileges` step (ORDS privileges and their pattern mappings).
fn privileges(
    cfg: &Config,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Privileges {
    let mut by_name = HashMap::new();
    let mut matcher = Matcher::default();
    let mut privileges = Vec::new();
    for (i, p) in cfg.privileges.iter().enumerate() {
        let at = format!("privileges[{i}]");
        check_name(errors, format!("{at}.name"), "the privilege name", &p.name);
        if p.name.contains(' ') {
            errors.push(Diagnostic::new(format!("{at}.name"), "privilege names cannot contain spaces (they travel in the space-separated `scope`)"));
        }
        if by_name.insert(p.name.clone(), i).is_some() {
            errors.push(Diagnostic::new(
                format!("{at}.name"),
                format!("duplicate privilege name `{}`", p.name),
            ));
        }
        for (j, r) in p.roles.iter().enumerate() {
            check_name(errors, format!("{at}.roles[{j}]"), "the role name", r);
            if r.contains([' ', ',']) {
                errors.push(Diagnostic::new(
                    format!("{at}.roles[{j}]"),
                    "role names cannot contain spaces or commas",
                ));
            }
        }
        let methods = match &p.methods {
            None => Methods::ALL,
            Some(ms) => Methods::parse(ms).unwrap_or_else(|e| {
                errors.push(Diagnostic::new(format!("{at}.methods"), e));
                Methods::ALL
            }),
        };
        if p.patterns.is_empty() {
            warnings.push(Diagnostic::new(
                format!("{at}.patterns"),
                format!(
                    "privilege `{}` maps no pattern and protects nothing",
                    p.name
                ),
            ));
        }
        for (j, s) in p.patterns.iter().enumerate() {
            match Pattern::parse(s) {
                Ok(pat) => {
                    if let Err(c) = matcher.insert(&pat, methods, i) {
                        errors.push(Diagnostic::new(
                            format!("{at}.patterns[{j}]"),
                            format!("pattern `{s}` is already mapped by privilege `{}` for overlapping methods; give them disjoint `methods` or merge them", cfg.privileges[c.0].name),
                        ));
                    }
                }
                Err(e) => errors.push(Diagnostic::new(format!("{at}.patterns[{j}]"), e)),
            }
        }
        if p.mode == crate::config::Mode::Report {
            warnings.push(Diagnostic::new(format!("{at}.mode"), format!("privilege `{}` is in report mode: what it would refuse is forwarded (counted in ords_guard_report_only_total); set `mode: enforce` once that count stays at zero", p.name)));
        }
        privileges.push(Privilege {
            name: p.name.clone(),
            roles: p.roles.clone(),
            label: p.label.clone(),
            description: p.description.clone(),
            patterns: p.patterns.clone(),
            methods: p.methods.clone(),
            mode: p.mode,
        });
    }
    // Only an ingress has paths to leave open.
    if cfg.unmatched == Unmatched::Allow && !matcher.has_root_wildcard() && cfg.listen.is_some() {
        warnings.push(Diagnostic::new("unmatched", "`unmatched: allow` and no `/*` pattern: every path no privilege covers is public (ORDS default); set `unmatched: deny` to close them"));
    }
    Privileges {
        privileges,
        by_name,
        matcher,
    }
}

/// The `clients` step (ORDS clients): each one's secrets and the privileges it holds, by
/// client_id; and whether any stores an argon2id hash.
fn clients(
    cfg: &Config,
    privileges: &[Privilege],
    by_name: &HashMap<String, usize>,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> (HashMap<String, Client>, bool) {
    let grants = Grants::index(privileges);
    let mut reached = vec![false; privileges.len()];
    let mut clients = HashMap::new();
    let mut names = HashSet::new();
    let mut has_argon2 = false;
    for (i, c) in cfg.clients.iter().enumerate() {
        let at = format!("clients[{i}]");
        check_name(errors, format!("{at}.name"), "the client name", &c.name);
        check_name(errors, format!("{at}.client_id"), "client_id", &c.client_id);
        if !is_vschar(&c.client_id) {
            errors.push(Diagnostic::new(
                format!("{at}.client_id"),
                "client_id may hold only printable ASCII, space included (RFC 6749 Appendix A.1)",
            ));
        }
        if !names.insert(c.name.clone()) {
            errors.push(Diagnostic::new(
                format!("{at}.name"),
                format!("duplicate client name `{}`", c.name),
            ));
        }
        if clients.contains_key(&c.client_id) {
            errors.push(Diagnostic::new(
                format!("{at}.client_id"),
                "duplicate client_id",
            ));
        }
        if !GRANT_TYPES.contains(&c.grant_type.as_str()) {
            errors.push(Diagnostic::new(
                format!("{at}.grant_type"),
                format!(
                    "unknown grant_type `{}`: use client_credentials",
                    c.grant_type
                ),
            ));
        }
        if c.token_lifetime_seconds == Some(0) {
            errors.push(Diagnostic::new(
                format!("{at}.token_lifetime_seconds"),
                "must be positive",
            ));
        }
        if c.secrets.is_empty() || c.secrets.len() > 2 {
            errors.push(Diagnostic::new(
                format!("{at}.secrets"),
                "a client has one or two secret hashes (two during rotation)",
            ));
        }
        let mut secrets = Vec::new();
        for (j, s) in c.secrets.iter().enumerate() {
            match SecretHash::parse(s) {
                Ok(h) => {
                    has_argon2 |= h.scheme() == Scheme::Argon2id;
                    secrets.push(h);
                }
                // Never echo the value: it may be a plaintext secret pasted by mistake.
                Err(e) => errors.push(Diagnostic::new(format!("{at}.secrets[{j}]"), e)),
            }
        }
        for (j, p) in c.privileges.iter().enumerate() {
            if !by_name.contains_key(p) {
                errors.push(Diagnostic::new(
                    format!("{at}.privileges[{j}]"),
                    format!("privilege `{p}` does not exist"),
                ));
            }
        }
        let held = grants.held(c, by_name);
        if held.is_empty() {
            warnings.push(Diagnostic::new(
                at.clone(),
                format!("client `{}` can reach no privilege", c.name),
            ));
        }
        if !c.disabled {
            for &i in &held {
                reached[i] = true;
            }
        }
        clients.insert(
            c.client_id.clone(),
            Client {
                name: c.name.clone(),
                client_id: c.client_id.clone(),
                secrets,
                grant_type: c.grant_type.clone(),
                owner: c.owner.clone(),
                description: c.description.clone(),
                support_email: c.support_email.clone(),
                privileges: c.privileges.clone(),
                roles: c.roles.clone(),
                token_lifetime_seconds: c.token_lifetime_seconds,
                disabled: c.disabled,
                held,
            },
        );
    }
    for (i, p) in privileges.iter().enumerate() {
        if !reached[i] {
            warnings.push(Diagnostic::new(
                format!("privileges[{i}]"),
                format!("no enabled client can reach privilege `{}`", p.name),
            ));
        }
    }
    (clients, has_argon2)
}

/// What one client connection may send and hold (`limits`, `timeouts.client_*`).
fn client_limits(cfg: &Config) -> Limits {
    let (l, t) = (&cfg.limits, &cfg.timeouts);
    Limits {
        max_connections: l.max_connections,
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
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

/// Every file the registry is built from (config, clients, keys, certificates, CAs, the
/// store's URL): a change to any of them triggers a reload.
fn sources(cfg: &Config, src: &Source) -> Vec<PathBuf> {
    std::iter::once(src.file.clone())
        .chain(cfg.clients_file.iter().map(|f| src.resolve(f)))
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

/// The `listeners` step: what is bound at start (a reload cannot move a bound socket).
fn listeners(cfg: &Config) -> Listeners {
    let l = &cfg.limits;
    Listeners {
        listen: cfg.listen.clone(),
        admin_listen: cfg.admin_listen.clone(),
        threads: cfg.threads,
        tls: cfg.tls.is_some(),
        admin_tls: cfg.admin_tls.is_some(),
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
    }
}

/// Which privileges each role reaches, so a client's holdings cost its roles, not the
/// number of privileges (a 10k-client, 1k-privilege registry reloads in milliseconds).
struct Grants {
    by_role: HashMap<String, Vec<usize>>,
    /// Privileges without roles: every client holds them.
    open: Vec<usize>,
}

impl Grants {
    fn index(privileges: &[Privilege]) -> Grants {
        let mut by_role: HashMap<String, Vec<usize>> = HashMap::new();
        let mut open = Vec::new();
        for (i, p) in privileges.iter().enumerate() {
            if p.roles.is_empty() {
                open.push(i);
            }
            for r in &p.roles {
                by_role.entry(r.clone()).or_default().push(i);
            }
        }
        Grants { by_role, open }
    }

    fn held(&self, c: &ClientConfig, by_name: &HashMap<String, usize>) -> HashSet<usize> {
        let mut held: HashSet<usize> = c
            .privileges
            .iter()
            .filter_map(|p| by_name.get(p).copied())
            .collect();
        held.extend(self.open.iter().copied());
        for r in &c.roles {
            held.extend(self.by_role.get(r).into_iter().flatten().copied());
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    const SHA: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

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
    fn new_limits_and_trusted_proxies_are_validated_by_key() {
        let sha = crate::oauth::secret::hash(b"x", Scheme::Sha256);
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
    fn parsed(yaml: &str) -> (Config, Source) {
        let yaml = if yaml.contains("admin_listen") {
            yaml.to_string()
        } else {
            format!("admin_listen: 127.0.0.1:9090\n{yaml}")
        };
        config::parse(&yaml, std::path::Path::new("/etc/og/g.yaml")).unwrap()
    }

    fn paths(ds: &[Diagnostic]) -> Vec<&str> {
        ds.iter().map(|d| d.path.as_str()).collect()
    }

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

    #[test]
    fn the_base_path_step_keeps_only_normal_forms() {
        for (given, base) in [("/", ""), ("/ords/hr/", "/ords/hr"), ("/api", "/api")] {
            let (cfg, _) = parsed(&format!("base_path: \"{given}\"\n"));
            let mut errors = Vec::new();
            assert_eq!(base_path(&cfg, &mut errors), base);
            assert!(errors.is_empty(), "{given}");
        }
        let (cfg, _) = parsed("base_path: /a//b/\n");
        let mut errors = Vec::new();
        base_path(&cfg, &mut errors);
        assert!(
            errors[0].message.contains("write `/a/b/`"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn the_privileges_step_indexes_names_and_patterns() {
        let (cfg, _) = parsed("listen: 127.0.0.1:8080\nprivileges:\n  - {name: a, roles: [r], patterns: [\"/a/*\"]}\n  - {name: a, patterns: []}\n  - {name: c, roles: [\"x y\"], patterns: [\"/a/*\"]}\n");
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let p = privileges(&cfg, &mut errors, &mut warnings);
        assert_eq!(
            paths(&errors),
            [
                "privileges[1].name",
                "privileges[2].roles[0]",
                "privileges[2].patterns[0]"
            ]
        );
        assert_eq!(paths(&warnings), ["privileges[1].patterns", "unmatched"]);
        assert_eq!(p.matcher.lookup("/a/b", "GET"), Some(&0));
        assert_eq!(p.privileges.len(), 3);
    }

    #[test]
    fn the_clients_step_works_out_what_each_client_holds() {
        let (cfg, _) = parsed(&format!("privileges:\n  - {{name: open, patterns: [\"/o/*\"]}}\n  - {{name: byrole, roles: [r], patterns: [\"/r/*\"]}}\n  - {{name: byname, roles: [q], patterns: [\"/n/*\"]}}\n  - {{name: nobody, roles: [z], patterns: [\"/z/*\"]}}\nclients:\n  - {{name: A, client_id: a, secrets: [\"{SHA}\"], roles: [r], privileges: [byname, gone]}}\n"));
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let p = privileges(&cfg, &mut errors, &mut warnings);
        let (clients, has_argon2) =
            clients(&cfg, &p.privileges, &p.by_name, &mut errors, &mut warnings);
        let mut held: Vec<_> = clients["a"].held.iter().copied().collect();
        held.sort();
        assert_eq!(held, [0, 1, 2]);
        assert!(!has_argon2);
        assert_eq!(paths(&errors), ["clients[0].privileges[1]"]);
        assert_eq!(paths(&warnings), ["privileges[3]"]);
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
