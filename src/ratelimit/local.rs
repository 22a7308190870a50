//! The local store (SPEC §13 `store: local`): one limit's TATs by key (client id or
//! address), in a sharded map so concurrent requests of different clients do not contend.
//! An entry whose TAT has passed holds nothing a fresh one would not (a full bucket), so it
//! is dropped: a sweep runs when the map has doubled since the last one, which keeps it
//! within twice the keys active in the last burst window, whatever a flood of distinct
//! keys does.

use super::gcra::{Gcra, Verdict};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fewest entries before the first sweep.
const SWEEP_FLOOR: usize = 1024;

#[derive(Debug)]
pub struct LocalCounts {
    tats: DashMap<Box<str>, u64>,
    /// The size at which the next sweep runs.
    sweep_at: AtomicUsize,
}

impl Default for LocalCounts {
    fn default() -> Self {
        LocalCounts {
            tats: DashMap::new(),
            sweep_at: AtomicUsize::new(SWEEP_FLOOR),
        }
    }
}

impl LocalCounts {
    /// Take one request for `key` at `now`, atomically for that key.
    pub fn take(&self, g: &Gcra, key: &str, now: u64) -> Verdict {
        if let Some(mut tat) = self.tats.get_mut(key) {
            let v = g.check(Some(*tat), now);
            if let Verdict::Allowed { tat: next, .. } = v {
                *tat = next;
            }
            return v;
        }
        let v = {
            let mut entry = self.tats.entry(key.into()).or_insert(0);
            // Another request may have inserted it meanwhile: 0 reads as "before now".
            let v = g.check(Some(*entry), now);
            if let Verdict::Allowed { tat: next, .. } = v {
                *entry = next;
            }
            v
        };
        if self.tats.len() >= self.sweep_at.load(Ordering::Relaxed) {
            self.sweep(now);
        }
        v
    }

    /// Undo one request `take` let through for `key`.
    pub fn give_back(&self, g: &Gcra, key: &str) {
        if let Some(mut tat) = self.tats.get_mut(key) {
            *tat = g.give_back(*tat);
        }
    }

    /// Drop the entries whose bucket is full again.
    fn sweep(&self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        let next = (self.tats.len() * 2).max(SWEEP_FLOOR);
        self.sweep_at.store(next, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::gcra::NANOS;

    #[test]
    fn counts_per_key() {
        let g = Gcra::new(1, 1, 2);
        let c = LocalCounts::default();
        let allowed = |k: &str| matches!(c.take(&g, k, NANOS), Verdict::Allowed { .. });
        assert!(allowed("a") && allowed("a"));
        assert!(!allowed("a"), "a's burst is spent");
        assert!(allowed("b"), "b has its own");
        c.give_back(&g, "a");
        assert!(allowed("a"), "a request given back can be taken again");
    }

    /// A flood of distinct keys: memory stays within twice the keys still active.
    #[test]
    fn a_flood_of_distinct_keys_stays_bounded() {
        let g = Gcra::new(100, 1, 1); // each entry lives 10 ms
        let c = LocalCounts::default();
        let mut peak = 0;
        for i in 0..200_000u64 {
            // One new key every 100 µs: about 100 alive at any time.
            let now = NANOS + i * 100_000;
            let _ = c.take(&g, &format!("client-{i}"), now);
            peak = peak.max(c.len());
        }
        assert!(peak <= 2 * SWEEP_FLOOR, "peak {peak}");
    }
}
