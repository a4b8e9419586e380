//! Clients behind a reverse proxy or load balancer: which address a request is from.
//!
//! A connection from an address in [`crate::ServerConfig::trusted_proxies`] carries other
//! clients' requests: their address is the last one in `X-Forwarded-For` that is not itself
//! a trusted proxy (each proxy appends the address it was connected from, so entries left of
//! that one are whatever the client wrote, and are ignored). The per-source limits (joins a
//! second, socket.io sessions) then count that client, and the logs and admin API show it.
//! From any other address the header is ignored: a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is in one of `trusted`.
pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The address a request on a connection from `peer` is from. `X-Forwarded-For` entries are
/// read right to left, over every such header; the walk stops at the first entry that is not
/// an address (`unknown`, garbage): the last good one is taken.
pub(crate) fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    if trusted.is_empty() || !is_trusted(trusted, peer.ip()) {
        return peer;
    }
    let mut client = peer;
    let values = headers.get_all("x-forwarded-for").iter().rev();
    for value in values {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = SocketAddr::new(ip.to_canonical(), 0);
            if !is_trusted(trusted, ip) {
                return client;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
        client_addr(peer.parse().unwrap(), &headers, &trusted)
            .ip()
            .to_string()
    }

    const LB: &[&str] = &["10.0.0.0/8", "127.0.0.1/32"];

    #[test]
    fn a_trusted_proxys_last_untrusted_entry_is_the_client() {
        assert_eq!(client("10.0.0.5:4000", &["203.0.113.9"], LB), "203.0.113.9");
        // The client wrote the leftmost entry itself: ignored.
        assert_eq!(
            client("10.0.0.5:4000", &["1.1.1.1, 203.0.113.9"], LB),
            "203.0.113.9"
        );
        // Two proxies (one in front of the other), both trusted.
        assert_eq!(
            client("127.0.0.1:4000", &["1.1.1.1, 203.0.113.9, 10.0.0.7"], LB),
            "203.0.113.9"
        );
        // Several headers are one list, in order.
        assert_eq!(
            client("10.0.0.5:4000", &["1.1.1.1", "203.0.113.9, 10.0.0.7"], LB),
            "203.0.113.9"
        );
        // Ports and IPv6, and IPv4-mapped addresses as IPv4.
        assert_eq!(
            client("10.0.0.5:4000", &["203.0.113.9:5555"], LB),
            "203.0.113.9"
        );
        assert_eq!(
            client("10.0.0.5:4000", &["[2001:db8::1]:443"], LB),
            "2001:db8::1"
        );
        assert_eq!(
            client("10.0.0.5:4000", &["::ffff:203.0.113.9"], LB),
            "203.0.113.9"
        );
        assert_eq!(
            client("[::ffff:10.0.0.5]:4000", &["203.0.113.9"], LB),
            "203.0.113.9"
        );
    }

    #[test]
    fn anyone_elses_header_and_garbage_are_ignored() {
        // Not from a trusted proxy: the header is the client's own claim.
        assert_eq!(
            client("198.51.100.4:4000", &["203.0.113.9"], LB),
            "198.51.100.4"
        );
        assert_eq!(client("10.0.0.5:4000", &["203.0.113.9"], &[]), "10.0.0.5");
        // No header, or nothing usable in it: the proxy's address.
        assert_eq!(client("10.0.0.5:4000", &[], LB), "10.0.0.5");
        assert_eq!(client("10.0.0.5:4000", &["unknown"], LB), "10.0.0.5");
        assert_eq!(client("10.0.0.5:4000", &[""], LB), "10.0.0.5");
        // Garbage stops the walk at the last good entry.
        assert_eq!(
            client("10.0.0.5:4000", &["203.0.113.9, nonsense, 10.0.0.7"], LB),
            "10.0.0.7"
        );
        // Only proxies in the chain: the leftmost.
        assert_eq!(
            client("10.0.0.5:4000", &["10.0.0.8, 10.0.0.7"], LB),
            "10.0.0.8"
        );
        // A very long header costs one pass over it.
        let long = vec!["10.0.0.1"; 2000].join(",");
        assert_eq!(client("10.0.0.5:4000", &[long.as_str()], LB), "10.0.0.1");
    }
}
