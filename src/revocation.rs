//! Revocations shared by replicas through Redis (SPEC §16, `revocation: {store: redis}`, in
//! the Redis of `rate_limit_store`).
//!
//! A revocation is written as a key expiring when its token could no longer verify:
//! `ords-guard:revoked:{jti}` = `"{until} {client}"`, or for a client past its bound
//! `ords-guard:revoked-client:{client}` = `"{until} {iat}"`. Each replica reads every such
//! key into its own list ([`crate::tokens::revoked::REVOKED`]) once a second on the
//! background runtime, so the request path never waits on Redis and a revocation anywhere
//! is refused everywhere within about a second; a replica that starts is not ready until
//! its first read is done.

use crate::ratelimit::shared::StoreSettings;
use crate::tokens::revoked::{Revoked, REVOKED};
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN_KEYS: &str = "ords-guard:revoked:";
const CLIENT_KEYS: &str = "ords-guard:revoked-client:";
/// How often a replica reads the revocations (SPEC: every replica within 2 s).
const EVERY: Duration = Duration::from_secs(1);
/// One read of every revocation, or one write, is bounded by this.
const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys asked for per SCAN and MGET.
const BATCH: usize = 500;

struct Shared {
    url: String,
    manager: ConnectionManager,
    task: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The process's view of the shared revocations; none unless configured.
pub struct RevocationStore {
    current: ArcSwapOption<Shared>,
    /// No shared store, or its first read since it was configured is done (readiness
    /// waits for it).
    loaded: Arc<AtomicBool>,
}

impl Default for RevocationStore {
    fn default() -> Self {
        RevocationStore {
            current: ArcSwapOption::empty(),
            loaded: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl RevocationStore {
    /// Follow a registry generation: start reading the store `settings` names (when
    /// revocations are kept in Redis), stop when they are not.
    pub fn sync(&self, settings: Option<&StoreSettings>) {
        let same = match (self.current.load().as_deref(), settings) {
            (Some(c), Some(s)) => c.url == s.url,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let Some(s) = settings else {
            self.current.store(None);
            self.loaded.store(true, Ordering::Release);
            return;
        };
        // A new store's revocations are read before the replica is ready again (the list
        // keeps what the old one held).
        self.loaded.store(false, Ordering::Release);
        match open(s, self.loaded.clone()) {
            Ok(shared) => self.current.store(Some(Arc::new(shared))),
            Err(e) => {
                tracing::error!(target: "ords_guard::token", store = %s.redacted(), "cannot use the revocation store: {e}; this replica stays not ready");
                self.current.store(None);
            }
        }
    }

    /// Whether the revocations are in (always, without a shared store).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Write a revocation this process made for the others; `Err` when the store did not
    /// take it in time (the revocation holds here regardless).
    pub async fn publish(&self, client: &str, what: &Revoked) -> Result<(), String> {
        let Some(shared) = self.current.load_full() else {
            return Ok(());
        };
        let (key, value, until) = match what {
            Revoked::Already => return Ok(()),
            Revoked::Token { jti, until } => (
                format!("{TOKEN_KEYS}{jti}"),
                format!("{until} {client}"),
                *until,
            ),
            Revoked::Watermark { iat, until } => (
                format!("{CLIENT_KEYS}{client}"),
                format!("{until} {iat}"),
                *until,
            ),
        };
        let mut manager = shared.manager.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(&value)
            .arg("PXAT")
            .arg(until.saturating_add(1).saturating_mul(1000));
        let set = cmd.query_async::<()>(&mut manager);
        match tokio::time::timeout(ROUND_TIMEOUT, set).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", ROUND_TIMEOUT.as_millis())),
        }
    }
}

/// Connect (lazily) and start the reading task on the background runtime.
fn open(s: &StoreSettings, loaded: Arc<AtomicBool>) -> Result<Shared, String> {
    let client = redis::Client::open(s.url.as_str()).map_err(|e| e.to_string())?;
    let rt = crate::background::handle()?;
    let _entered = rt.enter();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(ROUND_TIMEOUT))
        .set_max_delay(Duration::from_secs(2));
    let manager =
        ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
    let reader = manager.clone();
    let store = s.redacted();
    let task = rt
        .spawn(async move {
            let mut failing = false;
            loop {
                match tokio::time::timeout(ROUND_TIMEOUT, read_all(reader.clone())).await {
                    Ok(Ok(n)) => {
                        if !loaded.swap(true, Ordering::AcqRel) || failing {
                            tracing::info!(target: "ords_guard::token", %store, revocations = n, "revocations read from the shared store");
                        }
                        failing = false;
                    }
                    Ok(Err(e)) if !failing => {
                        failing = true;
                        tracing::warn!(target: "ords_guard::token", %store, "cannot read the shared revocations ({e}); retrying every second");
                    }
                    Err(_) if !failing => {
                        failing = true;
                        tracing::warn!(target: "ords_guard::token", %store, "cannot read the shared revocations (no answer within 2 s); retrying every second");
                    }
                    _ => {}
                }
                tokio::time::sleep(EVERY).await;
            }
        })
        .abort_handle();
    Ok(Shared {
        url: s.url.clone(),
        manager,
        task,
    })
}

/// Read every revocation into this process's list; how many were read.
async fn read_all(mut con: ConnectionManager) -> redis::RedisResult<usize> {
    let now = crate::tokens::token::now();
    let mut cursor = 0u64;
    let mut read = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("ords-guard:revoked*")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
            for (key, value) in keys.iter().zip(values) {
                if let Some(v) = value {
                    read += usize::from(learn(key, &v, now));
                }
            }
        }
        if next == 0 {
            return Ok(read);
        }
        cursor = next;
    }
}

/// One key and its value into the list; false when it is not one of ours.
fn learn(key: &str, value: &str, now: u64) -> bool {
    let Some((until, rest)) = value.split_once(' ') else {
        return false;
    };
    let Ok(until) = until.parse::<u64>() else {
        return false;
    };
    if let Some(jti) = key.strip_prefix(TOKEN_KEYS) {
        REVOKED.restore(rest, jti, until, now);
        true
    } else if let Some(client) = key.strip_prefix(CLIENT_KEYS) {
        match rest.parse::<u64>() {
            Ok(iat) => {
                REVOKED.watermark(client, iat, until);
                true
            }
            Err(_) => false,
        }
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_strictly() {
        assert!(learn(
            "ords-guard:revoked:jti-1",
            "2000000000 client one",
            0
        ));
        assert!(REVOKED.is_revoked("client one", "jti-1", 0, 1_999_999_999));
        assert!(learn("ords-guard:revoked-client:busy", "2000000000 77", 0));
        assert!(REVOKED.is_revoked("busy", "any", 77, 5));
        assert!(!REVOKED.is_revoked("busy", "any", 78, 5));
        for (key, value) in [
            ("ords-guard:revoked:j", "soon client"),
            ("ords-guard:revoked:j", "2000000000"),
            ("ords-guard:revoked-client:c", "2000000000 x"),
            ("ords-guard:rl:limit:key", "1 2"),
        ] {
            assert!(!learn(key, value, 0), "{key} {value}");
        }
    }
}
