//! Rate limits per client or address (SPEC §13): which limits a forwarded request meets,
//! all of them taken or none, and the header values of the answer. `gcra` is the
//! arithmetic, `local` the in-process store, `shared` the Redis one; the proxy asks
//! [`Applicable`] and carries out what it says.

pub mod gcra;
pub mod local;
pub mod shared;

use crate::config::{LimitBy, LimitStore};
use gcra::{ceil_seconds, Gcra, Verdict};
use local::LocalCounts;
use shared::{Reply, Take};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// One compiled `rate_limits[]` entry.
#[derive(Debug)]
pub struct Limit {
    pub name: String,
    pub by: LimitBy,
    /// Indices into `Registry::privileges`; `None`: every privilege.
    pub privileges: Option<Vec<usize>>,
    pub rate: u64,
    pub per_seconds: u64,
    pub gcra: Gcra,
    pub store: LimitStore,
    /// Stored with each shared count: one kept under another shape (a reload changed the
    /// limit) reads as a full bucket, as a local count would start afresh.
    shape: String,
    /// Shared with the previous generation when a reload keeps the limit's shape
    /// ([`keep_counts`]).
    pub counts: Arc<LocalCounts>,
}

impl Limit {
    pub fn new(
        name: &str,
        by: LimitBy,
        privileges: Option<Vec<usize>>,
        (rate, per_seconds, burst): (u64, u64, u64),
        store: LimitStore,
    ) -> Limit {
        let by_tag = match by {
            LimitBy::Client => "client",
            LimitBy::Address => "address",
        };
        Limit {
            name: name.into(),
            by,
            privileges,
            rate,
            per_seconds,
            gcra: Gcra::new(rate, per_seconds, burst),
            store,
            shape: format!("{rate}/{per_seconds}s/{burst}/{by_tag}"),
            counts: Arc::default(),
        }
    }

    /// `RateLimit-Policy: "NAME";q=RATE;w=SECONDS`.
    pub fn policy(&self) -> String {
        format!("\"{}\";q={};w={}", self.name, self.rate, self.per_seconds)
    }

    /// What decides whether a reload keeps the counts (SPEC §13).
    fn shape(&self) -> (&str, LimitBy, u64, u64, u64) {
        (
            &self.name,
            self.by,
            self.rate,
            self.per_seconds,
            self.gcra.burst,
        )
    }
}

/// Counts of limits whose name, `by`, `rate`, `per` and `burst` a reload left alone carry on.
/// (Shared counts live in Redis and carry on by their stored shape.)
pub fn keep_counts(new: &mut [Limit], old: &[Limit]) {
    for n in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| o.shape() == n.shape()) {
            n.counts = o.counts.clone();
        }
    }
}

/// Who a request is, for the limits.
pub struct Caller<'a> {
    /// The privilege that decided the request (index), when one did.
    pub privilege: Option<usize>,
    /// The token's client id, when a token was verified.
    pub client: Option<&'a str>,
    pub addr: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No limit applies.
    NotCounted,
    /// Every applicable limit had room; `limit` (an index) is the one with the least left.
    Counted {
        limit: usize,
        remaining: u64,
        full_in_seconds: u64,
    },
    /// `limit` has no room: 429. Nothing was taken from any limit.
    Refused {
        limit: usize,
        retry_after_seconds: u64,
        full_in_seconds: u64,
    },
}

impl Outcome {
    /// The `RateLimit` field: `"NAME";r=REMAINING;t=SECONDS`.
    pub fn header(&self, limits: &[Limit]) -> Option<String> {
        match *self {
            Outcome::NotCounted => None,
            Outcome::Counted {
                limit,
                remaining,
                full_in_seconds,
            } => Some(format!(
                "\"{}\";r={remaining};t={full_in_seconds}",
                limits[limit].name
            )),
            Outcome::Refused {
                limit,
                full_in_seconds,
                ..
            } => Some(format!(
                "\"{}\";r=0;t={full_in_seconds}",
                limits[limit].name
            )),
        }
    }

    /// Of two outcomes where each had room, the one with the least left.
    fn least(self, other: Outcome) -> Outcome {
        match (&self, &other) {
            (Outcome::NotCounted, _) => other,
            (Outcome::Counted { remaining: a, .. }, Outcome::Counted { remaining: b, .. })
                if b < a =>
            {
                other
            }
            _ => self,
        }
    }
}

/// Nanoseconds on the monotonic clock since the first call: the `now` of [`check`].
pub fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // From 1 s on, so a fresh entry's 0 always reads as "long ago".
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX) + gcra::NANOS
}

/// Whether `l` counts requests decided by `privilege` (public paths are never counted).
fn applies(l: &Limit, privilege: Option<usize>) -> bool {
    match (&l.privileges, privilege) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(ps), Some(p)) => ps.contains(&p),
    }
}

/// Take one request from every local limit that applies to `caller` at `now`, or from none.
pub fn check(limits: &[Limit], caller: &Caller<'_>, now: u64) -> Outcome {
    Applicable::new(limits, caller).take_local(now)
}

/// The limits that apply to one request and the key each counts it by. Local limits are
/// taken first (no wait); the shared ones then go to the store in one round trip, and a
/// refusal there gives the local ones back: all or nothing across both.
pub struct Applicable<'a> {
    limits: &'a [Limit],
    caller: &'a Caller<'a>,
    /// Formatted once, and only when some limit counts by address.
    addr: Option<String>,
}

impl<'a> Applicable<'a> {
    pub fn new(limits: &'a [Limit], caller: &'a Caller<'a>) -> Applicable<'a> {
        let addr = limits
            .iter()
            .any(|l| l.by == LimitBy::Address)
            .then(|| caller.addr.map(|a| a.to_string()))
            .flatten();
        Applicable {
            limits,
            caller,
            addr,
        }
    }

    /// The limits of `store` that apply, with their index and key (`by: client` needs a
    /// verified token, `by: address` an address).
    fn each(&self, store: LimitStore) -> impl Iterator<Item = (usize, &'a Limit, &str)> + '_ {
        self.limits
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.store == store && applies(l, self.caller.privilege))
            .filter_map(|(i, l)| {
                let key = match l.by {
                    LimitBy::Client => self.caller.client,
                    LimitBy::Address => self.addr.as_deref(),
                };
                key.map(|k| (i, l, k))
            })
    }

    /// Take one request from every local limit that applies, or from none.
    pub fn take_local(&self, now: u64) -> Outcome {
        let mut least = Outcome::NotCounted;
        for (i, l, key) in self.each(LimitStore::Local) {
            match l.counts.take(&l.gcra, key, now) {
                Verdict::Allowed {
                    remaining, full_in, ..
                } => {
                    least = least.least(Outcome::Counted {
                        limit: i,
                        remaining,
                        full_in_seconds: ceil_seconds(full_in),
                    });
                }
                Verdict::Limited { retry_in, full_in } => {
                    // All or nothing: the earlier limits that applied gave one; it goes back.
                    for (_, lj, k) in self.each(LimitStore::Local).take_while(|(j, ..)| *j < i) {
                        lj.counts.give_back(&lj.gcra, k);
                    }
                    return Outcome::Refused {
                        limit: i,
                        retry_after_seconds: ceil_seconds(retry_in).max(1),
                        full_in_seconds: ceil_seconds(full_in).max(1),
                    };
                }
            }
        }
        least
    }

    /// Undo what [`take_local`](Self::take_local) took (the store refused the request).
    pub fn give_back_local(&self) {
        for (_, l, k) in self.each(LimitStore::Local) {
            l.counts.give_back(&l.gcra, k);
        }
    }

    /// The shared limits that apply, as the store's script takes them; empty: no round trip.
    pub fn shared(&self) -> Vec<Take<'_>> {
        self.each(LimitStore::Redis)
            .map(|(_, l, key)| Take {
                name: &l.name,
                key,
                interval_ns: l.gcra.interval,
                burst: l.gcra.burst,
                shape: &l.shape,
            })
            .collect()
    }

    /// The outcome of both stores: `local` (which had room) and the store's `reply`. A
    /// refusal by the store gives back what the local limits took.
    pub fn with_shared(&self, local: Outcome, reply: Reply) -> Outcome {
        let limit_at = |index: usize| {
            self.each(LimitStore::Redis)
                .nth(index)
                .map_or(0, |(i, ..)| i)
        };
        let seconds = |us: u64| us.div_ceil(1_000_000);
        match reply {
            Reply::Allowed {
                index,
                remaining,
                full_in_us,
            } => local.least(Outcome::Counted {
                limit: limit_at(index),
                remaining,
                full_in_seconds: seconds(full_in_us),
            }),
            Reply::Refused {
                index,
                retry_in_us,
                full_in_us,
            } => {
                self.give_back_local();
                Outcome::Refused {
                    limit: limit_at(index),
                    retry_after_seconds: seconds(retry_in_us).max(1),
                    full_in_seconds: seconds(full_in_us).max(1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Reply;

    fn limit(
        name: &str,
        by: LimitBy,
        privileges: Option<Vec<usize>>,
        rate: u64,
        burst: u64,
    ) -> Limit {
        Limit::new(name, by, privileges, (rate, 60, burst), LimitStore::Local)
    }

    const NOW: u64 = 5 * gcra::NANOS;

    #[test]
    fn which_limits_apply() {
        let ls = [
            limit("per_client", LimitBy::Client, None, 10, 10),
            limit("writes", LimitBy::Client, Some(vec![1]), 10, 10),
            limit("per_addr", LimitBy::Address, Some(vec![0]), 10, 10),
        ];
        let addr = Some("10.0.0.7".parse().unwrap());
        let public = Caller {
            privilege: None,
            client: None,
            addr,
        };
        assert_eq!(check(&ls, &public, NOW), Outcome::NotCounted);
        // Privilege 0 with a token: per_client and per_addr; not writes.
        let c = Caller {
            privilege: Some(0),
            client: Some("c1"),
            addr,
        };
        assert!(matches!(
            check(&ls, &c, NOW),
            Outcome::Counted { remaining: 9, .. }
        ));
        assert_eq!(
            ls[0].counts.len() + ls[1].counts.len() + ls[2].counts.len(),
            2
        );
        // No token (report mode): only the address limit.
        let anon = Caller {
            privilege: Some(0),
            client: None,
            addr,
        };
        assert!(matches!(
            check(&ls, &anon, NOW),
            Outcome::Counted {
                limit: 2,
                remaining: 8,
                ..
            }
        ));
    }

    #[test]
    fn all_or_nothing_and_the_least_remaining() {
        let ls = [
            limit("wide", LimitBy::Client, None, 100, 100),
            limit("narrow", LimitBy::Client, None, 1, 2),
        ];
        let c = Caller {
            privilege: Some(0),
            client: Some("c1"),
            addr: None,
        };
        let o = check(&ls, &c, NOW);
        assert_eq!(
            o,
            Outcome::Counted {
                limit: 1,
                remaining: 1,
                full_in_seconds: 60
            }
        );
        assert_eq!(o.header(&ls).unwrap(), "\"narrow\";r=1;t=60");
        assert!(matches!(
            check(&ls, &c, NOW),
            Outcome::Counted {
                limit: 1,
                remaining: 0,
                ..
            }
        ));
        let refused = check(&ls, &c, NOW);
        assert_eq!(
            refused,
            Outcome::Refused {
                limit: 1,
                retry_after_seconds: 60,
                full_in_seconds: 120
            }
        );
        assert_eq!(refused.header(&ls).unwrap(), "\"narrow\";r=0;t=120");
        assert_eq!(ls[1].policy(), "\"narrow\";q=1;w=60");
        // The refused requests took nothing from `wide`: after two counted, the next
        // leaves 97.
        let Outcome::Refused { .. } = check(&ls, &c, NOW) else {
            panic!()
        };
        match ls[0].counts.take(&ls[0].gcra, "c1", NOW) {
            Verdict::Allowed { remaining, .. } => assert_eq!(remaining, 97),
            v => panic!("{v:?}"),
        }
    }

    /// Local limits are taken first; the store's verdict merges with theirs, and its
    /// refusal gives them back.
    #[test]
    fn local_and_shared_limits_are_all_or_nothing_together() {
        let shared =
            |name, by, burst| Limit::new(name, by, None, (10, 60, burst), LimitStore::Redis);
        let ls = [
            limit("local", LimitBy::Client, None, 10, 5),
            shared("by_client", LimitBy::Client, 10),
            shared("by_addr", LimitBy::Address, 10),
        ];
        let c = Caller {
            privilege: Some(0),
            client: Some("c1"),
            addr: Some("10.0.0.7".parse().unwrap()),
        };
        let a = Applicable::new(&ls, &c);
        let takes = a.shared();
        assert_eq!(takes.len(), 2);
        assert_eq!((takes[0].name, takes[0].key), ("by_client", "c1"));
        assert_eq!((takes[1].name, takes[1].key), ("by_addr", "10.0.0.7"));
        assert_eq!(takes[1].shape, "10/60s/10/address");
        let local = a.take_local(NOW);
        assert!(matches!(
            local,
            Outcome::Counted {
                limit: 0,
                remaining: 4,
                ..
            }
        ));
        // The store has less left than the local limit: its limit names the answer.
        let merged = a.with_shared(
            local.clone(),
            Reply::Allowed {
                index: 1,
                remaining: 2,
                full_in_us: 1_500_001,
            },
        );
        assert_eq!(
            merged,
            Outcome::Counted {
                limit: 2,
                remaining: 2,
                full_in_seconds: 2
            }
        );
        let more = a.with_shared(
            local,
            Reply::Allowed {
                index: 0,
                remaining: 9,
                full_in_us: 1,
            },
        );
        assert!(matches!(
            more,
            Outcome::Counted {
                limit: 0,
                remaining: 4,
                ..
            }
        ));
        // Refused by the store: its local take goes back, so the next leaves 3, not 2.
        let refused = a.with_shared(
            a.take_local(NOW),
            Reply::Refused {
                index: 0,
                retry_in_us: 100,
                full_in_us: 2_000_000,
            },
        );
        assert_eq!(
            refused,
            Outcome::Refused {
                limit: 1,
                retry_after_seconds: 1,
                full_in_seconds: 2
            }
        );
        assert!(matches!(
            a.take_local(NOW),
            Outcome::Counted { remaining: 3, .. }
        ));
    }

    #[test]
    fn a_reload_keeps_the_counts_of_an_unchanged_limit_only() {
        let old = [
            limit("same", LimitBy::Client, None, 1, 1),
            limit("changed", LimitBy::Client, None, 1, 1),
        ];
        let c = Caller {
            privilege: Some(0),
            client: Some("c1"),
            addr: None,
        };
        assert!(matches!(check(&old, &c, NOW), Outcome::Counted { .. }));
        let mut new = [
            limit("same", LimitBy::Client, Some(vec![0]), 1, 1),
            limit("changed", LimitBy::Client, None, 2, 1),
        ];
        keep_counts(&mut new, &old);
        assert!(Arc::ptr_eq(&new[0].counts, &old[0].counts));
        assert!(
            !Arc::ptr_eq(&new[1].counts, &old[1].counts),
            "a new rate starts afresh"
        );
    }
}
