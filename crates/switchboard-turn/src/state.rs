//! The shared TURN state behind one lock: the `turn-server-proto` instances (one per
//! listening socket), the relay sockets, credentials, quotas and the peer policy.
//!
//! Every method takes the input (a packet and where it came from, or a timer tick), updates
//! the state synchronously and returns the packets to send ([`Out`]); the IO tasks send them
//! after releasing the lock. Nothing here awaits.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant as StdInstant};

use rand::Rng as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use turn_server_proto::api::{
    SocketAllocateError, TcpConnectError, Transmit, TurnServerApi, TurnServerPollRet,
};
use turn_server_proto::server::TurnServer;
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION};
use turn_server_proto::types::stun::attribute::{ErrorCode, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWriteVec,
};
use turn_server_proto::types::stun::prelude::{
    AttributeStaticType as _, MessageWrite as _, MessageWriteExt as _,
};
use turn_server_proto::types::{AddressFamily, Instant, TransportType};

use crate::auth::parse_rest_username;
use crate::policy::{PeerRefusal, ServerSockets, canonical};
use crate::{Shared, Stats};

/// A listening socket: its transport and local address.
pub(crate) type ListenerKey = (TransportType, SocketAddr);

/// Hashable form of a [`ListenerKey`] (`TransportType` is not `Hash`).
fn idx(key: ListenerKey) -> (bool, SocketAddr) {
    (key.0 == TransportType::Tcp, key.1)
}

/// How a packet leaves.
#[derive(Debug)]
pub(crate) enum Via {
    Udp(Arc<UdpSocket>),
    Tcp(mpsc::Sender<Vec<u8>>),
}

/// A packet to send once the lock is released.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) via: Via,
    pub(crate) to: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// What the IO layer must do when a relay socket is opened: start its reader.
pub(crate) type RelayStarter =
    Box<dyn Fn(SocketAddr, Arc<UdpSocket>) -> tokio::task::AbortHandle + Send>;

/// One `turn-server-proto` instance and the edge's bookkeeping for it.
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

struct Listener {
    key: ListenerKey,
    udp: Option<Arc<UdpSocket>>,
    tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    current: Generation,
    draining: Option<Generation>,
}

impl Listener {
    fn generation(&mut self, id: u64) -> Option<&mut Generation> {
        if self.current.id == id {
            Some(&mut self.current)
        } else {
            self.draining.as_mut().filter(|g| g.id == id)
        }
    }
}

struct Relay {
    socket: Arc<UdpSocket>,
    reader: tokio::task::AbortHandle,
    listener: ListenerKey,
    generation: u64,
    client: SocketAddr,
    user: String,
}

/// Everything except the listeners, so a listener and the rest can be borrowed together.
struct Rest {
    shared: Arc<Shared>,
    relays: HashMap<SocketAddr, Relay>,
    user_allocs: HashMap<String, usize>,
    ip_allocs: HashMap<IpAddr, usize>,
    local_ips: HashSet<IpAddr>,
    protected_ports: HashSet<u16>,
    start_relay: RelayStarter,
    next_generation: u64,
    log: LogLimiter,
}

impl ServerSockets for Rest {
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

/// The whole TURN state (see the module docs).
pub(crate) struct State {
    base: StdInstant,
    listeners: HashMap<(bool, SocketAddr), Listener>,
    rest: Rest,
}

impl State {
    pub(crate) fn new(
        shared: Arc<Shared>,
        local_ips: HashSet<IpAddr>,
        protected_ports: HashSet<u16>,
        start_relay: RelayStarter,
    ) -> Self {
        Self {
            base: StdInstant::now(),
            listeners: HashMap::new(),
            rest: Rest {
                shared,
                relays: HashMap::new(),
                user_allocs: HashMap::new(),
                ip_allocs: HashMap::new(),
                local_ips,
                protected_ports,
                start_relay,
                next_generation: 1,
                log: LogLimiter::default(),
            },
        }
    }

    fn now(&self) -> Instant {
        Instant::from_std(self.base)
    }

    /// Registers a listening socket (UDP sockets pass theirs; TCP/TLS connections register
    /// themselves with [`State::tcp_open`]).
    pub(crate) fn add_listener(&mut self, key: ListenerKey, udp: Option<Arc<UdpSocket>>) {
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

    /// A TCP or TLS client connected. Returns `false` when the connection limit is reached.
    pub(crate) fn tcp_open(
        &mut self,
        key: ListenerKey,
        client: SocketAddr,
        tx: mpsc::Sender<Vec<u8>>,
    ) -> bool {
        let open: usize = self.listeners.values().map(|l| l.tcp_conns.len()).sum();
        if open >= self.rest.shared.config.max_tcp_connections {
            self.rest
                .shared
                .stats
                .refused_tcp_limit
                .fetch_add(1, Relaxed);
            self.rest.log.warn(
                "tcp_limit",
                format_args!("TURN: refused TCP client {client}: connection limit reached"),
            );
            return false;
        }
        if let Some(l) = self.listeners.get_mut(&idx(key)) {
            l.tcp_conns.insert(client, tx);
        }
        true
    }

    /// A TCP or TLS client disconnected.
    pub(crate) fn tcp_closed(&mut self, key: ListenerKey, client: SocketAddr) -> Vec<Out> {
        let now = self.now();
        let mut out = Vec::new();
        if let Some(l) = self.listeners.get_mut(&idx(key)) {
            l.tcp_conns.remove(&client);
            // An empty read tells the crate to drop its buffer for this connection.
            for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
                if g.sources.contains(&client) {
                    let empty: &[u8] = &[];
                    let _ = g
                        .server
                        .recv(Transmit::new(empty, key.0, client, key.1), now);
                }
            }
            drive(l, &mut self.rest, now, &mut out);
        }
        out
    }

    /// A packet from a client on listener `key` (one whole STUN message or ChannelData).
    pub(crate) fn on_client(
        &mut self,
        key: ListenerKey,
        client: SocketAddr,
        data: &[u8],
    ) -> Vec<Out> {
        let now = self.now();
        let mut out = Vec::new();
        let Some(first) = data.first() else {
            return out;
        };
        let Some(l) = self.listeners.get_mut(&idx(key)) else {
            return out;
        };
        let rest = &mut self.rest;
        let Some(gen_id) = pick_generation(l, client, rest) else {
            rest.shared.stats.refused_busy.fetch_add(1, Relaxed);
            rest.log.warn(
                "busy",
                format_args!(
                    "TURN: dropped a packet from new client {client}: state table full \
                     (raise max_clients_per_generation)"
                ),
            );
            return out;
        };
        let Some(g) = l.generation(gen_id) else {
            return out;
        };
        let mut is_request = false;
        let mut had_username = false;
        if *first < 0x40 {
            if let Ok(msg) = Message::from_bytes(data) {
                is_request = msg.has_class(MessageClass::Request);
                if is_request {
                    had_username = msg.has_attribute(Username::TYPE);
                    if let Some(reply) = precheck(&msg, g, rest, key, client) {
                        out.push(to_client(l, client, reply));
                        return out;
                    }
                }
            }
        }
        let reply = g
            .server
            .recv(Transmit::new(data, key.0, client, key.1), now)
            .map(|t| t.build());
        if let Some(t) = reply {
            if had_username {
                count_auth_failure(&t.data, rest, client);
            }
            route(l, rest, t, Some(client), &mut out);
        }
        if is_request {
            drive(l, rest, now, &mut out);
        }
        out
    }

    /// A packet from `peer` arrived on the relay socket `relay`.
    pub(crate) fn on_peer(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]) -> Vec<Out> {
        let now = self.now();
        let mut out = Vec::new();
        let Some(r) = self.rest.relays.get(&relay) else {
            return out;
        };
        let (lkey, gen_id) = (r.listener, r.generation);
        let Some(l) = self.listeners.get_mut(&idx(lkey)) else {
            return out;
        };
        let Some(g) = l.generation(gen_id) else {
            return out;
        };
        let stats = &self.rest.shared.stats;
        let reply = g
            .server
            .recv(Transmit::new(data, TransportType::Udp, peer, relay), now)
            .map(|t| t.build());
        if let Some(t) = reply {
            stats.relayed_from_peers.fetch_add(1, Relaxed);
            stats.relayed_bytes.fetch_add(data.len() as u64, Relaxed);
            route(l, &mut self.rest, t, None, &mut out);
        }
        out
    }

    /// Periodic work: allocation and permission expiry, credential revocation, retiring
    /// drained generations.
    pub(crate) fn on_tick(&mut self, unix_now: u64) -> Vec<Out> {
        let now = self.now();
        let mut out = Vec::new();
        for l in self.listeners.values_mut() {
            for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
                while let Some(Reverse((expiry, _))) = g.revoke.peek() {
                    if *expiry > unix_now {
                        break;
                    }
                    if let Some(Reverse((_, name))) = g.revoke.pop() {
                        // The crate cannot forget a user; a random password revokes it.
                        g.server.add_user(name, random_password());
                    }
                }
            }
            drive(l, &mut self.rest, now, &mut out);
            if l.draining
                .as_ref()
                .is_some_and(|d| d.alloc_clients.is_empty())
            {
                l.draining = None;
                tracing::info!("TURN: retired a drained state generation on {:?}", l.key);
            }
        }
        out
    }
}

fn pick_generation(l: &mut Listener, client: SocketAddr, rest: &mut Rest) -> Option<u64> {
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

/// Checks done before the crate sees an authenticated request: registers REST usernames
/// just in time, applies quotas to Allocate and the peer policy to CreatePermission and
/// ChannelBind. Returns an error reply to send instead of handing the request over.
fn precheck(
    msg: &Message<'_>,
    g: &mut Generation,
    rest: &mut Rest,
    key: ListenerKey,
    client: SocketAddr,
) -> Option<Vec<u8>> {
    let username = msg.attribute::<Username>().ok()?;
    let name = username.username();
    let cfg = &rest.shared.config;
    let stats = &rest.shared.stats;
    let unix_now = crate::unix_now();
    let Some(parsed) = parse_rest_username(name) else {
        return None; // unknown user: the crate answers 401
    };
    if parsed.expiry <= unix_now {
        stats.refused_expired.fetch_add(1, Relaxed);
        rest.log.refused(
            "expired",
            format_args!("TURN: refused {client}: credential {name:?} expired"),
        );
        return None; // never registered or already revoked: the crate answers 401
    }
    let password = switchboard_core::ice::rest_password(&cfg.secret, name);
    let creds: MessageIntegrityCredentials =
        LongTermCredentials::new(name.to_owned(), password.clone())
            .to_key(cfg.realm.clone())
            .into();
    // Only requests that carry a valid MESSAGE-INTEGRITY are judged here; the crate answers
    // the others (401 with a nonce, or 400). The user is registered only after its integrity
    // checked out: anyone can send a username with a future expiry, and registering those
    // would let unauthenticated requests fill the state table (and lock new clients out).
    let algo = msg.validate_integrity(&creds).ok()?;
    if g.users.insert(name.to_owned()) {
        stats.users_registered.fetch_add(1, Relaxed);
        g.server.add_user(name.to_owned(), password);
        g.revoke.push(Reverse((parsed.expiry, name.to_owned())));
    }
    let user = parsed.user;
    if msg.has_method(ALLOCATE) {
        let by_user = rest.user_allocs.get(user).copied().unwrap_or(0);
        let by_ip = rest
            .ip_allocs
            .get(&canonical(client.ip()))
            .copied()
            .unwrap_or(0);
        let refusal = if by_user >= cfg.user_quota {
            Some(("user_quota", &stats.refused_user_quota))
        } else if by_ip >= cfg.ip_quota {
            Some(("ip_quota", &stats.refused_ip_quota))
        } else {
            None
        };
        if let Some((why, counter)) = refusal {
            counter.fetch_add(1, Relaxed);
            rest.log.refused(
                why,
                format_args!(
                    "TURN: refused allocation for {client} (user {user:?}): {why} reached \
                     ({by_user} by this user, {by_ip} from this address)"
                ),
            );
            // 486 Allocation Quota Reached.
            return error_reply(msg, 486, &creds, algo);
        }
        g.pending_users.insert(client, user.to_owned());
    } else if msg.has_method(CREATE_PERMISSION) || msg.has_method(CHANNEL_BIND) {
        let tid = msg.transaction_id();
        let mut n = 0;
        while let Ok(attr) = msg.nth_attribute::<XorPeerAddress>(n) {
            n += 1;
            let peer = attr.addr(tid);
            // A permission is for an IP address (its port is meaningless, often 0): one that
            // hosts relays of this server is allowed, and each packet sent through it is
            // still checked with its real port (relay to relay only; never our own ports).
            let hosts_relay = msg.has_method(CREATE_PERMISSION)
                && rest
                    .relays
                    .keys()
                    .any(|r| canonical(r.ip()) == canonical(peer.ip()));
            if let Err(why) = cfg.policy.check(peer, &*rest)
                && !hosts_relay
            {
                count_peer_refusal(rest, why, client, peer, key);
                // 403 Forbidden, as coturn answers for a denied peer.
                return error_reply(msg, 403, &creds, algo);
            }
        }
    }
    None
}

fn count_peer_refusal(
    rest: &mut Rest,
    why: PeerRefusal,
    client: SocketAddr,
    peer: SocketAddr,
    key: ListenerKey,
) {
    rest.shared.stats.refused_peer(why).fetch_add(1, Relaxed);
    rest.log.refused(
        why.as_str(),
        format_args!(
            "TURN: refused relay from {client} (via {}) to {peer}: {}",
            key.1,
            why.as_str()
        ),
    );
}

fn error_reply(
    msg: &Message<'_>,
    code: u16,
    creds: &MessageIntegrityCredentials,
    algo: IntegrityAlgorithm,
) -> Option<Vec<u8>> {
    let error = ErrorCode::builder(code).build().ok()?;
    let mut b = Message::builder_error(msg, MessageWriteVec::new());
    b.add_attribute(&error).ok()?;
    b.add_message_integrity(creds, algo).ok()?;
    b.add_fingerprint().ok()?;
    Some(b.finish())
}

/// Counts 401/441 answers to requests that carried a username (wrong password, revoked or
/// unknown user).
fn count_auth_failure(reply: &[u8], rest: &mut Rest, client: SocketAddr) {
    let Ok(msg) = Message::from_bytes(reply) else {
        return;
    };
    if !msg.has_class(MessageClass::Error) {
        return;
    }
    let Ok(code) = msg.attribute::<ErrorCode>() else {
        return;
    };
    if matches!(code.code(), 401 | 441) {
        rest.shared.stats.refused_auth.fetch_add(1, Relaxed);
        rest.log.refused(
            "auth",
            format_args!(
                "TURN: refused {client}: bad credentials (error {})",
                code.code()
            ),
        );
    }
}

fn to_client(l: &Listener, client: SocketAddr, data: Vec<u8>) -> Out {
    let via = match &l.udp {
        Some(s) => Via::Udp(Arc::clone(s)),
        None => match l.tcp_conns.get(&client) {
            Some(tx) => Via::Tcp(tx.clone()),
            // Connection already gone: a closed sender drops the packet.
            None => Via::Tcp(mpsc::channel(1).0),
        },
    };
    Out {
        via,
        to: client,
        data,
    }
}

/// Sends a crate transmit where it belongs: to a client through its listener, or to a peer
/// through a relay socket (after the peer policy).
fn route(
    l: &Listener,
    rest: &mut Rest,
    t: Transmit<Vec<u8>>,
    request_from: Option<SocketAddr>,
    out: &mut Vec<Out>,
) {
    if t.from == l.key.1 {
        // turn-server-proto 0.7.3 addresses its Binding success responses to the listening
        // address instead of the client; the client is the request's source.
        let to = match request_from {
            Some(c) if t.to == l.key.1 => c,
            _ => t.to,
        };
        out.push(to_client(l, to, t.data));
        return;
    }
    if let Some(r) = rest.relays.get(&t.from) {
        let socket = Arc::clone(&r.socket);
        let client = r.client;
        if let Err(why) = rest.shared.config.policy.check(t.to, &*rest) {
            count_peer_refusal(rest, why, client, t.to, l.key);
            return;
        }
        let stats = &rest.shared.stats;
        stats.relayed_to_peers.fetch_add(1, Relaxed);
        stats.relayed_bytes.fetch_add(t.data.len() as u64, Relaxed);
        out.push(Out {
            via: Via::Udp(socket),
            to: t.to,
            data: t.data,
        });
    }
}

/// Runs the crate's `poll` / `poll_transmit` for both generations of a listener: opens and
/// closes relay sockets, and collects what the crate wants sent.
fn drive(l: &mut Listener, rest: &mut Rest, now: Instant, out: &mut Vec<Out>) {
    let mut transmits = Vec::new();
    for g in std::iter::once(&mut l.current).chain(l.draining.as_mut()) {
        loop {
            match g.server.poll(now) {
                TurnServerPollRet::WaitUntil(_) => break,
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let res = if allocation_transport == TransportType::Udp {
                        allocate(rest, g, (transport, listen_addr), client_addr, family)
                    } else {
                        // RFC 6062 TCP allocations are not offered (browsers never use
                        // them); the client gets 508.
                        Err(SocketAllocateError::InsufficientCapacity)
                    };
                    g.server.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        res,
                        now,
                    );
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
                    now,
                ),
                TurnServerPollRet::TcpClose { .. } => {}
                TurnServerPollRet::SocketClose { listen_addr, .. } => {
                    release(rest, g, listen_addr);
                }
            }
        }
        while let Some(t) = g.server.poll_transmit(now) {
            transmits.push(t);
        }
    }
    for t in transmits {
        route(l, rest, t, None, out);
    }
}

fn allocate(
    rest: &mut Rest,
    g: &mut Generation,
    listener: ListenerKey,
    client: SocketAddr,
    family: AddressFamily,
) -> Result<SocketAddr, SocketAllocateError> {
    let cfg = &rest.shared.config;
    let stats = &rest.shared.stats;
    let want_v4 = family == AddressFamily::IPV4;
    let bind_ip = relay_ip(listener.1.ip(), want_v4, &rest.local_ips)
        .ok_or(SocketAllocateError::AddressFamilyNotSupported)?;
    if rest.relays.len() >= cfg.max_allocations {
        stats.refused_capacity.fetch_add(1, Relaxed);
        rest.log.warn(
            "capacity",
            format_args!(
                "TURN: refused allocation for {client}: {} allocations (max_allocations)",
                rest.relays.len()
            ),
        );
        return Err(SocketAllocateError::InsufficientCapacity);
    }
    let Some(socket) = bind_relay(bind_ip, cfg.relay_ports.0, cfg.relay_ports.1) else {
        stats.refused_capacity.fetch_add(1, Relaxed);
        rest.log.warn(
            "ports",
            format_args!("TURN: refused allocation for {client}: no free relay port"),
        );
        return Err(SocketAllocateError::InsufficientCapacity);
    };
    let port = socket
        .local_addr()
        .map_err(|_| SocketAllocateError::InsufficientCapacity)?
        .port();
    let advertised_ip = match (cfg.external_ip, bind_ip) {
        (Some(ext), ip) if ext.is_ipv4() == ip.is_ipv4() && !ip.is_loopback() => ext,
        _ => bind_ip,
    };
    let advertised = SocketAddr::new(advertised_ip, port);
    let socket = Arc::new(socket);
    let reader = (rest.start_relay)(advertised, Arc::clone(&socket));
    let user = g.pending_users.remove(&client).unwrap_or_default();
    *rest.user_allocs.entry(user.clone()).or_default() += 1;
    *rest.ip_allocs.entry(canonical(client.ip())).or_default() += 1;
    *g.alloc_clients.entry(client).or_default() += 1;
    rest.relays.insert(
        advertised,
        Relay {
            socket,
            reader,
            listener,
            generation: g.id,
            client,
            user,
        },
    );
    stats.allocations_total.fetch_add(1, Relaxed);
    stats.allocations_active.fetch_add(1, Relaxed);
    tracing::debug!("TURN: allocated {advertised} for {client}");
    Ok(advertised)
}

fn release(rest: &mut Rest, g: &mut Generation, relay: SocketAddr) {
    let Some(r) = rest.relays.remove(&relay) else {
        return;
    };
    r.reader.abort();
    decrement(&mut rest.user_allocs, &r.user);
    decrement(&mut rest.ip_allocs, &canonical(r.client.ip()));
    decrement(&mut g.alloc_clients, &r.client);
    rest.shared.stats.allocations_active.fetch_sub(1, Relaxed);
    tracing::debug!("TURN: released {relay} of {}", r.client);
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
    let mut candidates: Vec<IpAddr> = local_ips
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == want_v4 && !ip.is_loopback())
        .collect();
    candidates.sort();
    candidates.into_iter().next()
}

/// Binds a UDP socket on `ip` at a random free port in `lo..=hi`.
fn bind_relay(ip: IpAddr, lo: u16, hi: u16) -> Option<UdpSocket> {
    let mut rng = rand::rng();
    let span = u32::from(hi - lo) + 1;
    let tries = span.min(64);
    for i in 0..tries + span.min(4096) {
        // Random probes first, then a linear scan from a random start, so a nearly full
        // range still finds its free ports.
        let port = if i < tries {
            lo + rng.random_range(0..span) as u16
        } else {
            lo + ((i - tries) % span) as u16
        };
        let Ok(std) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
            continue;
        };
        if std.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok(s) = UdpSocket::from_std(std) {
            return Some(s);
        }
    }
    None
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// At most one log line per reason per second, with a count of what was left out.
#[derive(Default)]
struct LogLimiter {
    last: HashMap<&'static str, (StdInstant, u64)>,
}

impl LogLimiter {
    /// A refusal caused by a client (bad or expired credentials, quotas, forbidden peers):
    /// info, at most once a second per reason.
    fn refused(&mut self, reason: &'static str, line: std::fmt::Arguments<'_>) {
        self.log(tracing::Level::INFO, reason, line);
    }

    /// The server at a limit (state table, relay ports, allocations, TCP connections): an
    /// operator should look. Warn, at most once a second per reason.
    fn warn(&mut self, reason: &'static str, line: std::fmt::Arguments<'_>) {
        self.log(tracing::Level::WARN, reason, line);
    }

    fn log(&mut self, level: tracing::Level, reason: &'static str, line: std::fmt::Arguments<'_>) {
        let now = StdInstant::now();
        let entry = self
            .last
            .entry(reason)
            .or_insert((now - Duration::from_secs(2), 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            let more = entry.1;
            match (level == tracing::Level::WARN, more > 0) {
                (true, true) => {
                    tracing::warn!("{line} (and {more} more like it in the last second)");
                }
                (true, false) => tracing::warn!("{line}"),
                (false, true) => {
                    tracing::info!("{line} (and {more} more like it in the last second)");
                }
                (false, false) => tracing::info!("{line}"),
            }
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}

impl Stats {
    fn refused_peer(&self, why: PeerRefusal) -> &std::sync::atomic::AtomicU64 {
        match why {
            PeerRefusal::Loopback => &self.refused_peer_loopback,
            PeerRefusal::Private => &self.refused_peer_private,
            PeerRefusal::LinkLocal => &self.refused_peer_link_local,
            PeerRefusal::Multicast => &self.refused_peer_multicast,
            PeerRefusal::Unspecified => &self.refused_peer_unspecified,
            PeerRefusal::OwnPort => &self.refused_peer_own_port,
            PeerRefusal::OwnAddress => &self.refused_peer_own_address,
            PeerRefusal::Denied => &self.refused_peer_denied,
        }
    }
}
