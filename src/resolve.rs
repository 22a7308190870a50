//! Upstream addresses. An IP literal is fixed at load; a host name is looked up when a
//! request needs it, not at load: a Kubernetes Service or a remote API's name may not
//! resolve yet when the pod starts, and its addresses change. A lookup's answer is kept
//! for [`FRESH`]; when a lookup fails, the last answer stays in use and the next request
//! after [`RETRY`] looks again. A name that never resolved answers its failure for
//! [`RETRY`] too, so a flood of requests to it is not a flood of lookups and log lines.
//! Concurrent requests share one lookup.

use arc_swap::ArcSwapOption;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a lookup's answer is used before the next request looks again. The system
/// resolver gives no TTL; 30 s follows a Service's change soon enough.
pub const FRESH: Duration = Duration::from_secs(30);
/// How long a failed lookup's predecessor is used before the next attempt.
pub const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum Address {
    Fixed(SocketAddr),
    Name(Arc<Named>),
}

#[derive(Debug)]
pub struct Named {
    host: String,
    port: u16,
    known: ArcSwapOption<Known>,
    /// The last failure while nothing is known, and until when it is the answer.
    failed: ArcSwapOption<(Instant, ResolveError)>,
    lookup: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Known {
    addr: SocketAddr,
    /// Until when `addr` is used without looking again.
    until: Instant,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("`{0}` does not resolve: {1}")]
    Failed(String, String),
    #[error("`{0}` resolves to no address")]
    Empty(String),
    #[error("looking up `{0}` took longer than {ms} ms", ms = .1.as_millis())]
    Timeout(String, Duration),
}

/// Until when a lookup made at `now` holds: [`FRESH`] after a success, [`RETRY`] after a
/// failure that left an older answer in use.
pub fn held_until(now: Instant, succeeded: bool) -> Instant {
    now + if succeeded { FRESH } else { RETRY }
}

impl Address {
    /// `host:port` as the config gave it: a literal is fixed now, a name waits.
    pub fn new(host: &str, port: u16) -> Address {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Address::Fixed(SocketAddr::new(ip, port)),
            Err(_) => Address::Name(Arc::new(Named {
                host: host.to_string(),
                port,
                known: ArcSwapOption::empty(),
                failed: ArcSwapOption::empty(),
                lookup: tokio::sync::Mutex::new(()),
            })),
        }
    }

    /// The host and port as the config gave them (a span's `server.address`, `server.port`).
    pub fn host_port(&self) -> (String, u16) {
        match self {
            Address::Fixed(a) => (a.ip().to_string(), a.port()),
            Address::Name(n) => (n.host.clone(), n.port),
        }
    }

    /// The address to connect to now, looking the name up within `deadline` if its last
    /// answer is stale. A failed lookup keeps a previous answer in use.
    pub async fn resolve(&self, deadline: Duration) -> Result<SocketAddr, ResolveError> {
        let named = match self {
            Address::Fixed(a) => return Ok(*a),
            Address::Name(n) => n,
        };
        let now = Instant::now();
        if let Some(answer) = named.held(now) {
            return answer;
        }
        let looked = tokio::time::timeout(deadline, async {
            let _one = named.lookup.lock().await;
            // Another request may have looked while this one waited.
            if let Some(answer) = named.held(now) {
                return answer;
            }
            let answer = match tokio::net::lookup_host((named.host.as_str(), named.port)).await {
                Ok(mut addrs) => addrs
                    .next()
                    .ok_or_else(|| ResolveError::Empty(named.host.clone())),
                Err(e) => Err(ResolveError::Failed(named.host.clone(), e.to_string())),
            };
            named.settle(answer, Instant::now())
        })
        .await;
        match looked {
            Ok(r) => r,
            Err(_) => {
                let timeout = ResolveError::Timeout(named.host.clone(), deadline);
                named.settle(Err(timeout), Instant::now())
            }
        }
    }
}

impl Named {
    /// The answer still held at `now`: a fresh address, or a recent failure while no
    /// address was ever had.
    fn held(&self, now: Instant) -> Option<Result<SocketAddr, ResolveError>> {
        if let Some(k) = self.known.load().as_ref().filter(|k| k.until > now) {
            return Some(Ok(k.addr));
        }
        match self.failed.load().as_deref() {
            Some((until, e)) if *until > now => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// Record a lookup's `answer`: a success replaces the known address; a failure keeps
    /// the old one (if any) for [`RETRY`] and is logged.
    fn settle(
        &self,
        answer: Result<SocketAddr, ResolveError>,
        now: Instant,
    ) -> Result<SocketAddr, ResolveError> {
        let previous = self.known.load_full();
        match (answer, previous) {
            (Ok(addr), _) => {
                self.known.store(Some(Arc::new(Known {
                    addr,
                    until: held_until(now, true),
                })));
                self.failed.store(None);
                Ok(addr)
            }
            (Err(e), Some(old)) => {
                tracing::warn!(target: "ords_guard::upstream", host = %self.host, kept = %old.addr, "upstream lookup failed: {e}; the last address stays in use");
                self.known.store(Some(Arc::new(Known {
                    addr: old.addr,
                    until: held_until(now, false),
                })));
                Ok(old.addr)
            }
            (Err(e), None) => {
                tracing::warn!(target: "ords_guard::upstream", host = %self.host, retry_in_s = RETRY.as_secs(), "upstream lookup failed: {e}");
                self.failed
                    .store(Some(Arc::new((held_until(now, false), e.clone()))));
                Err(e)
            }
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Fixed(a) => write!(f, "{a}"),
            Address::Name(n) if n.host.contains(':') => write!(f, "[{}]:{}", n.host, n.port),
            Address::Name(n) => write!(f, "{}:{}", n.host, n.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(a: &Address) -> &Named {
        match a {
            Address::Name(n) => n,
            Address::Fixed(_) => panic!("a literal"),
        }
    }

    #[tokio::test]
    async fn literals_are_fixed_names_wait() {
        let a = Address::new("127.0.0.1", 8080);
        assert!(matches!(a, Address::Fixed(_)));
        assert_eq!(a.to_string(), "127.0.0.1:8080");
        let v6 = Address::new("::1", 80);
        assert_eq!(v6.resolve(RETRY).await.unwrap().to_string(), "[::1]:80");
        let n = Address::new("orders.example.com", 443);
        assert!(matches!(n, Address::Name(_)));
        assert_eq!(n.to_string(), "orders.example.com:443");
    }

    #[tokio::test]
    async fn a_name_resolves_when_asked_and_is_kept() {
        let a = Address::new("localhost", 3000);
        let first = a.resolve(RETRY).await.expect("localhost resolves");
        assert!(first.ip().is_loopback() && first.port() == 3000);
        let k = named(&a).known.load_full().expect("kept");
        assert_eq!(k.addr, first);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_keeps_the_last_address_and_retries_soon() {
        let a = Address::new("orders.invalid", 443);
        let n = named(&a);
        let t0 = Instant::now();
        let fail = || Err(ResolveError::Failed("orders.invalid".into(), "no".into()));
        // Nothing known: the failure is the answer, and stays it until RETRY: no lookup
        // per request meanwhile.
        assert!(n.settle(fail(), t0).is_err());
        assert!(n.known.load().is_none());
        assert_eq!(n.held(t0 + RETRY - Duration::from_millis(1)), Some(fail()));
        assert_eq!(
            n.held(t0 + RETRY),
            None,
            "then the next request looks again"
        );
        let good: SocketAddr = "192.0.2.7:443".parse().unwrap();
        assert_eq!(n.settle(Ok(good), t0), Ok(good));
        assert_eq!(n.known.load().as_ref().unwrap().until, t0 + FRESH);
        // A stale answer and a failed lookup: the old address, held only until RETRY.
        let t1 = t0 + FRESH + Duration::from_secs(1);
        assert_eq!(n.settle(fail(), t1), Ok(good));
        assert_eq!(n.known.load().as_ref().unwrap().until, t1 + RETRY);
        // Within that, resolve() answers from what is known, without a lookup.
        tokio::time::advance(FRESH + Duration::from_secs(2)).await;
        assert_eq!(a.resolve(RETRY).await, Ok(good));
    }

    #[test]
    fn holding_times() {
        let now = Instant::now();
        assert_eq!(held_until(now, true) - now, FRESH);
        assert_eq!(held_until(now, false) - now, RETRY);
    }
}
