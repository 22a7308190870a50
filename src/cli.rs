//! The command line (SPEC §7).

use crate::clients::secret::{self, Scheme};
use crate::config::Algorithm;
use crate::serve::server::StopSignals;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use crate::clients::new_client;

/// `0.1.0 (rev 1a2b3c4d5e6f)`: the git revision is stamped by build.rs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("ORDS_GUARD_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(name = "ords-guard", version = VERSION, about = "ORDS-style OAuth2 privileges, roles and bearer tokens in front of any HTTP backend")]
pub struct Cli {
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (overridden by RUST_LOG when set): error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    ///
    /// Example: ords-guard run --config /etc/ords-guard/ords-guard.yaml
    Run {
        #[arg(long, env = "ORDS_GUARD_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config and summarise it; exit 1 with every error.
    ///
    /// Example: ords-guard check --config config/ords-guard.example.yaml
    Check {
        #[arg(long, env = "ORDS_GUARD_CONFIG")]
        config: PathBuf,
    },
    /// Say how one request would be decided: its normalised path, the pattern and privilege
    /// (or unmatched rule) that decide, the token's client, roles, scope and expiry, why it
    /// opens the privilege or not, and the status. Exit 0 forwarded, 1 refused, 2 usage or
    /// config error.
    ///
    /// Example: ords-guard explain --config ords-guard.yaml --client 8fN2x GET /ords/hr/example/employees/
    Explain {
        #[arg(long, env = "ORDS_GUARD_CONFIG")]
        config: PathBuf,
        /// The bearer token the request carries.
        #[arg(long, conflicts_with = "client")]
        token: Option<String>,
        /// A client_id: the request carries the token this client would get now.
        #[arg(long)]
        client: Option<String>,
        /// The scope the client would ask for (with --client).
        #[arg(long, requires = "client")]
        scope: Option<String>,
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
        /// The request method, e.g. GET.
        method: String,
        /// The request target as a client sends it, base_path included: /ords/hr/example/1?x=1
        target: String,
    },
    /// Read an ORDS security setup (SPEC §12) and print it as a `privileges:` and `clients:`
    /// registry on stdout; each client's new id and secret go to stderr, once.
    ///
    /// Example: ords-guard import ords hr_export.sql > registry.yaml 2> credentials.txt
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Start a demo backend and the proxy with the example registry and a fresh client, and
    /// print the curl lines for the ORDS flow.
    ///
    /// Example: ords-guard demo --listen 127.0.0.1:8080
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: String,
        #[arg(long, default_value = "127.0.0.1:3000")]
        backend_listen: String,
        /// Where to write the demo's config and keys (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The demo's echo backend alone: answers every request with what it received (the
    /// identity headers included). A stand-in legacy service for trying the sidecar pod.
    ///
    /// Example: ords-guard demo-backend --listen 127.0.0.1:8081
    DemoBackend {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: String,
    },
    /// Register a new client: prints its id and secret once, and the YAML entry with only
    /// the secret's hash.
    ///
    /// Example: ords-guard client create --name "Example Client" --role example_role
    Client {
        #[command(subcommand)]
        action: ClientAction,
    },
    /// List the registered clients (never their secrets).
    ///
    /// Example: ords-guard clients list --config ords-guard.yaml
    Clients {
        #[command(subcommand)]
        action: ClientsAction,
    },
    /// Hash a secret read on stdin (one trailing newline dropped).
    ///
    /// Example: printf '%s' "$SECRET" | ords-guard hash-secret --scheme sha256
    HashSecret {
        #[arg(long, value_enum, default_value_t = HashScheme::Argon2id)]
        scheme: HashScheme,
    },
    /// Generate a signing key: DIR/signing.pem (0600) and, if asymmetric, DIR/signing.pub.pem.
    ///
    /// Example: ords-guard keygen --algorithm ES256 --out /etc/ords-guard/keys
    Keygen {
        #[arg(long, default_value = "ES256")]
        algorithm: Algorithm,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClientAction {
    /// Generate a client id and secret; print the secret once and the YAML entry with its hash.
    ///
    /// Example: ords-guard client create --name "Example Client" --role example_role --privilege example_priv
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long = "privilege")]
        privileges: Vec<String>,
    },
    /// Start a secret rotation: generate a new secret for the client's second slot, print it
    /// once, and the `secrets:` line that keeps both valid. Nothing is written to disk.
    ///
    /// Example: ords-guard client rotate-secret --config ords-guard.yaml --client-id 8fN2x
    RotateSecret {
        #[arg(long, env = "ORDS_GUARD_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum ClientsAction {
    /// Example: ords-guard clients list --config ords-guard.yaml
    List {
        #[arg(long, env = "ORDS_GUARD_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// PL/SQL calls of an ORDS REST export or script: ORDS.DEFINE_PRIVILEGE, OAUTH.CREATE_CLIENT,
    /// ORDS_SECURITY.REGISTER_CLIENT, ... (files read in order, as one script).
    ///
    /// Example: ords-guard import ords export.sql clients.sql
    Ords {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum HashScheme {
    Argon2id,
    Sha256,
}

impl clap::builder::ValueParserFactory for Algorithm {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<Algorithm>())
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(crate::logs::writer());
    // `try_init` also bridges the `log` crate, which pingora logs through; `PingoraNoise`
    // vetoes the pingora lines that flood or mislead.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let noise = crate::logs::PingoraNoise::default();
    crate::logs::access::set_format(match format {
        LogFormat::Json => crate::logs::access::Format::Json,
        LogFormat::Text => crate::logs::access::Format::Text,
    });
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(noise)
            .try_init(),
        LogFormat::Text => builder.finish().with(noise).try_init(),
    };
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let stop = StopSignals::catch();
            init_logging(cli.log_format, &cli.log_level);
            let outcome =
                report(stop.and_then(|stop| crate::serve::server::run(&config, None, stop)));
            crate::logs::finish();
            outcome
        }
        Command::Check { config } => check(&config),
        Command::Import {
            from: ImportFrom::Ords { files },
        } => import_ords(&files),
        Command::Explain {
            config,
            token,
            client,
            scope,
            format,
            method,
            target,
        } => {
            let who = match (token, client) {
                (Some(t), _) => crate::access::explain::Who::Token(t),
                (None, Some(id)) => crate::access::explain::Who::Client { id, scope },
                (None, None) => crate::access::explain::Who::Anonymous,
            };
            explain(&config, who, format, &method, &target)
        }
        Command::Demo {
            listen,
            admin_listen,
            backend_listen,
            dir,
        } => {
            let stop = StopSignals::catch();
            init_logging(cli.log_format, &cli.log_level);
            let outcome = report(stop.and_then(|stop| {
                crate::demo::run(&listen, &admin_listen, &backend_listen, dir, stop)
            }));
            crate::logs::finish();
            outcome
        }
        Command::DemoBackend { listen } => {
            let stop = StopSignals::catch();
            init_logging(cli.log_format, &cli.log_level);
            let outcome = report(stop.and_then(|stop| crate::demo::backend(&listen, stop)));
            crate::logs::finish();
            outcome
        }
        Command::Client {
            action:
                ClientAction::Create {
                    name,
                    roles,
                    privileges,
                },
        } => {
            let (client, secret) = new_client(&name, roles, privileges);
            println!("client_id:     {}", client.client_id);
            println!("client_secret: {secret}");
            println!(
                "# The secret is shown once and stored nowhere. Add this entry under `clients:`:"
            );
            print!("{}", serde_yaml::to_string(&vec![client]).expect("yaml"));
            ExitCode::SUCCESS
        }
        Command::Client {
            action: ClientAction::RotateSecret { config, client_id },
        } => report(rotate_secret(&config, &client_id)),
        Command::Clients {
            action: ClientsAction::List { config },
        } => list_clients(&config),
        Command::HashSecret { scheme } => {
            let mut s = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut s) {
                eprintln!("cannot read the secret from stdin: {e}");
                return ExitCode::FAILURE;
            }
            let s = s
                .strip_suffix(b"\n")
                .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
                .unwrap_or(&s);
            if s.is_empty() {
                eprintln!("no secret on stdin: pipe it in, e.g. printf '%s' \"$SECRET\" | ords-guard hash-secret");
                return ExitCode::FAILURE;
            }
            let scheme = match scheme {
                HashScheme::Argon2id => Scheme::Argon2id,
                HashScheme::Sha256 => Scheme::Sha256,
            };
            println!("{}", secret::hash(s, scheme));
            ExitCode::SUCCESS
        }
        Command::Keygen { algorithm, out } => keygen(algorithm, &out),
    }
}

fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// ORDS_SECURITY's rotate_client_secret: the current secret stays valid in slot one, the new
/// one fills slot two; once every caller uses the new one, the operator drops the old.
fn rotate_secret(config: &Path, client_id: &str) -> Result<(), String> {
    let (cfg, src) = crate::config::read(config).map_err(|e| e.to_string())?;
    let mut clients = cfg.clients;
    let mut file = config.to_path_buf();
    if let Some(f) = &cfg.clients_file {
        let path = src.resolve(f);
        let (more, _) = crate::config::read_clients(&path).map_err(|e| e.to_string())?;
        if more.iter().any(|c| c.client_id == client_id) {
            file = path;
        }
        clients.extend(more);
    }
    let client = clients
        .iter()
        .find(|c| c.client_id == client_id)
        .ok_or_else(|| format!("no client with client_id `{client_id}` in {} (`ords-guard clients list` shows them)", config.display()))?;
    match client.secrets.as_slice() {
        [current] => {
            let secret = secret::generate(32);
            let new = secret::hash(secret.as_bytes(), Scheme::Sha256);
            println!("client_id:     {client_id}");
            println!("client_secret: {secret}");
            println!("# The new secret is shown once and stored nowhere. In {}, set the client's secrets to", file.display());
            println!("secrets: [\"{current}\", \"{new}\"]");
            println!("# then reload; both secrets work. When every caller uses the new one, remove the first.");
            Ok(())
        }
        _ => Err(format!(
            "client `{client_id}` has {} secret slots filled; a rotation needs exactly one: remove the retired secret first",
            client.secrets.len()
        )),
    }
}

/// `import ords`: the YAML on stdout; skipped statements, then the credentials, on stderr.
fn import_ords(files: &[PathBuf]) -> ExitCode {
    let mut texts = Vec::new();
    for f in files {
        let read = std::fs::metadata(f)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() > crate::import::MAX_BYTES as u64 {
                    return Err(format!(
                        "larger than {} MiB: split it",
                        crate::import::MAX_BYTES >> 20
                    ));
                }
                std::fs::read(f).map_err(|e| e.to_string())
            })
            .and_then(|b| {
                String::from_utf8(b).map_err(|e| format!("not UTF-8 text (byte {}): convert it first, e.g. iconv -f WINDOWS-1252 -t UTF-8", e.utf8_error().valid_up_to()))
            });
        match read {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let inputs: Vec<crate::import::Input> = texts
        .iter()
        .map(|(name, text)| crate::import::Input { name, text })
        .collect();
    match crate::import::import_ords(&inputs) {
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "nothing imported ({} error{})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Ok(imported) => {
            for n in &imported.notes {
                eprintln!("{n}");
            }
            print!("{}", imported.yaml);
            eprintln!("# New credentials, shown once (ORDS secrets cannot be exported): give each to its client's owner.");
            for (name, id, secret) in &imported.credentials {
                eprintln!("client {name:?}: client_id {id} client_secret {secret}");
            }
            ExitCode::SUCCESS
        }
    }
}

/// `explain`: exit 0 forwarded, 1 refused, 2 a usage or config error.
fn explain(
    config: &Path,
    who: crate::access::explain::Who,
    format: ExplainFormat,
    method: &str,
    target: &str,
) -> ExitCode {
    let usage = ExitCode::from(2);
    let reg = match crate::serve::state::load(config) {
        Ok((c, _)) => c.registry,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "{}: invalid; fix it first (ords-guard check)",
                config.display()
            );
            return usage;
        }
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        eprintln!("`{method}` is not an HTTP method such as GET or POST");
        return usage;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return usage;
        }
    };
    match rt.block_on(crate::access::explain::explain(&reg, method, target, who)) {
        Err(e) => {
            eprintln!("{e}");
            usage
        }
        Ok(x) => {
            match format {
                ExplainFormat::Text => x.lines.iter().for_each(|l| println!("{l}")),
                ExplainFormat::Json => println!("{}", x.json),
            }
            if x.forwarded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn check(config: &Path) -> ExitCode {
    match crate::serve::state::load(config) {
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "{}: invalid ({} error{})",
                config.display(),
                e.lines.len(),
                if e.lines.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Ok((c, warnings)) => {
            let r = &c.registry;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", config.display());
            let scheme = |tls: bool| if tls { "https" } else { "http" };
            match (&c.listeners.listen, &r.upstream) {
                (Some(listen), Some(up)) => println!(
                    "  listen {}://{}  admin {}://{}  upstream {}://{}{}",
                    scheme(c.listeners.tls),
                    listen,
                    scheme(c.listeners.admin_tls),
                    c.listeners.admin_listen,
                    scheme(up.tls),
                    up.addr,
                    match (up.tls, up.verify, up.ca.is_some()) {
                        (false, _, _) => "",
                        (true, false, _) => " (NOT verified)",
                        (true, true, true) => " (verified against ca_file)",
                        (true, true, false) => " (verified against the system roots)",
                    }
                ),
                _ => println!(
                    "  no ingress (no `listen`): egress only  admin {}://{}",
                    scheme(c.listeners.admin_tls),
                    c.listeners.admin_listen
                ),
            }
            let l = &r.limits;
            println!(
                "  limits: {} connections, head {} bytes / {} headers, token body {} bytes, bearer {} bytes; head {} ms, idle {} ms, request {} ms",
                l.max_connections,
                l.max_header_bytes,
                l.max_headers,
                l.max_token_body_bytes,
                r.max_bearer,
                l.client_header.as_millis(),
                l.client_idle.as_millis(),
                l.request_total.as_millis()
            );
            if r.has_argon2 {
                println!(
                    "  argon2id secrets: at most {} checks a second, {} at once, {} waiting",
                    l.argon2.per_second, l.argon2.concurrency, l.argon2.queue
                );
            }
            if !r.trusted_proxies.is_empty() {
                println!(
                    "  trusted_proxies: {} range(s); behind them the client address comes from X-Forwarded-For",
                    r.trusted_proxies.len()
                );
            }
            println!(
                "  base_path {}  unmatched paths: {:?}  path parameters (`;`): {:?}",
                if r.base.is_empty() { "/" } else { &r.base },
                r.unmatched,
                r.path_parameters
            );
            match (&r.tokens, r.token_path(), r.jwks_path()) {
                (Some(t), Some(token), Some(jwks)) => println!(
                    "  token endpoint POST {token}  jwks GET {jwks}  signing {}",
                    t.algorithm().as_str()
                ),
                _ => println!("  no token endpoint (no `token`): only identity providers' tokens are accepted"),
            }
            println!("  {} privilege(s):", r.privileges.len());
            for p in &r.privileges {
                println!(
                    "    {}  roles [{}]  patterns [{}]{}{}",
                    p.name,
                    p.roles.join(", "),
                    p.patterns.join(", "),
                    p.methods
                        .as_ref()
                        .map(|m| format!("  methods [{}]", m.join(", ")))
                        .unwrap_or_default(),
                    if p.mode == crate::config::Mode::Report {
                        "  mode: report (refusals forwarded and counted, not enforced)"
                    } else {
                        ""
                    }
                );
            }
            for l in &r.rate_limits {
                let privileges = match &l.privileges {
                    None => "every privilege".to_string(),
                    Some(ps) => ps
                        .iter()
                        .map(|i| r.privilege(*i).name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let store = match (&l.store, &r.rate_limit_store) {
                    (crate::config::LimitStore::Redis, Some(s)) => format!(
                        "shared store {} (timeout {} ms, on_error: {})",
                        s.redacted(),
                        s.timeout.as_millis(),
                        s.on_error.as_str()
                    ),
                    _ => "local store".to_string(),
                };
                println!(
                    "  rate limit {}: {} per {} s, burst {}, by {:?}, {privileges}, {store}",
                    l.name, l.rate, l.per_seconds, l.gcra.burst, l.by
                );
            }
            print_issuers(r);
            print_egress(r);
            println!(
                "  {} client(s), {} warning(s)",
                r.clients.len(),
                warnings.len()
            );
            ExitCode::SUCCESS
        }
    }
}

fn list_clients(config: &Path) -> ExitCode {
    let (c, _) = match crate::serve::state::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let r = &c.registry;
    let mut clients: Vec<_> = r.clients.values().collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    println!(
        "{:<24} {:<24} {:<16} {:<24} PRIVILEGES",
        "CLIENT_ID", "NAME", "OWNER", "ROLES"
    );
    for cl in clients {
        let held: Vec<_> = (0..r.privileges.len())
            .filter(|i| r.holds(cl, *i))
            .map(|i| r.privilege(i).name.as_str())
            .collect();
        println!(
            "{:<24} {:<24} {:<16} {:<24} {}{}",
            cl.client_id,
            cl.name,
            cl.owner.as_deref().unwrap_or("-"),
            cl.roles.join(","),
            held.join(","),
            if cl.disabled { "  (disabled)" } else { "" }
        );
    }
    if !r.issuers.is_empty() {
        println!("Tokens of these identity providers are accepted too; their clients are the provider's:");
        print_issuers(r);
    }
    ExitCode::SUCCESS
}

/// One line per `egress[]` entry (never the secret, only where it is read from).
fn print_egress(r: &crate::registry::Registry) {
    if r.egress.is_empty() {
        return;
    }
    println!("  {} egress listener(s):", r.egress.len());
    for e in &r.egress {
        let t = &e.tokens.request;
        println!(
            "    {}  listen {}  -> {}://{}  token_url {}  client_id {}  secret from {}  auth {:?}  scope {}  retry_on_401 {:?}",
            e.name,
            e.listen,
            if e.upstream.tls { "https" } else { "http" },
            e.authority,
            t.token_url,
            t.client_id,
            t.secret_file.display(),
            t.auth,
            t.scope.as_deref().unwrap_or("-"),
            e.retry,
        );
    }
}

/// One line per `issuers[]` entry: what `check` and `clients list` show of them.
fn print_issuers(r: &crate::registry::Registry) {
    use crate::registry::issuers::KeysFrom;
    if r.issuers.is_empty() {
        return;
    }
    println!("  {} identity provider(s):", r.issuers.len());
    for e in &r.issuers {
        let i = &e.issuer;
        let keys = match &e.keys_from {
            KeysFrom::File(f) => format!(
                "jwks_file {} ({} key(s))",
                f.display(),
                e.keys.current().map_or(0, |k| k.len())
            ),
            KeysFrom::Introspection { url } => format!("introspection {url} (opaque tokens)"),
            KeysFrom::Url { url, ca_file, .. } => match ca_file {
                Some(ca) => format!("jwks_url {url} (verified with ca_file {})", ca.display()),
                None => format!("jwks_url {url} (verified with the system roots)"),
            },
        };
        let list = |v: &[String]| {
            if v.is_empty() {
                "any".to_string()
            } else {
                v.join(", ")
            }
        };
        println!(
            "    {}  iss {}  {}  audience [{}]  algorithms [{}]  roles_claim {}  privileges [{}]",
            i.name,
            i.issuer,
            keys,
            list(&i.audience),
            i.algorithms
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            i.roles_claim.as_deref().unwrap_or("-"),
            i.privileges.as_deref().map_or("any".to_string(), list)
        );
    }
}

fn keygen(alg: Algorithm, out: &Path) -> ExitCode {
    let g = crate::tokens::keys::generate(alg);
    if let Err(e) = crate::tokens::keys::write_generated(out, &g) {
        eprintln!("cannot write keys to {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {}{}",
        out.join("signing.pem").display(),
        if g.public.is_some() {
            format!(" and {}", out.join("signing.pub.pem").display())
        } else {
            String::new()
        }
    );
    println!(
        "token:\n  algorithm: {}\n  signing_key_file: {}\n  key_id: \"{}\"",
        alg.as_str(),
        out.join("signing.pem").display(),
        secret::generate(6)
    );
    ExitCode::SUCCESS
}
