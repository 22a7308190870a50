//! The calls to an identity provider's RFC 7662 endpoint (SPEC §16): one per token however
//! many requests carry it at once, each on the background runtime (a client that goes away
//! does not cancel it), bounded in time (5 s), size (64 KiB), concurrency (16) and rate (a
//! bucket of 100 refilled at 100 a second); a call beyond a bound is not made. What the
//! answers mean and how long they are remembered is `introspection`'s.

use super::introspection::{self, Bucket, Cache, Key, Unusable, Verdict};
use super::issuer::Issuer;
use super::token::now;
use crate::config::EgressAuth;
use crate::outbound::{self, SecretFile, Trust};
use prometheus::{IntCounter, IntCounterVec, Opts};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// One call, connect to last byte.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Calls in flight at once, per entry.
pub const MAX_CONCURRENT: usize = 16;
/// The bucket of calls: capacity, and refill per second.
pub const RATE: u32 = 100;

/// `ords_guard_introspections_total{issuer,result}` (SPEC §16).
pub static INTROSPECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "ords_guard_introspections_total",
            "Opaque tokens checked at an identity provider's introspection endpoint, by result: active, inactive (refused), failure (no usable answer, or a call over the bounds not made), cached (answered without a call of its own).",
        ),
        &["issuer", "result"],
    )
    .expect("metric")
});

/// What an entry's `introspection` settles, compared on reload: an unchanged entry keeps
/// its remembered answers and its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub client_id: String,
    pub secret_file: PathBuf,
    pub auth: EgressAuth,
    pub cache_seconds: u64,
    pub trust: Trust,
}

/// Why a token could not be checked (503 `issuer_unavailable`). Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

type Outcome = Result<Verdict, Unavailable>;

struct Counts {
    active: IntCounter,
    inactive: IntCounter,
    failure: IntCounter,
    cached: IntCounter,
}

/// The calls an entry may make: 16 at once, a bucket of 100 refilled at 100 a second.
/// Shared by the generations of an entry of the same name, so a reload never grants a
/// second allowance while the first generation's calls still run.
pub struct Bounds {
    busy: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
}

impl Bounds {
    fn new() -> Bounds {
        Bounds {
            busy: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            bucket: Mutex::new(Bucket::full(RATE, RATE, Instant::now())),
        }
    }
}

/// An introspecting `issuers[]` entry at run time.
pub struct Introspector {
    pub settings: Settings,
    /// The entry's claim rules, as its answers are read.
    issuer: Issuer,
    /// Or why there is none (no system CA certificates): each call then fails with that,
    /// as a JWKS fetch does, rather than the config being refused.
    client: Result<reqwest::Client, String>,
    secret: SecretFile,
    cache: Cache,
    /// The calls in flight, by token hash, and when each one's 5 s are up: later requests
    /// with the same token wait on it.
    flights: Mutex<HashMap<Key, (watch::Receiver<Option<Outcome>>, tokio::time::Instant)>>,
    bounds: Arc<Bounds>,
    counts: Counts,
    /// When a failure was last logged, and how many were not since: one line a second.
    logged: Mutex<(Option<Instant>, u64)>,
}

impl Introspector {
    pub fn new(issuer: Issuer, settings: Settings) -> Introspector {
        let client = outbound::client(
            &outbound::Tls::trusting(settings.trust.clone()),
            CALL_TIMEOUT,
        );
        let count =
            |result: &str| INTROSPECTIONS.with_label_values(&[issuer.name.as_str(), result]);
        Introspector {
            counts: Counts {
                active: count("active"),
                inactive: count("inactive"),
                failure: count("failure"),
                cached: count("cached"),
            },
            secret: SecretFile::new(settings.secret_file.clone()),
            settings,
            issuer,
            client,
            cache: Cache::default(),
            flights: Mutex::new(HashMap::new()),
            bounds: Arc::new(Bounds::new()),
            logged: Mutex::new((None, 0)),
        }
    }

    /// Take over `old`'s bounds (the same entry before a reload that changed it).
    pub fn share_bounds(&mut self, old: &Introspector) {
        self.bounds = old.bounds.clone();
    }

    /// Whether `other` (the entry compiled again by a reload) reads answers the same way.
    pub fn same(&self, issuer: &Issuer, settings: &Settings) -> bool {
        self.settings == *settings && self.issuer == *issuer
    }

    /// The remembered answer about `token` at `now`, counted as `cached`. The decision
    /// reads it on every request, so what the answer opens is decided afresh each time.
    pub fn cached(&self, token: &str, now: u64) -> Option<Verdict> {
        let v = self.cache.get(&introspection::key(token), now)?;
        self.counts.cached.inc();
        Some(v)
    }

    /// Remember `verdict` about `token` as an answer would: for the decision's unit tests
    /// and the criterion bench, which have no provider to ask.
    #[doc(hidden)]
    pub fn remember(&self, token: &str, verdict: Verdict, until: u64) {
        self.cache
            .insert(introspection::key(token), verdict, until, now());
    }

    /// The remembered answer, uncounted (for `explain`).
    pub fn peek(&self, token: &str, now: u64) -> Option<Verdict> {
        self.cache.get(&introspection::key(token), now)
    }

    /// Ask the provider about `token`, or join the call already asking; the answer is
    /// remembered for [`Introspector::cached`]. Every request waits at most until the call's
    /// own 5 s are up, however late it joined or however busy the runtime making it is.
    pub async fn check(self: &Arc<Self>, token: &str) -> Outcome {
        let key = introspection::key(token);
        let (mut rx, deadline, joined) = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some((rx, deadline)) => (rx.clone(), *deadline, true),
                None => {
                    if let Some(v) = self.cache.get(&key, now()) {
                        // Answered between the decision's look and this one.
                        self.counts.cached.inc();
                        return Ok(v);
                    }
                    let rx = self.start(key, token)?;
                    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
                    flights.insert(key, (rx.clone(), deadline));
                    (rx, deadline, false)
                }
            }
        };
        let answered = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.clone()));
        let timed_out = answered.is_none();
        if timed_out {
            // The call ended without a word (its task gone): no later request may wait on it.
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights
                .get(&key)
                .is_some_and(|(rx, _)| rx.has_changed().is_err())
            {
                flights.remove(&key);
            }
        }
        let outcome = answered.unwrap_or_else(|| {
            Err(Unavailable(format!(
                "the introspection endpoint did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            )))
        });
        // A call's answer is counted once, by its task (`active`, `inactive`); every request
        // left without one is a `failure`, whoever made the call; a request that shared an
        // answer is `cached`.
        match (&outcome, joined) {
            (Ok(_), true) => self.counts.cached.inc(),
            (Ok(_), false) => {}
            (Err(_), _) => self.counts.failure.inc(),
        }
        if timed_out {
            self.log_failure("no answer within the call's 5 s");
        }
        outcome
    }

    /// Start one call, within the bounds, on the background runtime. Called with
    /// `flights` held, so two requests never start two calls for one token.
    fn start(
        self: &Arc<Self>,
        key: Key,
        token: &str,
    ) -> Result<watch::Receiver<Option<Outcome>>, Unavailable> {
        let over = |why: String| {
            self.counts.failure.inc();
            self.log_failure(&why);
            Err(Unavailable(why))
        };
        let Ok(permit) = self.bounds.busy.clone().try_acquire_owned() else {
            return over(format!(
                "{MAX_CONCURRENT} introspection calls are already in flight"
            ));
        };
        {
            let mut bucket = self.bounds.bucket.lock().unwrap_or_else(|e| e.into_inner());
            if !bucket.take(Instant::now()) {
                return over(format!("over {RATE} introspection calls a second"));
            }
        }
        let runtime = match crate::background::handle() {
            Ok(h) => h,
            Err(e) => return over(e),
        };
        let (tx, rx) = watch::channel(None);
        let this = self.clone();
        let token = token.to_string();
        runtime.spawn(async move {
            let outcome = this.call(&token).await;
            drop(permit);
            this.counts_outcome(&outcome);
            if let Ok((v, until)) = &outcome {
                this.cache.insert(key, v.clone(), *until, now());
            }
            // Remembered before the flight is gone, so no request in between calls again.
            this.flights
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let _ = tx.send(Some(outcome.map(|(v, _)| v)));
        });
        Ok(rx)
    }

    fn counts_outcome(&self, o: &Result<(Verdict, u64), Unavailable>) {
        match o {
            Ok((Verdict::Active(_), _)) => self.counts.active.inc(),
            Ok((Verdict::Inactive(_), _)) => self.counts.inactive.inc(),
            // Counted by the requests it leaves without an answer (`check`).
            Err(Unavailable(why)) => self.log_failure(why),
        }
    }

    /// Why a token could not be checked, logged at most once a second (a provider down, or
    /// a flood over the bounds, would otherwise write a line per request).
    fn log_failure(&self, why: &str) {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let (last, quiet) = &mut *logged;
        if last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            *quiet += 1;
            return;
        }
        let more = std::mem::take(quiet);
        *last = Some(now);
        drop(logged);
        tracing::warn!(target: "ords_guard::introspection", issuer = self.issuer.name, not_logged = more, "a token could not be checked (503): {why}");
    }

    /// One RFC 7662 request: the token in a form, the client authenticated per
    /// `auth_method`.
    async fn call(&self, token: &str) -> Result<(Verdict, u64), Unavailable> {
        let client = self.client.as_ref().map_err(|e| Unavailable(e.clone()))?;
        let secret = self.secret.read().map_err(Unavailable)?;
        let s = &self.settings;
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        if s.auth == EgressAuth::Post {
            form.push(("client_id", &s.client_id));
            form.push(("client_secret", &secret));
        }
        let mut req = client
            .post(&s.url)
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        if s.auth == EgressAuth::Basic {
            req = req.header(
                http::header::AUTHORIZATION,
                outbound::basic_credentials(&s.client_id, &secret),
            );
        }
        let a = outbound::send(req, MAX_ANSWER_BYTES, CALL_TIMEOUT)
            .await
            .map_err(|e| {
                Unavailable(format!(
                    "the introspection endpoint could not be asked: {e}"
                ))
            })?;
        introspection::verdict(&self.issuer, s.cache_seconds, a.status, &a.body, now())
            .map_err(|Unusable(why)| Unavailable(why))
    }
}
