//! Throttling of failed client authentication at the token endpoint (SPEC §4).
//!
//! Failures are counted per presented client id — known and unknown alike, so a 429 says
//! nothing about whether an id exists — and per client address (the peer's, or behind
//! `trusted_proxies` the forwarded one), in fixed windows. Memory is
//! bounded: past `MAX_ENTRIES` keys, expired windows are swept, and if that is not enough the
//! table is cleared (an attacker flooding ids then only resets the counts to zero, never
//! blocks a real client).

use dashmap::DashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
/// Failed attempts allowed per client id in a window.
pub const PER_CLIENT: u32 = 10;
/// Failed attempts allowed per peer address in a window.
pub const PER_PEER: u32 = 50;
const MAX_ENTRIES: usize = 100_000;
/// Longer presented ids are truncated for the key: they cannot be registered ids anyway.
const MAX_ID_LEN: usize = 256;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

struct Table<K: Hash + Eq> {
    map: DashMap<K, Window>,
    limit: u32,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limit: u32) -> Self {
        Table {
            map: DashMap::new(),
            limit,
        }
    }

    fn blocked_for(&self, k: &K, now: Instant) -> Option<Duration> {
        let w = *self.map.get(k)?;
        let elapsed = now.saturating_duration_since(w.start);
        (elapsed < WINDOW && w.failures >= self.limit).then(|| WINDOW - elapsed)
    }

    fn fail(&self, k: K, now: Instant) {
        if self.map.len() >= MAX_ENTRIES {
            self.map
                .retain(|_, w| now.saturating_duration_since(w.start) < WINDOW);
            if self.map.len() >= MAX_ENTRIES {
                self.map.clear();
            }
        }
        let mut w = self.map.entry(k).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    fn clear(&self, k: &K) {
        self.map.remove(k);
    }
}

pub struct Throttle {
    clients: Table<String>,
    peers: Table<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(PER_CLIENT, PER_PEER)
    }
}

fn key(id: &str) -> String {
    let mut end = id.len().min(MAX_ID_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_string()
}

impl Throttle {
    pub fn new(per_client: u32, per_peer: u32) -> Self {
        Throttle {
            clients: Table::new(per_client),
            peers: Table::new(per_peer),
        }
    }

    /// `Some(wait)` when either the id or the peer has used up its failures.
    pub fn blocked(
        &self,
        client_id: Option<&str>,
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Option<Duration> {
        let a = client_id.and_then(|id| self.clients.blocked_for(&key(id), now));
        let b = peer.and_then(|p| self.peers.blocked_for(&p, now));
        a.max(b)
    }

    pub fn failed(&self, client_id: Option<&str>, peer: Option<IpAddr>, now: Instant) {
        if let Some(id) = client_id {
            self.clients.fail(key(id), now);
        }
        if let Some(p) = peer {
            self.peers.fail(p, now);
        }
    }

    /// A correct secret clears the id's count (the peer's stays: it may be guessing others).
    pub fn succeeded(&self, client_id: &str) {
        self.clients.clear(&key(client_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_forgets_after_the_window() {
        let t = Throttle::new(3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.blocked(Some("ghost"), None, t0), None);
            t.failed(Some("ghost"), None, t0);
        }
        let wait = t
            .blocked(Some("ghost"), None, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(wait, WINDOW - Duration::from_secs(10));
        assert_eq!(t.blocked(Some("other"), None, t0), None);
        assert_eq!(t.blocked(Some("ghost"), None, t0 + WINDOW), None);
    }

    #[test]
    fn peers_are_counted_across_ids() {
        let t = Throttle::new(100, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        t.failed(Some("a"), Some(ip), now);
        t.failed(Some("b"), Some(ip), now);
        assert!(t.blocked(Some("c"), Some(ip), now).is_some());
        assert!(t
            .blocked(Some("c"), Some("10.0.0.2".parse().unwrap()), now)
            .is_none());
    }

    #[test]
    fn success_clears_the_id() {
        let t = Throttle::new(1, 100);
        let now = Instant::now();
        t.failed(Some("a"), None, now);
        assert!(t.blocked(Some("a"), None, now).is_some());
        t.succeeded("a");
        assert!(t.blocked(Some("a"), None, now).is_none());
    }

    #[test]
    fn long_ids_share_a_bounded_key() {
        let t = Throttle::new(1, 100);
        let now = Instant::now();
        let long = "é".repeat(500);
        t.failed(Some(&long), None, now);
        assert!(t.blocked(Some(&long), None, now).is_some());
        assert!(t.clients.map.iter().all(|e| e.key().len() <= MAX_ID_LEN));
    }
}
