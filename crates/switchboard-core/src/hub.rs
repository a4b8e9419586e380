//! The hub: connections, rooms and the P2P rules.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::antmedia::{
    ClientMessage, DecodeError, EmptyMap, IceServerConfig, Notification, ServerMessage,
};
use switchboard_proto::{ErrorCode, IceServer, StreamId};

use crate::ice::IceConfig;

use crate::App;
use crate::timers::Deadlines;

mod events;
mod limits;
mod peerjs;
mod sio;

pub use events::{Change, Dialect, LeaveReason, MAX_EVENTS, PeerEvent};

use limits::Verdict;
pub use limits::{Limits, REFUSAL_WINDOW, REFUSALS_BEFORE_CLOSE, RateLimit, source_key};
pub use peerjs::{PJ_MAX_NAME, PeerJsConfig};

pub use sio::{AckId, SIO_MAX_NAME, SioAck, SioEmit, SioError, SioInput, SioRelay};

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
    /// The PeerJS dialect's settings.
    pub peerjs: PeerJsConfig,
    /// Messages and joins per second, per connection and per source address.
    pub limits: Limits,
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
            peerjs: PeerJsConfig::default(),
            limits: Limits::default(),
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
}

/// Something the IO edge must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue `msg` for `conn`, after everything queued for it before.
    Send {
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
}

/// What the hub knows of one connection.
#[derive(Debug)]
struct Conn {
    /// Namespace of the rooms this connection can join.
    app: App,
    /// The room joined, if any (at most one).
    room: Option<StreamId>,
    /// Last time a frame arrived; the idle deadline is `last_seen + idle_timeout`.
    last_seen: Instant,
    /// The host the client used to reach the server, for `{host}` in ICE URLs.
    host: Option<Box<str>>,
}

/// A room: one or two peers. `peers[0]` is always occupied.
#[derive(Debug)]
struct Room {
    peers: [Option<ConnId>; 2],
}

impl Room {
    fn other(&self, me: ConnId) -> Option<ConnId> {
        self.peers.iter().flatten().copied().find(|&c| c != me)
    }

    fn is_full(&self) -> bool {
        self.peers[1].is_some()
    }

    /// Removes `me`; returns whether the room is now empty.
    fn remove(&mut self, me: ConnId) -> bool {
        if self.peers[0] == Some(me) {
            self.peers[0] = self.peers[1].take();
        } else if self.peers[1] == Some(me) {
            self.peers[1] = None;
        }
        self.peers[0].is_none()
    }
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
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<(App, StreamId), Room>,
    deadlines: Deadlines,
    out: VecDeque<Output>,
    /// Joins and leaves, for the edge's logs ([`Hub::poll_event`]).
    events: events::Events,
    stats: Stats,
    /// socket.io connections, their ids and rooms.
    sio: HashMap<ConnId, sio::SioConn>,
    sio_ids: HashMap<Box<str>, ConnId>,
    sio_rooms: HashMap<Box<str>, Vec<ConnId>>,
    /// PeerJS sockets, ids, queues and timers.
    pj: peerjs::PeerJs,
    /// Rate-limit budgets of every connection and source address.
    limiter: limits::Limiter,
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
            conns: HashMap::new(),
            rooms: HashMap::new(),
            deadlines: Deadlines::default(),
            out: VecDeque::new(),
            events: events::Events::default(),
            stats: Stats::default(),
            sio: HashMap::new(),
            sio_ids: HashMap::new(),
            sio_rooms: HashMap::new(),
            pj: peerjs::PeerJs::default(),
            limiter: limits::Limiter::default(),
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
        Stats {
            connections: self.conns.len() + self.sio.len() + self.pj.len(),
            rooms: self.rooms.len() + self.sio_rooms.len(),
            events_dropped: self.events.dropped,
            queued: self.pj.queued().0,
            queued_bytes: self.pj.queued().1,
            rate_limited: self.limiter.refused,
            rate_limit_closed: self.limiter.closed,
            ..self.stats
        }
    }

    /// The next thing to do, in delivery order; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next join or leave, in order; `None` when there is none. The edge logs them.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop()
    }

    /// When [`Hub::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadlines.next(), self.pj.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The current wall-clock time in Unix seconds. Only the expiry of minted TURN
    /// credentials depends on it; the edge sets it before each batch of inputs.
    pub fn handle_wall_clock(&mut self, unix_secs: u64) {
        self.unix_now = unix_secs;
    }

    /// A new connection to `app`, made to `host` (the bare host of its `Host` header, see
    /// [`crate::ice::host_from_header`]) from `ip` (for the per-source limits; `None`
    /// exempts it). Over [`Config::max_connections`] it is answered with
    /// `highResourceUsage` and closed. A repeated id is ignored.
    pub fn handle_connect(
        &mut self,
        conn: ConnId,
        app: App,
        host: Option<&str>,
        ip: Option<IpAddr>,
        now: Instant,
    ) {
        if self.conns.contains_key(&conn) {
            return;
        }
        if self.conns.len() + self.sio.len() + self.pj.len() >= self.config.max_connections {
            self.error(
                conn,
                ErrorCode::HighResourceUsage,
                None,
                Some("server is at its connection limit"),
            );
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Overloaded,
            });
            return;
        }
        self.conns.insert(
            conn,
            Conn {
                app,
                room: None,
                last_seen: now,
                host: host.map(Into::into),
            },
        );
        self.limiter.connect(conn, ip, &self.config.limits, now);
        self.deadlines.push(now + self.config.idle_timeout, conn);
    }

    /// Any sign of life that is not a message (a WebSocket ping or pong frame). It counts
    /// against the connection's message budget like a message: a flood of ping frames is
    /// refused with `rate_limited` and closed as one of text frames is.
    pub fn handle_activity(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        match self.limiter.message(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => self.rate_limited(conn, None),
            Verdict::Close => self.close_rate_limited(conn),
        }
    }

    /// One decoded frame (or the reason it could not be decoded) from `conn`.
    pub fn handle_message(
        &mut self,
        conn: ConnId,
        msg: Result<ClientMessage, DecodeError>,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        match self.limiter.message(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => return self.rate_limited(conn, None),
            Verdict::Close => return self.close_rate_limited(conn),
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                self.stats.errors += 1;
                self.out.push_back(Output::Send {
                    conn,
                    msg: ServerMessage::Error {
                        definition: e.code,
                        stream_id: e.stream_id,
                        reason: Some(e.reason.into()),
                    },
                });
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.send(conn, ServerMessage::Pong),
            ClientMessage::GetIceServerConfig => {
                let reply = match &self.ice {
                    Some(fixed) => Arc::clone(fixed),
                    None => {
                        let host = self.conns.get(&conn).and_then(|c| c.host.as_deref());
                        // A user of its own per credential: its own TURN quota.
                        self.turn_users_minted += 1;
                        let prefix = self.config.ice.turn.as_ref().map_or("", |t| &t.user_prefix);
                        let user = format!("{prefix}a{}", self.turn_users_minted);
                        let servers = self.config.ice.resolve(host, self.unix_now, &user);
                        Arc::new(IceServerConfig::from_servers(&servers))
                    }
                };
                self.send(conn, ServerMessage::IceServerConfig(reply));
            }
            ClientMessage::Join { stream_id } => self.join(conn, stream_id, now),
            ClientMessage::Leave { stream_id } => self.leave(conn, &stream_id, LeaveReason::Leave),
            ClientMessage::TakeConfiguration {
                stream_id,
                kind,
                sdp,
            } => self.relay(conn, stream_id, |stream_id| {
                ServerMessage::TakeConfiguration {
                    stream_id,
                    kind,
                    sdp,
                    id_mapping: EmptyMap,
                }
            }),
            ClientMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            } => self.relay(conn, stream_id, |stream_id| ServerMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            }),
            ClientMessage::PeerMessage {
                stream_id,
                definition,
                data,
            } => self.relay(conn, stream_id, |stream_id| {
                ServerMessage::PeerMessageCommand {
                    stream_id,
                    definition,
                    data,
                }
            }),
        }
    }

    /// `conn`'s socket is gone (closed by the client, failed, or dropped by the edge as a
    /// slow consumer). Its peer gets `stop`; nothing is sent to `conn`.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        self.limiter.forget(conn);
        if self.sio_disconnect(conn) || self.pj_disconnect(conn) {
            return;
        }
        if let Some(c) = self.conns.remove(&conn) {
            self.vacate(conn, &c, LeaveReason::Disconnect);
        }
    }

    /// Time has passed: closes connections idle for [`Config::idle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pj_timeout(now);
        while let Some(conn) = self.deadlines.pop_due(now) {
            let Some(c) = self.conns.get(&conn) else {
                continue; // closed since this entry was pushed
            };
            let due = c.last_seen + self.config.idle_timeout;
            if due > now {
                self.deadlines.push(due, conn);
                continue;
            }
            if let Some(c) = self.conns.remove(&conn) {
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
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
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
        self.conns.clear();
        self.rooms.clear();
        self.deadlines.clear();
        // Shutdown is one line in the edge's log, not one per peer.
        self.events.clear();
        self.sio_shutdown();
        self.pj_shutdown();
        self.limiter.clear();
    }

    /// Refuses an Ant Media message or join over its rate limit.
    fn rate_limited(&mut self, conn: ConnId, stream_id: Option<&StreamId>) {
        self.error(
            conn,
            ErrorCode::RateLimited,
            stream_id,
            Some("too many messages or joins a second; slow down"),
        );
    }

    /// Closes an Ant Media connection that went on after many refusals; its peer gets
    /// `stop`.
    fn close_rate_limited(&mut self, conn: ConnId) {
        self.rate_limited(conn, None);
        if let Some(c) = self.conns.remove(&conn) {
            self.vacate(conn, &c, LeaveReason::RateLimited);
        }
        self.out.push_back(Output::Close {
            conn,
            reason: CloseReason::RateLimited,
        });
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

    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push_back(Output::Send { conn, msg });
    }

    fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        stream_id: Option<&StreamId>,
        reason: Option<&str>,
    ) {
        self.stats.errors += 1;
        self.send(
            conn,
            ServerMessage::Error {
                definition: code,
                stream_id: stream_id.map(|s| s.as_str().into()),
                reason: reason.map(Into::into),
            },
        );
    }

    fn notify(&mut self, conn: ConnId, definition: Notification, stream_id: StreamId) {
        self.send(
            conn,
            ServerMessage::Notification {
                definition,
                stream_id: Some(stream_id),
            },
        );
    }

    fn join(&mut self, conn: ConnId, stream_id: StreamId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.room.as_ref() == Some(&stream_id) {
            self.notify(conn, Notification::Joined, stream_id);
            return;
        }
        match self.limiter.join(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => return self.rate_limited(conn, Some(&stream_id)),
            Verdict::Close => return self.close_rate_limited(conn),
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let key = (c.app.clone(), stream_id.clone());
        if self.rooms.get(&key).is_some_and(Room::is_full) {
            self.error(conn, ErrorCode::NoSpaceForNewPeer, Some(&stream_id), None);
            return;
        }
        if let Some(old) = c.room.clone() {
            self.leave(conn, &old, LeaveReason::Moved);
        }
        let first = match self.rooms.entry(key) {
            Entry::Vacant(v) => {
                v.insert(Room {
                    peers: [Some(conn), None],
                });
                None
            }
            Entry::Occupied(mut o) => {
                let room = o.get_mut();
                room.peers[1] = Some(conn);
                room.peers[0]
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.room = Some(stream_id.clone());
            self.events
                .joined(conn, Dialect::AntMedia, c.app.as_str(), stream_id.as_str());
        }
        self.notify(conn, Notification::Joined, stream_id.clone());
        if let Some(first) = first {
            self.send(first, ServerMessage::Start { stream_id });
        }
    }

    fn leave(&mut self, conn: ConnId, stream_id: &StreamId, reason: LeaveReason) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.room.as_ref() != Some(stream_id) {
            self.error(
                conn,
                ErrorCode::NoPeerAssociatedBefore,
                Some(stream_id),
                None,
            );
            return;
        }
        c.room = None;
        let app = c.app.clone();
        self.remove_from_room(conn, app, stream_id.clone(), reason);
        self.notify(conn, Notification::Leaved, stream_id.clone());
    }

    /// Frees `conn`'s seat (after it was removed from `conns`), sending `stop` to its peer.
    fn vacate(&mut self, conn: ConnId, c: &Conn, reason: LeaveReason) {
        if let Some(stream_id) = c.room.clone() {
            self.remove_from_room(conn, c.app.clone(), stream_id, reason);
        }
    }

    fn remove_from_room(
        &mut self,
        conn: ConnId,
        app: App,
        stream_id: StreamId,
        reason: LeaveReason,
    ) {
        let key = (app, stream_id);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        self.events.left(
            conn,
            Dialect::AntMedia,
            key.0.as_str(),
            key.1.as_str(),
            reason,
        );
        let other = room.other(conn);
        if room.remove(conn) {
            self.rooms.remove(&key);
        }
        if let Some(other) = other {
            self.send(other, ServerMessage::Stop { stream_id: key.1 });
        }
    }

    fn relay(
        &mut self,
        conn: ConnId,
        stream_id: StreamId,
        msg: impl FnOnce(StreamId) -> ServerMessage,
    ) {
        let other = self.conns.get(&conn).and_then(|c| {
            if c.room.as_ref() != Some(&stream_id) {
                return None;
            }
            self.rooms
                .get(&(c.app.clone(), stream_id.clone()))
                .and_then(|r| r.other(conn))
        });
        match other {
            Some(other) => {
                self.stats.relayed += 1;
                self.send(other, msg(stream_id));
            }
            None => self.error(
                conn,
                ErrorCode::NoPeerAssociatedBefore,
                Some(&stream_id),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests;
