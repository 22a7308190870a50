//! The `issuers` step of compilation (SPEC §9): each identity provider entry checked and
//! compiled into an [`Issuer`], and its JWK Set read when it comes from a file.

use crate::config::{Diagnostic, IssuerConfig, Source};
use crate::outbound::Trust;
use crate::tokens::introspection::MAX_CACHE_SECONDS;
use crate::tokens::introspector::{self, Introspector};
use crate::tokens::issuer::{is_json_pointer, Issuer, TENANT_PLACEHOLDER};
use crate::tokens::jwks::{KeySet, DEFAULT_ALGORITHMS};
use crate::tokens::jwks_fetch;
use crate::tokens::keycell::KeyCell;
use jsonwebtoken::Algorithm;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysFrom {
    /// Fetched by `jwks_fetch`, verified against `trust` (the `ca_file`'s certificates, read
    /// at load, or the system roots).
    Url {
        url: String,
        ca_file: Option<PathBuf>,
        trust: Trust,
    },
    /// Read at every load, so a reload (or the file changing) picks up new keys.
    File(PathBuf),
    /// None: its tokens are introspected at `url` (SPEC §16).
    Introspection { url: String },
}

/// One compiled `issuers[]` entry.
pub struct IssuerEntry {
    pub issuer: Issuer,
    pub keys_from: KeysFrom,
    /// The keys now (empty while the issuer has never had any: its tokens get 503). Shared
    /// with the previous generation when a reload keeps the entry ([`keep_keys`]).
    pub keys: Arc<KeyCell>,
    pub refresh: Duration,
    /// The entry's RFC 7662 calls and remembered answers, when it introspects (SPEC §16).
    /// Shared with the previous generation when a reload keeps the entry ([`keep_keys`]).
    pub introspector: Option<Arc<Introspector>>,
}

/// Most seconds of clock skew an entry may allow, and the shortest JWKS refresh.
const MAX_SKEW: u64 = 60;
const MIN_REFRESH: u64 = 60;

/// `jwks_url` must be `https://`, except to a loopback host (SPEC §9).
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let loopback = super::upstream::is_loopback_url(&uri);
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(format!(
            "`{url}` must be https:// (plain http only to a loopback address)"
        )),
        _ => Err(format!("`{url}` must be an https:// URL")),
    }
}

fn algorithms(names: &[String], at: &str, errors: &mut Vec<Diagnostic>) -> Vec<Algorithm> {
    if names.is_empty() {
        errors.push(Diagnostic::new(
            at,
            "list at least one algorithm, or leave it out for the default",
        ));
    }
    let mut out = Vec::new();
    for (j, n) in names.iter().enumerate() {
        let found = DEFAULT_ALGORITHMS.iter().find(|a| format!("{a:?}") == *n);
        match found {
            Some(a) => out.push(*a),
            None if n.eq_ignore_ascii_case("none") || n.to_ascii_uppercase().starts_with("HS") => {
                errors.push(Diagnostic::new(format!("{at}[{j}]"), format!("`{n}` is never accepted from an issuer: an unsigned or shared-secret token proves nothing about who issued it")))
            }
            None => errors.push(Diagnostic::new(
                format!("{at}[{j}]"),
                format!("unknown algorithm `{n}`: use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"),
            )),
        }
    }
    out
}

/// Check and compile `cfgs`. `own_issuer` is `token.issuer` (when there is `token`); `privileges` the privilege
/// names with their index.
pub fn compile(
    cfgs: &[IssuerConfig],
    own_issuer: Option<&str>,
    privileges: &HashMap<String, usize>,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Vec<IssuerEntry> {
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    let mut introspecting: Option<usize> = None;
    let mut out = Vec::new();
    for (i, c) in cfgs.iter().enumerate() {
        let at = format!("issuers[{i}]");
        let n = errors.len();
        if !super::is_entry_name(&c.name) {
            errors.push(Diagnostic::new(format!("{at}.name"), format!("`{}` must be 1 to 32 of a-z, 0-9, `_` and `-` (it names the issuer in logs, metrics and X-ORDS-Issuer)", c.name)));
        } else if !names.insert(c.name.as_str()) {
            errors.push(Diagnostic::new(
                format!("{at}.name"),
                format!("duplicate issuer name `{}`", c.name),
            ));
        }
        if c.issuer.is_empty() {
            errors.push(Diagnostic::new(
                format!("{at}.issuer"),
                "issuer is empty: give the `iss` its tokens carry",
            ));
        } else if Some(c.issuer.as_str()) == own_issuer {
            errors.push(Diagnostic::new(format!("{at}.issuer"), format!("`{}` is token.issuer, the proxy's own: an identity provider needs its own issuer", c.issuer)));
        } else if !issuers.insert(c.issuer.as_str()) {
            errors.push(Diagnostic::new(
                format!("{at}.issuer"),
                format!("duplicate issuer `{}`", c.issuer),
            ));
        }
        let templated = c.issuer.matches(TENANT_PLACEHOLDER).count();
        if templated > 1 {
            errors.push(Diagnostic::new(
                format!("{at}.issuer"),
                format!("`{TENANT_PLACEHOLDER}` may appear once"),
            ));
        }
        if !c.tenants.is_empty() && templated == 0 {
            errors.push(Diagnostic::new(
                format!("{at}.tenants"),
                format!("tenants only apply to an issuer with `{TENANT_PLACEHOLDER}` in it"),
            ));
        }
        for (j, a) in c.audience.iter().enumerate() {
            if a.is_empty() {
                errors.push(Diagnostic::new(
                    format!("{at}.audience[{j}]"),
                    "an audience is empty",
                ));
            }
        }
        let algs = match &c.algorithms {
            Some(names) => algorithms(names, &format!("{at}.algorithms"), errors),
            None => DEFAULT_ALGORITHMS.to_vec(),
        };
        for (key, pointer) in [
            ("roles_claim", &c.roles_claim),
            ("client_id_claim", &c.client_id_claim),
        ] {
            if let Some(p) = pointer.as_deref().filter(|p| !is_json_pointer(p)) {
                errors.push(Diagnostic::new(format!("{at}.{key}"), format!("`{p}` is not an RFC 6901 JSON Pointer: start with `/`, write `~1` for `/` and `~0` for `~` in a name (e.g. /realm_access/roles)")));
            }
        }
        for (j, p) in c.privileges.iter().flatten().enumerate() {
            if !privileges.contains_key(p) {
                errors.push(Diagnostic::new(
                    format!("{at}.privileges[{j}]"),
                    format!("unknown privilege `{p}`"),
                ));
            }
        }
        if c.allowed_skew_seconds > MAX_SKEW {
            errors.push(Diagnostic::new(
                format!("{at}.allowed_skew_seconds"),
                format!("{} is over {MAX_SKEW} seconds", c.allowed_skew_seconds),
            ));
        }
        if c.refresh_seconds < MIN_REFRESH {
            errors.push(Diagnostic::new(
                format!("{at}.refresh_seconds"),
                format!(
                    "{} is under {MIN_REFRESH} seconds: refresh no more than once a minute",
                    c.refresh_seconds
                ),
            ));
        }
        let trust =
            super::upstream::trust(c.ca_file.as_deref(), format!("{at}.ca_file"), src, errors);
        let introspection = match &c.introspection {
            None => None,
            Some(_) if c.jwks_url.is_some() || c.jwks_file.is_some() => {
                errors.push(Diagnostic::new(
                    at.clone(),
                    "give exactly one of jwks_url, jwks_file and introspection",
                ));
                continue;
            }
            Some(ic) => {
                if let Some(first) = introspecting.replace(i) {
                    errors.push(Diagnostic::new(format!("{at}.introspection"), format!("only one issuer may introspect, and issuers[{first}] does: an opaque token carries no `iss` to choose between them")));
                }
                if c.algorithms.is_some() {
                    warnings.push(Diagnostic::new(format!("{at}.algorithms"), "an introspecting issuer verifies no signature (its provider answers for its tokens, JWTs too); algorithms is ignored"));
                }
                if c.max_age_seconds > 0 {
                    warnings.push(Diagnostic::new(format!("{at}.max_age_seconds"), "an introspecting issuer's tokens are checked by its answers (active, exp), not by age; max_age_seconds is ignored"));
                }
                introspection_settings(
                    ic,
                    &format!("{at}.introspection"),
                    trust.clone(),
                    src,
                    errors,
                )
            }
        };
        let (keys_from, keys) = match (&c.jwks_url, &c.jwks_file) {
            _ if introspection.is_some() => (
                KeysFrom::Introspection {
                    url: c
                        .introspection
                        .as_ref()
                        .map(|i| i.url.clone())
                        .unwrap_or_default(),
                },
                KeyCell::fetched(),
            ),
            _ if c.introspection.is_some() => continue,
            (Some(url), None) => {
                if let Err(e) = check_url(url) {
                    errors.push(Diagnostic::new(format!("{at}.jwks_url"), e));
                }
                (
                    KeysFrom::Url {
                        url: url.clone(),
                        ca_file: c.ca_file.as_ref().map(|f| src.resolve(f)),
                        trust,
                    },
                    KeyCell::fetched(),
                )
            }
            (None, Some(file)) => {
                if c.ca_file.is_some() {
                    warnings.push(Diagnostic::new(
                        format!("{at}.ca_file"),
                        "ca_file only applies to a jwks_url; it is ignored for a jwks_file",
                    ));
                }
                let path = src.resolve(file);
                let keys = match std::fs::read(&path) {
                    Err(e) => {
                        errors.push(Diagnostic::new(
                            format!("{at}.jwks_file"),
                            format!("cannot read {}: {e}", path.display()),
                        ));
                        None
                    }
                    Ok(bytes) => match KeySet::parse(&bytes, &algs) {
                        Err(e) => {
                            errors.push(Diagnostic::new(
                                format!("{at}.jwks_file"),
                                format!("{}: {e}", path.display()),
                            ));
                            None
                        }
                        Ok(set) => {
                            for why in &set.skipped {
                                warnings.push(Diagnostic::new(
                                    format!("{at}.jwks_file"),
                                    format!("{}: {why}; skipped", path.display()),
                                ));
                            }
                            if set.is_empty() {
                                errors.push(Diagnostic::new(
                                    format!("{at}.jwks_file"),
                                    format!(
                                        "{} holds no usable key for the issuer's algorithms",
                                        path.display()
                                    ),
                                ));
                            }
                            Some(Arc::new(set))
                        }
                    },
                };
                let Some(keys) = keys else { continue };
                (KeysFrom::File(path), KeyCell::from_file(keys))
            }
            _ => {
                errors.push(Diagnostic::new(
                    at.clone(),
                    "give exactly one of jwks_url, jwks_file and introspection",
                ));
                continue;
            }
        };
        if errors.len() > n {
            continue;
        }
        let issuer = Issuer {
            name: c.name.clone(),
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            algorithms: algs,
            roles_claim: c.roles_claim.clone(),
            client_id_claim: c.client_id_claim.clone(),
            privileges: c.privileges.clone(),
            tenants: c.tenants.clone(),
            allowed_skew_seconds: c.allowed_skew_seconds,
            max_age_seconds: c.max_age_seconds,
        };
        let introspector =
            introspection.map(|settings| Arc::new(Introspector::new(issuer.clone(), settings)));
        out.push(IssuerEntry {
            issuer,
            keys_from,
            keys,
            refresh: Duration::from_secs(c.refresh_seconds),
            introspector,
        });
    }
    out
}

/// Check an entry's `introspection` (SPEC §16): `url` as a `jwks_url`, the client and its
/// secret as an egress entry's, `cache_seconds` 1 to 300.
fn introspection_settings(
    c: &crate::config::IntrospectionConfig,
    at: &str,
    trust: Trust,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> Option<introspector::Settings> {
    let n = errors.len();
    if let Err(e) = check_url(&c.url) {
        errors.push(Diagnostic::new(format!("{at}.url"), e));
    }
    if c.client_id.is_empty() {
        errors.push(Diagnostic::new(
            format!("{at}.client_id"),
            "client_id is empty: give the client ords-guard authenticates as at the introspection endpoint",
        ));
    }
    if !(1..=MAX_CACHE_SECONDS).contains(&c.cache_seconds) {
        errors.push(Diagnostic::new(
            format!("{at}.cache_seconds"),
            format!(
                "{} is outside 1 to {MAX_CACHE_SECONDS} seconds",
                c.cache_seconds
            ),
        ));
    }
    let secret_file = super::secret_file(
        src,
        &c.client_secret_file,
        &format!("{at}.client_secret_file"),
        errors,
    );
    (errors.len() == n).then(|| introspector::Settings {
        url: c.url.clone(),
        client_id: c.client_id.clone(),
        secret_file,
        auth: c.auth_method,
        cache_seconds: c.cache_seconds,
        trust,
    })
}

/// Carry the keys of `old`'s entries over to the unchanged entries of `new` (a reload):
/// same name, same `jwks_url`, same algorithms; and an introspecting entry's answers (or,
/// changed, its bounds). Their tokens keep being checked with the
/// keys already fetched while the reload's own fetch runs (SPEC §9).
pub fn keep_keys(new: &mut [IssuerEntry], old: &[IssuerEntry]) {
    for n in new.iter_mut() {
        // An introspecting entry read the same way keeps its answers; changed, it keeps
        // only its bounds, so a reload never grants a second allowance of calls.
        if let Some(i) = &mut n.introspector {
            let before = old
                .iter()
                .filter(|o| o.issuer.name == n.issuer.name)
                .find_map(|o| o.introspector.as_ref());
            match before {
                Some(o) if o.same(&n.issuer, &i.settings) => *i = o.clone(),
                Some(o) => {
                    if let Some(fresh) = Arc::get_mut(i) {
                        fresh.share_bounds(o);
                    }
                }
                None => {}
            }
            continue;
        }
        let KeysFrom::Url { url, .. } = &n.keys_from else {
            continue;
        };
        let same = old.iter().find(|o| {
            o.issuer.name == n.issuer.name
                && o.issuer.algorithms == n.issuer.algorithms
                && matches!(&o.keys_from, KeysFrom::Url { url: u, .. } if u == url)
        });
        if let Some(o) = same {
            n.keys = o.keys.clone();
        }
    }
}

/// What the fetcher needs for each `jwks_url` entry.
pub fn fetch_sources(entries: &[IssuerEntry]) -> Vec<jwks_fetch::Source> {
    entries
        .iter()
        .filter_map(|e| match &e.keys_from {
            KeysFrom::Url { url, trust, .. } => Some(jwks_fetch::Source {
                cell: e.keys.clone(),
                issuer: e.issuer.name.clone(),
                url: url.clone(),
                trust: trust.clone(),
                algorithms: e.issuer.algorithms.clone(),
                refresh: e.refresh,
            }),
            KeysFrom::File(_) | KeysFrom::Introspection { .. } => None,
        })
        .collect()
}
