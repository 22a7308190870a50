//! The client's address behind trusted proxies (`trusted_proxies`, SPEC §4).
//!
//! Behind an ingress every request reaches the sidecar from the ingress's address, so a
//! throttle per peer would be one throttle for everybody. When the peer is a trusted proxy,
//! the client is the rightmost `X-Forwarded-For` address that is not one: each trusted hop
//! appended the address it was connected from, and anything left of the first untrusted
//! address was written by the client and proves nothing (nginx's `real_ip_recursive`).

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse CIDRs (`10.0.0.0/8`, `fd00::/8`) or bare addresses. `Err((index, message))`.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, (usize, String)> {
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        (
                            i,
                            format!("`{s}` is not a CIDR such as 10.0.0.0/8 or an IP address"),
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `ip` is in one of the ranges.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer` itself unless it is trusted; then the rightmost
    /// `X-Forwarded-For` entry not trusted (the leftmost when all are, the peer when there
    /// are none). `xff` holds the header's values in order (several headers are one list);
    /// they are walked from the right, without copying. An entry that is not an address
    /// stops the walk at the hop that wrote it.
    pub fn client_addr<'a>(
        &self,
        peer: IpAddr,
        xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        self.forwarded_by(peer, xff)
    }

    /// The client's address when `peer` is trusted whatever the ranges say (an authz check
    /// from one of `authz.trusted_peers`, SPEC §14): the rightmost `X-Forwarded-For` entry
    /// not in the ranges, the leftmost when all are, `peer` when there is none.
    pub fn forwarded_by<'a>(
        &self,
        peer: IpAddr,
        xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        for entry in xff.rev().flat_map(|v| v.rsplit(|&b| b == b',')) {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`,
/// `[::1]:80`, as some load balancers write), optionally bracketed.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(t: &TrustedProxies, peer: &str, xff: &[&str]) -> IpAddr {
        t.client_addr(ip(peer), xff.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(addr(&t, "192.0.2.7", &["198.51.100.1"]), ip("192.0.2.7"));
        let none = TrustedProxies::default();
        assert_eq!(addr(&none, "10.0.0.1", &["198.51.100.1"]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "fd00::/8"]);
        // The client spoofs a leftmost entry; the ingress appended the real address.
        assert_eq!(
            addr(&t, "10.1.2.3", &["1.1.1.1, 198.51.100.9"]),
            ip("198.51.100.9")
        );
        // Two trusted hops, across two headers.
        assert_eq!(
            addr(&t, "10.1.2.3", &["203.0.113.5, 10.9.9.9", "fd00::1"]),
            ip("203.0.113.5")
        );
        // Nothing forwarded: the peer itself.
        assert_eq!(addr(&t, "10.1.2.3", &[]), ip("10.1.2.3"));
        // All trusted: the leftmost.
        assert_eq!(
            addr(&t, "10.1.2.3", &["10.0.0.8, 10.0.0.9"]),
            ip("10.0.0.8")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let t = trusted(&["127.0.0.1"]);
        assert_eq!(
            addr(&t, "::ffff:127.0.0.1", &["192.0.2.1:5000"]),
            ip("192.0.2.1")
        );
        assert_eq!(
            addr(&t, "127.0.0.1", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(addr(&t, "127.0.0.1", &["[2001:db8::2]"]), ip("2001:db8::2"));
        assert_eq!(
            addr(&t, "127.0.0.1", &[" ::ffff:192.0.2.3 "]),
            ip("192.0.2.3")
        );
    }

    #[test]
    fn garbage_stops_at_the_hop_that_wrote_it() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(addr(&t, "10.0.0.1", &["unknown"]), ip("10.0.0.1"));
        assert_eq!(
            addr(&t, "10.0.0.1", &["198.51.100.1, junk, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            addr(&t, "10.0.0.1", &["junk, 198.51.100.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(addr(&t, "10.0.0.1", &[""]), ip("10.0.0.1"));
    }

    #[test]
    fn parse_errors_name_the_entry() {
        let e = TrustedProxies::parse(&["10.0.0.0/8".into(), "10.0.0.0/33".into()]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(e.1.contains("10.0.0.0/33"), "{}", e.1);
        assert_eq!(trusted(&["10.1.2.3/8"]), trusted(&["10.0.0.0/8"]));
    }
}
