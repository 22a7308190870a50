//! Where argon2id verifications run (issue #10): never on a proxy thread.
//!
//! - A few dedicated worker threads (`limits.argon2_concurrency`, default 1), each reusing
//!   one memory buffer for every verification instead of allocating 19 MiB per request; a
//!   worker idle for [`IDLE`] gives its buffer back.
//! - Admission before any work: at most `argon2_concurrency + argon2_queue` checks admitted
//!   at once, and at most `argon2_per_second` admitted per second ([`super::budget`]).
//!   Beyond either, the caller answers at once with a [`Refusal`].
//! - A request whose check must fail anyway (an unknown client id) goes through the same
//!   admission, so refusals reveal nothing either, and then only *waits* ([`Pool::pretend`]):
//!   as long as a real check would now — one measured verification time drawn at random per
//!   round of the real checks queued ahead of it, and one for itself. It costs a timer, not
//!   CPU or memory, and occupies no worker.

use super::budget::Budget;
use super::Argon2Hash;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A worker this long without a job frees its memory buffer.
pub const IDLE: Duration = Duration::from_secs(30);
/// The `limit` labels of `ords_guard_limit_rejections_total` for the two refusals.
pub const BUDGET: &str = "argon2_budget";
pub const QUEUE: &str = "argon2_queue";
/// A hash with `hash-secret`'s parameters that nothing matches (its salt and output are
/// made up), so parsing it costs nothing.
const STAND_IN: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
/// Real verification times remembered for stand-in delays.
const SAMPLES: usize = 64;

/// The pool's bounds, read from the current registry at each admission (they reload);
/// their defaults are `config::Limits`'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub per_second: u32,
    pub concurrency: usize,
    pub queue: usize,
}

/// Why a check was not admitted, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// [`BUDGET`] or [`QUEUE`].
    pub limit: &'static str,
    pub retry_after: Duration,
}

/// One admitted check; its slot is given back when it is dropped.
pub struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One in a count while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Job {
    hashes: Vec<Arc<Argon2Hash>>,
    presented: Vec<u8>,
    /// Which hash matched, if one did, and how long the hashing took.
    reply: oneshot::Sender<(Option<usize>, Duration)>,
}

struct Workers {
    jobs: Mutex<mpsc::Receiver<Job>>,
    running: AtomicUsize,
    wanted: AtomicUsize,
}

impl Workers {
    /// A worker retires when there are more than wanted (`argon2_concurrency` was lowered).
    fn retire(&self) -> bool {
        let mut n = self.running.load(Ordering::Acquire);
        while n > self.wanted.load(Ordering::Acquire) {
            match self
                .running
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    fn work(&self) {
        let mut memory = Vec::new();
        loop {
            let job = self
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(IDLE);
            match job {
                Ok(job) => {
                    let started = Instant::now();
                    // Every slot is checked: no early exit to time.
                    let matched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut matched = None;
                        for (i, h) in job.hashes.iter().enumerate() {
                            if h.verify_with(&job.presented, &mut memory) {
                                matched = matched.or(Some(i));
                            }
                        }
                        matched
                    }))
                    .unwrap_or(None);
                    let _ = job.reply.send((matched, started.elapsed()));
                }
                Err(RecvTimeoutError::Timeout) => memory = Vec::new(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.retire() {
                return;
            }
        }
    }
}

/// The last [`SAMPLES`] real verification times, as the worker measured them (no queueing).
#[derive(Default)]
struct Samples {
    ring: Vec<Duration>,
    next: usize,
}

impl Samples {
    fn record(&mut self, d: Duration) {
        if self.ring.len() < SAMPLES {
            self.ring.push(d);
        } else {
            self.ring[self.next] = d;
        }
        self.next = (self.next + 1) % SAMPLES;
    }

    fn draw(&self, rng: &mut impl Rng) -> Option<Duration> {
        (!self.ring.is_empty()).then(|| self.ring[rng.gen_range(0..self.ring.len())])
    }
}

pub struct Pool {
    jobs: mpsc::Sender<Job>,
    workers: Arc<Workers>,
    admitted: Arc<AtomicUsize>,
    /// Real checks sent to the workers and not answered yet.
    real: AtomicUsize,
    budget: Mutex<Budget>,
    samples: Mutex<Samples>,
    /// What [`Pool::pretend`] verifies for real while no real time has been measured yet.
    stand_in: std::sync::OnceLock<Arc<Argon2Hash>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    /// No thread starts until the first verification.
    pub fn new() -> Pool {
        let (tx, rx) = mpsc::channel();
        Pool {
            jobs: tx,
            workers: Arc::new(Workers {
                jobs: Mutex::new(rx),
                running: AtomicUsize::new(0),
                wanted: AtomicUsize::new(1),
            }),
            admitted: Arc::new(AtomicUsize::new(0)),
            real: AtomicUsize::new(0),
            budget: Mutex::new(Budget::default()),
            samples: Mutex::new(Samples::default()),
            stand_in: std::sync::OnceLock::new(),
        }
    }

    /// Admit one check, or refuse it at once: first a slot (so a refused request spends
    /// no budget), then the per-second budget.
    pub fn admit(&self, limits: PoolLimits, now: Instant) -> Result<Ticket, Refusal> {
        let cap = limits.concurrency + limits.queue;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map_err(|_| Refusal {
                limit: QUEUE,
                retry_after: Duration::from_secs(1),
            })?;
        let ticket = Ticket {
            admitted: self.admitted.clone(),
        };
        let spent = self
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(limits.per_second, now);
        spent.map_err(|wait| Refusal {
            limit: BUDGET,
            retry_after: wait,
        })?;
        self.workers
            .wanted
            .store(limits.concurrency.max(1), Ordering::Release);
        Ok(ticket)
    }

    /// Verify `presented` against every hash on a worker: the index of the one that
    /// matches (the first, if several do).
    pub async fn verify(
        &self,
        ticket: Ticket,
        hashes: Vec<Arc<Argon2Hash>>,
        presented: &[u8],
    ) -> Option<usize> {
        let matched = match self.run(hashes, presented).await {
            Some((matched, took)) => {
                self.samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(took);
                matched
            }
            None => None,
        };
        drop(ticket);
        matched
    }

    /// Take as long as a real check would take now, without doing one. Until a real one
    /// has been measured, verify the stand-in hash for real.
    pub async fn pretend(&self, ticket: Ticket) {
        let workers = self.workers.wanted.load(Ordering::Acquire).max(1);
        let rounds = self.real.load(Ordering::Acquire) / workers + 1;
        let delay = {
            let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            let mut rng = rand::thread_rng();
            (0..rounds)
                .map(|_| samples.draw(&mut rng))
                .sum::<Option<Duration>>()
        };
        match delay {
            Some(d) => {
                tokio::time::sleep(d).await;
                drop(ticket);
            }
            None => {
                let stand_in =
                    self.stand_in
                        .get_or_init(|| match super::SecretHash::parse(STAND_IN) {
                            Ok(super::SecretHash::Argon2id(h)) => h,
                            _ => unreachable!("STAND_IN is an argon2id PHC string"),
                        });
                let presented = super::generate(16);
                self.verify(ticket, vec![stand_in.clone()], presented.as_bytes())
                    .await;
            }
        }
    }

    /// `None` when no worker answered (it cannot happen: panics are caught); fails closed.
    async fn run(
        &self,
        hashes: Vec<Arc<Argon2Hash>>,
        presented: &[u8],
    ) -> Option<(Option<usize>, Duration)> {
        self.start_workers();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            hashes,
            presented: presented.to_vec(),
            reply,
        };
        // Counted until answered or abandoned (a client that hangs up drops this future).
        let _queued = Counted::new(&self.real);
        match self.jobs.send(job) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        }
    }

    fn start_workers(&self) {
        let w = &self.workers;
        loop {
            let n = w.running.load(Ordering::Acquire);
            if n >= w.wanted.load(Ordering::Acquire) {
                return;
            }
            if w.running
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let workers = w.clone();
            let spawned = std::thread::Builder::new()
                .name("argon2-verify".into())
                .spawn(move || workers.work());
            if let Err(e) = spawned {
                w.running.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(target: "ords_guard::token", "cannot start an argon2 worker thread: {e}");
                return;
            }
        }
    }

    /// Worker threads running now (for tests).
    pub fn workers(&self) -> usize {
        self.workers.running.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::secret::{hash, Scheme, SecretHash};

    fn argon(secret: &[u8]) -> Arc<Argon2Hash> {
        match SecretHash::parse(&hash(secret, Scheme::Argon2id)).unwrap() {
            SecretHash::Argon2id(h) => h,
            SecretHash::Sha256(_) => unreachable!(),
        }
    }

    const ONE: PoolLimits = PoolLimits {
        per_second: 1000,
        concurrency: 1,
        queue: 2,
    };

    #[test]
    fn admission_is_bounded_by_slots_then_by_the_budget() {
        let pool = Pool::new();
        let now = Instant::now();
        let held: Vec<Ticket> = (0..3).map(|_| pool.admit(ONE, now).unwrap()).collect();
        let r = pool.admit(ONE, now).err().unwrap();
        assert_eq!((r.limit, r.retry_after), (QUEUE, Duration::from_secs(1)));
        drop(held);
        // Slots back; now the budget: 2 a second.
        let two = PoolLimits {
            per_second: 2,
            ..ONE
        };
        let pool = Pool::new();
        assert!(pool.admit(two, now).is_ok());
        assert!(pool.admit(two, now).is_ok());
        let r = pool.admit(two, now).err().unwrap();
        assert_eq!(
            (r.limit, r.retry_after),
            (BUDGET, Duration::from_millis(500))
        );
        // A budget refusal gave its slot back.
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
        assert!(pool.admit(two, now + Duration::from_millis(500)).is_ok());
    }

    #[tokio::test]
    async fn verifies_on_one_worker_thread_and_records_the_time() {
        let pool = Pool::new();
        let h = argon(b"right");
        let t = pool.admit(ONE, Instant::now()).unwrap();
        assert_eq!(pool.verify(t, vec![h.clone()], b"right").await, Some(0));
        let t = pool.admit(ONE, Instant::now()).unwrap();
        // Two slots (rotation): the second matches, and says so.
        assert_eq!(
            pool.verify(t, vec![argon(b"old"), h.clone()], b"right")
                .await,
            Some(1)
        );
        let t = pool.admit(ONE, Instant::now()).unwrap();
        assert_eq!(pool.verify(t, vec![h], b"wrong").await, None);
        assert_eq!(pool.workers(), 1);
        assert_eq!(pool.samples.lock().unwrap().ring.len(), 3);
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn concurrent_checks_share_the_configured_workers() {
        let pool = Arc::new(Pool::new());
        let h = argon(b"pw");
        let two = PoolLimits {
            concurrency: 2,
            queue: 8,
            ..ONE
        };
        let checks: Vec<_> = (0..6)
            .map(|i| {
                let (pool, h) = (pool.clone(), h.clone());
                let t = pool.admit(two, Instant::now()).unwrap();
                tokio::spawn(async move {
                    let presented: &[u8] = if i % 2 == 0 { b"pw" } else { b"no" };
                    pool.verify(t, vec![h], presented).await.is_some()
                })
            })
            .collect();
        let mut got = Vec::new();
        for c in checks {
            got.push(c.await.unwrap());
        }
        assert_eq!(got, [true, false, true, false, true, false]);
        assert!(pool.workers() <= 2, "{}", pool.workers());
    }

    #[tokio::test]
    async fn pretend_verifies_for_real_only_until_a_time_is_measured() {
        let pool = Pool::new();
        let t = pool.admit(ONE, Instant::now()).unwrap();
        pool.pretend(t).await;
        assert_eq!(pool.samples.lock().unwrap().ring.len(), 1, "measured once");
        assert_eq!(pool.workers(), 1);
        // From now on it only sleeps: no new sample, the slot is held meanwhile.
        let t = pool.admit(ONE, Instant::now()).unwrap();
        let pool = Arc::new(pool);
        let p = pool.clone();
        let sleeping = tokio::spawn(async move { p.pretend(t).await });
        sleeping.await.unwrap();
        assert_eq!(pool.samples.lock().unwrap().ring.len(), 1);
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn pretend_waits_a_round_per_real_check_queued_ahead() {
        let pool = Pool::new();
        for _ in 0..4 {
            pool.samples
                .lock()
                .unwrap()
                .record(Duration::from_millis(40));
        }
        let two = PoolLimits {
            concurrency: 2,
            ..ONE
        };
        for (queued, rounds) in [(0, 1), (1, 1), (2, 2), (5, 3)] {
            pool.real.store(queued, Ordering::Release);
            let t = pool.admit(two, Instant::now()).unwrap();
            let started = tokio::time::Instant::now();
            pool.pretend(t).await;
            // The paused clock advances by exactly the sleep.
            assert_eq!(
                started.elapsed(),
                Duration::from_millis(40) * rounds,
                "{queued} queued"
            );
        }
        assert_eq!(pool.workers(), 0, "no worker was needed");
    }

    #[test]
    fn samples_keep_the_latest_and_draw_among_them() {
        let mut s = Samples::default();
        assert_eq!(s.draw(&mut rand::thread_rng()), None);
        for ms in 0..(SAMPLES as u64 + 10) {
            s.record(Duration::from_millis(ms));
        }
        assert_eq!(s.ring.len(), SAMPLES);
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let d = s.draw(&mut rng).unwrap();
            assert!(d >= Duration::from_millis(10), "{d:?} was overwritten");
        }
    }

    #[test]
    fn a_lowered_concurrency_retires_workers() {
        let w = Workers {
            jobs: Mutex::new(mpsc::channel().1),
            running: AtomicUsize::new(3),
            wanted: AtomicUsize::new(1),
        };
        assert!(w.retire());
        assert!(w.retire());
        assert!(!w.retire());
        assert_eq!(w.running.load(Ordering::Acquire), 1);
    }
}
