//! The `rate_limits` step of compilation (SPEC §13): each limit checked and compiled into a
//! [`Limit`] with its own counts (which a reload that keeps its shape carries over:
//! `ratelimit::keep_counts`).

use crate::config::{Diagnostic, LimitStore, RateLimitConfig, RateLimitStoreConfig};
use crate::ratelimit::gcra::Gcra;
use crate::ratelimit::Limit;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// `[a-z0-9_-]`, 1 to 32 characters: the limit is a metric label and a RateLimit policy name.
fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Check and compile `cfgs`; `privileges` maps privilege names to their index.
pub fn compile(
    cfgs: &[RateLimitConfig],
    store: Option<&RateLimitStoreConfig>,
    privileges: &HashMap<String, usize>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Limit> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in cfgs.iter().enumerate() {
        let at = format!("rate_limits[{i}]");
        let n = errors.len();
        if !valid_name(&l.name) {
            errors.push(Diagnostic::new(
                format!("{at}.name"),
                format!(
                    "`{}` is not a limit name: use 1 to 32 of a-z, 0-9, _ and -",
                    l.name
                ),
            ));
        } else if !seen.insert(l.name.as_str()) {
            errors.push(Diagnostic::new(
                format!("{at}.name"),
                format!("limit `{}` is defined twice: names must be unique", l.name),
            ));
        }
        if l.rate == 0 {
            errors.push(Diagnostic::new(
                format!("{at}.rate"),
                "rate must be at least 1",
            ));
        }
        if l.burst == Some(0) {
            errors.push(Diagnostic::new(
                format!("{at}.burst"),
                "burst must be at least 1 (leave it out for `rate`)",
            ));
        }
        let mut indices = None;
        if let Some(names) = &l.privileges {
            let mut idx = Vec::new();
            for (j, p) in names.iter().enumerate() {
                match privileges.get(p) {
                    Some(k) => idx.push(*k),
                    None => errors.push(Diagnostic::new(
                        format!("{at}.privileges[{j}]"),
                        format!("unknown privilege `{p}`"),
                    )),
                }
            }
            indices = Some(idx);
        }
        if l.store == LimitStore::Redis {
            let why = if store.is_none() {
                "store: redis needs a `rate_limit_store` section (url or url_file)"
            } else {
                "store: redis is not available yet in this build (issue #16): use store: local"
            };
            errors.push(Diagnostic::new(format!("{at}.store"), why));
        }
        if errors.len() > n {
            continue;
        }
        let per_seconds = l.per.seconds();
        let burst = l.burst.unwrap_or(l.rate);
        out.push(Limit {
            name: l.name.clone(),
            by: l.by,
            privileges: indices,
            rate: l.rate,
            per_seconds,
            gcra: Gcra::new(l.rate, per_seconds, burst),
            counts: Arc::default(),
        });
    }
    if let Some(s) = store {
        check_store(s, errors);
    }
    out
}

/// `rate_limit_store`: exactly one of `url` and `url_file`; a `redis://` or `rediss://` URL.
fn check_store(s: &RateLimitStoreConfig, errors: &mut Vec<Diagnostic>) {
    match (&s.url, &s.url_file) {
        (Some(_), Some(_)) | (None, None) => errors.push(Diagnostic::new(
            "rate_limit_store",
            "give exactly one of `url` and `url_file`",
        )),
        (Some(u), None) => {
            if let Err(e) = check_url(u) {
                errors.push(Diagnostic::new("rate_limit_store.url", e));
            }
        }
        (None, Some(_)) => {}
    }
    if s.timeout_ms == 0 {
        errors.push(Diagnostic::new(
            "rate_limit_store.timeout_ms",
            "timeout_ms must be at least 1",
        ));
    }
}

fn check_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u
        .parse()
        .map_err(|_| "not a URL such as redis://127.0.0.1:6379/0".to_string())?;
    match uri.scheme_str() {
        Some("redis" | "rediss") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("redis" | "rediss") => Err("the URL names no host".into()),
        _ => Err("the URL must start with redis:// or rediss:// (TLS)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["per_client", "a", "x-1", &"a".repeat(32)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Per", "a b", "é", &"a".repeat(33), "a.b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn store_urls() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://redis.svc:6380").is_ok());
        assert!(check_url("http://x").is_err());
        assert!(check_url("redis://").is_err());
        assert!(check_url("not a url").is_err());
    }
}
