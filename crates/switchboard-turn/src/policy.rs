//! Which peers the relay may talk to: pure functions, no IO.
//!
//! A TURN relay sends UDP wherever its (authenticated) client asks. Left open, that lets
//! any client with credentials reach the server's own loopback services, the operator's
//! private network or multicast groups through it. The default therefore refuses every
//! peer address that is not globally routable, and never relays into the server's own
//! non-relay ports, while relay-to-relay traffic between two allocations on the same server
//! keeps working (two clients that both need TURN).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;

/// Why a peer address was refused. The `snake_case` names appear in log lines and in the
/// `refused_peer` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRefusal {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), carrier-grade NAT `100.64/10`, IPv6 ULA
    /// `fc00::/7`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `224/4`, `ff00::/8`, and the IPv4 broadcast address.
    Multicast,
    /// `0.0.0.0/8`, `::`, and other addresses that are never a real peer (`240/4`, documentation
    /// ranges are *not* included: tests use them as "public" addresses).
    Unspecified,
    /// One of the server's own ports other than a relay (its HTTP, STUN/TURN listeners).
    OwnPort,
    /// One of the server's own addresses (any port that is not a live relay), unless that
    /// address is allow-listed.
    OwnAddress,
    /// In the operator's deny list.
    Denied,
}

impl PeerRefusal {
    /// The name used in logs and counters.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::OwnPort => "own_port",
            Self::OwnAddress => "own_address",
            Self::Denied => "denied",
        }
    }
}

/// The range class of an address, or `None` for a globally routable one.
#[must_use]
pub fn restricted_class(ip: IpAddr) -> Option<PeerRefusal> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_class(v4);
            }
            v6_class(v6)
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<PeerRefusal> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some(PeerRefusal::Loopback)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some(PeerRefusal::Private)
    } else if ip.is_link_local() {
        Some(PeerRefusal::LinkLocal)
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some(PeerRefusal::Multicast)
    } else if o[0] == 0 || o[0] >= 240 {
        Some(PeerRefusal::Unspecified)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 transition address carries, where the relay would in effect
/// reach it: NAT64 (`64:ff9b::/96`, RFC 6052), IPv4-translated (`::ffff:0:a.b.c.d`) and 6to4
/// (`2002:aabb:ccdd::/48`), IPv4-compatible (`::a.b.c.d`, deprecated). Teredo (`2001::/32`) carries two: its server and its (inverted)
/// client address.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        [0x2001, 0, shi, slo, _, _, chi, clo] => vec![v4(shi, slo), v4(!chi, !clo)],
        _ => Vec::new(),
    }
}

fn v6_class(ip: Ipv6Addr) -> Option<PeerRefusal> {
    let seg0 = ip.segments()[0];
    if ip.is_loopback() {
        return Some(PeerRefusal::Loopback);
    }
    if ip.is_unspecified() {
        return Some(PeerRefusal::Unspecified);
    }
    // A transition address is judged by the IPv4 address it leads to: `64:ff9b::10.0.0.5`
    // or `2002:a9fe:a9fe::` must not reach a private or metadata (169.254.169.254) address.
    if let Some(class) = embedded_v4(ip).into_iter().find_map(v4_class) {
        return Some(class);
    }
    if ip.segments()[..6] == [0; 6] {
        // `::a.b.c.d` with a public address: IPv4-compatible, deprecated and never routed.
        Some(PeerRefusal::Unspecified)
    } else if (seg0 & 0xfe00) == 0xfc00 || ip.segments()[..3] == [0x64, 0xff9b, 1] {
        // Unique local, and local-use NAT64 (`64:ff9b:1::/48`, RFC 8215): a private network.
        Some(PeerRefusal::Private)
    } else if (seg0 & 0xffc0) == 0xfe80 {
        Some(PeerRefusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(PeerRefusal::Multicast)
    } else {
        None
    }
}

/// The operator's peer policy on top of the safe default.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Networks the relay may reach even though they are loopback, private, link-local or
    /// the server's own addresses (e.g. `10.0.0.0/8` for an office LAN, `127.0.0.1/32` in
    /// tests). The server's own non-relay *ports* stay refused.
    pub allow: Vec<IpNet>,
    /// Networks always refused, checked before `allow`.
    pub deny: Vec<IpNet>,
}

/// Facts about the server that the policy needs, gathered by the driver.
pub trait ServerSockets {
    /// Whether `addr` is a live relay address of this server (relay-to-relay is allowed).
    fn is_relay(&self, addr: SocketAddr) -> bool;
    /// Whether `ip` is one of this server's addresses (interfaces, loopback, external IP).
    fn is_local_ip(&self, ip: IpAddr) -> bool;
    /// Whether `port` is one of this server's non-relay listening ports.
    fn is_protected_port(&self, port: u16) -> bool;
}

impl PeerPolicy {
    /// Whether the relay may send to (and accept a permission for) `peer`.
    ///
    /// # Errors
    /// The reason the peer is refused.
    pub fn check(&self, peer: SocketAddr, server: &impl ServerSockets) -> Result<(), PeerRefusal> {
        let ip = canonical(peer.ip());
        let peer = SocketAddr::new(ip, peer.port());
        if server.is_relay(peer) {
            return Ok(());
        }
        let local = server.is_local_ip(ip) || ip.is_unspecified();
        if local && server.is_protected_port(peer.port()) {
            return Err(PeerRefusal::OwnPort);
        }
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(PeerRefusal::Denied);
        }
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if let Some(class) = restricted_class(ip) {
            return Err(class);
        }
        if local {
            return Err(PeerRefusal::OwnAddress);
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Fake {
        relays: Vec<SocketAddr>,
        ips: Vec<IpAddr>,
        ports: Vec<u16>,
    }
    impl ServerSockets for Fake {
        fn is_relay(&self, addr: SocketAddr) -> bool {
            self.relays.contains(&addr)
        }
        fn is_local_ip(&self, ip: IpAddr) -> bool {
            ip.is_loopback() || self.ips.contains(&ip)
        }
        fn is_protected_port(&self, port: u16) -> bool {
            self.ports.contains(&port)
        }
    }

    fn server() -> Fake {
        Fake {
            relays: vec![
                "203.0.113.10:50000".parse().unwrap(),
                "127.0.0.1:50001".parse().unwrap(),
            ],
            ips: vec!["203.0.113.10".parse().unwrap()],
            ports: vec![5080, 3478, 5349],
        }
    }

    fn check(p: &PeerPolicy, peer: &str) -> Result<(), PeerRefusal> {
        p.check(peer.parse().unwrap(), &server())
    }

    #[test]
    fn default_refuses_every_non_public_range() {
        let p = PeerPolicy::default();
        for (peer, want) in [
            ("127.0.0.1:9", PeerRefusal::Loopback),
            ("127.5.5.5:9", PeerRefusal::Loopback),
            ("[::1]:9", PeerRefusal::Loopback),
            ("10.1.2.3:9", PeerRefusal::Private),
            ("172.16.0.1:9", PeerRefusal::Private),
            ("172.31.255.1:9", PeerRefusal::Private),
            ("192.168.1.1:9", PeerRefusal::Private),
            ("100.64.0.1:9", PeerRefusal::Private),
            ("[fd00::1]:9", PeerRefusal::Private),
            ("[fc00::1]:9", PeerRefusal::Private),
            ("169.254.1.1:9", PeerRefusal::LinkLocal),
            ("[fe80::1]:9", PeerRefusal::LinkLocal),
            ("224.0.0.251:9", PeerRefusal::Multicast),
            ("239.1.1.1:9", PeerRefusal::Multicast),
            ("255.255.255.255:9", PeerRefusal::Multicast),
            ("[ff02::1]:9", PeerRefusal::Multicast),
            ("0.0.0.0:9", PeerRefusal::Unspecified),
            ("[::]:9", PeerRefusal::Unspecified),
            ("240.0.0.1:9", PeerRefusal::Unspecified),
            ("[::ffff:10.0.0.1]:9", PeerRefusal::Private),
            ("[::ffff:127.0.0.1]:9", PeerRefusal::Loopback),
        ] {
            assert_eq!(check(&p, peer), Err(want), "{peer}");
        }
        for peer in [
            "8.8.8.8:9",
            "172.32.0.1:9",
            "100.128.0.1:9",
            "198.51.100.7:9",
            "[2001:db8::1]:9",
        ] {
            assert_eq!(check(&p, peer), Ok(()), "{peer}");
        }
    }

    #[test]
    fn own_ports_are_refused_even_when_allow_listed_but_relays_are_not() {
        let p = PeerPolicy {
            allow: vec![
                "127.0.0.0/8".parse().unwrap(),
                "203.0.113.0/24".parse().unwrap(),
            ],
            deny: vec![],
        };
        assert_eq!(check(&p, "127.0.0.1:5080"), Err(PeerRefusal::OwnPort));
        assert_eq!(check(&p, "203.0.113.10:3478"), Err(PeerRefusal::OwnPort));
        assert_eq!(check(&p, "0.0.0.0:5349"), Err(PeerRefusal::OwnPort));
        assert_eq!(
            check(&p, "[::ffff:127.0.0.1]:5080"),
            Err(PeerRefusal::OwnPort)
        );
        // Allow-listed loopback peer on another port: the test's echo peer.
        assert_eq!(check(&p, "127.0.0.1:3480"), Ok(()));
        // Relay to relay, on the same server.
        assert_eq!(check(&p, "203.0.113.10:50000"), Ok(()));
        assert_eq!(check(&PeerPolicy::default(), "127.0.0.1:50001"), Ok(()));
        assert_eq!(check(&PeerPolicy::default(), "203.0.113.10:50000"), Ok(()));
    }

    #[test]
    fn own_public_address_is_refused_unless_allow_listed() {
        let p = PeerPolicy::default();
        assert_eq!(check(&p, "203.0.113.10:22"), Err(PeerRefusal::OwnAddress));
        assert_eq!(
            check(&p, "203.0.113.10:50002"),
            Err(PeerRefusal::OwnAddress)
        );
        assert_eq!(check(&p, "203.0.113.11:22"), Ok(()));
    }

    /// Before: these IPv6 forms, each leading to a private or metadata IPv4 address, were
    /// granted permissions (issue 15 finding 10).
    #[test]
    fn ipv6_transition_addresses_are_judged_by_the_ipv4_address_they_carry() {
        let server = Fake {
            relays: vec![],
            ips: vec![],
            ports: vec![],
        };
        let policy = PeerPolicy::default();
        for (addr, want) in [
            ("64:ff9b::a9fe:a9fe", Some(PeerRefusal::LinkLocal)), // NAT64 169.254.169.254
            ("64:ff9b::10.0.0.5", Some(PeerRefusal::Private)),
            ("64:ff9b::127.0.0.1", Some(PeerRefusal::Loopback)),
            ("64:ff9b:1::1.2.3.4", Some(PeerRefusal::Private)), // local-use NAT64
            ("::ffff:0:192.168.1.1", Some(PeerRefusal::Private)), // IPv4-translated
            ("::10.1.2.3", Some(PeerRefusal::Private)),         // IPv4-compatible
            ("::8.8.8.8", Some(PeerRefusal::Unspecified)),
            ("2002:a9fe:a9fe::1", Some(PeerRefusal::LinkLocal)), // 6to4 169.254.169.254
            ("2002:c0a8:0101::1", Some(PeerRefusal::Private)),   // 6to4 192.168.1.1
            // Teredo: server 65.54.227.120, client 10.0.0.1 stored inverted (f5ff:fffe).
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                Some(PeerRefusal::Private),
            ),
            // Public IPv4 behind them stays reachable.
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None), // client 8.8.8.8
            ("2606:4700::1111", None),
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(
                policy.check(SocketAddr::new(ip, 3478), &server).err(),
                want,
                "{addr}"
            );
        }
    }

    #[test]
    fn deny_list_wins_over_allow_list() {
        let p = PeerPolicy {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec![
                "10.9.0.0/16".parse().unwrap(),
                "8.8.8.0/24".parse().unwrap(),
            ],
        };
        assert_eq!(check(&p, "10.1.0.1:9"), Ok(()));
        assert_eq!(check(&p, "10.9.0.1:9"), Err(PeerRefusal::Denied));
        assert_eq!(check(&p, "8.8.8.8:9"), Err(PeerRefusal::Denied));
    }
}
