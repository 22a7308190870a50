//! Revocations shared by replicas through Redis (SPEC §16, `revocation: {store: redis}`, in
//! the Redis of `rate_limit_store`).
//!
//! A revocation is recorded as a key expiring with its token (`ords-guard:revoked:{jti}`,
//! holding the client id) and, for the replicas to read without walking the keyspace, as a
//! member of one sorted set scored by the time it lapses (`ords-guard:revocations`:
//! `t {jti} {client}` for a token, `w {iat} {client}` for a client's watermark past its
//! bound; every member is kept, so concurrent watermarks merge on reading). Each replica
//! reads the live members once a second on the background runtime, on a connection it
//! drops after any failure (a dead path is replaced within a second), so the request path
//! never waits on Redis and a revocation anywhere is refused everywhere within 2 s; a
//! replica that starts is not ready until its first read is done.

use crate::ratelimit::shared::StoreSettings;
use crate::tokens::revoked::{Revoked, REVOKED};
use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN_KEYS: &str = "ords-guard:revoked:";
const INDEX: &str = "ords-guard:revocations";
/// How often a replica reads the revocations, and how long one read may take: a
/// revocation is refused everywhere within their sum (SPEC: 2 s).
const EVERY: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_millis(900);
/// One write of a revocation is bounded by this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

struct Shared {
    url: String,
    client: redis::Client,
    task: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The process's view of the shared revocations.
pub struct RevocationStore {
    current: ArcSwapOption<Shared>,
    /// False from the first time a shared store is configured until one read of it is
    /// done: readiness waits for it once, when the replica starts (a reload that moves the
    /// store leaves the replicas ready).
    loaded: Arc<AtomicBool>,
    gated: AtomicBool,
}

impl Default for RevocationStore {
    fn default() -> Self {
        RevocationStore {
            current: ArcSwapOption::empty(),
            loaded: Arc::new(AtomicBool::new(true)),
            gated: AtomicBool::new(false),
        }
    }
}

impl RevocationStore {
    /// Follow a registry generation: read the store `settings` names (when revocations are
    /// kept in Redis), stop when they are not.
    pub fn sync(&self, settings: Option<&StoreSettings>) {
        let current = self.current.load().as_deref().map(|c| c.url.clone());
        if !crate::ratelimit::shared::moves(current.as_deref(), settings) {
            return;
        }
        let Some(s) = settings else {
            self.current.store(None);
            return;
        };
        if !self.gated.swap(true, Ordering::AcqRel) {
            self.loaded.store(false, Ordering::Release);
        }
        match open(s, self.loaded.clone()) {
            Ok(shared) => self.current.store(Some(Arc::new(shared))),
            Err(e) => {
                tracing::error!(target: "ords_guard::token", store = %s.redacted(), "cannot use the revocation store: {e}");
                self.current.store(None);
            }
        }
    }

    /// Whether the revocations are in (always, without a shared store).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Record a revocation of `client`'s for the other replicas (again, when it was made
    /// before: a client retrying after a failure must reach them). `Err` when the store did
    /// not take it in time; the revocation holds here regardless.
    pub async fn publish(&self, client: &str, what: &Revoked) -> Result<(), String> {
        let Some(shared) = self.current.load_full() else {
            return Err("no connection to the revocation store".into());
        };
        let now = crate::tokens::token::now();
        let (member, until, key) = match what {
            Revoked::Token { jti, until } => (
                format!("t {jti} {client}"),
                *until,
                Some(format!("{TOKEN_KEYS}{jti}")),
            ),
            Revoked::Watermark { iat, until } => (format!("w {iat} {client}"), *until, None),
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(key) = &key {
            // Relative, so a Redis older than 6.2 takes it and its clock does not matter.
            let ms = until
                .saturating_sub(now)
                .saturating_add(1)
                .saturating_mul(1000);
            pipe.cmd("SET")
                .arg(key)
                .arg(client)
                .arg("PX")
                .arg(ms)
                .ignore();
        }
        pipe.cmd("ZADD").arg(INDEX).arg(until).arg(&member).ignore();
        let write = async {
            let mut con = shared.client.get_multiplexed_async_connection().await?;
            pipe.query_async::<()>(&mut con).await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", WRITE_TIMEOUT.as_millis())),
        }
    }
}

/// Start the reading task on the background runtime.
fn open(s: &StoreSettings, loaded: Arc<AtomicBool>) -> Result<Shared, String> {
    let client = redis::Client::open(s.url.as_str()).map_err(|e| e.to_string())?;
    let rt = crate::background::handle()?;
    let reader = client.clone();
    let store = s.redacted();
    let task = rt
        .spawn(async move {
            let mut con: Option<MultiplexedConnection> = None;
            let mut failing = false;
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let round = async {
                    let c = match con.take() {
                        Some(c) => c,
                        None => reader.get_multiplexed_async_connection().await?,
                    };
                    let mut c2 = c.clone();
                    let n = read_all(&mut c2).await?;
                    Ok::<_, redis::RedisError>((c, n))
                };
                let error = match tokio::time::timeout(READ_TIMEOUT, round).await {
                    Ok(Ok((c, n))) => {
                        con = Some(c);
                        if !loaded.swap(true, Ordering::AcqRel) || failing {
                            tracing::info!(target: "ords_guard::token", %store, revocations = n, "revocations read from the shared store");
                        }
                        failing = false;
                        continue;
                    }
                    // The connection is dropped: the next round opens another.
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {} ms", READ_TIMEOUT.as_millis()),
                };
                if !failing {
                    failing = true;
                    tracing::warn!(target: "ords_guard::token", %store, "cannot read the shared revocations ({error}); retrying every second");
                }
            }
        })
        .abort_handle();
    Ok(Shared {
        url: s.url.clone(),
        client,
        task,
    })
}

/// Read every live revocation into this process's list, dropping lapsed ones from the
/// index; how many were read.
async fn read_all(con: &mut MultiplexedConnection) -> redis::RedisResult<usize> {
    let now = crate::tokens::token::now();
    redis::cmd("ZREMRANGEBYSCORE")
        .arg(INDEX)
        .arg("-inf")
        .arg(format!("({now}"))
        .query_async::<()>(con)
        .await?;
    let live: Vec<(String, u64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(INDEX)
        .arg(now)
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(con)
        .await?;
    Ok(live
        .iter()
        .filter(|(member, until)| learn(&format!("{until} {member}"), now))
        .count())
}

/// One index entry (`{until} t {jti} {client}` or `{until} w {iat} {client}`) into the
/// list; false when it is not one of ours.
fn learn(entry: &str, now: u64) -> bool {
    let mut parts = entry.splitn(4, ' ');
    let (Some(until), Some(kind), Some(what), Some(client)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(until) = until.parse::<u64>() else {
        return false;
    };
    match kind {
        "t" => REVOKED.restore(client, what, until, now),
        "w" => match what.parse::<u64>() {
            Ok(iat) => REVOKED.watermark(client, iat, until),
            Err(_) => return false,
        },
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_are_read_strictly() {
        assert!(learn("2000000000 t jti-1 client one", 0));
        assert!(REVOKED.is_revoked("client one", "jti-1", 0, 1_999_999_999));
        assert!(learn("2000000000 w 77 busy: client", 0));
        assert!(REVOKED.is_revoked("busy: client", "any", 77, 5));
        assert!(!REVOKED.is_revoked("busy: client", "any", 78, 5));
        for entry in [
            "soon t j client",
            "2000000000 t j",
            "2000000000 w x client",
            "2000000000 x j client",
            "",
        ] {
            assert!(!learn(entry, 0), "{entry}");
        }
    }
}
