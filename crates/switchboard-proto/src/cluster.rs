//! Messages between the nodes of a cluster (cluster mode, `--redis-url`).
//!
//! A node publishes [`NodeMessage`]s on the Redis channel of the node that holds the
//! receiver (`sb:node:<id>:in`): several at once in a [`Batch`] (a binary publication, see
//! [`Batch::encode`]), or, from the registry's Lua scripts, JSON (an [`Envelope`] naming the
//! sender's node, or a JSON batch). Only Switchboard nodes publish there; a receiver still
//! reads every field with the same rules as client input (names validated, payloads kept as
//! the exact JSON text) and drops what does not parse. Connection ids are the sending or
//! receiving node's own.
//!
//! A relay to a client on another node ([`NodeMessage::AmRelay`], [`NodeMessage::PjRelay`])
//! crosses as the frame its receiver gets, rendered by the sending node ([`Frame`]): it
//! arrives as [`NodeMessage::AmFrame`] / [`NodeMessage::PjFrame`], and the receiving node
//! checks who it is for and from, and hands the frame over without parsing or rendering it
//! again.

use serde::{Deserialize, Serialize};

use crate::antmedia::SdpType;
use crate::peerjs::{PjServerMessage, PjType};
use crate::socketio::SioRelay;
use crate::{App, Name, Opaque, StreamId};

/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A node's id: 1 to [`MAX_NODE_ID_LEN`] bytes of `[A-Za-z0-9_.-]`, unique in the cluster.
pub type NodeId = Name<MAX_NODE_ID_LEN>;

/// One message on a node's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that sent it.
    pub node: NodeId,
    /// What it says.
    pub msg: NodeMessage,
}

/// What one node tells another about a pair of peers, one on each node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Externally tagged: serde buffers the fields of internally tagged enums, and raw JSON
// values cannot be read back from that buffer.
#[serde(rename_all = "snake_case")]
pub enum NodeMessage {
    /// Ant Media: `from` took the second seat of the room whose first seat is `to`; `to`
    /// gets `start` when `start` is set.
    AmJoined {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The receiver (first seat), on the receiving node.
        to: u64,
        /// The joiner (second seat), on the sending node.
        from: u64,
        /// Whether the receiver makes the offer.
        start: bool,
    },
    /// Ant Media: `from` left the room (leave, close, idle timeout, ...); `to` gets `stop`.
    AmLeft {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The partner that stays, on the receiving node.
        to: u64,
        /// The peer that left, on the sending node.
        from: u64,
    },
    /// Ant Media: a message from `from` to its partner `to`.
    AmRelay {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The receiver, on the receiving node.
        to: u64,
        /// The sender, on the sending node.
        from: u64,
        /// What it relays.
        msg: AmRelayed,
    },
    /// Ant Media: [`NodeMessage::AmRelay`] as it arrives: the frame `to` gets, rendered
    /// by the sending node.
    AmFrame {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The receiver, on the receiving node.
        to: u64,
        /// The sender, on the sending node.
        from: u64,
        /// The `takeConfiguration`, `takeCandidate` or `peerMessageCommand` `to` gets.
        frame: Frame,
    },
    /// socket.io: a relayed event for the socket with id `to`, held by the receiving node.
    SioRelay {
        /// The receiver's socket id.
        to: Box<str>,
        /// Which event.
        event: SioRelay,
        /// The payload, `from` stamped by the sender's node.
        payload: Opaque,
        /// Sent straight to the node where the id was last found (not routed by the
        /// registry): who to answer with [`NodeMessage::SioMiss`] when the id is not held
        /// there (any more), and whom the sender may reach.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        back: Option<SioBack>,
    },
    /// socket.io: a [`NodeMessage::SioRelay`] sent straight to the receiving node's
    /// cached route found no socket `to` there (or one the sender may not reach): the
    /// sender `conn` (on the receiving node) is told, as for a relay the registry could not
    /// route.
    SioMiss {
        /// The sender, on the receiving node.
        conn: u64,
        /// The event that missed.
        event: SioRelay,
        /// The id it was for.
        to: Box<str>,
        /// The id is held there, in a room the sender's token does not allow.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wrong_room: bool,
    },
    /// socket.io: the join of `to` (on the receiving node) into `room` took its place in the
    /// registry; `peers` were there before it (socket id, node). Published by the join
    /// script itself, on the joiner's own node's channel, so it arrives before any later
    /// change of the room.
    SioRoster {
        /// The room.
        room: Box<str>,
        /// The joiner, on the receiving node.
        to: u64,
        /// The members before it: (socket id, node).
        peers: Vec<(Box<str>, NodeId)>,
    },
    /// socket.io: socket `id` (on the sending node) joined `room`.
    SioPeerJoined {
        /// The room.
        room: Box<str>,
        /// The newcomer's socket id.
        id: Box<str>,
    },
    /// socket.io: socket `id` (on the sending node) left `room`.
    SioPeerLeft {
        /// The room.
        room: Box<str>,
        /// The leaver's socket id.
        id: Box<str>,
    },
    /// socket.io: a socket of the same token identity connected on the sending node; the
    /// receiving node's socket with this id is replaced (closed with `replaced`).
    SioReplaced {
        /// The socket id (the identity).
        id: Box<str>,
    },
    /// Ant Media mesh rooms: the registry placed `to` (on the receiving node) in the mesh
    /// room as member `me`. Published by the join script on the joiner's own channel.
    MeshRoster {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The joiner, on the receiving node.
        to: u64,
        /// Its member id in the room (the `peerId` every member knows it by).
        me: u64,
        /// The members before it, in join order: (member id, node, may make offers).
        peers: Vec<(u64, NodeId, bool)>,
    },
    /// Ant Media mesh rooms: member `id` (on the sending node) joined; `offer`: whether it
    /// may make offers. Published by the join script to the nodes of the other members.
    MeshPeerJoined {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// Whether the newcomer may make offers.
        offer: bool,
        /// The newcomer's member id.
        id: u64,
    },
    /// Ant Media mesh rooms: member `id` (on the sending node) left.
    MeshPeerLeft {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The member that left.
        id: u64,
    },
    /// Ant Media mesh rooms: a message from member `from` (on the sending node) to member
    /// `to` (on the receiving node).
    MeshRelay {
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// The receiver's member id.
        to: u64,
        /// The sender's member id.
        from: u64,
        /// What it relays.
        msg: AmRelayed,
    },
    /// PeerJS: a message for the id `dst`, held by the receiving node.
    PjRelay(PjRelayed),
    /// PeerJS: [`NodeMessage::PjRelay`] sent straight to a node, as it arrives.
    PjFrame(PjArrived),
    /// PeerJS: the id claim of `to` (on the receiving node) is done; `queued` waited for the
    /// id in Redis. Published by the claim script on the claimer's own channel, so the
    /// queued messages come before any later one.
    PjClaimed {
        /// The claimer, on the receiving node.
        to: u64,
        /// The id.
        id: Box<str>,
        /// The messages that waited for the id, in order.
        queued: Vec<PjRelayed>,
    },
    /// PeerJS: the id's owner (same token) connected on the sending node; the receiving
    /// node's socket with this id is replaced (closed).
    PjReplaced {
        /// The id.
        id: Box<str>,
    },
    /// PeerJS: a [`PjRelayed`] sent straight to the receiving node's cached route found no
    /// socket with id `dst` there: the sender `conn` (with id `src`, on the receiving node)
    /// gets `EXPIRE` (not for `LEAVE`).
    PjMiss {
        /// The sender's connection, on the receiving node.
        conn: u64,
        /// The message's type.
        #[serde(rename = "type")]
        kind: PjType,
        /// The sender's id.
        src: Box<str>,
        /// The id it was for.
        dst: Box<str>,
    },
}

/// Who sent a [`NodeMessage::SioRelay`] straight to a node: answered there when it misses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SioBack {
    /// The sender's connection, on the sending node.
    pub conn: u64,
    /// The sender's token's `room` claim as written (a name, or a prefix and `*`): the
    /// target must be in a room it allows. None: any target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Box<str>>,
}

/// A [`PjRelayed`] sent straight to a node, as it arrives there: its routing, and the frame
/// the holder of `dst` gets, rendered by the sending node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PjArrived {
    /// The message's type.
    #[serde(rename = "type")]
    pub kind: PjType,
    /// The sender's id.
    pub src: Box<str>,
    /// The receiver's id.
    pub dst: Box<str>,
    /// As [`PjRelayed::back`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back: Option<u64>,
    /// The message the holder of `dst` gets.
    pub frame: Frame,
}

/// A relayed PeerJS message, `src` stamped by the sender's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PjRelayed {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: PjType,
    /// The sender's id.
    pub src: Box<str>,
    /// The receiver's id.
    pub dst: Box<str>,
    /// The payload, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Opaque>,
    /// Sent straight to the node where `dst` was last found (not through the registry):
    /// the sender's connection there, answered with [`NodeMessage::PjMiss`] when `dst` is
    /// not held (any more). None in the registry's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back: Option<u64>,
}

impl PjRelayed {
    /// The message its receiver gets.
    #[must_use]
    pub fn into_server_message(self) -> PjServerMessage {
        PjServerMessage::Relay {
            kind: self.kind,
            src: self.src,
            dst: self.dst,
            payload: self.payload,
        }
    }

    /// The frame its receiver gets, rendered (what [`Self::into_server_message`] would
    /// be, as text).
    #[must_use]
    pub fn frame(&self) -> Frame {
        let mut out = Vec::new();
        crate::peerjs::write_relay(
            &mut out,
            self.kind,
            &self.src,
            &self.dst,
            self.payload.as_ref(),
        );
        Frame::from_utf8(out)
    }

    /// The JSON kept in Redis while the message waits for its receiver.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl NodeMessage {
    /// About how many bytes its JSON takes (at least that, for most messages).
    #[must_use]
    pub fn size_hint(&self) -> usize {
        let opaque = |o: &Option<Opaque>| o.as_ref().map_or(0, |o| o.json().len());
        160 + match self {
            Self::AmRelay { msg, room, .. } => {
                room.as_str().len()
                    + match msg {
                        AmRelayed::TakeConfiguration { sdp, .. } => sdp.json().len(),
                        AmRelayed::TakeCandidate {
                            label,
                            id,
                            candidate,
                        } => opaque(label) + opaque(id) + candidate.json().len(),
                        AmRelayed::PeerMessageCommand { definition, data } => {
                            opaque(definition) + opaque(data)
                        }
                    }
            }
            Self::AmFrame { room, frame, .. } => room.as_str().len() + frame.len(),
            Self::SioRelay { to, payload, .. } => to.len() + payload.json().len(),
            // Sent as its rendered frame, which holds the ids twice.
            Self::PjRelay(m) => 2 * (m.src.len() + m.dst.len()) + opaque(&m.payload),
            Self::PjFrame(m) => m.src.len() + m.dst.len() + m.frame.len(),
            _ => 64,
        }
    }
}

/// The body of a relayed Ant Media message: what the receiver gets, less the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AmRelayed {
    /// An SDP offer or answer.
    TakeConfiguration {
        /// Offer or answer.
        #[serde(rename = "type")]
        kind: SdpType,
        /// The SDP, untouched.
        sdp: Opaque,
    },
    /// An ICE candidate.
    TakeCandidate {
        /// sdpMLineIndex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<Opaque>,
        /// sdpMid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Opaque>,
        /// The candidate.
        candidate: Opaque,
    },
    /// Application data.
    PeerMessageCommand {
        /// As the sender wrote it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        definition: Option<Opaque>,
        /// As the sender wrote it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Opaque>,
    },
}

/// [`crate::antmedia::ServerMessage`]'s relay variants, borrowed: the same JSON (a test
/// holds them equal), written without taking or copying the message.
#[derive(Serialize)]
#[serde(
    tag = "command",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum AmFrameRef<'a> {
    TakeConfiguration {
        stream_id: &'a StreamId,
        #[serde(rename = "type")]
        kind: SdpType,
        sdp: &'a Opaque,
        id_mapping: crate::antmedia::EmptyMap,
    },
    TakeCandidate {
        stream_id: &'a StreamId,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<&'a Opaque>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Opaque>,
        candidate: &'a Opaque,
    },
    PeerMessageCommand {
        stream_id: &'a StreamId,
        #[serde(skip_serializing_if = "Option::is_none")]
        definition: Option<&'a Opaque>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a Opaque>,
    },
}

impl AmRelayed {
    /// The frame its receiver gets in `stream_id`, rendered (what
    /// [`Self::into_server_message`] would be, as text).
    #[must_use]
    pub fn frame(&self, stream_id: &StreamId) -> Frame {
        let mut out = Vec::new();
        self.write_frame(stream_id, &mut out);
        Frame::from_utf8(out)
    }

    fn write_frame(&self, stream_id: &StreamId, out: &mut Vec<u8>) {
        let msg = match self {
            Self::TakeConfiguration { kind, sdp } => AmFrameRef::TakeConfiguration {
                stream_id,
                kind: *kind,
                sdp,
                id_mapping: crate::antmedia::EmptyMap,
            },
            Self::TakeCandidate {
                label,
                id,
                candidate,
            } => AmFrameRef::TakeCandidate {
                stream_id,
                label: label.as_ref(),
                id: id.as_ref(),
                candidate,
            },
            Self::PeerMessageCommand { definition, data } => AmFrameRef::PeerMessageCommand {
                stream_id,
                definition: definition.as_ref(),
                data: data.as_ref(),
            },
        };
        // Names, raw JSON values and numbers always serialize.
        let _ = serde_json::to_writer(out, &msg);
    }

    /// The message its receiver gets in `stream_id`.
    #[must_use]
    pub fn into_server_message(self, stream_id: StreamId) -> crate::antmedia::ServerMessage {
        use crate::antmedia::{EmptyMap, ServerMessage};
        match self {
            Self::TakeConfiguration { kind, sdp } => ServerMessage::TakeConfiguration {
                stream_id,
                kind,
                sdp,
                id_mapping: EmptyMap,
            },
            Self::TakeCandidate {
                label,
                id,
                candidate,
            } => ServerMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            },
            Self::PeerMessageCommand { definition, data } => ServerMessage::PeerMessageCommand {
                stream_id,
                definition,
                data,
            },
        }
    }
}

/// What closes a [`Envelope::roster_prefix`] after the peers.
pub const ROSTER_END: &str = "}}}";

impl Envelope {
    /// The JSON published on a node's channel.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Every field serializes (names, raw JSON values, numbers): this never fails.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JSON of an envelope of `msg` from `node`, without taking either.
    #[must_use]
    pub fn encode(node: &NodeId, msg: &NodeMessage) -> String {
        #[derive(Serialize)]
        struct Ref<'a> {
            node: &'a NodeId,
            msg: &'a NodeMessage,
        }
        serde_json::to_string(&Ref { node, msg }).unwrap_or_default()
    }

    /// The start of a [`NodeMessage::SioRoster`] envelope from `node`, up to its `peers`: the
    /// join script appends the peers' JSON array and [`ROSTER_END`].
    #[must_use]
    pub fn roster_prefix(node: &NodeId, room: &str, to: u64) -> String {
        let room = serde_json::to_string(room).unwrap_or_default();
        let node = serde_json::to_string(node).unwrap_or_default();
        format!(r#"{{"node":{node},"msg":{{"sio_roster":{{"room":{room},"to":{to},"peers":"#)
    }

    /// The start of a [`NodeMessage::MeshRoster`] envelope from `node`, up to its `peers`:
    /// the join script appends the peers' JSON array, `,"me":<id>` and [`ROSTER_END`].
    #[must_use]
    pub fn mesh_roster_prefix(node: &NodeId, app: &App, room: &StreamId, to: u64) -> String {
        let head = Self::mesh_head(node, "mesh_roster", app, room);
        format!(r#"{head},"to":{to},"peers":"#)
    }

    /// The start of a [`NodeMessage::MeshPeerJoined`] envelope from `node`, up to its `id`:
    /// the join script appends the newcomer's id and [`ROSTER_END`].
    #[must_use]
    pub fn mesh_joined_prefix(node: &NodeId, app: &App, room: &StreamId, offer: bool) -> String {
        let head = Self::mesh_head(node, "mesh_peer_joined", app, room);
        format!(r#"{head},"offer":{offer},"id":"#)
    }

    fn mesh_head(node: &NodeId, kind: &str, app: &App, room: &StreamId) -> String {
        let node = serde_json::to_string(node).unwrap_or_default();
        let app = serde_json::to_string(app).unwrap_or_default();
        let room = serde_json::to_string(room).unwrap_or_default();
        format!(r#"{{"node":{node},"msg":{{"{kind}":{{"app":{app},"room":{room}"#)
    }

    /// The start of a [`NodeMessage::PjClaimed`] envelope from `node`, up to its `queued`:
    /// the claim script appends the queued messages' JSON array and [`ROSTER_END`].
    #[must_use]
    pub fn claimed_prefix(node: &NodeId, id: &str, to: u64) -> String {
        let id = serde_json::to_string(id).unwrap_or_default();
        let node = serde_json::to_string(node).unwrap_or_default();
        format!(r#"{{"node":{node},"msg":{{"pj_claimed":{{"to":{to},"id":{id},"queued":"#)
    }

    /// Reads a message from a node's channel.
    ///
    /// # Errors
    /// When it is not a message of this version's shape.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

mod batch;
pub use batch::{BATCH_V1, Batch, BatchError, Frame};

#[cfg(test)]
mod tests;
