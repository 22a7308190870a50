//! `ords-guard import ords FILE...` (SPEC §12): an ORDS security setup, written as the
//! PL/SQL calls an `ORDS_EXPORT` / SQL Developer export or a hand-written script makes, read
//! into a `privileges:` and `clients:` registry. ORDS secrets cannot be exported, so every
//! client gets a new id and secret, printed once; the YAML holds only the hash.
//!
//! `plsql` reads statements; this module maps the calls SPEC §12 names onto the registry and
//! reports everything else with its `FILE:LINE`.

pub mod plsql;

use crate::config::{ClientConfig, PrivilegeConfig};
use plsql::{Arg, Statement, Value};
use std::collections::{BTreeMap, HashMap};

/// The largest input read (an export of a whole schema's modules stays far below).
pub const MAX_BYTES: usize = 16 << 20;

/// What an import produced.
pub struct Imported {
    /// `privileges:` and `clients:`, for stdout.
    pub yaml: String,
    /// (client name, client_id, secret): printed once on stderr.
    pub credentials: Vec<(String, String, String)>,
    /// `FILE:LINE: skipped: ...` lines, and `FILE:LINE: note: ...` ones.
    pub notes: Vec<String>,
}

/// One input file: a name for messages, and its text.
pub struct Input<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

struct Privilege {
    name: String,
    roles: Vec<String>,
    patterns: Vec<String>,
    /// Modules (by name) whose base path this privilege protects, and where each was named.
    modules: Vec<(String, String)>,
    label: Option<String>,
    description: Option<String>,
}

struct Client {
    name: String,
    grant_type: String,
    owner: Option<String>,
    description: Option<String>,
    support_email: Option<String>,
    privileges: Vec<String>,
    roles: Vec<String>,
    token_lifetime_seconds: Option<u64>,
}

#[derive(Default)]
struct State {
    privileges: Vec<Privilege>,
    clients: Vec<Client>,
    /// Module name → base path.
    modules: HashMap<String, String>,
    arrays: HashMap<String, BTreeMap<i64, Value>>,
    scalars: HashMap<String, Value>,
    notes: Vec<String>,
    errors: Vec<String>,
}

/// A call's arguments: positional ones by their place in the ORDS signature, named ones by
/// name (the `_ADMIN` packages' leading `p_schema` taken off first).
struct Args<'a> {
    positional: Vec<&'a Value>,
    named: HashMap<&'a str, &'a Value>,
}

impl<'a> Args<'a> {
    fn new(args: &'a [Arg], admin: bool) -> Args<'a> {
        let mut positional: Vec<&Value> = Vec::new();
        let mut named = HashMap::new();
        for a in args {
            match &a.name {
                Some(n) => {
                    named.insert(n.as_str(), &a.value);
                }
                None => positional.push(&a.value),
            }
        }
        if admin && !named.contains_key("p_schema") && !positional.is_empty() {
            positional.remove(0);
        }
        Args { positional, named }
    }

    /// The argument at `pos` of the ORDS signature, or named one of `names`.
    fn get(&self, pos: usize, names: &[&str]) -> Option<&'a Value> {
        names
            .iter()
            .find_map(|n| self.named.get(n).copied())
            .or_else(|| self.positional.get(pos).copied())
    }
}

impl State {
    fn error(&mut self, at: &str, msg: String) {
        self.errors.push(format!("{at}: {msg}"));
    }

    /// A string argument: a literal, or a variable assigned one. `Err` says why not.
    fn text(&self, v: Option<&Value>) -> Result<Option<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.clone())),
            Some(Value::Name(n)) => match self.scalars.get(n) {
                Some(v) => self.text(Some(&v.clone())),
                None => Err(format!(
                    "`{n}` is not a string, nor a variable this script assigned one"
                )),
            },
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Other(t)) => Err(format!("`{t}` is an expression, not a string")),
        }
    }

    /// A list argument: an `owa.vc_arr` filled element by element, or one string (for
    /// `p_privilege_names`, comma-separated).
    fn list(&self, v: Option<&Value>, split_commas: bool) -> Result<Vec<String>, String> {
        if let Some(Value::Name(n)) = v {
            if let Some(elements) = self.arrays.get(n) {
                let mut out = Vec::new();
                for e in elements.values() {
                    out.extend(self.text(Some(e))?);
                }
                return Ok(out);
            }
            if !self.scalars.contains_key(n) {
                // Declared and never filled: an empty array.
                return Ok(Vec::new());
            }
        }
        let one = self.text(v)?;
        Ok(match one {
            None => Vec::new(),
            Some(s) if split_commas => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(s) => vec![s],
        })
    }

    fn privilege(&mut self, name: &str) -> Option<&mut Privilege> {
        self.privileges.iter_mut().find(|p| p.name == name)
    }

    fn client(&mut self, name: &str) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.name == name)
    }
}

/// A module's base path as a pattern: `/example/` protects `/example/*`.
fn module_pattern(base: &str) -> String {
    let trimmed = base.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/*".to_string()
    } else {
        format!("/{trimmed}/*")
    }
}

/// An ORDS pattern as ords-guard's: relative to base_path, with a leading `/`.
fn pattern(p: &str) -> String {
    let p = p.trim();
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Import `inputs`, read in order as one script. `Err` holds every `FILE:LINE: ...` error.
pub fn import_ords(inputs: &[Input<'_>]) -> Result<Imported, Vec<String>> {
    let mut st = State::default();
    for input in inputs {
        match plsql::read(input.text) {
            Ok(statements) => {
                for s in &statements {
                    apply(&mut st, input.name, s);
                }
            }
            Err(e) => st.error(&format!("{}:{}", input.name, e.line), e.message),
        }
    }
    finish(st)
}

fn apply(st: &mut State, file: &str, s: &Statement) {
    match s {
        Statement::Declare { var, .. } => {
            st.arrays.remove(var);
            st.scalars.remove(var);
        }
        Statement::Element {
            array,
            index,
            value,
            ..
        } => {
            st.arrays
                .entry(array.clone())
                .or_default()
                .insert(*index, value.clone());
        }
        Statement::Assign { var, value, line } => {
            if matches!(value, Value::Str(_) | Value::Null | Value::Number(_)) {
                st.scalars.insert(var.clone(), value.clone());
            } else {
                st.notes
                    .push(format!("{file}:{line}: skipped: an assignment to {var}"));
            }
        }
        Statement::Other { text, line } => st.notes.push(format!("{file}:{line}: skipped: {text}")),
        Statement::Call { name, args, line } => {
            let at = format!("{file}:{line}");
            if let Err(e) = call(st, &at, name, args) {
                st.error(&at, format!("{name}: {e}"));
            }
        }
    }
}

/// Calls the importer reads, with the package forms it accepts.
fn call(st: &mut State, at: &str, name: &str, args: &[Arg]) -> Result<(), String> {
    let (pkg, proc_) = name.split_once('.').unwrap_or(("", name));
    let admin = pkg.ends_with("_ADMIN");
    let family = pkg.trim_end_matches("_ADMIN");
    let a = Args::new(args, admin);
    let required = |v: Option<String>, what: &str| {
        v.ok_or_else(|| format!("{what} is required (a string, not NULL)"))
    };
    match (family, proc_) {
        ("ORDS", "CREATE_ROLE") => {
            required(st.text(a.get(0, &["p_role_name"]))?, "p_role_name")?;
            // Roles need no declaration in ords-guard: naming one in a privilege or a
            // client is enough.
        }
        ("ORDS", "CREATE_PRIVILEGE") => {
            let name = required(
                st.text(a.get(0, &["p_name", "p_privilege_name"]))?,
                "p_name",
            )?;
            let roles = st.list(a.get(1, &["p_role_name", "p_roles"]), false)?;
            let label = st.text(a.get(2, &["p_label"]))?;
            let description = st.text(a.get(3, &["p_description"]))?;
            // CREATE_PRIVILEGE on an existing one changes its roles and texts, not its
            // mappings.
            define(
                st,
                Privilege {
                    name,
                    roles,
                    patterns: Vec::new(),
                    modules: Vec::new(),
                    label,
                    description,
                },
                false,
            );
        }
        ("ORDS", "DEFINE_PRIVILEGE") => {
            let name = required(
                st.text(a.get(0, &["p_privilege_name", "p_name"]))?,
                "p_privilege_name",
            )?;
            let roles = st.list(a.get(1, &["p_roles", "p_role_name"]), false)?;
            let patterns = st.list(a.get(2, &["p_patterns"]), false)?;
            // Two overloads: (.., p_patterns, p_modules, p_label, p_description) and
            // (.., p_patterns, p_label, p_description); a positional array at 3 is modules.
            let with_modules = a.named.contains_key("p_modules")
                || matches!(a.positional.get(3), Some(Value::Name(n)) if st.arrays.contains_key(n) || !st.scalars.contains_key(n));
            let shift = usize::from(with_modules);
            let modules = if with_modules {
                st.list(a.get(3, &["p_modules"]), false)?
                    .into_iter()
                    .map(|m| (m, at.to_string()))
                    .collect()
            } else {
                Vec::new()
            };
            let label = st.text(a.get(3 + shift, &["p_label"]))?;
            let description = st.text(a.get(4 + shift, &["p_description"]))?;
            define(
                st,
                Privilege {
                    name,
                    roles,
                    patterns: patterns.iter().map(|p| pattern(p)).collect(),
                    modules,
                    label,
                    description,
                },
                true,
            );
        }
        ("ORDS", "CREATE_PRIVILEGE_MAPPING") => {
            let name = required(
                st.text(a.get(0, &["p_privilege_name"]))?,
                "p_privilege_name",
            )?;
            let patterns = st.list(a.get(1, &["p_pattern", "p_patterns"]), false)?;
            if patterns.is_empty() {
                return Err("p_pattern (or p_patterns) is required".into());
            }
            let p = st
                .privilege(&name)
                .ok_or_else(|| unknown_privilege(&name))?;
            for pat in patterns {
                let pat = pattern(&pat);
                if !p.patterns.contains(&pat) {
                    p.patterns.push(pat);
                }
            }
        }
        ("ORDS", "DEFINE_MODULE") => {
            let module = required(st.text(a.get(0, &["p_module_name"]))?, "p_module_name")?;
            let base = required(st.text(a.get(1, &["p_base_path"]))?, "p_base_path")?;
            st.modules.insert(module, base);
        }
        ("ORDS", "SET_MODULE_PRIVILEGE") => {
            let module = required(st.text(a.get(0, &["p_module_name"]))?, "p_module_name")?;
            let privilege = st.text(a.get(1, &["p_privilege_name"]))?;
            if !st.modules.contains_key(&module) {
                return Err(format!("unknown module `{module}`: define it (ORDS.DEFINE_MODULE) before protecting it"));
            }
            // A module has one privilege: it leaves any other first.
            for p in &mut st.privileges {
                p.modules.retain(|(m, _)| *m != module);
            }
            if let Some(name) = privilege {
                let p = st
                    .privilege(&name)
                    .ok_or_else(|| unknown_privilege(&name))?;
                p.modules.push((module, at.to_string()));
            }
        }
        ("OAUTH", "CREATE_CLIENT") | ("ORDS_SECURITY", "REGISTER_CLIENT") => {
            let oauth = family == "OAUTH";
            // OAUTH.CREATE_CLIENT(p_name, p_grant_type, p_owner, p_description,
            // p_origins_allowed, p_redirect_uri, p_support_email, p_support_uri,
            // p_privilege_names, p_token_duration); ORDS_SECURITY.REGISTER_CLIENT(p_name,
            // p_grant_type, p_description, p_client_secret, p_support_email, p_support_uri,
            // p_privilege_names, p_origins_allowed, p_redirect_uri, p_token_duration).
            let [owner, description, email, privileges, duration] = if oauth {
                [Some(2), Some(3), Some(6), Some(8), Some(9)]
            } else {
                [None, Some(2), Some(4), Some(6), Some(9)]
            };
            let pos = |p: Option<usize>| p.unwrap_or(usize::MAX);
            let name = required(st.text(a.get(0, &["p_name"]))?, "p_name")?;
            let grant_type = required(st.text(a.get(1, &["p_grant_type"]))?, "p_grant_type")?;
            let owner = st.text(a.get(pos(owner), &["p_owner"]))?;
            let description = st.text(a.get(pos(description), &["p_description"]))?;
            let support_email = st.text(a.get(pos(email), &["p_support_email"]))?;
            let privileges = st.list(a.get(pos(privileges), &["p_privilege_names"]), true)?;
            let token_lifetime_seconds =
                match st.text(a.get(pos(duration), &["p_token_duration"]))? {
                    None => None,
                    Some(d) => Some(d.parse::<u64>().map_err(|_| {
                        format!("p_token_duration `{d}` is not a whole number of seconds")
                    })?),
                };
            for p in &privileges {
                if st.privileges.iter().all(|q| &q.name != p) {
                    return Err(unknown_privilege(p));
                }
            }
            if st.client(&name).is_some() {
                return Err(format!("client `{name}` is registered twice"));
            }
            if grant_type != "client_credentials" {
                st.notes.push(format!("{at}: note: client `{name}` uses the {grant_type} grant: imported, but ords-guard issues tokens for client_credentials only (SPEC §8), so its token requests get unauthorized_client"));
            }
            st.clients.push(Client {
                name,
                grant_type,
                owner,
                description,
                support_email,
                privileges,
                roles: Vec::new(),
                token_lifetime_seconds: token_lifetime_seconds.filter(|d| *d > 0),
            });
        }
        ("OAUTH" | "ORDS_SECURITY", "GRANT_CLIENT_ROLE" | "REVOKE_CLIENT_ROLE") => {
            let client = required(st.text(a.get(0, &["p_client_name"]))?, "p_client_name")?;
            let role = required(st.text(a.get(1, &["p_role_name"]))?, "p_role_name")?;
            let c = st.client(&client).ok_or_else(|| {
                format!("unknown client `{client}`: register it (CREATE_CLIENT / REGISTER_CLIENT) first")
            })?;
            if proc_ == "GRANT_CLIENT_ROLE" {
                if !c.roles.contains(&role) {
                    c.roles.push(role);
                }
            } else {
                c.roles.retain(|r| *r != role);
            }
        }
        _ => {
            let why = match pkg {
                "ORDS" | "ORDS_ADMIN" => "not security: ords-guard maps privileges, patterns, modules' base paths, roles and clients only",
                "DBMS_OUTPUT" => "output only",
                _ => "not an ORDS security call",
            };
            st.notes.push(format!("{at}: skipped: {name} ({why})"));
        }
    }
    Ok(())
}

fn unknown_privilege(name: &str) -> String {
    format!("unknown privilege `{name}`: create it (ORDS.CREATE_PRIVILEGE or DEFINE_PRIVILEGE) earlier in the input")
}

/// Add `new`, or update the privilege of its name: its roles and texts always, its
/// patterns and modules when `replace` (DEFINE_PRIVILEGE redefines it whole).
fn define(st: &mut State, new: Privilege, replace: bool) {
    match st.privilege(&new.name) {
        Some(p) => {
            p.roles = new.roles;
            p.label = new.label;
            p.description = new.description;
            if replace {
                p.patterns = new.patterns;
                p.modules = new.modules;
            }
        }
        None => st.privileges.push(new),
    }
}

fn finish(mut st: State) -> Result<Imported, Vec<String>> {
    let mut privileges = Vec::new();
    for p in &st.privileges {
        let mut patterns = p.patterns.clone();
        for (m, at) in &p.modules {
            match st.modules.get(m) {
                Some(base) => {
                    let pat = module_pattern(base);
                    if !patterns.contains(&pat) {
                        patterns.push(pat);
                    }
                }
                None => st.errors.push(format!(
                    "{at}: privilege `{}`: unknown module `{m}`: define it (ORDS.DEFINE_MODULE) in the input",
                    p.name
                )),
            }
        }
        for pat in &patterns {
            if let Err(e) = crate::patterns::pattern::Pattern::parse(pat) {
                st.errors
                    .push(format!("privilege `{}`: pattern `{pat}`: {e}", p.name));
            }
        }
        privileges.push(PrivilegeConfig {
            name: p.name.clone(),
            roles: p.roles.clone(),
            patterns,
            label: p.label.clone(),
            description: p.description.clone(),
            methods: None,
            mode: Default::default(),
        });
    }
    if !st.errors.is_empty() {
        return Err(st.errors);
    }
    let mut clients = Vec::new();
    let mut credentials = Vec::new();
    for c in &st.clients {
        let (mut cfg, secret): (ClientConfig, String) =
            crate::clients::new_client(&c.name, c.roles.clone(), c.privileges.clone());
        cfg.grant_type = c.grant_type.clone();
        cfg.owner = c.owner.clone();
        cfg.description = c.description.clone();
        cfg.support_email = c.support_email.clone();
        cfg.token_lifetime_seconds = c.token_lifetime_seconds;
        credentials.push((c.name.clone(), cfg.client_id.clone(), secret));
        clients.push(cfg);
    }
    #[derive(serde::Serialize)]
    struct Out {
        privileges: Vec<PrivilegeConfig>,
        clients: Vec<ClientConfig>,
    }
    let yaml = serde_yaml::to_string(&Out {
        privileges,
        clients,
    })
    .map_err(|e| vec![format!("cannot write the YAML: {e}")])?;
    Ok(Imported {
        yaml,
        credentials,
        notes: st.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<Imported, Vec<String>> {
        import_ords(&[Input {
            name: "x.sql",
            text,
        }])
    }

    #[test]
    fn module_export_with_arrays() {
        let got = import("BEGIN\n ORDS.DEFINE_MODULE(p_module_name => 'hr.example', p_base_path => '/example/', p_items_per_page => 25);\n ORDS.DEFINE_TEMPLATE(p_module_name => 'hr.example', p_pattern => 'employees/');\n ORDS.CREATE_ROLE(p_role_name => 'example_role');\n DECLARE\n  l_roles OWA.VC_ARR; l_modules OWA.VC_ARR; l_patterns OWA.VC_ARR;\n BEGIN\n  l_roles(1) := 'example_role';\n  l_modules(1) := 'hr.example';\n  l_patterns(1) := '/reports/*';\n  ORDS.DEFINE_PRIVILEGE(p_privilege_name => 'example_priv', p_roles => l_roles, p_patterns => l_patterns, p_modules => l_modules, p_label => 'Example', p_description => NULL);\n END;\n COMMIT;\nEND;\n/\n").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&got.yaml).unwrap();
        let p = &v["privileges"][0];
        assert_eq!(p["name"], "example_priv");
        assert_eq!(p["roles"][0], "example_role");
        assert_eq!(p["patterns"][0], "/reports/*");
        assert_eq!(p["patterns"][1], "/example/*");
        assert_eq!(p["label"], "Example");
        assert!(v["clients"].as_sequence().unwrap().is_empty());
        assert_eq!(got.notes.len(), 1, "{:?}", got.notes);
        assert!(
            got.notes[0].starts_with("x.sql:3: skipped: ORDS.DEFINE_TEMPLATE"),
            "{:?}",
            got.notes
        );
    }

    #[test]
    fn positional_arguments_and_admin_forms() {
        let got = import("BEGIN\n ORDS.CREATE_PRIVILEGE('p1', 'r1', 'Label', 'Desc');\n ORDS.CREATE_PRIVILEGE_MAPPING('p1', 'data/*');\n OAUTH_ADMIN.CREATE_CLIENT('HR', 'App', 'client_credentials', 'Owner', 'D', NULL, NULL, 'a@b.c', NULL, 'p1', 600);\n OAUTH_ADMIN.GRANT_CLIENT_ROLE(p_schema => 'HR', p_client_name => 'App', p_role_name => 'r1');\n OAUTH.GRANT_CLIENT_ROLE('App', 'r2');\n OAUTH.REVOKE_CLIENT_ROLE('App', 'r2');\nEND;\n/").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&got.yaml).unwrap();
        assert_eq!(v["privileges"][0]["patterns"][0], "/data/*");
        assert_eq!(v["privileges"][0]["description"], "Desc");
        let c = &v["clients"][0];
        assert_eq!(c["name"], "App");
        assert_eq!(c["owner"], "Owner");
        assert_eq!(c["support_email"], "a@b.c");
        assert_eq!(c["privileges"][0], "p1");
        assert_eq!(c["roles"].as_sequence().unwrap().len(), 1);
        assert_eq!(c["roles"][0], "r1");
        assert_eq!(c["token_lifetime_seconds"], 600);
        assert!(c["secrets"][0].as_str().unwrap().starts_with("sha256:"));
        let (name, id, secret) = &got.credentials[0];
        assert_eq!(
            (name.as_str(), id.as_str()),
            ("App", c["client_id"].as_str().unwrap())
        );
        assert!(secret.len() >= 32);
        assert!(
            !got.yaml.contains(secret.as_str()),
            "the YAML holds the hash only"
        );
    }

    #[test]
    fn three_legged_clients_are_imported_with_a_note() {
        let got = import("BEGIN\n OAUTH.CREATE_CLIENT(p_name => 'w', p_grant_type => 'authorization_code');\nEND;").unwrap();
        assert!(
            got.yaml.contains("grant_type: authorization_code"),
            "{}",
            got.yaml
        );
        assert!(
            got.notes
                .iter()
                .any(|n| n.starts_with("x.sql:2: note:") && n.contains("unauthorized_client")),
            "{:?}",
            got.notes
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        for (src, want) in [
            ("BEGIN\n ORDS.CREATE_PRIVILEGE_MAPPING('nope', '/x/*');\nEND;", "x.sql:2: ORDS.CREATE_PRIVILEGE_MAPPING: unknown privilege `nope`"),
            ("BEGIN\n\n OAUTH.CREATE_CLIENT(p_name => 'c', p_grant_type => 'client_credentials', p_privilege_names => 'ghost');\nEND;", "x.sql:3: OAUTH.CREATE_CLIENT: unknown privilege `ghost`"),
            ("BEGIN ORDS.CREATE_PRIVILEGE(p_label => 'x'); END;", "x.sql:1: ORDS.CREATE_PRIVILEGE: p_name is required"),
            ("BEGIN OAUTH.GRANT_CLIENT_ROLE('nobody', 'r'); END;", "unknown client `nobody`"),
            ("BEGIN\n ORDS.CREATE_ROLE('unterminated);\nEND;", "x.sql:2: unterminated string"),
            ("BEGIN ORDS.SET_MODULE_PRIVILEGE('m', 'p'); END;", "unknown module `m`"),
            ("BEGIN ORDS.CREATE_PRIVILEGE('p', NULL); ORDS.CREATE_PRIVILEGE_MAPPING('p', '/a*b'); END;", "pattern `/a*b`"),
        ] {
            let errs = import(src).err().unwrap_or_else(|| panic!("accepted: {src}"));
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
    }
}
