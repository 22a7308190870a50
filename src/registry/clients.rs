//! The `clients` step: ORDS clients, their secret hashes and the privileges each holds.

use super::{check_name, is_vschar, Client, Privilege, GRANT_TYPES};
use crate::clients::secret::{Scheme, SecretHash};
use crate::config::{ClientConfig, Config, Diagnostic};
use std::collections::{HashMap, HashSet};

/// The `clients` step (ORDS clients): each one's secrets and the privileges it holds, by
/// client_id; and whether any stores an argon2id hash.
pub(super) fn clients(
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
        let not_before =
            c.not_before
                .as_deref()
                .and_then(|t| match chrono::DateTime::parse_from_rfc3339(t) {
                    Ok(d) => Some(u64::try_from(d.timestamp()).unwrap_or(0)),
                    Err(e) => {
                        errors.push(Diagnostic::new(
                            format!("{at}.not_before"),
                            format!(
                                "`{t}` is not an RFC 3339 time such as 2026-12-07T10:00:00Z: {e}"
                            ),
                        ));
                        None
                    }
                });
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
                introspect: c.introspect,
                not_before,
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
    use crate::registry::tests::{parsed, paths, SHA};

    #[test]
    fn the_clients_step_works_out_what_each_client_holds() {
        let (cfg, _) = parsed(&format!("privileges:\n  - {{name: open, patterns: [\"/o/*\"]}}\n  - {{name: byrole, roles: [r], patterns: [\"/r/*\"]}}\n  - {{name: byname, roles: [q], patterns: [\"/n/*\"]}}\n  - {{name: nobody, roles: [z], patterns: [\"/z/*\"]}}\nclients:\n  - {{name: A, client_id: a, secrets: [\"{SHA}\"], roles: [r], privileges: [byname, gone]}}\n"));
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let p = crate::registry::privileges::privileges(&cfg, &mut errors, &mut warnings);
        let (clients, has_argon2) =
            clients(&cfg, &p.privileges, &p.by_name, &mut errors, &mut warnings);
        let mut held: Vec<_> = clients["a"].held.iter().copied().collect();
        held.sort();
        assert_eq!(held, [0, 1, 2]);
        assert!(!has_argon2);
        assert_eq!(paths(&errors), ["clients[0].privileges[1]"]);
        assert_eq!(paths(&warnings), ["privileges[3]"]);
    }
}
