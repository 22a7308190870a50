//! The `base_path` and `privileges` steps: ORDS privileges, their roles and the URL patterns
//! they protect.

use super::{check_name, Privilege};
use crate::config::{Config, Diagnostic, Unmatched};
use crate::patterns::pattern::{Matcher, Methods, Pattern};
use std::collections::HashMap;

/// `base_path` without its trailing `/` (`""` for `/`); it must be in normal form already.
pub(super) fn base_path(cfg: &Config, errors: &mut Vec<Diagnostic>) -> String {
    match crate::patterns::path::normalise_path(cfg.base_path.as_bytes()) {
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
pub(super) struct Privileges {
    pub(super) privileges: Vec<Privilege>,
    pub(super) by_name: HashMap<String, usize>,
    pub(super) matcher: Matcher<(usize, usize)>,
}

/// The `privileges` step (ORDS privileges and their pattern mappings).
pub(super) fn privileges(
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
                    if let Err(c) = matcher.insert(&pat, methods, (i, j)) {
                        errors.push(Diagnostic::new(
                            format!("{at}.patterns[{j}]"),
                            format!("pattern `{s}` is already mapped by privilege `{}` for overlapping methods; give them disjoint `methods` or merge them", cfg.privileges[(c.0).0].name),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::{parsed, paths};

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
        assert_eq!(p.matcher.lookup("/a/b", "GET"), Some(&(0, 0)));
        assert_eq!(p.privileges.len(), 3);
    }
}
