//! Runs the token managers of the current registry generation on the background runtime:
//! one task per manager, started when its entry appears, stopped when it goes. A reload
//! that keeps an entry's token request keeps its manager, its task and its token.

use crate::egress::tokens::{Failure, Tokens};
use crate::registry::egress::EgressEntry;
use crate::serve::metrics::EgressMetrics;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
pub struct Runner {
    running: Mutex<Vec<(Arc<Tokens>, tokio::task::AbortHandle)>>,
}

impl Runner {
    /// Run the managers of `entries` from now on.
    pub fn sync(&self, entries: &[&EgressEntry], m: &EgressMetrics) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        for e in entries {
            if let Some(i) = running.iter().position(|(t, _)| Arc::ptr_eq(t, &e.tokens)) {
                kept.push(running.swap_remove(i));
                continue;
            }
            let name = e.name.clone();
            for result in ["success", "failure"] {
                m.token_fetches.with_label_values(&[&name, result]);
            }
            let m = m.clone();
            let client_id = e.tokens.request.client_id.clone();
            let report = move |r: &Result<&crate::egress::tokens::Held, &Failure>| {
                let egress = name.as_str();
                match r {
                    Ok(held) => {
                        let left = held.life.expires.saturating_duration_since(Instant::now());
                        tracing::info!(target: "ords_guard::egress", egress, expires_in_s = left.as_secs(), renew_in_s = held.life.renew_at.saturating_duration_since(Instant::now()).as_secs(), "token fetched");
                        m.token_expiry
                            .with_label_values(&[egress])
                            .set((crate::tokens::token::now() + left.as_secs()) as f64);
                        m.token_fetches
                            .with_label_values(&[egress, "success"])
                            .inc();
                    }
                    Err(Failure::Refused(r)) if r.is_invalid_client() => {
                        tracing::error!(target: "ords_guard::egress", egress, client_id = %client_id, "the token endpoint refused the client credentials ({r}): check client_id and client_secret_file");
                        m.token_fetches
                            .with_label_values(&[egress, "failure"])
                            .inc();
                    }
                    Err(f) => {
                        tracing::warn!(target: "ords_guard::egress", egress, "no token: {f}; retrying with backoff");
                        m.token_fetches
                            .with_label_values(&[egress, "failure"])
                            .inc();
                    }
                }
            };
            match crate::background::handle() {
                Ok(h) => {
                    let task = h.spawn(e.tokens.clone().run(report));
                    kept.push((e.tokens.clone(), task.abort_handle()));
                }
                Err(err) => {
                    tracing::error!(target: "ords_guard::egress", egress = %e.name, "{err}; its callers get 503")
                }
            }
        }
        for (gone, task) in running.drain(..) {
            task.abort();
            // Its series go with it, unless an entry of the same name runs on.
            let name = gone.request.egress.as_str();
            if !entries.iter().any(|e| e.name == name) {
                let _ = m.token_expiry.remove_label_values(&[name]);
                for result in ["success", "failure"] {
                    let _ = m.token_fetches.remove_label_values(&[name, result]);
                }
            }
        }
        *running = kept;
    }
}
