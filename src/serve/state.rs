//! What the proxy, the admin listener and the reloader share: the current registry
//! generation (swapped atomically, read lock-free), token-endpoint state, metrics and
//! readiness.

use crate::config::{self, ConfigError, Diagnostic};
use crate::oauth::endpoint::TokenEndpoint;
use crate::registry::{self, Compiled, Listeners, Registry};
use crate::serve::metrics::Metrics;
use crate::tokens::jwks_fetch::Fetcher;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Read, parse and compile a config file (and its `clients_file`). Errors and warnings are
/// rendered with `file:line:column` and key, in the file where the key stands.
pub fn load(path: &Path) -> Result<(Compiled, Vec<String>), ConfigError> {
    let (mut cfg, src) = config::read(path)?;
    let clients_file = match &cfg.clients_file {
        Some(f) => {
            let (clients, csrc) = config::read_clients(&src.resolve(f))?;
            let first = cfg.clients.len();
            cfg.clients.extend(clients);
            Some((first, csrc))
        }
        None => None,
    };
    let render = |ds: &[Diagnostic]| match &clients_file {
        None => src.render_all(ds),
        Some((first, csrc)) => render_split(ds, &src, *first, csrc),
    };
    match registry::compile(&cfg, &src) {
        Ok(c) => {
            let warnings = render(&c.warnings);
            Ok((c, warnings))
        }
        Err(ds) => Err(ConfigError { lines: render(&ds) }),
    }
}

/// `clients[k]` with `k >= first` came from the clients file, where it is `[k - first]`.
fn render_split(
    ds: &[Diagnostic],
    src: &config::Source,
    first: usize,
    csrc: &config::Source,
) -> Vec<String> {
    let from_file = |d: &Diagnostic| -> Option<Diagnostic> {
        let rest = d.path.strip_prefix("clients[")?;
        let (k, tail) = rest.split_once(']')?;
        let k: usize = k.parse().ok()?;
        (k >= first).then(|| Diagnostic::new(format!("[{}]{tail}", k - first), d.message.clone()))
    };
    let (mut main, mut other) = (Vec::new(), Vec::new());
    let order: Vec<bool> = ds
        .iter()
        .map(|d| match from_file(d) {
            Some(moved) => {
                other.push(moved);
                true
            }
            None => {
                main.push(d.clone());
                false
            }
        })
        .collect();
    let (mut main, mut other) = (
        src.render_all(&main).into_iter(),
        csrc.render_all(&other).into_iter(),
    );
    order
        .into_iter()
        .filter_map(|f| if f { other.next() } else { main.next() })
        .collect()
}

/// Give the memory of a dropped registry back to the OS. glibc keeps freed blocks in the
/// reloading thread's arena; a 10k-client registry otherwise grew RSS by ~15 MiB a reload.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the OS; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub struct Guard {
    registry: ArcSwap<Registry>,
    /// Serialises reloads (SIGHUP and the file watcher may fire together) and remembers
    /// the fingerprint of the sources the current registry was loaded from.
    loaded_from: std::sync::Mutex<[u8; 32]>,
    pub endpoint: TokenEndpoint,
    pub metrics: Metrics,
    /// Fetches the keys of `jwks_url` issuers into their cells.
    jwks: Fetcher,
    /// Runs the egress entries' token managers.
    egress: crate::serve::egress::runner::Runner,
    /// The connection to the store of limits with `store: redis` (SPEC §13).
    pub shared_limits: crate::ratelimit::shared::SharedStore,
    /// Revocations shared through Redis (SPEC §16 `revocation: {store: redis}`).
    pub revocations: crate::revocation::RevocationStore,
    /// The tracer of the `tracing` section (SPEC §15), replaced when a reload changes it.
    pub traces: crate::traces::Traces,
    pub config_path: PathBuf,
    /// What the sockets were bound with; a reload cannot change it.
    listeners: Listeners,
    ready: AtomicBool,
    /// Set once by the drain: readiness stays off whatever pingora's phases say after.
    draining: AtomicBool,
}

impl Guard {
    pub fn new(registry: Registry, listeners: Listeners, config_path: PathBuf) -> Arc<Guard> {
        let fp = crate::serve::reload::fingerprint(&registry.sources);
        let metrics = Metrics::new();
        let g = Guard {
            registry: ArcSwap::from_pointee(registry),
            loaded_from: std::sync::Mutex::new(fp),
            endpoint: TokenEndpoint::default(),
            jwks: Fetcher::new(metrics.jwks.clone()),
            egress: Default::default(),
            shared_limits: crate::ratelimit::shared::SharedStore::new(
                metrics.rate_limit_store_errors.clone(),
                metrics.rate_limit_store_duration.clone(),
            ),
            traces: crate::traces::Traces::new(metrics.traces.clone()),
            revocations: Default::default(),
            metrics,
            config_path,
            listeners,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        };
        g.loaded(&[]);
        Arc::new(g)
    }

    /// The current generation; hold it for the whole request so every step agrees.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// A generation is in: its gauges set, its issuers' keys fetched. `before` holds the
    /// previous generation's issuer names, whose series go when the issuer does.
    fn loaded(&self, before: &[String]) {
        let r = self.registry.load();
        self.jwks.sync(registry::issuers::fetch_sources(&r.issuers));
        // Only entries with a listener bound at start run: a new one waits for a restart.
        let served: Vec<_> = r
            .egress
            .iter()
            .filter(|e| self.listeners.egress.iter().any(|(n, _)| *n == e.name))
            .collect();
        self.egress.sync(&served, &self.metrics.egress);
        self.shared_limits.sync(r.rate_limit_store.as_ref());
        self.revocations.sync(
            r.rate_limit_store
                .as_ref()
                .filter(|_| r.revocations_in_redis),
        );
        self.traces.sync(r.tracing.as_ref());
        let jwks = &self.metrics.jwks;
        for gone in before
            .iter()
            .filter(|n| !r.issuers.iter().any(|e| &e.issuer.name == *n))
        {
            let _ = jwks.keys.remove_label_values(&[gone]);
            let _ = jwks.last_success.remove_label_values(&[gone]);
            for result in ["success", "failure"] {
                let _ = jwks.fetches.remove_label_values(&[gone, result]);
            }
            let introspections = &crate::tokens::introspector::INTROSPECTIONS;
            for result in ["active", "inactive", "failure", "cached"] {
                let _ = introspections.remove_label_values(&[gone, result]);
            }
        }
        // An entry that introspects now has no keys: no jwks series either.
        for e in r.issuers.iter().filter(|e| e.introspector.is_some()) {
            let name = e.issuer.name.as_str();
            let _ = jwks.keys.remove_label_values(&[name]);
            let _ = jwks.last_success.remove_label_values(&[name]);
            for result in ["success", "failure"] {
                let _ = jwks.fetches.remove_label_values(&[name, result]);
            }
        }
        // An introspecting entry holds no keys: it has no jwks series.
        for e in r.issuers.iter().filter(|e| e.introspector.is_none()) {
            let name = e.issuer.name.as_str();
            let keys = jwks.keys.with_label_values(&[name]);
            // Fetched keys are counted by their fetch task (which may already be done);
            // a jwks_file is read with the config: that read is its fetch.
            if !e.keys.is_fetched() {
                keys.set(e.keys.current().map_or(0, |k| k.len() as i64));
                jwks.last_success
                    .with_label_values(&[name])
                    .set(crate::tokens::token::now() as f64);
            }
        }
        self.metrics.clients.set(r.clients.len() as i64);
        self.metrics.privileges.set(r.privileges.len() as i64);
        // Every registered client has a series from the start, so rates and "no tokens
        // issued" alerts work before its first token.
        for id in r.clients.keys() {
            self.metrics.tokens_issued.with_label_values(&[id]);
        }
        for l in &r.rate_limits {
            self.metrics
                .rate_limited
                .with_label_values(&[l.name.as_str()]);
        }
        // Likewise each report-mode privilege's would-be refusals (SPEC §11): "stayed at
        // zero" is what tells an operator to enforce.
        for p in r
            .privileges
            .iter()
            .filter(|p| p.mode == config::Mode::Report)
        {
            for would in crate::access::decision::WOULD {
                self.metrics
                    .report_only
                    .with_label_values(&[p.name.as_str(), would]);
            }
        }
        self.metrics
            .last_reload_success
            .set(crate::tokens::token::now() as f64);
    }

    /// Load the config file again; on success swap it in, on failure keep serving the old
    /// one. Either way the result is counted and logged, and the sources' fingerprint is
    /// remembered so the watcher does not load the same files twice.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut loaded_from = self.loaded_from.lock().unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let old_sources = self.registry.load().sources.clone();
        // Taken before reading: a change racing with the load shows as a difference later.
        let before = crate::serve::reload::fingerprint(&old_sources);
        let result = load(&self.config_path).and_then(|(c, w)| {
            self.keeps_listener_tls(&c.listeners)?;
            Ok((c, w))
        });
        *loaded_from = match &result {
            Ok((c, _)) if c.registry.sources != old_sources => {
                crate::serve::reload::fingerprint(&c.registry.sources)
            }
            _ => before,
        };
        // `loaded_from` stays locked until the swap is done: reloads never interleave.
        match result {
            Ok((mut compiled, warnings)) => {
                for w in warnings {
                    tracing::warn!(target: "ords_guard::reload", "{w}");
                }
                if compiled.listeners != self.listeners {
                    tracing::warn!(target: "ords_guard::reload", "listen, admin_listen, authz.listen, threads, http2, limits.upstream_keepalive, limits.max_upstream_connections, the egress listeners, authz.grpc_listen, or whether tls/admin_tls/authz.tls is set changed: restart ords-guard to apply that (the rest of the config is applied now)");
                }
                for e in compiled
                    .registry
                    .egress
                    .iter()
                    .filter(|e| !self.listeners.egress.iter().any(|(n, _)| *n == e.name))
                {
                    tracing::warn!(target: "ords_guard::reload", egress = %e.name, "egress entry `{}` is new: its listener and token manager start at the next restart", e.name);
                }
                let old = self.registry.load_full();
                registry::issuers::keep_keys(&mut compiled.registry.issuers, &old.issuers);
                registry::egress::keep_tokens(&mut compiled.registry.egress, &old.egress);
                crate::ratelimit::keep_counts(&mut compiled.registry.rate_limits, &old.rate_limits);
                let before: Vec<String> =
                    old.issuers.iter().map(|e| e.issuer.name.clone()).collect();
                drop(old);
                self.registry.store(Arc::new(compiled.registry));
                self.loaded(&before);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                release_freed_memory();
                self.metrics.reloads.inc("success");
                tracing::info!(target: "ords_guard::reload", config = %self.config_path.display(), elapsed_ms, "config reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.inc("failure");
                for line in &e.lines {
                    tracing::error!(target: "ords_guard::reload", "config rejected, still serving the previous one: {line}");
                }
                Err(e)
            }
        }
    }

    /// A listener bound with TLS needs a certificate in every generation: without one,
    /// every handshake would fail until a restart. So a reload cannot drop `tls`,
    /// `admin_tls` or `authz.tls`.
    fn keeps_listener_tls(&self, new: &Listeners) -> Result<(), ConfigError> {
        let authz_tls = |l: &Listeners| l.authz.is_some_and(|a| a.tls);
        let dropped: Vec<&str> = [
            ("tls", self.listeners.tls && !new.tls),
            ("admin_tls", self.listeners.admin_tls && !new.admin_tls),
            ("authz.tls", authz_tls(&self.listeners) && !authz_tls(new)),
        ]
        .into_iter()
        .filter_map(|(k, dropped)| dropped.then_some(k))
        .collect();
        if dropped.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            lines: dropped
                .into_iter()
                .map(|k| format!("{}: key `{k}`: the listener serves TLS and cannot drop it in a reload; restore `{k}`, or restart ords-guard to serve plain HTTP", self.config_path.display()))
                .collect(),
        })
    }

    /// Whether the sources differ from what the current registry was loaded from.
    pub fn sources_changed(&self) -> bool {
        let sources = self.registry.load().sources.clone();
        let loaded_from = self.loaded_from.lock().unwrap_or_else(|e| e.into_inner());
        crate::serve::reload::fingerprint(&sources) != *loaded_from
    }

    /// SIGTERM or SIGINT: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Serving, and (SPEC §16) the shared revocations read.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.revocations.loaded()
    }

    /// Readiness as pingora's phases move; never back on once draining (pingora announces
    /// `Running` just before it asks the drain, which may already hold an early signal).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        // A drain that began meanwhile wins: looked at after the store, so either it sees
        // ours or we see its flag.
        if ready && self.draining.load(Ordering::SeqCst) {
            self.ready.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_stays_off_once_draining() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hs.key"),
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let config = dir.path().join("g.yaml");
        std::fs::write(
            &config,
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\ntoken: {algorithm: HS256, signing_key_file: hs.key, key_id: k}\n",
        )
        .unwrap();
        let (c, _) = load(&config).unwrap();
        let guard = Guard::new(c.registry, c.listeners, config);
        guard.set_ready(true);
        assert!(guard.is_ready());
        guard.start_draining();
        assert!(!guard.is_ready());
        // pingora's `Running` phase, announced after an early SIGTERM began the drain.
        guard.set_ready(true);
        assert!(!guard.is_ready());
    }

    #[test]
    fn clients_file_is_merged_and_its_errors_point_into_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secret")).unwrap();
        std::fs::write(
            dir.path().join("secret/hs.key"),
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let sha = crate::clients::secret::hash(b"s", crate::clients::secret::Scheme::Sha256);
        let main = format!(
            "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nunmatched: deny\ntoken:\n  algorithm: HS256\n  signing_key_file: secret/hs.key\n  key_id: k\nclients_file: secret/clients.yaml\nprivileges:\n  - name: p\n    roles: [r]\n    patterns: [\"/x/*\"]\nclients:\n  - name: a\n    client_id: a\n    secrets: [\"{sha}\"]\n    roles: [r]\n"
        );
        let config = dir.path().join("g.yaml");
        std::fs::write(&config, &main).unwrap();
        let clients = dir.path().join("secret/clients.yaml");
        std::fs::write(
            &clients,
            format!("- name: b\n  client_id: b\n  secrets: [\"{sha}\"]\n  roles: [r]\n"),
        )
        .unwrap();
        let (c, warnings) = load(&config).unwrap();
        assert_eq!(c.registry.clients.len(), 2);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(c
            .registry
            .sources
            .contains(&dir.path().join("secret/clients.yaml")));

        std::fs::write(
            &clients,
            format!("- name: b\n  client_id: b\n  secrets: [\"{sha}\"]\n  privileges: [nope]\n"),
        )
        .unwrap();
        let e = load(&config).err().unwrap();
        assert_eq!(e.lines.len(), 1, "{e}");
        assert!(
            e.lines[0].starts_with(&format!(
                "{}:4:16: key `[0].privileges[0]`",
                clients.display()
            )),
            "{e}"
        );
    }
}
