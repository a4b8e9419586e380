//! Peer events: who joined and left which room, for the edge's logs (one line each) and,
//! later, metrics and webhooks. A queue of its own, beside the outputs, so the rules' exact
//! outputs stay what they are; bounded like every queue of the hub.

use std::collections::VecDeque;

use super::ConnId;

/// Most peer events kept between two [`super::Hub::poll_event`] drains; beyond it the oldest
/// is dropped (and counted in [`super::Stats::events_dropped`]). The edge drains after every
/// batch of inputs, so this is only reached if it stops doing so.
pub const MAX_EVENTS: usize = 4096;

/// A signaling dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Ant Media Server's P2P WebSocket protocol (`/<app>/websocket`).
    AntMedia,
    /// The socket.io relay (`/socket.io/`).
    SocketIo,
    /// The PeerJS server protocol.
    PeerJs,
}

impl Dialect {
    /// A short lowercase name for logs: `antmedia`, `socketio`, `peerjs`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AntMedia => "antmedia",
            Self::SocketIo => "socketio",
            Self::PeerJs => "peerjs",
        }
    }
}

/// Why a peer left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// It asked to (`leave`, socket.io `leave`).
    Leave,
    /// It joined another room.
    Moved,
    /// Its socket closed or failed (or the edge dropped it as a slow consumer).
    Disconnect,
    /// It sent nothing for the idle timeout.
    IdleTimeout,
    /// A new socket with the same PeerJS id and token took its place.
    Replaced,
    /// It was closed for going on after `rate_limited` refusals.
    RateLimited,
    /// Its token's `max_call` grant ran out.
    MaxCall,
    /// Cluster mode: its seat was taken by others while the registry had forgotten it.
    Evicted,
    /// An operator kicked it (admin API).
    Kicked,
    /// The edge dropped it for not reading its messages.
    SlowConsumer,
}

impl LeaveReason {
    /// A short snake_case name for logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leave => "leave",
            Self::Moved => "moved",
            Self::Disconnect => "disconnect",
            Self::IdleTimeout => "idle_timeout",
            Self::Replaced => "replaced",
            Self::RateLimited => "rate_limited",
            Self::MaxCall => "max_call",
            Self::Evicted => "evicted",
            Self::Kicked => "kicked",
            Self::SlowConsumer => "slow_consumer",
        }
    }
}

/// A peer joined or left a room. `app` is the Ant Media app (the socket.io dialect has one
/// namespace, `/`; PeerJS: the key); `room` is the room (PeerJS: the peer's id, its only
/// place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEvent {
    /// The connection.
    pub conn: ConnId,
    /// Its dialect.
    pub dialect: Dialect,
    /// The namespace of the room.
    pub app: Box<str>,
    /// The room.
    pub room: Box<str>,
    /// Joined, or left and why.
    pub change: Change,
}

/// What a [`PeerEvent`] says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The peer is in the room now.
    Joined,
    /// The peer is no longer in the room.
    Left(LeaveReason),
}

impl Change {
    /// `joined` or `left`, for logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Left(_) => "left",
        }
    }

    /// Why the peer left, if it did.
    #[must_use]
    pub fn reason(self) -> Option<LeaveReason> {
        match self {
            Self::Joined => None,
            Self::Left(r) => Some(r),
        }
    }
}

/// The bounded event queue.
#[derive(Debug, Default)]
pub(super) struct Events {
    queue: VecDeque<PeerEvent>,
    /// Events dropped because the queue was full.
    pub(super) dropped: u64,
}

impl Events {
    pub(super) fn push(&mut self, e: PeerEvent) {
        if self.queue.len() >= MAX_EVENTS {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(e);
    }

    pub(super) fn joined(&mut self, conn: ConnId, dialect: Dialect, app: &str, room: &str) {
        self.record(conn, dialect, app, room, Change::Joined);
    }

    pub(super) fn left(
        &mut self,
        conn: ConnId,
        dialect: Dialect,
        app: &str,
        room: &str,
        reason: LeaveReason,
    ) {
        self.record(conn, dialect, app, room, Change::Left(reason));
    }

    fn record(&mut self, conn: ConnId, dialect: Dialect, app: &str, room: &str, change: Change) {
        self.push(PeerEvent {
            conn,
            dialect,
            app: app.into(),
            room: room.into(),
            change,
        });
    }

    pub(super) fn pop(&mut self) -> Option<PeerEvent> {
        self.queue.pop_front()
    }

    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }
}
