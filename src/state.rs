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
            let warnings = c.warnings.iter().map(|d| src.render(d)).collect();
            Ok((c, warnings))
        }
        Err(ds) => Err(ConfigError { lines: ds.iter().map(|d| src.render(d)).collect() }),
    }
}

pub struct Guard {
    registry: ArcSwap<Registry>,
    pub endpoint: TokenEndpoint,
    pub metrics: Metrics,
    pub config_path: PathBuf,
    ready: AtomicBool,
}

impl Guard {
    pub fn new(registry: Registry, config_path: PathBuf) -> Arc<Guard> {
        let g = Guard {
            registry: ArcSwap::from_pointee(registry),
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
    /// one. Either way the result is counted and logged.
    pub fn reload(&self) -> Result<(), ConfigError> {
        match load(&self.config_path) {
            Ok((compiled, warnings)) => {
                for w in warnings {
                    tracing::warn!(target: "ords_guard::reload", "{w}");
                }
                self.registry.store(Arc::new(compiled.registry));
                self.loaded();
                self.metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(target: "ords_guard::reload", config = %self.config_path.display(), "config reloaded");
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

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
