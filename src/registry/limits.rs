//! The `rate_limits` step of compilation (SPEC §13): each limit checked and compiled into a
//! [`Limit`] with its own counts (which a reload that keeps its shape carries over:
//! `ratelimit::keep_counts`), and `rate_limit_store` into the settings of the shared store.

use crate::config::{Diagnostic, LimitStore, RateLimitConfig, RateLimitStoreConfig, Source};
use crate::ratelimit::shared::{check_url, StoreSettings};
use crate::ratelimit::Limit;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// `[a-z0-9_-]`, 1 to 32 characters: the limit is a metric label and a RateLimit policy name.
fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Check and compile `cfgs` and the store; `privileges` maps privilege names to their
/// index. The store's settings come back only when some limit uses it.
pub fn compile(
    cfgs: &[RateLimitConfig],
    store: Option<&RateLimitStoreConfig>,
    // Revocations are kept in the same Redis (SPEC §16).
    revocations_in_redis: bool,
    privileges: &HashMap<String, usize>,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> (Vec<Limit>, Option<StoreSettings>) {
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
        if l.store == LimitStore::Redis && store.is_none() {
            errors.push(Diagnostic::new(
                format!("{at}.store"),
                "store: redis needs a `rate_limit_store` section (url or url_file)",
            ));
        }
        if errors.len() > n {
            continue;
        }
        let shape = (l.rate, l.per.seconds(), l.burst.unwrap_or(l.rate));
        out.push(Limit::new(&l.name, l.by, indices, shape, l.store));
    }
    let settings = store.and_then(|s| compile_store(s, src, errors));
    let used = revocations_in_redis || out.iter().any(|l| l.store == LimitStore::Redis);
    (out, settings.filter(|_| used))
}

/// `rate_limit_store`: exactly one of `url` and `url_file` (read now, one trailing newline
/// dropped; a change to it reloads); a `redis://` or `rediss://` URL.
fn compile_store(
    s: &RateLimitStoreConfig,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> Option<StoreSettings> {
    let n = errors.len();
    let url = match (&s.url, &s.url_file) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(Diagnostic::new(
                "rate_limit_store",
                "give exactly one of `url` and `url_file`",
            ));
            None
        }
        (Some(u), None) => match check_url(u) {
            Ok(()) => Some(u.clone()),
            Err(e) => {
                errors.push(Diagnostic::new("rate_limit_store.url", e));
                None
            }
        },
        (None, Some(f)) => {
            let path = src.resolve(f);
            let read = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| {
                    let u = text.strip_suffix('\n').unwrap_or(&text);
                    let u = u.strip_suffix('\r').unwrap_or(u);
                    check_url(u)
                        .map(|()| u.to_string())
                        .map_err(|e| format!("the URL in {}: {e}", path.display()))
                });
            match read {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push(Diagnostic::new("rate_limit_store.url_file", e));
                    None
                }
            }
        }
    };
    if s.timeout_ms == 0 {
        errors.push(Diagnostic::new(
            "rate_limit_store.timeout_ms",
            "timeout_ms must be at least 1",
        ));
    }
    if errors.len() > n {
        return None;
    }
    Some(StoreSettings {
        url: url?,
        timeout: Duration::from_millis(s.timeout_ms),
        on_error: s.on_error,
    })
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
}
