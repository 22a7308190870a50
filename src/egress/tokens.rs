//! An egress entry's token (SPEC §10): fetched with the client credentials grant, held in
//! memory only, renewed in the background before it expires, fetched by one request at a
//! time however many callers wait, backed off while the token endpoint fails, and dropped
//! when the remote API answers 401 to it.
//!
//! [`State`] is the whole policy as plain methods of the time they are given; [`Tokens`]
//! is the thin async shell around it: callers ask it for a token, a background task of its
//! own does every fetch (so two can never overlap), and callers waiting for one are woken
//! when it ends.

use super::answer::{self, Fetched, Refused};
use super::schedule::{self, Lifetime};
use crate::outbound::{self, FetchError};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// One token request, connect to last byte (SPEC §10).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest token endpoint answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a caller waits for a fetch in flight before it is told 503.
pub const WAIT_FOR_FETCH: Duration = Duration::from_secs(6);

/// A token that may be sent, and which one it is (a 401 to an older one evicts nothing).
#[derive(Clone)]
pub struct Held {
    pub token: Arc<str>,
    /// The `Authorization` value that sends it.
    pub bearer: http::HeaderValue,
    pub life: Lifetime,
    pub generation: u64,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("generation", &self.generation)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

/// No token can be had now; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    pub retry_after: Duration,
}

/// What the token manager knows, and every decision it takes.
#[derive(Debug, Default)]
pub struct State {
    held: Option<Held>,
    fetching: bool,
    failures: u32,
    /// No token request before this (backoff after a failure).
    not_before: Option<Instant>,
    generations: u64,
}

/// What a caller should do, given the state at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask {
    /// Send this token.
    Use(u64),
    /// Wait for the fetch in flight (or the one just asked for).
    Wait,
    /// Nothing to send and no fetch allowed yet.
    Refuse(Duration),
}

impl State {
    /// The token to send at `now`, if one may be sent.
    pub fn usable(&self, now: Instant) -> Option<&Held> {
        self.held.as_ref().filter(|h| h.life.usable(now))
    }

    /// A caller's question at `now`. `Wait` with no fetch in flight means: start one.
    pub fn ask(&self, now: Instant) -> Ask {
        if let Some(h) = self.usable(now) {
            return Ask::Use(h.generation);
        }
        if self.fetching {
            return Ask::Wait;
        }
        match self.not_before {
            Some(t) if now < t => Ask::Refuse(t - now),
            _ => Ask::Wait,
        }
    }

    /// Whether a fetch may start at `now`: none in flight, no backoff pending, and no held
    /// token that is still fresh.
    pub fn fetch_due(&self, now: Instant) -> bool {
        if self.fetching || self.not_before.is_some_and(|t| now < t) {
            return false;
        }
        match &self.held {
            Some(h) => h.life.renewal_due(now) || !h.life.usable(now),
            None => true,
        }
    }

    /// When the background task should look again, if nothing wakes it sooner.
    pub fn next_check(&self, now: Instant) -> Instant {
        let renew = self.held.as_ref().map(|h| h.life.renew_at);
        let at = match (renew, self.not_before) {
            (Some(r), Some(nb)) => r.max(nb),
            (Some(r), None) => r,
            (None, Some(nb)) => nb,
            (None, None) => now,
        };
        at.max(now)
    }

    pub fn fetch_started(&mut self) {
        self.fetching = true;
    }

    /// A fetch succeeded at `now`.
    pub fn fetched(&mut self, now: Instant, f: &Fetched, refresh_before: Duration) -> &Held {
        self.fetching = false;
        self.failures = 0;
        self.not_before = None;
        self.generations += 1;
        self.held.insert(Held {
            token: f.access_token.as_str().into(),
            bearer: f.bearer.clone(),
            life: schedule::lifetime(now, Duration::from_secs(f.lifetime), refresh_before),
            generation: self.generations,
        })
    }

    /// A fetch failed at `now`; the held token, if still valid, keeps being used.
    /// Returns the wait before the next attempt.
    pub fn failed(&mut self, now: Instant, jitter: f64) -> Duration {
        self.fetching = false;
        self.failures = self.failures.saturating_add(1);
        let wait = schedule::retry_in(self.failures, jitter);
        self.not_before = Some(now + wait);
        wait
    }

    /// The remote API answered 401 to token `generation`: drop it if it is still the
    /// current one. Returns whether it was.
    pub fn rejected(&mut self, generation: u64) -> bool {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.generation == generation)
        {
            self.held = None;
            return true;
        }
        false
    }

    /// The current token's expiry, for the metric.
    pub fn expires(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.life.expires)
    }
}

/// `auth_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// client_secret_basic (RFC 6749 §2.3.1).
    Basic,
    /// client_secret_post.
    Post,
}

/// What a token request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub egress: String,
    pub token_url: String,
    pub client_id: String,
    /// Read at every token request (they are rare), so a rotated Kubernetes Secret is used
    /// by the next one; the last secret read stays in use while the file cannot be read.
    pub secret_file: PathBuf,
    pub auth: AuthMethod,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
    pub refresh_before: Duration,
}

/// Why a token request gave no token.
#[derive(Debug)]
pub enum Failure {
    Refused(Refused),
    Transport(FetchError),
    Secret(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(r) => r.fmt(f),
            Failure::Transport(e) => write!(f, "the token endpoint could not be asked: {e}"),
            Failure::Secret(e) => f.write_str(e),
        }
    }
}

/// The form of a client credentials request, the secret included for `post`.
pub fn form(req: &Request, secret: &str) -> Vec<(String, String)> {
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    if let Some(s) = &req.scope {
        form.push(("scope".into(), s.clone()));
    }
    form.extend(req.params.iter().cloned());
    if req.auth == AuthMethod::Post {
        form.push(("client_id".into(), req.client_id.clone()));
        form.push(("client_secret".into(), secret.to_string()));
    }
    form
}

/// One egress entry's token.
pub struct Tokens {
    pub request: Request,
    client: reqwest::Client,
    state: Mutex<State>,
    /// Counts finished fetches: callers waiting on a fetch watch it move.
    done: watch::Sender<u64>,
    wake: Notify,
    secret: outbound::SecretFile,
}

impl Tokens {
    pub fn new(request: Request, client: reqwest::Client) -> Arc<Tokens> {
        Arc::new(Tokens {
            secret: outbound::SecretFile::new(request.secret_file.clone()),
            request,
            client,
            state: Mutex::new(State::default()),
            done: watch::Sender::new(0),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token to send now, waiting for a fetch when none is held (at most
    /// [`WAIT_FOR_FETCH`]).
    pub async fn get(&self) -> Result<Held, Unavailable> {
        let mut done = self.done.subscribe();
        // One bound for the whole wait, however many fetches end in it.
        let deadline = tokio::time::Instant::now() + WAIT_FOR_FETCH;
        for _ in 0..2 {
            done.borrow_and_update();
            let now = Instant::now();
            {
                let st = self.state();
                if let Some(h) = st.usable(now) {
                    return Ok(h.clone());
                }
                if let Ask::Refuse(after) = st.ask(now) {
                    return Err(Unavailable { retry_after: after });
                }
            }
            self.wake.notify_one();
            // The request waits on the manager's fetch: a span of its own when traced.
            let fetched = crate::traces::waiting(
                "egress token fetch",
                Vec::new,
                |r| r.is_err(),
                tokio::time::timeout_at(deadline, done.changed()),
            );
            if fetched.await.is_err() {
                break;
            }
        }
        let now = Instant::now();
        let st = self.state();
        match st.usable(now) {
            Some(h) => Ok(h.clone()),
            None => Err(Unavailable {
                retry_after: st
                    .not_before
                    .map_or(schedule::FIRST_RETRY, |t| t.saturating_duration_since(now))
                    .max(schedule::FIRST_RETRY),
            }),
        }
    }

    /// The remote API answered 401 to `held`: drop it if current, and fetch anew (the
    /// backoff still applies).
    pub fn rejected(&self, held: &Held) {
        if self.state().rejected(held.generation) {
            self.wake.notify_one();
        }
    }

    /// The current token's expiry.
    pub fn expires(&self) -> Option<Instant> {
        self.state().expires()
    }

    /// The background task: every fetch happens here, one at a time, for as long as the
    /// entry lasts. `on_fetch` is told each result (metrics, logs).
    pub async fn run(self: Arc<Self>, on_fetch: impl Fn(&Result<&Held, &Failure>)) {
        loop {
            let now = Instant::now();
            let (due, next) = {
                let mut st = self.state();
                let due = st.fetch_due(now);
                if due {
                    st.fetch_started();
                }
                (due, st.next_check(now))
            };
            if due {
                let result = self.fetch().await;
                let now = Instant::now();
                {
                    let mut st = self.state();
                    match &result {
                        Ok(f) => {
                            let held = st.fetched(now, f, self.request.refresh_before).clone();
                            on_fetch(&Ok(&held));
                        }
                        Err(e) => {
                            st.failed(now, rand::random());
                            on_fetch(&Err(e));
                        }
                    }
                }
                self.done.send_modify(|n| *n += 1);
                continue;
            }
            let wait = next
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn current_secret(&self) -> Result<String, Failure> {
        self.secret.read().map_err(Failure::Secret)
    }

    async fn fetch(&self) -> Result<Fetched, Failure> {
        let secret = self.current_secret()?;
        let r = &self.request;
        let mut req = self
            .client
            .post(&r.token_url)
            .header(http::header::ACCEPT, "application/json")
            .form(&form(r, &secret));
        if r.auth == AuthMethod::Basic {
            req = req.header(
                http::header::AUTHORIZATION,
                outbound::basic_credentials(&r.client_id, &secret),
            );
        }
        let a = outbound::send(req, MAX_ANSWER_BYTES, REQUEST_TIMEOUT)
            .await
            .map_err(Failure::Transport)?;
        answer::read(a.status, &a.body, crate::tokens::token::now()).map_err(Failure::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(lifetime: u64) -> Fetched {
        Fetched {
            access_token: "t".into(),
            bearer: http::HeaderValue::from_static("Bearer t"),
            lifetime,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_cold_start_waits_for_one_fetch_then_uses_its_token() {
        let t0 = Instant::now();
        let mut st = State::default();
        assert_eq!(st.ask(t0), Ask::Wait);
        assert!(st.fetch_due(t0));
        st.fetch_started();
        assert!(!st.fetch_due(t0), "one fetch at a time");
        assert_eq!(st.ask(t0), Ask::Wait, "callers join the fetch in flight");
        let g = st.fetched(t0, &fetched(3600), MIN).generation;
        assert_eq!(st.ask(t0), Ask::Use(g));
        assert!(!st.fetch_due(t0 + Duration::from_secs(1799)));
        assert!(
            st.fetch_due(t0 + Duration::from_secs(1800)),
            "renewed at half its hour"
        );
        assert_eq!(st.next_check(t0), t0 + Duration::from_secs(1800));
    }

    #[test]
    fn a_failing_endpoint_backs_off_and_a_valid_token_keeps_serving() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut st = State::default();
        st.fetch_started();
        assert_eq!(st.failed(t0, 0.0), s(1));
        assert_eq!(st.ask(t0), Ask::Refuse(s(1)), "no token, no fetch yet: 503");
        assert!(!st.fetch_due(t0));
        assert!(st.fetch_due(t0 + s(1)));
        st.fetch_started();
        assert_eq!(st.failed(t0 + s(1), 0.0), s(2));
        st.fetch_started();
        let g = st.fetched(t0 + s(3), &fetched(100), MIN).generation;
        // Renewal at 40 s fails: the token is still sent until its last second.
        let t = t0 + s(3 + 40);
        assert!(st.fetch_due(t));
        st.fetch_started();
        assert_eq!(
            st.failed(t, 0.0),
            s(1),
            "failures were reset by the success"
        );
        assert_eq!(st.ask(t), Ask::Use(g));
        assert_eq!(st.ask(t0 + s(3 + 98)), Ask::Use(g));
        assert_eq!(st.ask(t0 + s(3 + 99)), Ask::Wait, "not in its last second");
    }

    #[test]
    fn a_401_drops_the_current_token_only() {
        let t0 = Instant::now();
        let mut st = State::default();
        st.fetch_started();
        let old = st.fetched(t0, &fetched(3600), MIN).generation;
        st.fetch_started();
        let new = st.fetched(t0, &fetched(3600), MIN).generation;
        assert!(!st.rejected(old), "a 401 to an older token evicts nothing");
        assert_eq!(st.ask(t0), Ask::Use(new));
        assert!(st.rejected(new));
        assert_eq!(st.ask(t0), Ask::Wait);
        assert!(st.fetch_due(t0));
    }

    #[test]
    fn the_request_form_and_basic_credentials() {
        let req = |auth| Request {
            egress: "orders".into(),
            token_url: "http://127.0.0.1:1/token".into(),
            client_id: "id:1".into(),
            secret_file: "s".into(),
            auth,
            scope: Some("orders_read".into()),
            params: vec![("audience".into(), "https://orders".into())],
            refresh_before: MIN,
        };
        let names = |f: Vec<(String, String)>| f.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(form(&req(AuthMethod::Basic), "x")),
            ["grant_type", "scope", "audience"]
        );
        assert_eq!(
            names(form(&req(AuthMethod::Post), "x")),
            [
                "grant_type",
                "scope",
                "audience",
                "client_id",
                "client_secret"
            ]
        );
    }
}
