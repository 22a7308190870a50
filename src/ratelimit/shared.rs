//! The shared store (SPEC §13 `store: redis`): every replica of a Deployment counts in one
//! Redis, so a client's limit holds across replicas. One round trip per request: a Lua
//! script (loaded once, run with EVALSHA) applies GCRA to every applicable limit on Redis'
//! own clock, all or nothing, and sets each key to expire when its bucket is full again.
//!
//! The connection is the `redis` crate's `ConnectionManager`: created without connecting
//! (the proxy starts without the store), one multiplexed connection. Each proxy thread has
//! its own, made on its own runtime by its first check: a check then never wakes another
//! thread (measured: with one manager on the background runtime, the two hops cost ~33 µs
//! of CPU per request, more than Redis' own work). Each check is bounded by `timeout_ms`
//! here, not by the crate's response timeout, so a slow answer is an error for `on_error`
//! and not a reconnect.
//!
//! One health view for every thread ([`Health`]): the first check whose connection breaks
//! (refused, dropped, or five checks in a row without an answer in time: one slow answer
//! leaves the connections as they are) marks
//! the store broken and starts a background probe; the first answer after that, to the
//! probe or to any thread's check, is a recovery, and every thread's next check starts a
//! fresh connection. Left to each thread's manager, a thread whose reconnect was sleeping in its
//! backoff when Redis came back kept failing checks for up to that backoff (2 s) while the
//! others were counted.

use crate::config::OnStoreError;
use arc_swap::ArcSwapOption;
use prometheus::{Histogram, IntCounter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// KEYS[i]: `ords-guard:rl:NAME:KEY`; ARGV[3i-2], ARGV[3i-1], ARGV[3i]: the limit's
/// interval (µs), burst and shape. A key holds "TAT SHAPE": a TAT stored under another
/// shape (the limit was changed by a reload) reads as a full bucket. Times are µs from
/// Redis `TIME`, exact in Lua's doubles. Refused: `{0, i, retry_in, full_in}` with nothing
/// written; else `{1, i, remaining, full_in}` for the limit `i` with the least remaining.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local next_tat = {}
for i = 1, n do
  local interval = tonumber(ARGV[3 * i - 2])
  local window = interval * tonumber(ARGV[3 * i - 1])
  local tat = now
  local v = redis.call('GET', KEYS[i])
  if v then
    local sp = string.find(v, ' ', 1, true)
    if sp and string.sub(v, sp + 1) == ARGV[3 * i] then
      local stored = tonumber(string.sub(v, 1, sp - 1))
      if stored and stored > now then tat = stored end
    end
  end
  local nxt = tat + interval
  if now < nxt - window then
    return {0, i, nxt - window - now, tat - now}
  end
  next_tat[i] = nxt
end
local least, least_left, least_full = 0, -1, 0
for i = 1, n do
  local interval = tonumber(ARGV[3 * i - 2])
  local window = interval * tonumber(ARGV[3 * i - 1])
  local nxt = next_tat[i]
  redis.call('SET', KEYS[i], string.format('%.0f', nxt) .. ' ' .. ARGV[3 * i],
    'PX', math.ceil((nxt - now) / 1000))
  local left = math.floor((now + window - nxt) / interval)
  if least_left < 0 or left < least_left then
    least, least_left, least_full = i, left, nxt - now
  end
end
return {1, least, least_left, least_full}
"#;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// A burst's depth in µs is kept under 2^47 (4.4 years) so that `now + window` stays
/// exact in Lua's doubles.
const MAX_WINDOW_US: u64 = 1 << 47;

/// The compiled `rate_limit_store`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// May hold a password: never logged (see [`StoreSettings::redacted`]).
    pub url: String,
    pub timeout: Duration,
    pub on_error: OnStoreError,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.redacted())
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl StoreSettings {
    /// The URL without user and password, for logs.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => "(not a URL)".into(),
    }
}

/// One applicable limit, as the script takes it.
pub struct Take<'a> {
    pub name: &'a str,
    pub key: &'a str,
    /// Nanoseconds between two requests at the sustained rate.
    pub interval_ns: u64,
    pub burst: u64,
    /// What a reload must keep for the count to carry on (rate, per, burst, by).
    pub shape: &'a str,
}

/// What the script decided; `index` is the position in the takes passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Allowed {
        index: usize,
        remaining: u64,
        full_in_us: u64,
    },
    Refused {
        index: usize,
        retry_in_us: u64,
        full_in_us: u64,
    },
}

/// The script's arguments for one limit: interval in µs (at least 1) and a burst whose
/// depth stays exact in Lua.
fn script_args(interval_ns: u64, burst: u64) -> (u64, u64) {
    let interval = interval_ns.div_ceil(1000).max(1);
    (interval, burst.clamp(1, (MAX_WINDOW_US / interval).max(1)))
}

/// The script's reply, read strictly: anything else is a store error, never a guess.
pub fn parse_reply(v: &Value, takes: usize) -> Result<Reply, String> {
    let bad = || format!("unexpected reply from the rate-limit script: {v:?}");
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let mut n = [0u64; 4];
    if items.len() != 4 {
        return Err(bad());
    }
    for (slot, item) in n.iter_mut().zip(items) {
        match item {
            Value::Int(i) if *i >= 0 => *slot = *i as u64,
            _ => return Err(bad()),
        }
    }
    let [allowed, i, a, b] = n;
    if !(1..=takes as u64).contains(&i) {
        return Err(bad());
    }
    let index = (i - 1) as usize;
    match allowed {
        1 => Ok(Reply::Allowed {
            index,
            remaining: a,
            full_in_us: b,
        }),
        0 => Ok(Reply::Refused {
            index,
            retry_in_us: a,
            full_in_us: b,
        }),
        _ => Err(bad()),
    }
}

/// Why a check got no answer; the proxy then follows `on_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The limits name a store whose URL could not be opened (logged at load).
    NotConfigured,
    TimedOut(Duration),
    /// The connection failed (refused, dropped, not connected in time).
    Broken(String),
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotConfigured => f.write_str("no connection to the rate-limit store"),
            StoreError::TimedOut(t) => write!(f, "no answer within {} ms", t.as_millis()),
            StoreError::Broken(e) | StoreError::Failed(e) => f.write_str(e),
        }
    }
}

/// What the proxy threads connect with.
struct Connection {
    /// What it was opened with: a reload that changes it opens another.
    url: String,
    /// Tells the threads' managers of an older connection (another URL) from this one's.
    generation: u64,
    client: redis::Client,
    config: ConnectionManagerConfig,
}

static GENERATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's manager and the generation and recovery it was made for. A thread
    /// that sees no more checks keeps its old one (one idle connection) until it sees one.
    static THREAD_MANAGER: RefCell<Option<(u64, u64, ConnectionManager)>> = const { RefCell::new(None) };
}

impl Connection {
    /// This thread's manager for this connection, made (lazily, spawning on the current
    /// runtime) when the thread has none, or one for an older connection or made before
    /// the store's last recovery.
    fn manager(&self, recovery: u64) -> Result<ConnectionManager, String> {
        THREAD_MANAGER.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some((generation, made_at, manager)) = slot.as_ref() {
                if *generation == self.generation && *made_at == recovery {
                    return Ok(manager.clone());
                }
            }
            let manager =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .map_err(|e| e.to_string())?;
            *slot = Some((self.generation, recovery, manager.clone()));
            Ok(manager)
        })
    }
}

/// Whether the store answers, as every thread sees it.
struct Health {
    /// False from a failed check until a check or the probe gets an answer (an outage is
    /// logged once).
    answering: AtomicBool,
    /// A check's connection broke since the last recovery: a probe runs.
    broken: AtomicBool,
    /// Checks in a row that got no answer in time: a few are a slow store, more a dead
    /// path (a silently dropped connection is never reported broken).
    timeouts: std::sync::atomic::AtomicU32,
    /// Times the store came back after a break: a thread's manager made before the last
    /// one is replaced.
    recoveries: AtomicU64,
}

impl Health {
    /// The store answers: after a break, every thread's next check starts a fresh
    /// connection.
    fn answered(&self, store: &str) {
        // The recovery first: a thread that sees `answering` sees it too.
        if self.broken.swap(false, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::AcqRel);
        }
        if !self.answering.swap(true, Ordering::AcqRel) {
            tracing::info!(target: "ords_guard::rate_limit", %store, "the rate-limit store answers again");
        }
    }
}

/// Waits between probes of a store that is down: quick at first (a restart is over in
/// moments), then no more often than this.
const PROBE_FIRST: Duration = Duration::from_millis(25);
const PROBE_MAX: Duration = Duration::from_millis(500);
/// Checks in a row without an answer in time that count as a broken connection.
const TIMEOUTS_DEAD: u32 = 5;
/// One probe (connect and load the script) is bounded by this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared store's connection, owned by the process (not the registry generation, so a
/// reload that keeps the URL keeps the connection).
pub struct SharedStore {
    current: Arc<ArcSwapOption<Connection>>,
    /// Failures are logged when it turns, not each.
    health: Arc<Health>,
    errors: IntCounter,
    duration: Histogram,
}

impl SharedStore {
    pub fn new(errors: IntCounter, duration: Histogram) -> SharedStore {
        SharedStore {
            current: Arc::new(ArcSwapOption::empty()),
            health: Arc::new(Health {
                answering: AtomicBool::new(true),
                broken: AtomicBool::new(false),
                timeouts: std::sync::atomic::AtomicU32::new(0),
                recoveries: AtomicU64::new(0),
            }),
            errors,
            duration,
        }
    }

    /// Follow a new registry generation: open a connection when the URL is new or changed,
    /// close it when no limit uses the store any more.
    pub fn sync(&self, settings: Option<&StoreSettings>) {
        if !moves(
            self.current.load().as_deref().map(|c| c.url.as_str()),
            settings,
        ) {
            return;
        }
        let next = settings.and_then(|s| match open(s) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::error!(target: "ords_guard::rate_limit", store = %s.redacted(), "cannot use the rate-limit store: {e}; limits with store: redis follow on_error");
                None
            }
        });
        // A new connection is tried at once (a running probe follows it).
        self.current.store(next);
        self.health.answering.store(true, Ordering::Release);
    }

    /// Run the script for `takes` (at least one), bounded by `settings.timeout`. Errors
    /// are counted and logged (once per outage).
    pub async fn take(
        &self,
        takes: &[Take<'_>],
        settings: &StoreSettings,
    ) -> Result<Reply, StoreError> {
        let result = self.round_trip(takes, settings.timeout).await;
        let health = &self.health;
        match &result {
            Ok(_)
                if health.broken.load(Ordering::Acquire)
                    || !health.answering.load(Ordering::Acquire) =>
            {
                health.timeouts.store(0, Ordering::Relaxed);
                health.answered(&settings.redacted());
            }
            Ok(_) => health.timeouts.store(0, Ordering::Relaxed),
            Err(e) => {
                self.errors.inc();
                if self.health.answering.swap(false, Ordering::AcqRel) {
                    let follow = match settings.on_error {
                        OnStoreError::Allow => "forwarded without counting",
                        OnStoreError::Deny => "refused with 503",
                    };
                    tracing::warn!(target: "ords_guard::rate_limit", store = %settings.redacted(), "rate-limit store unavailable ({e}): requests its limits count are {follow} (on_error: {}) until it answers", settings.on_error.as_str());
                }
                let dead = match e {
                    StoreError::Broken(_) => true,
                    StoreError::TimedOut(_) => {
                        health.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_DEAD
                    }
                    _ => false,
                };
                if dead && !health.broken.swap(true, Ordering::AcqRel) {
                    self.probe(settings.redacted());
                }
            }
        }
        result
    }

    /// Until the store (the current connection's, as reloads move it) takes the script on
    /// a fresh connection, or a check gets an answer first, or no limit uses the store.
    fn probe(&self, store: String) {
        let Ok(rt) = crate::background::handle() else {
            return;
        };
        let (health, current) = (self.health.clone(), self.current.clone());
        rt.spawn(async move {
            let mut wait = PROBE_FIRST;
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(PROBE_MAX);
                let Some(conn) = current.load_full() else {
                    health.broken.store(false, Ordering::Release);
                    return;
                };
                if !health.broken.load(Ordering::Acquire) {
                    return;
                }
                // Loading the script: what a check needs (a server that refuses scripts
                // stays down rather than flapping), and after a restart it is loaded again.
                let load = async {
                    let mut c = conn.client.get_multiplexed_async_connection().await?;
                    GCRA.load_async(&mut c).await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, load).await {
                    health.answered(&store);
                    return;
                }
            }
        });
    }

    async fn round_trip(&self, takes: &[Take<'_>], timeout: Duration) -> Result<Reply, StoreError> {
        let Some(conn) = self.current.load_full() else {
            return Err(StoreError::NotConfigured);
        };
        let recovery = self.health.recoveries.load(Ordering::Acquire);
        let mut invocation = GCRA.prepare_invoke();
        for t in takes {
            let (interval, burst) = script_args(t.interval_ns, t.burst);
            invocation
                .key(format!("ords-guard:rl:{}:{}", t.name, t.key))
                .arg(interval)
                .arg(burst)
                .arg(t.shape);
        }
        let mut manager = conn.manager(recovery).map_err(StoreError::Failed)?;
        let started = Instant::now();
        let answer =
            tokio::time::timeout(timeout, invocation.invoke_async::<Value>(&mut manager)).await;
        self.duration.observe(started.elapsed().as_secs_f64());
        match answer {
            Err(_) => Err(StoreError::TimedOut(timeout)),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout() =>
            {
                Err(StoreError::Broken(e.to_string()))
            }
            Ok(Err(e)) => Err(StoreError::Failed(e.to_string())),
            Ok(Ok(v)) => parse_reply(&v, takes.len()).map_err(StoreError::Failed),
        }
    }
}

/// Whether a generation's store settings `next` move away from the store open at URL
/// `current`: another URL, or a store opened or closed.
pub fn moves(current: Option<&str>, next: Option<&StoreSettings>) -> bool {
    match (current, next) {
        (Some(c), Some(n)) => c != n.url,
        (None, None) => false,
        _ => true,
    }
}

/// What the threads connect to `s` with; a background task connects once at once (loading
/// the script) and logs whether the store answers, then lets that connection go.
fn open(s: &StoreSettings) -> Result<Connection, String> {
    let client = redis::Client::open(s.url.as_str()).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(6);
    let rt = crate::background::handle()?;
    // The manager spawns its tasks on the runtime it is created in.
    let _entered = rt.enter();
    let mut warm = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| e.to_string())?;
    let store = s.redacted();
    rt.spawn(async move {
        match tokio::time::timeout(Duration::from_secs(10), GCRA.load_async(&mut warm)).await {
            Ok(Ok(_)) => tracing::info!(target: "ords_guard::rate_limit", %store, "connected to the rate-limit store"),
            Ok(Err(e)) => tracing::warn!(target: "ords_guard::rate_limit", %store, "the rate-limit store does not answer yet ({e}); limits with store: redis follow on_error until it does"),
            Err(_) => tracing::warn!(target: "ords_guard::rate_limit", %store, "the rate-limit store does not answer yet (no answer within 10 s); limits with store: redis follow on_error until it does"),
        }
    });
    Ok(Connection {
        url: s.url.clone(),
        generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        client,
        config,
    })
}

/// Whether `url` is one the store can open: `redis://` or `rediss://` with a host. The
/// message never repeats the URL (it may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL such as redis://127.0.0.1:6379/0".to_string())?;
    match uri.scheme_str() {
        Some("redis" | "rediss") if uri.host().is_some_and(|h| !h.is_empty()) => {}
        Some("redis" | "rediss") => return Err("the URL names no host".into()),
        _ => return Err("the URL must start with redis:// or rediss:// (TLS)".into()),
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("not a Redis URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_strictly() {
        let arr = |xs: &[i64]| Value::Array(xs.iter().map(|x| Value::Int(*x)).collect());
        assert_eq!(
            parse_reply(&arr(&[1, 2, 7, 1_500_000]), 2),
            Ok(Reply::Allowed {
                index: 1,
                remaining: 7,
                full_in_us: 1_500_000
            })
        );
        assert_eq!(
            parse_reply(&arr(&[0, 1, 10, 20]), 1),
            Ok(Reply::Refused {
                index: 0,
                retry_in_us: 10,
                full_in_us: 20
            })
        );
        for bad in [
            arr(&[1, 3, 0, 0]),  // no third limit
            arr(&[1, 0, 0, 0]),  // Lua counts from 1
            arr(&[2, 1, 0, 0]),  // neither verdict
            arr(&[1, 1, -1, 0]), // negative
            arr(&[1, 1, 0]),
            Value::Nil,
            Value::SimpleString("OK".into()),
            Value::Array(vec![
                Value::Int(1),
                Value::Nil,
                Value::Int(0),
                Value::Int(0),
            ]),
        ] {
            assert!(parse_reply(&bad, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn script_arguments_stay_exact() {
        assert_eq!(script_args(500_000_000, 3), (500_000, 3));
        assert_eq!(script_args(1, 10), (1, 10), "sub-µs intervals become 1 µs");
        let (i, b) = script_args(3_600_000_000_000, u64::MAX); // 1/hour, absurd burst
        assert!(i * b <= MAX_WINDOW_US);
        assert_eq!(script_args(u64::MAX, 5).1, 1);
    }

    #[test]
    fn urls_are_checked_and_never_echoed() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://redis.svc:6380").is_ok());
        assert!(check_url("redis://:pw@redis:6379/1").is_ok());
        for bad in [
            "http://x",
            "redis://",
            "not a url",
            "redis://:hunter2@h:6379/notadb",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let s = StoreSettings {
            url: "rediss://user:hunter2@redis.svc:6380/0".into(),
            timeout: Duration::from_millis(20),
            on_error: OnStoreError::Allow,
        };
        assert_eq!(s.redacted(), "rediss://redis.svc:6380/0");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
