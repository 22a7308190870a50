//! `limits.max_upstream_connections`: a bound on what the upstream is asked to serve at
//! once, for legacy services that cannot take many connections.
//!
//! A forwarded request holds one slot from choosing its peer until its answer is done
//! (pingora has put the upstream connection back in its keep-alive pool by then). At most N
//! requests are at the upstream, so at most N connections are in use, and the next slot
//! holder takes an idle one from the pool instead of opening another: the upstream sees N
//! connections at most (plus, briefly, a replacement for one it closed itself). A request
//! that finds every slot taken waits in line (first come, first served), at most the
//! upstream connect timeout: not connected in that time is a 502, as SPEC §3 says of any
//! connect that does not happen in time.

use prometheus::IntGauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// pingora's error type for a request whose wait ran out (`fail_to_proxy` answers it 502,
/// counted under `ords_guard_upstream_errors_total{kind="connection_limit"}`).
pub const CONNECTION_LIMIT: &str = "upstream_connection_limit";

pub struct UpstreamSlots {
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot now (`ords_guard_upstream_requests_waiting`).
    waiting: IntGauge,
}

/// One slot, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Every slot stayed taken for the whole wait.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Counts a waiting request for as long as it waits, also when its client goes away and
/// the wait is dropped.
struct Waiting<'a>(&'a IntGauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl UpstreamSlots {
    pub fn new(slots: usize, waiting: IntGauge) -> UpstreamSlots {
        UpstreamSlots {
            slots: Arc::new(Semaphore::new(slots)),
            waiting,
        }
    }

    /// A slot, waiting at most `within` for one to come free.
    pub async fn take(&self, within: Duration) -> Result<Slot, Full> {
        // The common case, no gauge traffic: a slot is free.
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: p });
        }
        self.waiting.inc();
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(within, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Slot { _permit: p }),
            // Elapsed, or (never: the semaphore is not closed) closed.
            _ => Err(Full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize) -> UpstreamSlots {
        UpstreamSlots::new(n, IntGauge::new("waiting", "w").unwrap())
    }

    /// A request waiting (up to 10 s) for one of `s`'s slots, once it is in line.
    async fn waiting_for_a_slot(s: &Arc<UpstreamSlots>) -> tokio::task::JoinHandle<bool> {
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.take(Duration::from_secs(10)).await.is_ok() }
        });
        while s.waiting.get() == 0 {
            tokio::task::yield_now().await;
        }
        waiter
    }

    // Paused time: tokio advances the clock itself when every task waits, so the timeouts
    // below run out without the test waiting.
    #[tokio::test(start_paused = true)]
    async fn a_full_set_makes_the_next_request_wait_at_most_its_bound() {
        let s = slots(2);
        let a = s.take(Duration::from_secs(1)).await.unwrap();
        let _b = s.take(Duration::from_secs(1)).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(s.take(Duration::from_millis(300)).await.err(), Some(Full));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(s.waiting.get(), 0);
        drop(a);
        assert!(
            s.take(Duration::ZERO).await.is_ok(),
            "a given-back slot is free at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_gets_the_first_slot_given_back_and_is_counted_meanwhile() {
        let s = Arc::new(slots(1));
        let held = s.take(Duration::ZERO).await.unwrap();
        let waiter = waiting_for_a_slot(&s).await;
        assert_eq!(s.waiting.get(), 1);
        let started = tokio::time::Instant::now();
        drop(held);
        assert!(waiter.await.unwrap());
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "served when the slot came back"
        );
        assert_eq!(s.waiting.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_dropped_by_a_departing_client_is_no_longer_counted() {
        let s = Arc::new(slots(1));
        let _held = s.take(Duration::ZERO).await.unwrap();
        let waiter = waiting_for_a_slot(&s).await;
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(s.waiting.get(), 0);
    }
}
