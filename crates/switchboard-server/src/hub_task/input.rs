//! The hub task's inputs: what connection tasks, the socket.io layer and the cluster edge
//! hand to the hub.

use socketioxide::extract::{AckSender, SocketRef};
use switchboard_core::{AckId, App, ClusterOutput, ConnId, SioInput};
use switchboard_proto::antmedia::{ClientMessage, DecodeError};
use switchboard_proto::cluster::{NodeId, NodeMessage};

use super::HubStats;
use crate::outbound::ConnHandle;

/// What a WebSocket connection of a dialect with its own sockets brings to the hub.
pub(super) enum ConnectParams {
    Am(AmParams),
    Pj(PjParams),
}

/// Inputs to the hub task.
pub(super) enum Input {
    /// An Ant Media or PeerJS connection (socket.io's sockets come as `SioConnect`).
    Connect {
        conn: ConnId,
        params: ConnectParams,
        handle: ConnHandle,
    },
    Message {
        conn: ConnId,
        msg: Result<ClientMessage, DecodeError>,
    },
    Activity {
        conn: ConnId,
    },
    Disconnect {
        conn: ConnId,
    },
    /// A socket.io socket, from the connect middleware (before the client knows its id).
    SioConnect {
        conn: ConnId,
        socket: SocketRef,
    },
    /// The socket's connect handler ran.
    SioReady {
        conn: ConnId,
    },
    PjMessage {
        conn: ConnId,
        msg: Result<switchboard_proto::peerjs::PjClientMessage, ()>,
    },
    PjPeers {
        reply: tokio::sync::oneshot::Sender<Option<Vec<Box<str>>>>,
    },
    /// An admin API request.
    Admin {
        job: super::admin::AdminJob,
    },
    Stats {
        reply: tokio::sync::oneshot::Sender<HubStats>,
        /// Also the `/metrics` counts (their bytes are summed over every connection).
        meter: bool,
    },
    Sio {
        conn: ConnId,
        input: SioInput,
        ack: Option<AckSender>,
    },
    Shutdown {
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Cluster mode: the registry answered a seat claim.
    Seat {
        claim: switchboard_core::SeatClaim,
        reply: switchboard_core::SeatReply,
    },
    /// Cluster mode: another node's messages, in order.
    NodeMessages {
        from: NodeId,
        msgs: Vec<NodeMessage>,
    },
    /// Cluster mode: a message could not reach its node.
    NodeUnreachable {
        from: Option<ConnId>,
        msg: NodeMessage,
    },
    /// Cluster mode: the registry's answer to a socket.io relay to another node.
    SioRouted {
        conn: ConnId,
        ack: Option<AckId>,
        event: switchboard_core::SioRelay,
        target: Box<str>,
        outcome: switchboard_core::RouteOutcome,
    },
    /// Cluster mode: a cluster output the edge could not carry out.
    ClusterFailed {
        out: ClusterOutput,
    },
    /// Cluster mode: the registry's answer to a socket.io join.
    SioJoinReply {
        conn: ConnId,
        room: Box<str>,
        outcome: switchboard_core::JoinOutcome,
    },
    /// Cluster mode: the registry's answer to a mesh join.
    MeshJoinReply {
        conn: ConnId,
        key: (switchboard_core::App, switchboard_proto::StreamId),
        outcome: switchboard_core::JoinOutcome,
    },
    /// Cluster mode: the registry's answer to a PeerJS id claim.
    PjClaimReply {
        conn: ConnId,
        id: Box<str>,
        again: bool,
        outcome: switchboard_core::PjClaimOutcome,
    },
    /// Cluster mode: the registry's answer to a PeerJS message for another node.
    PjSent {
        sent: switchboard_core::PjSent,
        outcome: switchboard_core::PjSendOutcome,
    },
    /// Cluster mode: PeerJS messages queued in the registry that expired there.
    PjExpired {
        dst: Box<str>,
        expired: Vec<(u64, Box<str>)>,
    },
    /// Cluster mode: a node is gone.
    NodeDown {
        node: NodeId,
    },
    /// Cluster mode: claim every seat again (`isolated`: this node's lease had run out).
    Reregister {
        isolated: bool,
    },
}

/// What an Ant Media WebSocket's request told: its app, the host it was made to, the
/// client's address and the room token of its URL.
#[derive(Debug)]
pub(crate) struct AmParams {
    pub(crate) app: App,
    pub(crate) host: Option<Box<str>>,
    pub(crate) ip: Option<std::net::IpAddr>,
    pub(crate) token: Option<Box<str>>,
}

/// The query parameters of a PeerJS WebSocket.
#[derive(Debug, Default)]
pub(crate) struct PjParams {
    pub(crate) key: Option<Box<str>>,
    pub(crate) id: Option<Box<str>>,
    pub(crate) token: Option<Box<str>>,
    /// The client's address (for the per-source limits).
    pub(crate) ip: Option<std::net::IpAddr>,
}
