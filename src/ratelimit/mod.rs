//! Rate limits per client or address (SPEC §13): which limits a forwarded request meets,
//! all of them taken or none, and the header values of the answer. `gcra` is the
//! arithmetic, `local` the in-process store; the proxy asks [`check`] and carries out what
//! it says.

pub mod gcra;
pub mod local;

use crate::config::LimitBy;
use gcra::{ceil_seconds, Gcra, Verdict};
use local::LocalCounts;
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
    /// Shared with the previous generation when a reload keeps the limit's shape
    /// ([`keep_counts`]).
    pub counts: Arc<LocalCounts>,
}

impl Limit {
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

/// Take one request from every limit that applies to `caller` at `now`, or from none.
pub fn check(limits: &[Limit], caller: &Caller<'_>, now: u64) -> Outcome {
    // Formatted once, and only when some limit counts by address.
    let addr = limits
        .iter()
        .any(|l| l.by == LimitBy::Address)
        .then(|| caller.addr.map(|a| a.to_string()))
        .flatten();
    let key_of = |l: &Limit| match l.by {
        LimitBy::Client => caller.client,
        LimitBy::Address => addr.as_deref(),
    };
    let mut least: Option<(usize, u64, u64)> = None;
    for (i, l) in limits.iter().enumerate() {
        if !applies(l, caller.privilege) {
            continue;
        }
        // `by: client` needs a verified token; `by: address` an address.
        let Some(key) = key_of(l) else {
            continue;
        };
        match l.counts.take(&l.gcra, key, now) {
            Verdict::Allowed {
                remaining, full_in, ..
            } => {
                if least.is_none_or(|(_, r, _)| remaining < r) {
                    least = Some((i, remaining, ceil_seconds(full_in)));
                }
            }
            Verdict::Limited { retry_in, full_in } => {
                // All or nothing: the earlier limits that applied gave one; it goes back.
                for lj in limits[..i].iter().filter(|l| applies(l, caller.privilege)) {
                    if let Some(k) = key_of(lj) {
                        lj.counts.give_back(&lj.gcra, k);
                    }
                }
                return Outcome::Refused {
                    limit: i,
                    retry_after_seconds: ceil_seconds(retry_in).max(1),
                    full_in_seconds: ceil_seconds(full_in).max(1),
                };
            }
        }
    }
    match least {
        None => Outcome::NotCounted,
        Some((limit, remaining, full_in_seconds)) => Outcome::Counted {
            limit,
            remaining,
            full_in_seconds,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(
        name: &str,
        by: LimitBy,
        privileges: Option<Vec<usize>>,
        rate: u64,
        burst: u64,
    ) -> Limit {
        Limit {
            name: name.into(),
            by,
            privileges,
            rate,
            per_seconds: 60,
            gcra: Gcra::new(rate, 60, burst),
            counts: Arc::default(),
        }
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
