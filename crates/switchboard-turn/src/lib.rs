//! Switchboard's built-in STUN/TURN server.
//!
//! The protocol (STUN Binding, TURN Allocate / Refresh / CreatePermission / ChannelBind,
//! Send and Data indications, ChannelData; RFC 5389, 5766, 8656) is handled by the sans-IO
//! [`turn_server_proto`] crate. This crate wraps it in two layers, as the signaling hub is
//! wrapped: a sans-IO state machine that adds what a server exposed to the internet needs and
//! the protocol crate leaves out (time and randomness are its inputs; it answers with
//! commands: send, open a relay socket, close one), and a tokio edge that owns the sockets,
//! the tasks and the clock and carries the commands out (docs/ARCHITECTURE.md, "STUN/TURN").
//! What the two add:
//!
//! - **Listeners**: UDP and TCP on the same port (default 3478) and TLS (default 5349, when a
//!   certificate is configured). An unspecified listen address (`0.0.0.0`, `[::]`) means
//!   "every interface address", so each socket knows the address clients reached and relay
//!   sockets are opened on that same address (see [`TurnConfig::listen`]).
//! - **Credentials**: coturn's REST-API scheme (`<expiry>:<user>` /
//!   `base64(HMAC-SHA1(secret, username))`, see [`switchboard_core::ice`]). A username is
//!   checked (expiry, then the HMAC through MESSAGE-INTEGRITY) and registered with the
//!   protocol crate when it is first used, and revoked when it expires.
//! - **Relay policy** ([`PeerPolicy`]): loopback, private, link-local, multicast and the
//!   server's own addresses are refused as peers unless allow-listed, the server's own
//!   non-relay ports always; relay-to-relay between two allocations works. CreatePermission
//!   and ChannelBind for a refused peer get `403 Forbidden`.
//! - **Quotas**: allocations per user (`486 Allocation Quota Reached`), per client IP, and in
//!   total (`508 Insufficient Capacity`); a bounded TCP connection count; bounded state
//!   tables (see [`TurnConfig::max_clients_per_generation`]).
//! - **Counters** ([`TurnStats`]) and rate-limited log lines for every refusal.
//!
//! Not offered: RFC 6062 TCP allocations (a browser never asks for one; such requests get
//! `508`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let config = switchboard_turn::TurnConfig {
//!     secret: "shared-secret".into(),
//!     ..Default::default()
//! };
//! let turn = switchboard_turn::start(config).await?;
//! println!("STUN/TURN on UDP {:?}, TCP {:?}", turn.udp_addrs(), turn.tcp_addrs());
//! # Ok(()) }
//! ```

mod auth;
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod log;
mod machine;
mod policy;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use io::{TurnHandle, load_tls, start};
pub use ipnet::IpNet;
pub use policy::{PeerPolicy, PeerRefusal, ServerSockets, canonical, restricted_class};

/// Default STUN/TURN port (UDP and TCP).
pub const DEFAULT_PORT: u16 = 3478;
/// Default TURN-over-TLS port.
pub const DEFAULT_TLS_PORT: u16 = 5349;

/// Settings of the built-in STUN/TURN server.
#[derive(Clone)]
pub struct TurnConfig {
    /// UDP and TCP listen addresses (both transports share each address and port). An
    /// unspecified IP (`0.0.0.0`, `[::]`) expands to every interface address of that family;
    /// port 0 picks one free port, then used for every address and both transports.
    /// Default: `0.0.0.0:3478`, `[::]:3478`.
    pub listen: Vec<SocketAddr>,
    /// TURN-over-TLS listen addresses, used when [`TurnConfig::tls`] is set (same expansion
    /// rules). Default: `0.0.0.0:5349`, `[::]:5349`.
    pub tls_listen: Vec<SocketAddr>,
    /// Certificate and key for TURN over TLS (`turns:`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Shared secret of the REST-API credentials.
    pub secret: String,
    /// Realm sent to clients. Default: `switchboard`.
    pub realm: String,
    /// Relay ports, inclusive. Default: 49152–65535 (as coturn).
    pub relay_ports: (u16, u16),
    /// The public address of a server behind a 1:1 NAT (e.g. a cloud VM): advertised as the
    /// relay address instead of the interface address.
    pub external_ip: Option<IpAddr>,
    /// Peer allow/deny lists on top of the safe default.
    pub policy: PeerPolicy,
    /// Ports of this server's other listeners (HTTP): never reachable through the relay.
    /// The STUN/TURN ports are added automatically.
    pub protected_ports: Vec<u16>,
    /// Most allocations one REST user may hold at once. Default: 16.
    pub user_quota: usize,
    /// Most allocations from one client IP address. Default: 64.
    pub ip_quota: usize,
    /// Most allocations in total (each is one UDP socket). Default: 10,000.
    pub max_allocations: usize,
    /// Most TCP and TLS client connections in total. Default: 4,096.
    pub max_tcp_connections: usize,
    /// Client addresses (or usernames) one protocol-state generation may see before a fresh
    /// one takes new clients and the old one drains; while an old one still drains, further
    /// new clients are refused. Bounds the protocol crate's nonce and user tables.
    /// Default: 65,536.
    pub max_clients_per_generation: usize,
    /// Told of every allocation opened and ended (the operator's webhooks); called outside
    /// any lock, it must not block. Default: none.
    pub allocation_events: Option<AllocationSink>,
}

/// An allocation opened or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationEvent {
    /// A relay address was allocated to `client` for the REST user `user`.
    Created {
        /// The relay address given to the client.
        relay: SocketAddr,
        /// The client's address (as the server sees it).
        client: SocketAddr,
        /// The user of the credential (its REST username without the expiry).
        user: String,
    },
    /// The allocation ended (expired, refreshed to 0, or its TCP connection closed).
    Ended {
        /// The relay address.
        relay: SocketAddr,
        /// The client's address.
        client: SocketAddr,
        /// The user of the credential (its REST username without the expiry).
        user: String,
    },
}

/// Where [`AllocationEvent`]s go.
pub type AllocationSink = Arc<dyn Fn(AllocationEvent) + Send + Sync>;

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
                SocketAddr::from(([0u16; 8], DEFAULT_PORT)),
            ],
            tls_listen: vec![
                SocketAddr::from(([0, 0, 0, 0], DEFAULT_TLS_PORT)),
                SocketAddr::from(([0u16; 8], DEFAULT_TLS_PORT)),
            ],
            tls: None,
            secret: String::new(),
            realm: "switchboard".to_owned(),
            relay_ports: (49152, 65535),
            external_ip: None,
            policy: PeerPolicy::default(),
            protected_ports: Vec::new(),
            user_quota: 16,
            ip_quota: 64,
            max_allocations: 10_000,
            max_tcp_connections: 4096,
            max_clients_per_generation: 65_536,
            allocation_events: None,
        }
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("listen", &self.listen)
            .field("tls_listen", &self.tls_listen)
            .field("tls", &self.tls.is_some())
            .field("secret", &"<redacted>")
            .field("realm", &self.realm)
            .field("relay_ports", &self.relay_ports)
            .field("external_ip", &self.external_ip)
            .field("policy", &self.policy)
            .field("protected_ports", &self.protected_ports)
            .field("user_quota", &self.user_quota)
            .field("ip_quota", &self.ip_quota)
            .field("max_allocations", &self.max_allocations)
            .field("max_tcp_connections", &self.max_tcp_connections)
            .field(
                "max_clients_per_generation",
                &self.max_clients_per_generation,
            )
            .field("allocation_events", &self.allocation_events.is_some())
            .finish()
    }
}

/// Errors in a [`TurnConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The relay port range is empty or reversed.
    #[error("relay port range {0}-{1} is empty")]
    RelayPorts(u16, u16),
    /// No secret: credentials could not be checked.
    #[error("the TURN secret must not be empty")]
    NoSecret,
    /// A quota or limit of zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl TurnConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.relay_ports.0 == 0 || self.relay_ports.0 > self.relay_ports.1 {
            return Err(ConfigError::RelayPorts(
                self.relay_ports.0,
                self.relay_ports.1,
            ));
        }
        if self.secret.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        for (name, v) in [
            ("user_quota", self.user_quota),
            ("ip_quota", self.ip_quota),
            ("max_allocations", self.max_allocations),
            ("max_tcp_connections", self.max_tcp_connections),
            (
                "max_clients_per_generation",
                self.max_clients_per_generation,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

/// Configuration and counters shared by the machine and every task of one server.
pub(crate) struct Shared {
    pub(crate) config: TurnConfig,
    pub(crate) stats: Stats,
}

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters (relaxed atomics).
        #[derive(Default)]
        pub(crate) struct Stats { $(pub(crate) $name: AtomicU64,)* }

        /// A snapshot of the server's counters, as served at `GET /api/v1/stats`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct TurnStats { $($(#[$doc])* pub $name: u64,)* }

        impl Stats {
            fn snapshot(&self) -> TurnStats {
                TurnStats { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

stats! {
    /// STUN requests received from clients (Binding, Allocate, Refresh, CreatePermission,
    /// ChannelBind), answered or refused.
    stun_requests,
    /// Allocations open now.
    allocations_active,
    /// Allocations opened since start.
    allocations_total,
    /// Packets relayed from clients to peers.
    relayed_to_peers,
    /// Packets relayed from peers to clients.
    relayed_from_peers,
    /// Payload bytes relayed, both directions.
    relayed_bytes,
    /// Packets dropped because a socket or TCP connection queue was full.
    dropped_send,
    /// Requests refused with 401/441: wrong password, unknown or revoked user.
    refused_auth,
    /// Requests with an expired REST username.
    refused_expired,
    /// Allocations refused: the user's quota was reached (486).
    refused_user_quota,
    /// Allocations refused: the client IP's quota was reached (486).
    refused_ip_quota,
    /// Allocations refused: total allocation limit or no free relay port (508).
    refused_capacity,
    /// TCP/TLS connections refused: connection limit.
    refused_tcp_limit,
    /// Packets from new clients dropped: state tables full while an old generation drains.
    refused_busy,
    /// REST usernames registered in a state table since start: only after a request with a
    /// valid MESSAGE-INTEGRITY for them (each holds state until its generation retires).
    users_registered,
    /// Peers refused: loopback.
    refused_peer_loopback,
    /// Peers refused: private (RFC 1918, CGNAT, ULA).
    refused_peer_private,
    /// Peers refused: link-local.
    refused_peer_link_local,
    /// Peers refused: multicast or broadcast.
    refused_peer_multicast,
    /// Peers refused: unspecified or reserved.
    refused_peer_unspecified,
    /// Peers refused: one of the server's own non-relay ports.
    refused_peer_own_port,
    /// Peers refused: one of the server's own addresses.
    refused_peer_own_address,
    /// Peers refused: operator deny list.
    refused_peer_denied,
}

/// Wall-clock time in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
