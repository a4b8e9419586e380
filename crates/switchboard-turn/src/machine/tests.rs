//! The TURN rules against the machine alone: real `turn-client-proto` clients exchange
//! packets with it in memory, a fake clock moves in one-second ticks as the edge's does, and
//! the fake edge answers `OpenRelay` with made-up addresses. No sockets, no tasks.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use turn_client_proto::api::{TurnClientApi as _, TurnConfig as ClientConfig, TurnEvent};
use turn_client_proto::api::{TurnPollRet, TurnRecvRet};
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::udp::TurnClientUdp;
use turn_server_proto::api::Transmit;
use turn_server_proto::types::{Instant, TransportType};

use super::{Command, Now, RelayRequest, Turn, Via};
use crate::{IpNet, PeerPolicy, Shared, Stats, TurnConfig, TurnStats};

const SECRET: &str = "unit-test";
/// The Unix time the fake clock starts at.
const START: u64 = 1_800_000_000;
/// The server's one UDP (and TCP) listener; documentation addresses count as public.
const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 3478);
const UDP: (TransportType, SocketAddr) = (TransportType::Udp, LISTEN);
const TCP: (TransportType, SocketAddr) = (TransportType::Tcp, LISTEN);
/// A public peer.
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5)), 7000);

struct Client {
    addr: SocketAddr,
    turn: TurnClientUdp,
    events: Vec<TurnEvent>,
    received: Vec<(SocketAddr, Vec<u8>)>,
    /// Polled by [`World::run`]: a client that stops being polled stops refreshing.
    alive: bool,
}

impl Client {
    fn relay(&self) -> Option<SocketAddr> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::AllocationCreated(_, r) => Some(*r),
            _ => None,
        })
    }
    fn failed(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, TurnEvent::AllocationCreateFailed(_)))
    }
    fn has(&self, want: impl Fn(&TurnEvent) -> bool) -> bool {
        self.events.iter().any(want)
    }
}

/// The machine, its clients, a fake clock and a fake edge.
struct World {
    turn: Turn<SocketAddr, SocketAddr>,
    shared: Arc<Shared>,
    now: Now,
    clients: Vec<Client>,
    /// Relay ports the fake edge hands out.
    next_port: u16,
    /// When set, `OpenRelay` requests wait in `held` instead of being answered (and their
    /// clients are not polled: see [`World::release`]).
    hold: bool,
    held: Vec<(RelayRequest, IpAddr)>,
    /// When set, `OpenRelay` is answered "no free port".
    no_ports: bool,
    to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    over_tcp: Vec<(SocketAddr, Vec<u8>)>,
    closed: Vec<SocketAddr>,
    /// Allocation events the machine asked the edge to report.
    events: Vec<crate::AllocationEvent>,
}

impl World {
    fn new(config: TurnConfig) -> Self {
        let shared = Arc::new(Shared {
            config: TurnConfig {
                secret: SECRET.into(),
                ..config
            },
            stats: Stats::default(),
        });
        let mut turn = Turn::new(
            Arc::clone(&shared),
            HashSet::from([LISTEN.ip()]),
            HashSet::from([LISTEN.port()]),
            7,
        );
        turn.add_listener(UDP, Some(LISTEN));
        turn.add_listener(TCP, None);
        Self {
            turn,
            shared,
            now: Now {
                mono: Instant::ZERO,
                unix: START,
            },
            clients: Vec::new(),
            next_port: 50_000,
            hold: false,
            held: Vec::new(),
            no_ports: false,
            to_peers: Vec::new(),
            over_tcp: Vec::new(),
            closed: Vec::new(),
            events: Vec::new(),
        }
    }

    fn stats(&self) -> TurnStats {
        self.shared.stats.snapshot()
    }

    /// A client at `ip:port` with a REST credential for `user` valid for `ttl` seconds.
    fn client_with(&mut self, ip: [u8; 4], port: u16, user: &str, ttl: i64, secret: &str) -> usize {
        let name = format!("{}:{user}", START.cast_signed() + ttl);
        let password = switchboard_core::ice::rest_password(secret, &name);
        let mut config = ClientConfig::new(TurnCredentials::new(&name, &password));
        config.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        let addr = SocketAddr::from((ip, port));
        self.clients.push(Client {
            addr,
            turn: TurnClientUdp::allocate(addr, LISTEN, config),
            events: Vec::new(),
            received: Vec::new(),
            alive: true,
        });
        self.clients.len() - 1
    }

    /// A client with a one-hour credential: allocates, and the world settles.
    fn client(&mut self, ip: [u8; 4], port: u16, user: &str) -> usize {
        let c = self.client_with(ip, port, user, 3600, SECRET);
        self.settle();
        c
    }

    /// Exchanges packets until nobody has anything left to send, letting the clock run for
    /// the clients' short pacing waits (a STUN client spaces its requests by 50 ms) but not
    /// to their refresh timers.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            let mut wake = None;
            for c in self.clients.iter_mut().filter(|c| c.alive) {
                if let TurnPollRet::WaitUntil(t) = c.turn.poll(self.now.mono) {
                    if t > self.now.mono && t <= self.now.mono + Duration::from_secs(1) {
                        wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
                    }
                }
                while let Some(t) = c.turn.poll_transmit(self.now.mono) {
                    moved = true;
                    self.turn
                        .handle_client(self.now, UDP, c.addr, t.data.as_ref());
                }
                c.events.extend(std::iter::from_fn(|| c.turn.poll_event()));
            }
            moved |= self.edge();
            if !moved {
                let Some(t) = wake else {
                    return;
                };
                self.advance(t - self.now.mono);
            }
        }
        panic!("the exchange did not settle");
    }

    /// alice (198.51.100.1:40000) allocates, then deletes the allocation; its relay address.
    fn allocate_and_delete(&mut self) -> SocketAddr {
        let c = self.client([198, 51, 100, 1], 40_000, "alice");
        let relay = self.clients[c].relay().unwrap();
        let now = self.now.mono;
        self.clients[c].turn.delete(now).unwrap();
        self.settle();
        relay
    }

    /// The clock moves on by `d` (the Unix clock follows).
    fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.unix = START + u64::try_from(self.now.mono.secs()).unwrap();
    }

    /// The fake edge: carries out the machine's commands. True when there were any.
    fn edge(&mut self) -> bool {
        let mut any = false;
        while let Some(cmd) = self.turn.poll_command() {
            any = true;
            match cmd {
                Command::Send {
                    via: Via::Udp(from),
                    to,
                    data,
                } if from == LISTEN => {
                    let c = self.clients.iter_mut().find(|c| c.addr == to).unwrap();
                    let t = Transmit::new(&data[..], TransportType::Udp, LISTEN, to);
                    if let TurnRecvRet::PeerData(d) = c.turn.recv(t, self.now.mono) {
                        c.received.push((d.peer, d.data().to_vec()));
                    }
                }
                Command::Send {
                    via: Via::Udp(relay),
                    to,
                    data,
                } => self.to_peers.push((relay, to, data)),
                Command::Send {
                    via: Via::Tcp(conn),
                    to,
                    data,
                } => {
                    assert_eq!(conn, to, "a TCP reply leaves on its client's connection");
                    self.over_tcp.push((to, data));
                }
                Command::OpenRelay { request, ip } if self.hold => {
                    // Its client waits without retransmitting until the answer.
                    let owner = self.turn.rest.opening[&request].owner.client;
                    for c in self.clients.iter_mut().filter(|c| c.addr == owner) {
                        c.alive = false;
                    }
                    self.held.push((request, ip));
                }
                Command::OpenRelay { request, ip } => self.open(request, ip),
                Command::CloseRelay { relay, socket } => {
                    assert_eq!(relay, socket);
                    self.closed.push(relay);
                }
                Command::Event(e) => self.events.push(e),
            }
        }
        any
    }

    fn open(&mut self, request: RelayRequest, ip: IpAddr) {
        let opened = (!self.no_ports).then(|| {
            self.next_port += 1;
            let a = SocketAddr::new(ip, self.next_port);
            (a, a)
        });
        let _ = self.turn.handle_relay_opened(self.now, request, opened);
    }

    /// Answers the held `OpenRelay` requests and polls their clients again.
    fn release(&mut self) {
        self.hold = false;
        for (request, ip) in std::mem::take(&mut self.held) {
            self.open(request, ip);
        }
        for c in &mut self.clients {
            c.alive = true;
        }
        self.settle();
    }

    /// `secs` seconds pass in one-second ticks; live clients are polled (and so refresh).
    fn run(&mut self, secs: u64) {
        let end = self.now.mono + Duration::from_secs(secs);
        while self.now.mono < end {
            let next = Instant::from_nanos((self.now.mono.secs() + 1) * 1_000_000_000);
            self.advance(next - self.now.mono);
            self.turn.handle_tick(self.now);
            self.settle();
        }
    }

    /// A packet from a peer to relay `relay`.
    fn peer_sends(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]) {
        self.turn.handle_peer(self.now, relay, peer, data);
        self.settle();
    }

    fn send(&mut self, c: usize, to: SocketAddr, data: &[u8]) {
        let now = self.now.mono;
        let t = self.clients[c]
            .turn
            .send_to(TransportType::Udp, to, data.to_vec(), now)
            .unwrap();
        if let Some(t) = t {
            let t = t.build();
            let addr = self.clients[c].addr;
            self.turn.handle_client(self.now, UDP, addr, &t.data);
        }
        self.settle();
    }

    fn permit(&mut self, c: usize, ip: &str) {
        let now = self.now.mono;
        self.clients[c]
            .turn
            .create_permission(TransportType::Udp, ip.parse().unwrap(), now)
            .unwrap();
        self.settle();
    }
}

fn world() -> World {
    World::new(TurnConfig::default())
}

#[test]
fn an_allocation_opens_a_relay_socket_on_the_address_the_client_reached() {
    let mut w = world();
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    let relay = w.clients[c].relay().expect("allocation created");
    assert_eq!(relay, SocketAddr::new(LISTEN.ip(), 50_001));
    let s = w.stats();
    assert_eq!((s.allocations_active, s.allocations_total), (1, 1));
    assert_eq!(s.users_registered, 1);
}

#[test]
fn behind_a_one_to_one_nat_the_relay_address_is_the_external_one() {
    let mut w = World::new(TurnConfig {
        external_ip: Some("203.0.113.200".parse().unwrap()),
        ..TurnConfig::default()
    });
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    assert_eq!(
        w.clients[c].relay(),
        Some("203.0.113.200:50001".parse().unwrap())
    );
    // Peer packets are reported for the advertised address.
    let relay = w.clients[c].relay().unwrap();
    w.permit(c, "203.0.113.5");
    w.peer_sends(relay, PEER, b"hello");
    assert_eq!(w.clients[c].received, vec![(PEER, b"hello".to_vec())]);
}

#[test]
fn a_permission_lets_packets_through_for_its_address_only() {
    let mut w = world();
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    let relay = w.clients[c].relay().unwrap();
    // No permission yet: nothing in, nothing out.
    w.peer_sends(relay, PEER, b"early");
    assert!(w.clients[c].received.is_empty());
    w.permit(c, "203.0.113.5");
    assert!(w.clients[c].has(|e| matches!(e, TurnEvent::PermissionCreated(..))));
    w.send(c, PEER, b"to peer");
    assert_eq!(w.to_peers, vec![(relay, PEER, b"to peer".to_vec())]);
    w.peer_sends(relay, PEER, b"to client");
    // Any port of the permitted address.
    let other_port = SocketAddr::new(PEER.ip(), 9);
    w.peer_sends(relay, other_port, b"other port");
    // Another address is not let in.
    w.peer_sends(relay, "203.0.113.6:7000".parse().unwrap(), b"stranger");
    assert_eq!(
        w.clients[c].received,
        vec![
            (PEER, b"to client".to_vec()),
            (other_port, b"other port".to_vec())
        ]
    );
    let s = w.stats();
    assert_eq!((s.relayed_to_peers, s.relayed_from_peers), (1, 2));
}

#[test]
fn a_channel_binding_carries_channel_data_both_ways() {
    let mut w = world();
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    let relay = w.clients[c].relay().unwrap();
    let now = w.now.mono;
    w.clients[c]
        .turn
        .bind_channel(TransportType::Udp, PEER, now)
        .unwrap();
    w.settle();
    assert!(w.clients[c].has(|e| matches!(e, TurnEvent::ChannelCreated(..))));
    w.send(c, PEER, b"over the channel");
    assert_eq!(
        w.to_peers,
        vec![(relay, PEER, b"over the channel".to_vec())]
    );
    // Towards the client the machine now sends ChannelData (first byte 0x40-0x7f).
    w.turn.handle_peer(w.now, relay, PEER, b"back");
    let Some(Command::Send { data, .. }) = w.turn.poll_command() else {
        panic!("nothing sent to the client");
    };
    assert_eq!(data[0] >> 6, 1, "ChannelData expected");
    assert_eq!(&data[4..8], b"back");
}

#[test]
fn a_refreshed_allocation_outlives_its_lifetime_and_an_abandoned_one_expires() {
    let mut w = world();
    let kept = w.client([198, 51, 100, 1], 40_000, "alice");
    let gone = w.client([198, 51, 100, 2], 40_000, "bob");
    let gone_relay = w.clients[gone].relay().unwrap();
    w.clients[gone].alive = false;
    // turn-client-proto asks for a lifetime of 1,800 s.
    w.run(1850);
    assert_eq!(w.closed, vec![gone_relay]);
    assert_eq!(w.stats().allocations_active, 1);
    // The refreshed one still relays.
    let relay = w.clients[kept].relay().unwrap();
    w.permit(kept, "203.0.113.5");
    w.peer_sends(relay, PEER, b"still here");
    assert_eq!(w.clients[kept].received.len(), 1);
}

#[test]
fn a_permission_expires_after_five_minutes_without_refresh() {
    let mut w = world();
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    let relay = w.clients[c].relay().unwrap();
    w.permit(c, "203.0.113.5");
    w.clients[c].alive = false;
    w.run(310);
    assert!(w.closed.is_empty(), "the allocation itself lives 600 s");
    w.turn.handle_peer(w.now, relay, PEER, b"late");
    assert!(
        w.turn.poll_command().is_none(),
        "expired permission let a packet in"
    );
}

#[test]
fn allocation_events_are_reported_only_when_asked_for() {
    let mut w = world();
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    assert!(w.clients[c].relay().is_some());
    assert_eq!(w.events, vec![], "off by default");

    let mut w = World::new(TurnConfig {
        allocation_events: Some(Arc::new(|_| {})),
        ..TurnConfig::default()
    });
    let relay = w.allocate_and_delete();
    let client = SocketAddr::from(([198, 51, 100, 1], 40_000));
    let user = "alice".to_owned();
    assert_eq!(
        w.events,
        vec![
            crate::AllocationEvent::Created {
                relay,
                client,
                user: user.clone()
            },
            crate::AllocationEvent::Ended {
                relay,
                client,
                user
            },
        ]
    );
}

#[test]
fn deleting_an_allocation_closes_its_relay_and_frees_the_quota() {
    let mut w = World::new(TurnConfig {
        user_quota: 1,
        ..TurnConfig::default()
    });
    let relay = w.allocate_and_delete();
    assert_eq!(w.closed, vec![relay]);
    assert_eq!(w.stats().allocations_active, 0);
    let again = w.client([198, 51, 100, 1], 40_001, "alice");
    assert!(w.clients[again].relay().is_some());
}

#[test]
fn the_user_quota_refuses_with_486() {
    let mut w = World::new(TurnConfig {
        user_quota: 2,
        ..TurnConfig::default()
    });
    for port in [40_000, 40_001] {
        let c = w.client([198, 51, 100, 1], port, "alice");
        assert!(w.clients[c].relay().is_some());
    }
    let third = w.client([198, 51, 100, 9], 40_000, "alice");
    assert!(w.clients[third].failed());
    let other_user = w.client([198, 51, 100, 9], 40_001, "bob");
    assert!(w.clients[other_user].relay().is_some());
    assert_eq!(w.stats().refused_user_quota, 1);
}

#[test]
fn the_address_quota_counts_every_user_from_one_address() {
    let mut w = World::new(TurnConfig {
        ip_quota: 2,
        ..TurnConfig::default()
    });
    let a = w.client([198, 51, 100, 1], 40_000, "a");
    let b = w.client([198, 51, 100, 1], 40_001, "b");
    let c = w.client([198, 51, 100, 1], 40_002, "c");
    assert!(w.clients[a].relay().is_some() && w.clients[b].relay().is_some());
    assert!(w.clients[c].failed());
    assert_eq!(w.stats().refused_ip_quota, 1);
}

#[test]
fn the_allocation_limit_refuses_with_508() {
    let mut w = World::new(TurnConfig {
        max_allocations: 1,
        ..TurnConfig::default()
    });
    let a = w.client([198, 51, 100, 1], 40_000, "a");
    let b = w.client([198, 51, 100, 2], 40_000, "b");
    assert!(w.clients[a].relay().is_some());
    assert!(w.clients[b].failed());
    assert_eq!(w.stats().refused_capacity, 1);
}

/// A burst of Allocate requests handled before any relay socket is open must not get past
/// the quotas: an allocation is charged when its socket is asked for.
#[test]
fn allocations_being_opened_count_against_the_quotas() {
    let mut w = World::new(TurnConfig {
        user_quota: 1,
        max_allocations: 2,
        ..TurnConfig::default()
    });
    w.hold = true;
    let a = w.client([198, 51, 100, 1], 40_000, "alice");
    let b = w.client([198, 51, 100, 2], 40_000, "alice");
    let c = w.client([198, 51, 100, 3], 40_000, "bob");
    let d = w.client([198, 51, 100, 4], 40_000, "carol");
    assert_eq!(w.held.len(), 2, "one open per quota: alice once, then bob");
    assert!(
        w.clients[b].failed(),
        "alice's second allocation passed the quota"
    );
    assert!(
        w.clients[d].failed(),
        "max_allocations ignored allocations being opened"
    );
    w.release();
    assert!(w.clients[a].relay().is_some() && w.clients[c].relay().is_some());
    let s = w.stats();
    assert_eq!((s.refused_user_quota, s.refused_capacity), (1, 1));
    assert_eq!(s.allocations_active, 2);
}

#[test]
fn a_repeated_allocate_while_its_socket_is_opened_is_not_charged_twice() {
    let mut w = world();
    w.hold = true;
    let a = w.client([198, 51, 100, 1], 40_000, "alice");
    // The client retransmits its Allocate while the socket is being opened.
    w.clients[a].alive = true;
    w.run(3);
    assert_eq!(w.held.len(), 1, "a second relay socket was asked for");
    w.release();
    assert_eq!(w.stats().allocations_active, 1);
    assert!(w.turn.rest.opening.is_empty());
    assert_eq!(w.turn.rest.user_allocs.get("alice"), Some(&1));
}

#[test]
fn no_free_relay_port_refuses_with_508_and_gives_the_quota_back() {
    let mut w = World::new(TurnConfig {
        user_quota: 1,
        ..TurnConfig::default()
    });
    w.no_ports = true;
    let a = w.client([198, 51, 100, 1], 40_000, "alice");
    assert!(w.clients[a].failed());
    assert_eq!(w.stats().refused_capacity, 1);
    w.no_ports = false;
    let b = w.client([198, 51, 100, 1], 40_001, "alice");
    assert!(w.clients[b].relay().is_some());
    assert_eq!(w.stats().allocations_active, 1);
}

#[test]
fn restricted_peers_are_refused_with_403_and_counted() {
    let mut w = World::new(TurnConfig {
        policy: PeerPolicy {
            deny: vec!["203.0.113.66/32".parse::<IpNet>().unwrap()],
            ..PeerPolicy::default()
        },
        ..TurnConfig::default()
    });
    let c = w.client([198, 51, 100, 1], 40_000, "alice");
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.0.1",
        "224.0.0.1",
        "203.0.113.66",
    ] {
        w.permit(c, ip);
        let ip: IpAddr = ip.parse().unwrap();
        assert!(
            w.clients[c].has(|e| matches!(e, TurnEvent::PermissionCreateFailed(_, i) if *i == ip)),
            "permission towards {ip} granted"
        );
    }
    let s = w.stats();
    assert_eq!(
        (
            s.refused_peer_loopback,
            s.refused_peer_private,
            s.refused_peer_link_local,
            s.refused_peer_multicast,
            s.refused_peer_denied
        ),
        (1, 1, 1, 1, 1)
    );
    assert!(w.to_peers.is_empty());
}

#[test]
fn relay_to_relay_works_but_the_servers_own_ports_stay_closed() {
    let mut w = world();
    let a = w.client([198, 51, 100, 1], 40_000, "alice");
    let b = w.client([198, 51, 100, 2], 40_000, "bob");
    let (ra, rb) = (w.clients[a].relay().unwrap(), w.clients[b].relay().unwrap());
    // The relays share the server's address: a permission for it is granted ...
    w.permit(a, &LISTEN.ip().to_string());
    assert!(w.clients[a].has(|e| matches!(e, TurnEvent::PermissionCreated(..))));
    // ... packets reach the other relay ...
    w.send(a, rb, b"relay to relay");
    assert_eq!(w.to_peers, vec![(ra, rb, b"relay to relay".to_vec())]);
    // ... but never the server's own STUN/TURN port.
    w.send(a, LISTEN, b"to the listener");
    assert_eq!(w.to_peers.len(), 1);
    assert_eq!(w.stats().refused_peer_own_port, 1);
}

#[test]
fn an_expired_credential_is_refused_and_a_live_one_is_revoked_when_it_expires() {
    let mut w = world();
    // Expired before it was used.
    let old = w.client_with([198, 51, 100, 1], 40_000, "old", -1, SECRET);
    w.run(40);
    assert!(w.clients[old].relay().is_none());
    assert!(w.stats().refused_expired >= 1);
    // Valid for 100 s: allocates, then is revoked at its expiry.
    let c = w.client_with([198, 51, 100, 2], 40_000, "short", 100, SECRET);
    w.settle();
    assert!(w.clients[c].relay().is_some());
    w.run(61);
    let before = w.stats().refused_auth + w.stats().refused_expired;
    w.permit(c, "203.0.113.5");
    w.run(40);
    assert!(
        w.clients[c].has(|e| matches!(e, TurnEvent::PermissionCreateFailed(..))),
        "a request with an expired credential succeeded"
    );
    assert!(w.stats().refused_auth + w.stats().refused_expired > before);
}

#[test]
fn a_wrong_password_is_refused_and_registers_nothing() {
    let mut w = world();
    let c = w.client_with([198, 51, 100, 1], 40_000, "mallory", 3600, "not-the-secret");
    w.run(40);
    assert!(w.clients[c].relay().is_none());
    let s = w.stats();
    assert!(s.refused_auth >= 1);
    assert_eq!(s.users_registered, 0);
    assert!(w.held.is_empty() && w.closed.is_empty());
}

#[test]
fn state_generations_rotate_and_refuse_new_clients_while_both_are_busy() {
    let mut w = World::new(TurnConfig {
        max_clients_per_generation: 2,
        ..TurnConfig::default()
    });
    // First generation: two clients with allocations.
    let first: Vec<usize> = (1..=2)
        .map(|i| w.client([198, 51, 100, i], 40_000, "u"))
        .collect();
    // A third client starts the second generation (the first one drains).
    let third = w.client([198, 51, 100, 3], 40_000, "u");
    let fourth = w.client([198, 51, 100, 4], 40_000, "u");
    assert!(w.clients[third].relay().is_some() && w.clients[fourth].relay().is_some());
    assert_eq!(w.stats().refused_busy, 0);
    // Both full, the first still draining: a fifth client is dropped.
    let fifth = w.client([198, 51, 100, 5], 40_000, "u");
    assert!(w.clients[fifth].relay().is_none());
    assert!(w.stats().refused_busy >= 1);
    // The first generation's allocations end: it retires, and new clients get in again.
    for c in first {
        let now = w.now.mono;
        w.clients[c].turn.delete(now).unwrap();
    }
    w.clients[fifth].alive = false;
    w.settle();
    w.run(1);
    let sixth = w.client([198, 51, 100, 6], 40_000, "u");
    assert!(w.clients[sixth].relay().is_some());
}

#[test]
fn tcp_clients_are_answered_on_their_connection_and_limited_in_number() {
    let mut w = World::new(TurnConfig {
        max_tcp_connections: 1,
        ..TurnConfig::default()
    });
    let a: SocketAddr = "198.51.100.1:40000".parse().unwrap();
    let b: SocketAddr = "198.51.100.2:40000".parse().unwrap();
    assert!(w.turn.handle_tcp_open(w.now, TCP, a, a));
    assert!(!w.turn.handle_tcp_open(w.now, TCP, b, b));
    assert_eq!(w.stats().refused_tcp_limit, 1);
    // A Binding request over TCP: the answer leaves on that connection.
    let binding = turn_server_proto::types::stun::message::Message::builder_request(
        turn_server_proto::types::stun::message::BINDING,
        turn_server_proto::types::stun::message::MessageWriteVec::new(),
    );
    let binding = {
        use turn_server_proto::types::stun::prelude::MessageWrite as _;
        binding.finish()
    };
    w.turn.handle_client(w.now, TCP, a, &binding);
    assert!(w.edge());
    assert_eq!(w.over_tcp.len(), 1);
    assert_eq!(w.over_tcp[0].0, a);
    // Once closed, nothing is sent to it, and its place is free.
    w.turn.handle_tcp_closed(w.now, TCP, a);
    w.turn.handle_client(w.now, TCP, a, &binding);
    assert!(!w.edge());
    assert!(w.turn.handle_tcp_open(w.now, TCP, b, b));
}
