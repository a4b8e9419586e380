//! The hub: connections, rooms and the P2P rules.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::antmedia::{
    ClientMessage, DecodeError, IceServerConfig, Notification, ServerMessage,
};
use switchboard_proto::{ErrorCode, IceServer, StreamId};

use crate::auth::{AuthConfig, AuthError, Claims};
use crate::ice::IceConfig;

use crate::App;
use crate::timers::Deadlines;

mod admin;
mod antmedia;
mod cluster;
mod cluster_mesh;
mod cluster_pj;
mod cluster_routes;
mod cluster_sio;
mod counts;
mod events;
mod limits;
mod mesh;
mod peerjs;
mod socketio;

pub use admin::PeerInfo;
pub use cluster::{
    ClusterOutput, ClusterStats, JoinOutcome, MeshJoin, PjClaim, PjClaimOutcome, PjSendOutcome,
    PjSent, RemotePeer, RouteOutcome, RouteScope, Seat, SeatClaim, SeatReply, SioJoin, SioRoute,
};
pub use counts::{ErrorCounts, PerDialect};
pub use events::{Change, Dialect, LeaveReason, MAX_EVENTS, PeerEvent};

use limits::Verdict;
pub use limits::{
    Limits, REFUSAL_WINDOW, REFUSALS_BEFORE_CLOSE, RateLimit, SourceBudgets, source_key,
};
pub use peerjs::{PJ_MAX_NAME, PeerJsConfig};

pub use socketio::{AckId, SioInput};
pub use switchboard_proto::socketio::{SIO_MAX_NAME, SioAck, SioEmit, SioError, SioRelay};

/// A connection, named by the IO edge. Ids must be unique for the life of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Settings of a [`Hub`].
#[derive(Debug, Clone)]
pub struct Config {
    /// A connection that sends nothing (no frame, not even a WebSocket ping) for this long is
    /// closed and its seat freed. The Ant Media SDK pings every 3 s. Default 20 s.
    pub idle_timeout: Duration,
    /// Most connections at once, all three dialects together; the next one is refused with
    /// its dialect's error (Ant Media `highResourceUsage`, socket.io an `error` event, PeerJS
    /// `ERROR`) and closed. Default 50,000.
    pub max_connections: usize,
    /// ICE servers sent in `iceServerConfig` replies (fixed ones, and TURN servers that get
    /// short-lived credentials per request).
    pub ice: IceConfig,
    /// Most sockets in one socket.io room (`join` beyond it: `room_full`). Default 64.
    pub sio_max_room_peers: usize,
    /// Most members of an Ant Media mesh room (a `join` with `mesh: true`; beyond it:
    /// `NoSpaceForNewPeer`). Every member keeps a peer connection to every other, so a
    /// join costs the room's members one `peerJoined` and one `start` each. 2 to 32;
    /// default 8.
    pub max_mesh_peers: usize,
    /// The PeerJS dialect's settings.
    pub peerjs: PeerJsConfig,
    /// Messages and joins per second, per connection and per source address.
    pub limits: Limits,
    /// Room tokens: when set, every join (and every TURN credential) needs a valid token
    /// ([`crate::auth`]). `None` (the default) keeps rooms open to anyone.
    pub auth: Option<AuthConfig>,
    /// Cluster mode: this node's id. `Some` makes every Ant Media join take its seat in the
    /// cluster's registry first ([`ClusterOutput`]); `None` (the default) is a single node.
    pub cluster: Option<switchboard_proto::cluster::NodeId>,
    /// Cluster mode: most ids on other nodes (socket.io and PeerJS, each) whose node this
    /// node remembers, to relay to them without asking the registry each time; when full
    /// the table is emptied ([`ClusterStats::route_resets`]). 0: every such relay goes
    /// through the registry. Default 100,000.
    pub route_cache: usize,
}

/// A setting out of its range: what is wrong, named as the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// `Err(InvalidConfig)` with `msg` unless `ok`.
pub(crate) fn check(ok: bool, msg: &str) -> Result<(), InvalidConfig> {
    if ok {
        Ok(())
    } else {
        Err(InvalidConfig(msg.to_owned()))
    }
}

impl Config {
    /// Checks every setting's range (the ICE servers and the PeerJS settings too).
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        check(
            !self.idle_timeout.is_zero(),
            "idle_timeout must be more than 0",
        )?;
        check(
            self.sio_max_room_peers >= 2,
            "sio_max_room_peers (socket.io room size) must be at least 2",
        )?;
        check(
            (2..=32).contains(&self.max_mesh_peers),
            "max_mesh_peers must be 2 to 32",
        )?;
        check(!self.peerjs.key.is_empty(), "peerjs key must not be empty")?;
        check(
            self.peerjs.alive_timeout >= Duration::from_secs(1),
            "peerjs alive_timeout must be at least 1000 ms",
        )?;
        check(
            !self.peerjs.expire_timeout.is_zero(),
            "peerjs expire_timeout must be at least 1 ms",
        )?;
        self.ice.validate()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(20),
            max_connections: 50_000,
            ice: IceConfig {
                servers: vec![IceServer::stun("stun:stun.l.google.com:19302")],
                turn: None,
            },
            sio_max_room_peers: 64,
            max_mesh_peers: 8,
            peerjs: PeerJsConfig::default(),
            limits: Limits::default(),
            auth: None,
            cluster: None,
            route_cache: 100_000,
        }
    }
}

/// Why the hub closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No frame arrived within [`Config::idle_timeout`].
    IdleTimeout,
    /// The server is at [`Config::max_connections`].
    Overloaded,
    /// The server is shutting down.
    Shutdown,
    /// Refused at connect (PeerJS `ERROR` or `ID-TAKEN` sent first).
    Refused,
    /// The same client reconnected and took the id over (PeerJS).
    Replaced,
    /// It went on sending after [`REFUSALS_BEFORE_CLOSE`] `rate_limited` refusals.
    RateLimited,
    /// An operator kicked it ([`Hub::handle_kick`]).
    Kicked,
}

/// Something the IO edge must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue `msg` for `conn`, after everything queued for it before.
    AmSend {
        /// The receiver.
        conn: ConnId,
        /// The message.
        msg: ServerMessage,
    },
    /// Emit a socket.io event to `conn`.
    SioEmit {
        /// The receiver.
        conn: ConnId,
        /// The event.
        emit: SioEmit,
    },
    /// Answer the ack `ack` of socket.io connection `conn`.
    SioAck {
        /// The connection.
        conn: ConnId,
        /// Which ack.
        ack: AckId,
        /// The answer.
        reply: SioAck,
    },
    /// Send a PeerJS message to `conn`.
    PjSend {
        /// The receiver.
        conn: ConnId,
        /// The message.
        msg: switchboard_proto::peerjs::PjServerMessage,
    },
    /// Send `conn` a frame another node rendered for it (a relay from a peer there; cluster
    /// mode only): Ant Media or PeerJS, written as it is.
    Frame {
        /// The receiver.
        conn: ConnId,
        /// The frame.
        frame: switchboard_proto::cluster::Frame,
    },
    /// Something to do in the cluster's registry or for another node (cluster mode only),
    /// in the order it comes.
    Cluster(ClusterOutput),
    /// Close `conn` after delivering what was queued; the hub has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Counters of a hub, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Rooms with at least one peer now.
    pub rooms: usize,
    /// Messages relayed to a peer since start.
    pub relayed: u64,
    /// Error replies sent since start.
    pub errors: u64,
    /// Connections closed for idleness since start.
    pub idle_closed: u64,
    /// Peer events dropped because nobody drained them ([`MAX_EVENTS`]).
    pub events_dropped: u64,
    /// PeerJS messages for absent ids queued now.
    pub queued: usize,
    /// Bytes those messages hold.
    pub queued_bytes: usize,
    /// PeerJS messages for absent ids refused (answered `EXPIRE` at once) because a queue
    /// limit in messages or bytes was reached, since start.
    pub queue_refused: u64,
    /// Messages and joins refused with `rate_limited` since start ([`Config::limits`]).
    pub rate_limited: u64,
    /// Connections closed for going on after refusals since start.
    pub rate_limit_closed: u64,
    /// Joins and requests refused with `unauthorized_access` since start ([`Config::auth`]).
    pub auth_refused: u64,
    /// Joins ended by their token's `max_call` grant since start.
    pub max_call_ended: u64,
    /// Connections kicked by an operator since start.
    pub kicked: u64,
    /// Messages relayed to a peer since start, by dialect.
    pub relayed_by_dialect: PerDialect<u64>,
    /// Connections open now, by dialect.
    pub connections_by_dialect: PerDialect<usize>,
    /// Rooms with at least one peer now, by dialect (PeerJS has none).
    pub rooms_by_dialect: PerDialect<usize>,
}

/// The sans-IO signaling hub. See the crate docs.
#[derive(Debug)]
pub struct Hub {
    config: Config,
    /// The `iceServerConfig` reply, when it is the same for everyone.
    ice: Option<Arc<IceServerConfig>>,
    /// Wall-clock time (Unix seconds), for the expiry of minted TURN credentials.
    unix_now: u64,
    /// TURN credentials minted so far; the serial in each one's user part.
    turn_users_minted: u64,
    /// Ant Media connections and rooms.
    am: antmedia::AntMedia,
    /// Idle deadlines of every connection (Ant Media and socket.io; PeerJS has its own).
    deadlines: Deadlines,
    /// When joins with a `max_call` grant end: one entry per such join, removed when the
    /// join ends, so it never holds more entries than there are joined connections.
    call_deadlines: BTreeSet<(Instant, ConnId)>,
    out: VecDeque<Output>,
    /// Joins and leaves, for the edge's logs ([`Hub::poll_event`]).
    events: events::Events,
    stats: Stats,
    /// socket.io connections, their ids and rooms.
    sio: socketio::SocketIo,
    /// PeerJS sockets, ids, queues and timers.
    pj: peerjs::PeerJs,
    /// Rate-limit budgets of every connection and source address.
    limiter: limits::Limiter,
    /// Counters of cluster mode.
    cluster: ClusterStats,
    /// Error replies by dialect and definition (counted as they leave, in `poll_output`).
    errors: ErrorCounts,
}

impl Hub {
    /// A hub with no connections.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            ice: config
                .ice
                .is_static()
                .then(|| Arc::new(IceServerConfig::from_servers(&config.ice.servers))),
            unix_now: 0,
            turn_users_minted: 0,
            config,
            am: antmedia::AntMedia::default(),
            deadlines: Deadlines::default(),
            call_deadlines: BTreeSet::new(),
            out: VecDeque::new(),
            events: events::Events::default(),
            stats: Stats::default(),
            sio: socketio::SocketIo::default(),
            pj: peerjs::PeerJs::default(),
            limiter: limits::Limiter::default(),
            cluster: ClusterStats::default(),
            errors: ErrorCounts::default(),
        }
    }

    /// The hub's settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let connections_by_dialect = PerDialect {
            antmedia: self.am.conns.len(),
            socketio: self.sio.conns.len(),
            peerjs: self.pj.len(),
        };
        let rooms_by_dialect = PerDialect {
            antmedia: self.am.rooms.len() + self.am.mesh.len(),
            socketio: self.sio.rooms.len(),
            peerjs: 0,
        };
        Stats {
            connections: connections_by_dialect.iter().map(|(_, n)| n).sum(),
            rooms: rooms_by_dialect.iter().map(|(_, n)| n).sum(),
            relayed: self.stats.relayed_by_dialect.iter().map(|(_, n)| n).sum(),
            connections_by_dialect,
            rooms_by_dialect,
            events_dropped: self.events.dropped,
            queued: self.pj.queued().0,
            queued_bytes: self.pj.queued().1,
            rate_limited: self.limiter.refused,
            rate_limit_closed: self.limiter.closed,
            ..self.stats
        }
    }

    /// The next thing to do, in delivery order; `None` when there is nothing left.
    ///
    /// The contract: after every `handle_*` call the edge drains this to `None` before the
    /// next input, and carries out each output in the order it came (outputs for one
    /// connection are in delivery order, so one FIFO per connection keeps the protocol's
    /// ordering). Outputs are held only until drained; an edge that stops draining holds
    /// them all.
    #[must_use = "an output not carried out is a message lost or a socket never closed"]
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front()?;
        if let Some((dialect, definition)) = out.error() {
            self.errors.add(dialect, definition);
        }
        Some(out)
    }

    /// Error replies sent so far, by dialect and definition.
    #[must_use]
    pub fn error_counts(&self) -> &ErrorCounts {
        &self.errors
    }

    /// The next join or leave, in order; `None` when there is none. The edge logs them.
    /// Drained after each batch of inputs; bounded at [`MAX_EVENTS`] (the oldest is dropped
    /// and counted), so an edge that does not read events never changes the outputs.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop()
    }

    /// When [`Hub::handle_timeout`] must next be called. The contract: after draining
    /// [`Hub::poll_output`], the edge sleeps until this instant (or the next input) and then
    /// calls `handle_timeout` with the time; idle peers are only closed that way.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.next(),
            self.call_deadlines.first().map(|&(at, _)| at),
            self.pj.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The current wall-clock time in Unix seconds. Only the expiry of minted TURN
    /// credentials depends on it; the edge sets it before each batch of inputs.
    pub fn handle_wall_clock(&mut self, unix_secs: u64) {
        self.unix_now = unix_secs;
    }

    /// `conn`'s socket is gone (closed by the client, or failed). Its peer gets `stop`;
    /// nothing is sent to `conn`.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        self.drop_conn(conn, LeaveReason::Disconnect);
    }

    /// The edge dropped `conn` because it did not read its messages (its queue was full):
    /// as [`Hub::handle_disconnect`], with the leave reason `slow_consumer`.
    pub fn handle_slow_consumer(&mut self, conn: ConnId) {
        self.drop_conn(conn, LeaveReason::SlowConsumer);
    }

    fn drop_conn(&mut self, conn: ConnId, reason: LeaveReason) {
        self.limiter.forget(conn, &self.config.limits);
        if self.sio_forget(conn, reason) || self.pj_forget(conn, reason) {
            return;
        }
        if let Some(c) = self.am.conns.remove(&conn) {
            self.vacate(conn, &c, reason);
        }
    }

    /// Time has passed: closes connections idle for [`Config::idle_timeout`] and ends joins
    /// whose `max_call` grant ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pj_timeout(now);
        while let Some(&(at, conn)) = self.call_deadlines.first() {
            if at > now {
                break;
            }
            self.call_deadlines.pop_first();
            self.am_call_timeout(conn);
        }
        while let Some(conn) = self.deadlines.pop_due(now) {
            let Some(c) = self.am.conns.get(&conn) else {
                continue; // closed since this entry was pushed
            };
            let due = c.last_seen + self.config.idle_timeout;
            if due > now {
                self.deadlines.push(due, conn);
                continue;
            }
            if let Some(c) = self.am.conns.remove(&conn) {
                self.vacate(conn, &c, LeaveReason::IdleTimeout);
            }
            self.stats.idle_closed += 1;
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::IdleTimeout,
            });
        }
    }

    /// Graceful shutdown: every connection gets `notification server_will_stop` and is
    /// closed. The hub is empty afterwards.
    pub fn shutdown(&mut self) {
        let mut conns: Vec<ConnId> = self.am.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.send(
                conn,
                ServerMessage::Notification {
                    definition: Notification::ServerWillStop,
                    stream_id: None,
                },
            );
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Shutdown,
            });
        }
        self.am.conns.clear();
        self.am.rooms.clear();
        self.am.mesh.clear();
        self.am.mesh_cluster = cluster_mesh::MeshCluster::default();
        self.am.pending.clear();
        self.deadlines.clear();
        self.call_deadlines.clear();
        // Shutdown is one line in the edge's log, not one per peer.
        self.events.clear();
        self.sio_shutdown();
        self.pj_shutdown();
        self.limiter.clear();
    }

    /// Closes `conns` (in id order, so outputs are deterministic) for shutdown.
    fn close_for_shutdown(&mut self, mut conns: Vec<ConnId>) {
        conns.sort_unstable();
        for conn in conns {
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Shutdown,
            });
        }
    }
}

#[cfg(test)]
mod tests;
