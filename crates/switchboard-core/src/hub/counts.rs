//! Counts for metrics that the hub keeps by dialect: error replies by their definition, and
//! connections and rooms of each dialect.

use switchboard_proto::antmedia::ServerMessage;
use switchboard_proto::socketio::{SioAck, SioEmit};

use super::{Dialect, Output};

/// A value for each dialect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerDialect<T> {
    /// Ant Media.
    pub antmedia: T,
    /// socket.io.
    pub socketio: T,
    /// PeerJS.
    pub peerjs: T,
}

impl<T: Copy> PerDialect<T> {
    /// Each dialect with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Dialect, T)> {
        [
            (Dialect::AntMedia, self.antmedia),
            (Dialect::SocketIo, self.socketio),
            (Dialect::PeerJs, self.peerjs),
        ]
        .into_iter()
    }
}

/// Error replies sent since start, by dialect and definition (the name on the wire: Ant
/// Media's `definition`, socket.io's `error`, PeerJS's cause, see
/// [`switchboard_proto::peerjs::PjServerMessage::error_name`]). Bounded: the definitions are
/// a fixed set of names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts(Vec<(Dialect, &'static str, u64)>);

impl ErrorCounts {
    pub(super) fn add(&mut self, dialect: Dialect, definition: &'static str) {
        match self
            .0
            .iter_mut()
            .find(|(d, n, _)| *d == dialect && *n == definition)
        {
            Some(e) => e.2 += 1,
            None => self.0.push((dialect, definition, 1)),
        }
    }

    /// Each dialect and definition seen, with its count, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (Dialect, &'static str, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The count of one dialect's definition.
    #[must_use]
    pub fn get(&self, dialect: Dialect, definition: &str) -> u64 {
        self.iter()
            .find(|(d, n, _)| *d == dialect && *n == definition)
            .map_or(0, |e| e.2)
    }
}

impl Output {
    /// The dialect and definition of the error this output reports to its client, if it is
    /// one (counted by [`super::Hub::poll_output`] in [`super::Hub::error_counts`]).
    #[must_use]
    pub fn error(&self) -> Option<(Dialect, &'static str)> {
        match self {
            Output::AmSend {
                msg: ServerMessage::Error { definition, .. },
                ..
            } => Some((Dialect::AntMedia, definition.as_str())),
            Output::SioAck {
                reply: SioAck::Error { error, .. },
                ..
            }
            | Output::SioEmit {
                emit: SioEmit::Error { error, .. },
                ..
            } => Some((Dialect::SocketIo, error.as_str())),
            Output::PjSend { msg, .. } => msg.error_name().map(|n| (Dialect::PeerJs, n)),
            _ => None,
        }
    }
}

/// Counters of cluster mode (all zero on a single node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Messages sent to peers on other nodes.
    pub sent: u64,
    /// Messages from other nodes delivered to a peer here.
    pub received: u64,
    /// Messages from other nodes for a pair that no longer exists here (the peer left, or
    /// the pair changed meanwhile), dropped.
    pub stale: u64,
    /// Requests answered with `cluster_unavailable` (registry or other node unreachable).
    pub unavailable: u64,
    /// Pairs ended because the partner's node died.
    pub partner_node_down: u64,
    /// Relays published straight to the node where their socket.io or PeerJS target was
    /// last found (without asking the registry).
    pub routed_direct: u64,
    /// Of those, the ones whose target was not there any more (the sender was told).
    pub route_misses: u64,
    /// Times the table of known routes was full and emptied.
    pub route_resets: u64,
    /// Routes known now (socket.io and PeerJS ids on other nodes).
    pub routes: u64,
}
