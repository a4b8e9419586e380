//! The TURN server as a sans-IO state machine: the `turn-server-proto` instances (one per
//! listening socket), credentials, quotas, relay bookkeeping and the peer policy.
//!
//! Like the signaling hub (and firezone's relay), it does no IO: the time ([`Now`]) and the
//! randomness (a seed) come in as inputs, and everything it wants done comes out as a
//! [`Command`] from [`Turn::poll_command`]: send a packet, open a relay socket, close one.
//! The IO edge (`io.rs`) binds sockets, starts reader tasks and sends; the sockets and TCP
//! connections are opaque handles to the machine (`S` and `C`), which the unit tests fill
//! with plain addresses.
//!
//! ```text
//!  handle_client ─┐                                   ┌─▶ Send { via, to, data }
//!  handle_peer ───┤                                   ├─▶ OpenRelay { request, ip }
//!  handle_tick ───┼─▶ Turn ─ turn-server-proto ─▶ queue ─▶ CloseRelay { relay, socket }
//!  handle_tcp_* ──┤                       (poll_command)
//!  handle_relay_opened (answer to OpenRelay) ─┘
//! ```
//!
//! An allocation takes two steps: the Allocate request passes the quotas and reserves its
//! place (user, client address, total), the machine asks for a relay socket, and
//! [`Turn::handle_relay_opened`] completes it (or refuses it with 508 when no port was free).
//! Reserving first means a burst of requests handled before any socket is open cannot get
//! past the quotas.

mod checks;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use turn_server_proto::api::{
    SocketAllocateError, TcpConnectError, Transmit, TurnServerApi, TurnServerPollRet,
};
use turn_server_proto::server::TurnServer;
use turn_server_proto::types::stun::attribute::Username;
use turn_server_proto::types::stun::message::{Message, MessageClass};
use turn_server_proto::types::stun::prelude::AttributeStaticType as _;
use turn_server_proto::types::{AddressFamily, Instant, TransportType};

use crate::Shared;
use crate::log::LogLimiter;
use crate::policy::{ServerSockets, canonical};

/// A listening socket: its transport and local address.
pub(crate) type ListenerKey = (TransportType, SocketAddr);

/// Hashable form of a [`ListenerKey`] (`TransportType` is not `Hash`).
fn idx(key: ListenerKey) -> (bool, SocketAddr) {
    (key.0 == TransportType::Tcp, key.1)
}

/// The time, given with every input: monotonic for the protocol's timers and the log
/// limiter, wall-clock Unix seconds for credential expiry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) mono: Instant,
    pub(crate) unix: u64,
}

/// How a packet leaves: a UDP socket (a listener's or a relay's) or a TCP/TLS connection.
#[derive(Debug)]
pub(crate) enum Via<S, C> {
    Udp(S),
    Tcp(C),
}

/// Names one [`Command::OpenRelay`]; given back with [`Turn::handle_relay_opened`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RelayRequest(u64);

/// What the IO edge must do.
#[derive(Debug)]
pub(crate) enum Command<S, C> {
    /// Send `data` to `to` (best effort: a full queue drops it).
    Send {
        via: Via<S, C>,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Bind a UDP socket on `ip` at a free port of the relay range and answer with
    /// [`Turn::handle_relay_opened`] (also when none was free).
    OpenRelay { request: RelayRequest, ip: IpAddr },
    /// The allocation ended: stop reading `socket` and close it.
    CloseRelay { relay: SocketAddr, socket: S },
    /// Tell [`crate::TurnConfig::allocation_events`] (when set).
    Event(crate::AllocationEvent),
}

/// One `turn-server-proto` instance and the machine's bookkeeping for it.
///
/// The crate keeps a nonce per client address and a password per username and never forgets
/// either. To keep memory bounded, a listener's instance is replaced by a fresh one once it
/// has seen [`crate::TurnConfig::max_clients_per_generation`] client addresses or usernames;
/// the old one keeps serving the clients that still have allocations on it until they end.
struct Generation {
    id: u64,
    server: TurnServer,
    users: HashSet<String>,
    revoke: BinaryHeap<Reverse<(u64, String)>>,
    sources: HashSet<SocketAddr>,
    /// Allocations (open or being opened) per client address.
    alloc_clients: HashMap<SocketAddr, usize>,
    /// The REST user of each client's last authenticated Allocate request, for quotas.
    pending_users: HashMap<SocketAddr, String>,
}

impl Generation {
    fn new(id: u64, key: ListenerKey, realm: &str) -> Self {
        Self {
            id,
            server: TurnServer::new(key.0, key.1, realm.to_owned()),
            users: HashSet::new(),
            revoke: BinaryHeap::new(),
            sources: HashSet::new(),
            alloc_clients: HashMap::new(),
            pending_users: HashMap::new(),
        }
    }

    fn size(&self) -> usize {
        self.sources.len().max(self.users.len())
    }
}

struct Listener<S, C> {
    key: ListenerKey,
    udp: Option<S>,
    tcp_conns: HashMap<SocketAddr, C>,
    current: Generation,
    draining: Option<Generation>,
}

impl<S, C> Listener<S, C> {
    fn generation(&mut self, id: u64) -> Option<&mut Generation> {
        if self.current.id == id {
            Some(&mut self.current)
        } else {
            self.draining.as_mut().filter(|g| g.id == id)
        }
    }
}

/// Who an allocation belongs to: what its quotas were charged to.
struct Owner {
    listener: ListenerKey,
    generation: u64,
    client: SocketAddr,
    user: String,
}

struct Relay<S> {
    socket: S,
    owner: Owner,
}

/// An allocation whose relay socket is being opened.
struct Opening {
    owner: Owner,
    family: AddressFamily,
}

/// Everything except the listeners and the output queue, so the three can be borrowed
/// together.
struct Rest<S> {
    shared: Arc<Shared>,
    relays: HashMap<SocketAddr, Relay<S>>,
    opening: HashMap<RelayRequest, Opening>,
    next_request: u64,
    user_allocs: HashMap<String, usize>,
    ip_allocs: HashMap<IpAddr, usize>,
    local_ips: HashSet<IpAddr>,
    protected_ports: HashSet<u16>,
    next_generation: u64,
    log: LogLimiter,
    rng: StdRng,
}

impl<S> ServerSockets for Rest<S> {
    fn is_relay(&self, addr: SocketAddr) -> bool {
        self.relays.contains_key(&addr)
    }
    fn is_local_ip(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local_ips.contains(&ip)
    }
    fn is_protected_port(&self, port: u16) -> bool {
        self.protected_ports.contains(&port)
    }
}

type Queue<S, C> = VecDeque<Command<S, C>>;

/// The whole TURN state (see the module docs). `S` is the edge's UDP socket handle, `C` its
/// TCP connection handle.
pub(crate) struct Turn<S, C> {
    listeners: HashMap<(bool, SocketAddr), Listener<S, C>>,
    rest: Rest<S>,
    out: Queue<S, C>,
}

impl<S: Clone, C: Clone> Turn<S, C> {
    /// A machine with no listeners. `local_ips` are the server's own addresses (never a
    /// peer), `protected_ports` its non-relay ports, `seed` the source of its randomness.
    pub(crate) fn new(
        shared: Arc<Shared>,
        local_ips: HashSet<IpAddr>,
        protected_ports: HashSet<u16>,
        seed: u64,
    ) -> Self {
        Self {
            listeners: HashMap::new(),
            rest: Rest {
                shared,
                relays: HashMap::new(),
                opening: HashMap::new(),
                next_request: 1,
                user_allocs: HashMap::new(),
                ip_allocs: HashMap::new(),
                local_ips,
                protected_ports,
                next_generation: 1,
                log: LogLimiter::default(),
                rng: StdRng::seed_from_u64(seed),
            },
            out: VecDeque::new(),
        }
    }

    /// The next thing to do, until `None`. Call after every input: a command left in the
    /// queue is a packet never sent or a socket never opened.
    #[must_use]
    pub(crate) fn poll_command(&mut self) -> Option<Command<S, C>> {
        self.out.pop_front()
    }

    /// Registers a listening socket (UDP listeners pass their socket; TCP/TLS connections
    /// register with [`Turn::handle_tcp_open`]).
    pub(crate) fn add_listener(&mut self, key: ListenerKey, udp: Option<S>) {
        let id = self.rest.next_generation;
        self.rest.next_generation += 1;
        let realm = self.rest.shared.config.realm.clone();
        self.listeners.insert(
            idx(key),
            Listener {
                key,
                udp,
                tcp_conns: HashMap::new(),
                current: Generation::new(id, key, &realm),
                draining: None,
            },
        );
    }

    /// A TCP or TLS client connected. Returns `false` when the connection limit is reached
    /// (the edge closes it).
    pub(crate) fn handle_tcp_open(
        &mut self,
        now: Now,
        key: ListenerKey,
        client: SocketAddr,
        conn: C,
    ) -> bool {
        let open: usize = self.listeners.values().map(|l| l.tcp_conns.len()).sum();
        if open >= self.rest.shared.config.max_tcp_connections {
            let stats = &self.rest.shared.stats;
            stats.refused_tcp_limit.fetch_add(1, Relaxed);
            self.rest.log.warn(
                now.mono,
                "tcp_limit",
                format_args!("TURN: refused TCP client {client}: connection limit reached"),
            );
            return false;
        }
        if let Some(l) = self.listeners.get_mut(&idx(key)) {
            l.tcp_conns.insert(client, conn);
        }
        true
    }

    /// A TCP or TLS client disconnected.
    pub(crate) fn handle_tcp_closed(&mut self, now: Now, key: ListenerKey, client: SocketAddr) {
        if let Some(l) = self.listeners.get_mut(&idx(key)) {
            l.tcp_conns.remove(&client);
            // An empty read tells the crate to drop its buffer for this connection.
            for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
                if g.sources.contains(&client) {
                    let empty: &[u8] = &[];
                    let _ = g
                        .server
                        .recv(Transmit::new(empty, key.0, client, key.1), now.mono);
                }
            }
            drive(l, &mut self.rest, now, &mut self.out);
        }
    }

    /// A packet from a client on listener `key` (one whole STUN message or ChannelData).
    pub(crate) fn handle_client(
        &mut self,
        now: Now,
        key: ListenerKey,
        client: SocketAddr,
        data: &[u8],
    ) {
        let Some(first) = data.first() else {
            return;
        };
        let Some(l) = self.listeners.get_mut(&idx(key)) else {
            return;
        };
        let (rest, out) = (&mut self.rest, &mut self.out);
        let Some(gen_id) = pick_generation(l, client, rest) else {
            rest.shared.stats.refused_busy.fetch_add(1, Relaxed);
            rest.log.warn(
                now.mono,
                "busy",
                format_args!(
                    "TURN: dropped a packet from new client {client}: state table full \
                     (raise max_clients_per_generation)"
                ),
            );
            return;
        };
        let Some(g) = l.generation(gen_id) else {
            return;
        };
        let mut is_request = false;
        let mut had_username = false;
        if *first < 0x40 {
            if let Ok(msg) = Message::from_bytes(data) {
                is_request = msg.has_class(MessageClass::Request);
                if is_request {
                    rest.shared.stats.stun_requests.fetch_add(1, Relaxed);
                    had_username = msg.has_attribute(Username::TYPE);
                    if let Some(reply) = checks::precheck(&msg, g, rest, now, key, client) {
                        out.extend(to_client(l, client, reply));
                        return;
                    }
                }
            }
        }
        let reply = g
            .server
            .recv(Transmit::new(data, key.0, client, key.1), now.mono)
            .map(|t| t.build());
        if let Some(t) = reply {
            if had_username {
                checks::count_auth_failure(&t.data, rest, now, client);
            }
            route(l, rest, now, t, Some(client), out);
        }
        if is_request {
            drive(l, rest, now, out);
        }
    }

    /// A packet from `peer` arrived on the relay socket `relay`.
    pub(crate) fn handle_peer(
        &mut self,
        now: Now,
        relay: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
    ) {
        let Some(r) = self.rest.relays.get(&relay) else {
            return;
        };
        let (lkey, gen_id) = (r.owner.listener, r.owner.generation);
        let Some(l) = self.listeners.get_mut(&idx(lkey)) else {
            return;
        };
        let Some(g) = l.generation(gen_id) else {
            return;
        };
        let reply = g
            .server
            .recv(
                Transmit::new(data, TransportType::Udp, peer, relay),
                now.mono,
            )
            .map(|t| t.build());
        if let Some(t) = reply {
            let stats = &self.rest.shared.stats;
            stats.relayed_from_peers.fetch_add(1, Relaxed);
            stats.relayed_bytes.fetch_add(data.len() as u64, Relaxed);
            route(l, &mut self.rest, now, t, None, &mut self.out);
        }
    }

    /// The answer to [`Command::OpenRelay`]: the socket's bound address and handle, or
    /// `None` when no relay port was free. Returns the relay address the allocation got
    /// (the address the edge's reader reports peer packets for), if it got one.
    pub(crate) fn handle_relay_opened(
        &mut self,
        now: Now,
        request: RelayRequest,
        opened: Option<(SocketAddr, S)>,
    ) -> Option<SocketAddr> {
        let rest = &mut self.rest;
        let Some(Opening { owner, family }) = rest.opening.remove(&request) else {
            if let Some((relay, socket)) = opened {
                self.out.push_back(Command::CloseRelay { relay, socket });
            }
            return None;
        };
        let Some(l) = self.listeners.get_mut(&idx(owner.listener)) else {
            return None; // listeners are never removed
        };
        let Some(g) = l.generation(owner.generation) else {
            return None; // a generation with allocations being opened is not retired
        };
        let (kind, lkey, client) = (owner.listener.0, owner.listener.1, owner.client);
        let result = match opened {
            Some((bound, socket)) => {
                let cfg = &rest.shared.config;
                let advertised_ip = match cfg.external_ip {
                    Some(ext) if ext.is_ipv4() == bound.is_ipv4() && !bound.ip().is_loopback() => {
                        ext
                    }
                    _ => bound.ip(),
                };
                let advertised = SocketAddr::new(advertised_ip, bound.port());
                if cfg.allocation_events.is_some() {
                    self.out
                        .push_back(Command::Event(crate::AllocationEvent::Created {
                            relay: advertised,
                            client,
                            user: owner.user.clone(),
                        }));
                }
                rest.relays.insert(advertised, Relay { socket, owner });
                let stats = &rest.shared.stats;
                stats.allocations_total.fetch_add(1, Relaxed);
                stats.allocations_active.fetch_add(1, Relaxed);
                tracing::debug!("TURN: allocated {advertised} for {client}");
                Ok(advertised)
            }
            None => {
                rest.shared.stats.refused_capacity.fetch_add(1, Relaxed);
                rest.log.warn(
                    now.mono,
                    "ports",
                    format_args!("TURN: refused allocation for {client}: no free relay port"),
                );
                unreserve(rest, g, &owner);
                Err(SocketAllocateError::InsufficientCapacity)
            }
        };
        g.server.allocated_socket(
            kind,
            lkey,
            client,
            TransportType::Udp,
            family,
            result,
            now.mono,
        );
        drive(l, rest, now, &mut self.out);
        result.ok()
    }

    /// Periodic work (every second): allocation and permission expiry, credential
    /// revocation, retiring drained generations.
    pub(crate) fn handle_tick(&mut self, now: Now) {
        for l in self.listeners.values_mut() {
            for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
                while let Some(Reverse((expiry, _))) = g.revoke.peek() {
                    if *expiry > now.unix {
                        break;
                    }
                    if let Some(Reverse((_, name))) = g.revoke.pop() {
                        // The crate cannot forget a user; a random password revokes it.
                        let password = random_password(&mut self.rest.rng);
                        g.server.add_user(name, password);
                    }
                }
            }
            drive(l, &mut self.rest, now, &mut self.out);
            if l.draining
                .as_ref()
                .is_some_and(|d| d.alloc_clients.is_empty())
            {
                l.draining = None;
                tracing::info!("TURN: retired a drained state generation on {:?}", l.key);
            }
        }
    }
}

fn pick_generation<S, C>(
    l: &mut Listener<S, C>,
    client: SocketAddr,
    rest: &mut Rest<S>,
) -> Option<u64> {
    if let Some(d) = &l.draining {
        if d.alloc_clients.contains_key(&client) {
            return Some(d.id);
        }
    }
    if l.current.sources.contains(&client) {
        return Some(l.current.id);
    }
    if l.current.size() >= rest.shared.config.max_clients_per_generation {
        if l.draining.is_some() {
            return None;
        }
        let id = rest.next_generation;
        rest.next_generation += 1;
        let fresh = Generation::new(id, l.key, &rest.shared.config.realm);
        l.draining = Some(std::mem::replace(&mut l.current, fresh));
        tracing::info!(
            "TURN: started a new state generation on {:?} (the old one drains)",
            l.key
        );
    }
    l.current.sources.insert(client);
    Some(l.current.id)
}

fn to_client<S: Clone, C: Clone>(
    l: &Listener<S, C>,
    client: SocketAddr,
    data: Vec<u8>,
) -> Option<Command<S, C>> {
    let via = match &l.udp {
        Some(s) => Via::Udp(s.clone()),
        // A connection already gone: nothing to send it on.
        None => Via::Tcp(l.tcp_conns.get(&client)?.clone()),
    };
    Some(Command::Send {
        via,
        to: client,
        data,
    })
}

/// Sends a crate transmit where it belongs: to a client through its listener, or to a peer
/// through a relay socket (after the peer policy).
fn route<S: Clone, C: Clone>(
    l: &Listener<S, C>,
    rest: &mut Rest<S>,
    now: Now,
    t: Transmit<Vec<u8>>,
    request_from: Option<SocketAddr>,
    out: &mut Queue<S, C>,
) {
    if t.from == l.key.1 {
        // turn-server-proto 0.7.3 addresses its Binding success responses to the listening
        // address instead of the client; the client is the request's source.
        let to = match request_from {
            Some(c) if t.to == l.key.1 => c,
            _ => t.to,
        };
        out.extend(to_client(l, to, t.data));
        return;
    }
    if let Some(r) = rest.relays.get(&t.from) {
        let socket = r.socket.clone();
        let client = r.owner.client;
        if let Err(why) = rest.shared.config.policy.check(t.to, &*rest) {
            checks::count_peer_refusal(rest, now, why, client, t.to, l.key);
            return;
        }
        let stats = &rest.shared.stats;
        stats.relayed_to_peers.fetch_add(1, Relaxed);
        stats.relayed_bytes.fetch_add(t.data.len() as u64, Relaxed);
        out.push_back(Command::Send {
            via: Via::Udp(socket),
            to: t.to,
            data: t.data,
        });
    }
}

/// Runs the crate's `poll` / `poll_transmit` for both generations of a listener: asks for
/// relay sockets and closes them, and queues what the crate wants sent.
fn drive<S: Clone, C: Clone>(
    l: &mut Listener<S, C>,
    rest: &mut Rest<S>,
    now: Now,
    out: &mut Queue<S, C>,
) {
    let mut transmits = Vec::new();
    for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
        loop {
            match g.server.poll(now.mono) {
                TurnServerPollRet::WaitUntil(_) => break,
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let res = if allocation_transport == TransportType::Udp {
                        reserve(rest, g, now, (transport, listen_addr), client_addr, family)
                    } else {
                        // RFC 6062 TCP allocations are not offered (browsers never use
                        // them); the client gets 508.
                        Err(SocketAllocateError::InsufficientCapacity)
                    };
                    match res {
                        Ok(request) => out.push_back(request),
                        Err(e) => g.server.allocated_socket(
                            transport,
                            listen_addr,
                            client_addr,
                            allocation_transport,
                            family,
                            Err(e),
                            now.mono,
                        ),
                    }
                }
                TurnServerPollRet::TcpConnect {
                    relayed_addr,
                    peer_addr,
                    listen_addr,
                    client_addr,
                } => g.server.tcp_connected(
                    relayed_addr,
                    peer_addr,
                    listen_addr,
                    client_addr,
                    Err(TcpConnectError::Forbidden),
                    now.mono,
                ),
                TurnServerPollRet::TcpClose { .. } => {}
                TurnServerPollRet::SocketClose { listen_addr, .. } => {
                    release(rest, g, listen_addr, out);
                }
            }
        }
        while let Some(t) = g.server.poll_transmit(now.mono) {
            transmits.push(t);
        }
    }
    for t in transmits {
        route(l, rest, now, t, None, out);
    }
}

/// Charges a new allocation to its quotas and asks the edge for its relay socket.
fn reserve<S, C>(
    rest: &mut Rest<S>,
    g: &mut Generation,
    now: Now,
    listener: ListenerKey,
    client: SocketAddr,
    family: AddressFamily,
) -> Result<Command<S, C>, SocketAllocateError> {
    let cfg = &rest.shared.config;
    let ip = relay_ip(
        listener.1.ip(),
        family == AddressFamily::IPV4,
        &rest.local_ips,
    )
    .ok_or(SocketAllocateError::AddressFamilyNotSupported)?;
    // A repeated Allocate (same 5-tuple) while the first one's socket is being opened would
    // be charged twice and leave one allocation orphaned: only the first is served.
    if rest
        .opening
        .values()
        .any(|o| o.owner.listener == listener && o.owner.client == client && o.family == family)
    {
        return Err(SocketAllocateError::InsufficientCapacity);
    }
    let held = rest.relays.len() + rest.opening.len();
    if held >= cfg.max_allocations {
        rest.shared.stats.refused_capacity.fetch_add(1, Relaxed);
        rest.log.warn(
            now.mono,
            "capacity",
            format_args!(
                "TURN: refused allocation for {client}: {held} allocations (max_allocations)"
            ),
        );
        return Err(SocketAllocateError::InsufficientCapacity);
    }
    let user = g.pending_users.remove(&client).unwrap_or_default();
    *rest.user_allocs.entry(user.clone()).or_default() += 1;
    *rest.ip_allocs.entry(canonical(client.ip())).or_default() += 1;
    *g.alloc_clients.entry(client).or_default() += 1;
    let request = RelayRequest(rest.next_request);
    rest.next_request += 1;
    let owner = Owner {
        listener,
        generation: g.id,
        client,
        user,
    };
    rest.opening.insert(request, Opening { owner, family });
    Ok(Command::OpenRelay { request, ip })
}

fn unreserve<S>(rest: &mut Rest<S>, g: &mut Generation, owner: &Owner) {
    decrement(&mut rest.user_allocs, &owner.user);
    decrement(&mut rest.ip_allocs, &canonical(owner.client.ip()));
    decrement(&mut g.alloc_clients, &owner.client);
}

fn release<S, C>(rest: &mut Rest<S>, g: &mut Generation, relay: SocketAddr, out: &mut Queue<S, C>) {
    let Some(r) = rest.relays.remove(&relay) else {
        return;
    };
    unreserve(rest, g, &r.owner);
    rest.shared.stats.allocations_active.fetch_sub(1, Relaxed);
    tracing::debug!("TURN: released {relay} of {}", r.owner.client);
    if rest.shared.config.allocation_events.is_some() {
        out.push_back(Command::Event(crate::AllocationEvent::Ended {
            relay,
            client: r.owner.client,
            user: r.owner.user.clone(),
        }));
    }
    out.push_back(Command::CloseRelay {
        relay,
        socket: r.socket,
    });
}

fn decrement<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(k);
        }
    }
}

/// The address a relay is opened on: the one the client reached when the families match.
/// Otherwise (RFC 6156: a client on IPv6 asking for an IPv4 relay, or the reverse) loopback
/// of the other family for a loopback listener, else the first global-looking interface
/// address of the requested family.
fn relay_ip(listener_ip: IpAddr, want_v4: bool, local_ips: &HashSet<IpAddr>) -> Option<IpAddr> {
    if listener_ip.is_ipv4() == want_v4 {
        return Some(listener_ip);
    }
    if listener_ip.is_loopback() {
        return Some(if want_v4 {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
        });
    }
    local_ips
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == want_v4 && !ip.is_loopback())
        .min()
}

fn random_password(rng: &mut StdRng) -> String {
    (0..32)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}
