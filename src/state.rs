//! What the proxy, the admin listener and the reloader share: the current registry
//! generation (swapped atomically, read lock-free), token-endpoint state, metrics and
//! readiness.

use crate::config::{self, ConfigError};
use crate::endpoint::TokenEndpoint;
use crate::metrics::Metrics;
use crate::registry::{self, Compiled, Registry};
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Read, parse and compile a config file. Errors and warnings are rendered with
/// `file:line:column` and key.
pub fn load(path: &Path) -> Result<(Compiled, Vec<String>), ConfigError> {
    let (cfg, src) = config::read(path)?;
    match registry::compile(&cfg, &src) {
        Ok(c) => {
            let warnings = src.render_all(&c.warnings);
            Ok((c, warnings))
        }
        Err(ds) => Err(ConfigError { lines: src.render_all(&ds) }),
    }
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
    pub config_path: PathBuf,
    ready: AtomicBool,
}

impl Guard {
    pub fn new(registry: Registry, config_path: PathBuf) -> Arc<Guard> {
        let fp = crate::reload::fingerprint(&registry.sources);
        let g = Guard {
            registry: ArcSwap::from_pointee(registry),
            loaded_from: std::sync::Mutex::new(fp),
            endpoint: TokenEndpoint::default(),
            metrics: Metrics::new(),
            config_path,
            ready: AtomicBool::new(false),
        };
        g.loaded();
        Arc::new(g)
    }

    /// The current generation; hold it for the whole request so every step agrees.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    fn loaded(&self) {
        let r = self.registry.load();
        self.metrics.clients.set(r.clients.len() as i64);
        self.metrics.privileges.set(r.privileges.len() as i64);
        self.metrics.last_reload_success.set(crate::token::now() as f64);
    }

    /// Load the config file again; on success swap it in, on failure keep serving the old
    /// one. Either way the result is counted and logged, and the sources' fingerprint is
    /// remembered so the watcher does not load the same files twice.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut loaded_from = self.loaded_from.lock().unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let old_sources = self.registry.load().sources.clone();
        // Taken before reading: a change racing with the load shows as a difference later.
        let before = crate::reload::fingerprint(&old_sources);
        let result = load(&self.config_path);
        *loaded_from = match &result {
            Ok((c, _)) if c.registry.sources != old_sources => crate::reload::fingerprint(&c.registry.sources),
            _ => before,
        };
        // `loaded_from` stays locked until the swap is done: reloads never interleave.
        match result {
            Ok((compiled, warnings)) => {
                for w in warnings {
                    tracing::warn!(target: "ords_guard::reload", "{w}");
                }
                self.registry.store(Arc::new(compiled.registry));
                self.loaded();
                let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                release_freed_memory();
                self.metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(target: "ords_guard::reload", config = %self.config_path.display(), elapsed_ms, "config reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                for line in &e.lines {
                    tracing::error!(target: "ords_guard::reload", "config rejected, still serving the previous one: {line}");
                }
                Err(e)
            }
        }
    }

    /// Whether the sources differ from what the current registry was loaded from.
    pub fn sources_changed(&self) -> bool {
        let sources = self.registry.load().sources.clone();
        let loaded_from = self.loaded_from.lock().unwrap_or_else(|e| e.into_inner());
        crate::reload::fingerprint(&sources) != *loaded_from
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
