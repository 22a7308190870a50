//! An issuer's keys as the proxy sees them (SPEC §9): the last good JWK Set, swapped
//! atomically, shared by every registry generation that keeps the entry unchanged, and the
//! single flight of refetches that requests ask for when a token's `kid` is unknown.
//!
//! The fetching is `jwks_fetch`'s; this module only holds what it fetched and wakes it.
//! The schedule is plain functions of the time they are given, so their tests need no
//! waiting.

use super::jwks::KeySet;
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How long a request waits for a refetch it asked for (SPEC §9).
pub const REFETCH_WAIT: Duration = Duration::from_secs(5);
/// An issuer is refetched on demand at most once this often (SPEC §9).
pub const ON_DEMAND_EVERY: Duration = Duration::from_secs(30);
/// The shortest period between scheduled fetches, whatever Cache-Control says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// Retries after a failed fetch start here and double up to [`MAX_RETRY`] (and never wait
/// longer than the refresh period).
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);

pub struct KeyCell {
    keys: ArcSwapOption<KeySet>,
    /// Whether a fetcher stands behind the cell (`jwks_url`); a `jwks_file` is read with
    /// the config, and asking it to refetch does nothing.
    fetched: bool,
    /// Wakes the fetcher: a refetch asked for, or a reload.
    wake: Notify,
    /// Counts finished fetches, failed or not: waiters watch it move.
    done: watch::Sender<u64>,
    fetching: AtomicBool,
    asked: Mutex<Asked>,
}

/// The on-demand refetches asked for.
#[derive(Default)]
struct Asked {
    /// When the last one was asked for (the 30 s bound).
    last: Option<Instant>,
    /// The last one, with the count of finished fetches when it was asked for.
    pending: Option<(Instant, u64)>,
}

impl KeyCell {
    fn new(keys: Option<Arc<KeySet>>, fetched: bool) -> Arc<KeyCell> {
        Arc::new(KeyCell {
            keys: ArcSwapOption::new(keys),
            fetched,
            wake: Notify::new(),
            done: watch::Sender::new(0),
            fetching: AtomicBool::new(false),
            asked: Mutex::new(Asked::default()),
        })
    }

    /// Keys read from a file at load.
    pub fn from_file(keys: Arc<KeySet>) -> Arc<KeyCell> {
        KeyCell::new(Some(keys), false)
    }

    /// An empty cell a fetcher fills.
    pub fn fetched() -> Arc<KeyCell> {
        KeyCell::new(None, true)
    }

    pub fn is_fetched(&self) -> bool {
        self.fetched
    }

    /// The last good keys; `None` while the issuer has never had any.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// A request's refetch (unknown `kid`, or no keys yet): join the fetch in flight, or
    /// start one if none ran on demand in the last [`ON_DEMAND_EVERY`]; then wait for it,
    /// at most [`REFETCH_WAIT`]. Returns at once when there is nothing to wait for.
    pub async fn refetch(&self, now: Instant) {
        if !self.fetched {
            return;
        }
        let mut done = self.done.subscribe();
        let finished = *done.borrow_and_update();
        {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            // A fetch asked for a moment ago that has not finished counts as in flight,
            // though the fetcher may not have started it yet.
            let pending = asked.pending.is_some_and(|(at, n)| {
                n == finished && now.saturating_duration_since(at) < REFETCH_WAIT
            });
            if !self.fetching.load(Ordering::Acquire) && !pending {
                if !on_demand_allowed(asked.last, now) {
                    return;
                }
                asked.last = Some(now);
                asked.pending = Some((now, finished));
                self.wake.notify_one();
            }
        }
        let _ = tokio::time::timeout(REFETCH_WAIT, done.changed()).await;
    }

    /// Ask for a fetch now (a reload); not counted against the on-demand bound.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    // The fetcher's side.

    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    pub(crate) fn fetch_started(&self) {
        self.fetching.store(true, Ordering::Release);
    }

    /// A fetch ended; `Some` keys replace the held ones, `None` (a failure) keeps them.
    pub(crate) fn fetch_finished(&self, keys: Option<KeySet>) {
        if let Some(k) = keys {
            self.keys.store(Some(Arc::new(k)));
        }
        self.fetching.store(false, Ordering::Release);
        self.done.send_modify(|n| *n += 1);
    }
}

/// Whether a request may start an on-demand refetch now, the last one having started at
/// `last`.
pub fn on_demand_allowed(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= ON_DEMAND_EVERY)
}

/// When to fetch again after a success: every `refresh`, sooner when the answer's
/// Cache-Control max-age says so, never sooner than [`MIN_REFRESH`].
pub fn after_success(refresh: Duration, max_age: Option<Duration>) -> Duration {
    max_age.map_or(refresh, |m| m.min(refresh)).max(MIN_REFRESH)
}

/// When to try again after `failures` failed fetches in a row (1 for the first):
/// [`FIRST_RETRY`] doubling to [`MAX_RETRY`], never later than `refresh`, less up to a
/// quarter at random (`jitter` in 0..1) so replicas do not retry in step.
pub fn after_failure(failures: u32, refresh: Duration, jitter: f64) -> Duration {
    crate::backoff::backoff(failures, FIRST_RETRY, MAX_RETRY.min(refresh), jitter)
}

/// The `max-age` of a Cache-Control value, if it has one (`no-cache` and the like do not
/// shorten the refresh: identity providers send them on keys that change rarely).
pub fn cache_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        v.trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_refetches_are_thirty_seconds_apart() {
        let t0 = Instant::now();
        assert!(on_demand_allowed(None, t0));
        assert!(!on_demand_allowed(Some(t0), t0));
        assert!(!on_demand_allowed(Some(t0), t0 + Duration::from_secs(29)));
        assert!(on_demand_allowed(Some(t0), t0 + ON_DEMAND_EVERY));
        // A clock that seems to go back does not unlock a refetch.
        assert!(!on_demand_allowed(Some(t0 + Duration::from_secs(5)), t0));
    }

    #[test]
    fn max_age_shortens_the_refresh_but_never_under_a_minute() {
        let ten_min = Duration::from_secs(600);
        assert_eq!(after_success(ten_min, None), ten_min);
        assert_eq!(
            after_success(ten_min, Some(Duration::from_secs(300))),
            Duration::from_secs(300)
        );
        assert_eq!(
            after_success(ten_min, Some(Duration::from_secs(3600))),
            ten_min
        );
        assert_eq!(after_success(ten_min, Some(Duration::ZERO)), MIN_REFRESH);
        assert_eq!(
            after_success(ten_min, Some(Duration::from_secs(10))),
            MIN_REFRESH
        );
    }

    #[test]
    fn failures_back_off_to_a_minute_or_the_refresh() {
        let ten_min = Duration::from_secs(600);
        let secs = |n| after_failure(n, ten_min, 0.0).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(6), secs(7)],
            [1, 2, 4, 32, 60]
        );
        assert_eq!(secs(1000), 60);
        assert_eq!(secs(0), 1);
        assert_eq!(after_failure(7, Duration::from_secs(60), 0.0).as_secs(), 60);
        let jittered = after_failure(3, ten_min, 1.0);
        assert_eq!(jittered, Duration::from_secs(3));
        assert!(after_failure(3, ten_min, 0.5) < Duration::from_secs(4));
    }

    #[test]
    fn cache_control_max_age() {
        let s = Duration::from_secs;
        assert_eq!(cache_max_age("max-age=300"), Some(s(300)));
        assert_eq!(
            cache_max_age("public, MAX-AGE = 120 , must-revalidate"),
            Some(s(120))
        );
        assert_eq!(cache_max_age("max-age=\"90\""), Some(s(90)));
        assert_eq!(cache_max_age("no-cache"), None);
        assert_eq!(cache_max_age("s-maxage=5"), None);
        assert_eq!(cache_max_age("max-age=-1"), None);
        assert_eq!(cache_max_age("max-age=soon"), None);
        assert_eq!(cache_max_age(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_share_one_refetch_and_are_bounded_by_thirty_seconds() {
        let cell = KeyCell::fetched();
        let t0 = Instant::now();
        // No fetcher answers: the first request starts one and waits its five seconds.
        let waited = tokio::time::Instant::now();
        cell.refetch(t0).await;
        assert!(waited.elapsed() >= REFETCH_WAIT);
        // Within thirty seconds no new one starts: nothing to wait for.
        let again = tokio::time::Instant::now();
        cell.refetch(t0 + Duration::from_secs(10)).await;
        assert_eq!(again.elapsed(), Duration::ZERO);
        // A fetch in flight is joined whatever the bound, and ends the wait when it ends.
        cell.fetch_started();
        let joined = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.refetch(t0 + Duration::from_secs(11)).await })
        };
        tokio::task::yield_now().await;
        assert!(!joined.is_finished());
        cell.fetch_finished(None);
        joined.await.unwrap();
        assert!(cell.current().is_none(), "a failed fetch stores nothing");
        // Thirty seconds on, a request asks again; one arriving before the fetcher starts
        // on it joins that fetch rather than giving up (or asking for another).
        let ask = |at: u64| {
            let cell = cell.clone();
            tokio::spawn(async move { cell.refetch(t0 + Duration::from_secs(at)).await })
        };
        let (first, second) = (ask(40), ask(41));
        tokio::task::yield_now().await;
        assert!(!first.is_finished() && !second.is_finished());
        cell.woken().await;
        cell.fetch_started();
        cell.fetch_finished(Some(KeySet::default()));
        first.await.unwrap();
        second.await.unwrap();
        assert!(cell.current().is_some());
    }

    #[tokio::test]
    async fn a_file_cell_is_never_refetched() {
        let cell = KeyCell::from_file(Arc::new(KeySet::parse(br#"{"keys":[]}"#, &[]).unwrap()));
        assert!(!cell.is_fetched());
        cell.refetch(Instant::now()).await;
        assert!(cell.current().is_some());
    }
}
