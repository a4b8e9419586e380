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
    /// PeerJS: a message for the id `dst`, held by the receiving node.
    PjRelay(PjRelayed),
    /// PeerJS: [`NodeMessage::PjRelay`] sent straight to a node, as it arrives: the frame
    /// the holder of `dst` gets, rendered by the sending node.
    PjFrame {
        /// The message's type.
        #[serde(rename = "type")]
        kind: PjType,
        /// The sender's id.
        src: Box<str>,
        /// The receiver's id.
        dst: Box<str>,
        /// As [`PjRelayed::back`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        back: Option<u64>,
        /// The message the holder of `dst` gets.
        frame: Frame,
    },
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
            Self::PjFrame {
                src, dst, frame, ..
            } => src.len() + dst.len() + frame.len(),
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
#[serde(tag = "command", rename_all = "camelCase")]
enum AmFrameRef<'a> {
    TakeConfiguration {
        #[serde(rename = "streamId")]
        stream_id: &'a StreamId,
        #[serde(rename = "type")]
        kind: SdpType,
        sdp: &'a Opaque,
        #[serde(rename = "idMapping")]
        id_mapping: crate::antmedia::EmptyMap,
    },
    TakeCandidate {
        #[serde(rename = "streamId")]
        stream_id: &'a StreamId,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<&'a Opaque>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Opaque>,
        candidate: &'a Opaque,
    },
    PeerMessageCommand {
        #[serde(rename = "streamId")]
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

/// A message for one client, rendered: the exact text of the WebSocket frame it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Frame(Box<str>);

impl Frame {
    /// `bytes` as a frame; serializers write UTF-8, so the fallback (an empty object, which
    /// every client ignores) is never taken.
    fn from_utf8(bytes: Vec<u8>) -> Self {
        Self(
            String::from_utf8(bytes)
                .unwrap_or_else(|_| "{}".to_owned())
                .into_boxed_str(),
        )
    }

    /// Its text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its text, without copying.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0.into_string()
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a frame a node rendered).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The first byte of a binary [`Batch`]: its format's version. JSON starts with `{`.
pub const BATCH_V1: u8 = 1;

/// A record of a binary [`Batch`]: a [`NodeMessage`]'s JSON.
const REC_MSG: u8 = b'M';
/// A record of a binary [`Batch`]: an Ant Media relay's app, room, receiver, sender and
/// frame.
const REC_AM: u8 = b'A';
/// A record of a binary [`Batch`]: a PeerJS relay's type, ids, `back` and frame.
const REC_PJ: u8 = b'P';

/// Several messages from one node in one publication: a node coalesces the messages it
/// sends to one node in one round trip ([`Batch::encode`], binary). The registry's scripts
/// publish JSON instead: `{"msgs":[...],"node":...}`, or one [`Envelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The messages, in order.
    pub msgs: Vec<NodeMessage>,
    /// The node that sent them.
    pub node: NodeId,
}

impl Batch {
    /// The publication of `msgs` from `node`, written in place into one buffer sized up
    /// front (no buffer per message, no growing copies). Numbers are little-endian; a
    /// string is its length (`u32`) and its UTF-8 bytes:
    ///
    /// ```text
    /// BATCH_V1 (u8), node id length (u8), node id
    /// then per message, by its first byte:
    ///   'M' JSON                                       any message, as JSON
    ///   'A' app room to (u64) from (u64) frame         NodeMessage::AmRelay / AmFrame
    ///   'P' type src dst back (0, or 1 and u64) frame  NodeMessage::PjRelay / PjFrame
    /// ```
    ///
    /// The frame of an `A` or `P` record is the receiver's `takeConfiguration` /
    /// `takeCandidate` / `peerMessageCommand`, or PeerJS message, rendered; the receiver
    /// reads those records as [`NodeMessage::AmFrame`] and [`NodeMessage::PjFrame`].
    #[must_use]
    pub fn encode<'a>(
        node: &NodeId,
        msgs: impl IntoIterator<Item = &'a NodeMessage> + Clone,
    ) -> Vec<u8> {
        let hint: usize = msgs.clone().into_iter().map(NodeMessage::size_hint).sum();
        let mut out = Vec::with_capacity(hint + 2 + node.as_str().len());
        out.push(BATCH_V1);
        // Node ids are at most MAX_NODE_ID_LEN (64) bytes.
        out.push(u8::try_from(node.as_str().len()).unwrap_or(u8::MAX));
        out.extend_from_slice(node.as_str().as_bytes());
        for m in msgs {
            match m {
                NodeMessage::AmRelay {
                    app,
                    room,
                    to,
                    from,
                    msg,
                } => {
                    am_head(&mut out, app, room, *to, *from);
                    let at = reserve_len(&mut out);
                    msg.write_frame(room, &mut out);
                    put_len(&mut out, at);
                }
                NodeMessage::AmFrame {
                    app,
                    room,
                    to,
                    from,
                    frame,
                } => {
                    am_head(&mut out, app, room, *to, *from);
                    put_str(&mut out, frame.as_str());
                }
                NodeMessage::PjRelay(r) => {
                    pj_head(&mut out, r.kind, &r.src, &r.dst, r.back);
                    let at = reserve_len(&mut out);
                    crate::peerjs::write_relay(
                        &mut out,
                        r.kind,
                        &r.src,
                        &r.dst,
                        r.payload.as_ref(),
                    );
                    put_len(&mut out, at);
                }
                NodeMessage::PjFrame {
                    kind,
                    src,
                    dst,
                    back,
                    frame,
                } => {
                    pj_head(&mut out, *kind, src, dst, *back);
                    put_str(&mut out, frame.as_str());
                }
                other => {
                    out.push(REC_MSG);
                    let at = reserve_len(&mut out);
                    // Names, raw JSON values and numbers always serialize.
                    let _ = serde_json::to_writer(&mut out, other);
                    put_len(&mut out, at);
                }
            }
        }
        out
    }

    /// Reads what a node published: a binary batch ([`Batch::encode`]), a JSON batch or one
    /// [`Envelope`].
    ///
    /// # Errors
    /// When it is none of them, in this version's shape (a binary batch of another version
    /// included: [`BatchError::Version`]).
    pub fn read(bytes: &[u8]) -> Result<Self, BatchError> {
        match bytes.first() {
            Some(&BATCH_V1) => Self::read_binary(&bytes[1..]),
            Some(b'{') => {
                let text = std::str::from_utf8(bytes).map_err(|_| BatchError::Malformed)?;
                if text.starts_with(r#"{"msgs":"#) {
                    serde_json::from_str(text).map_err(|_| BatchError::Malformed)
                } else {
                    let env = Envelope::from_json(text).map_err(|_| BatchError::Malformed)?;
                    Ok(Self {
                        msgs: vec![env.msg],
                        node: env.node,
                    })
                }
            }
            Some(&v) if v < b' ' => Err(BatchError::Version(v)),
            _ => Err(BatchError::Malformed),
        }
    }

    fn read_binary(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut r = Reader(bytes);
        let len = r.next_u8().ok_or(BatchError::Malformed)?;
        let node = std::str::from_utf8(r.take(usize::from(len))?)
            .ok()
            .and_then(|n| NodeId::new(n).ok())
            .ok_or(BatchError::Malformed)?;
        let mut msgs = Vec::new();
        while let Some(kind) = r.next_u8() {
            let bad = BatchError::Malformed;
            msgs.push(match kind {
                REC_MSG => serde_json::from_str(r.str()?).map_err(|_| bad)?,
                REC_AM => NodeMessage::AmFrame {
                    app: App::new(r.str()?).map_err(|_| bad)?,
                    room: StreamId::new(r.str()?).map_err(|_| bad)?,
                    to: r.u64()?,
                    from: r.u64()?,
                    frame: Frame(r.str()?.into()),
                },
                REC_PJ => NodeMessage::PjFrame {
                    kind: PjType::parse(r.str()?).ok_or(BatchError::Malformed)?,
                    src: r.str()?.into(),
                    dst: r.str()?.into(),
                    back: match r.next_u8() {
                        Some(0) => None,
                        Some(1) => Some(r.u64()?),
                        _ => return Err(BatchError::Malformed),
                    },
                    frame: Frame(r.str()?.into()),
                },
                _ => return Err(BatchError::Malformed),
            });
        }
        Ok(Self { msgs, node })
    }
}

/// Why a publication on a node's channel could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Not in a shape this version reads.
    Malformed,
    /// A binary batch of another version (its first byte): a node of another release.
    Version(u8),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed"),
            Self::Version(v) => write!(f, "batch format version {v}, this node reads {BATCH_V1}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// The head of an Ant Media relay's record.
fn am_head(out: &mut Vec<u8>, app: &App, room: &StreamId, to: u64, from: u64) {
    out.push(REC_AM);
    put_str(out, app.as_str());
    put_str(out, room.as_str());
    out.extend_from_slice(&to.to_le_bytes());
    out.extend_from_slice(&from.to_le_bytes());
}

/// The head of a PeerJS relay's record.
fn pj_head(out: &mut Vec<u8>, kind: PjType, src: &str, dst: &str, back: Option<u64>) {
    out.push(REC_PJ);
    put_str(out, kind.as_str());
    put_str(out, src);
    put_str(out, dst);
    match back {
        None => out.push(0),
        Some(conn) => {
            out.push(1);
            out.extend_from_slice(&conn.to_le_bytes());
        }
    }
}

/// A string after its length.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let at = reserve_len(out);
    out.extend_from_slice(s.as_bytes());
    put_len(out, at);
}

/// Leaves room for a length; returns where.
fn reserve_len(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Writes the length of what follows `at` into the four bytes before it.
fn put_len(out: &mut [u8], at: usize) {
    // A publication is far below 4 GiB (client frames are bounded).
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at - 4..at].copy_from_slice(&len.to_le_bytes());
}

/// Reads a binary batch's fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if n > self.0.len() {
            return Err(BatchError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next byte; None at the end.
    fn next_u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let b = self.take(8)?;
        let mut v = [0; 8];
        v.copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    /// A string after its length (UTF-8 checked).
    fn str(&mut self) -> Result<&'a str, BatchError> {
        let n = usize::try_from(self.u32()?).map_err(|_| BatchError::Malformed)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| BatchError::Malformed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_crosses_nodes_untouched() {
        let env = Envelope {
            node: NodeId::new("node-a").unwrap(),
            msg: NodeMessage::AmRelay {
                app: App::new("live").unwrap(),
                room: StreamId::new("r1").unwrap(),
                to: 7,
                from: u64::MAX,
                msg: AmRelayed::TakeCandidate {
                    label: Some(Opaque::from_json("0".into()).unwrap()),
                    id: None,
                    candidate: Opaque::from_json(r#""candidate:1 1 udp \u00e9""#.into()).unwrap(),
                },
            },
        };
        let json = env.to_json();
        assert_eq!(Envelope::encode(&env.node, &env.msg), json);
        let back = Envelope::from_json(&json).unwrap();
        assert_eq!(back, env);
        let NodeMessage::AmRelay { msg, room, .. } = back.msg else {
            panic!("{json}")
        };
        let wire = serde_json::to_string(&msg.into_server_message(room)).unwrap();
        assert_eq!(
            wire,
            r#"{"command":"takeCandidate","streamId":"r1","label":0,"candidate":"candidate:1 1 udp \u00e9"}"#
        );
    }

    #[test]
    fn a_roster_built_by_the_join_script_reads_back() {
        let node = NodeId::new("n-a").unwrap();
        let json = format!(
            r#"{}[["x\"y","n-b"],["z","n-a"]]{ROSTER_END}"#,
            Envelope::roster_prefix(&node, "r\"1", 9_007_199_254_740_991)
        );
        let env = Envelope::from_json(&json).unwrap();
        assert_eq!(
            env.msg,
            NodeMessage::SioRoster {
                room: "r\"1".into(),
                to: 9_007_199_254_740_991,
                peers: vec![
                    ("x\"y".into(), NodeId::new("n-b").unwrap()),
                    ("z".into(), NodeId::new("n-a").unwrap())
                ],
            }
        );
        let empty = format!("{}[]{ROSTER_END}", Envelope::roster_prefix(&node, "r", 1));
        assert!(Envelope::from_json(&empty).is_ok());
    }

    #[test]
    fn queued_peerjs_messages_built_by_the_claim_script_read_back() {
        let node = NodeId::new("n-a").unwrap();
        let m = PjRelayed {
            kind: PjType::Offer,
            src: "alice".into(),
            dst: "bob".into(),
            payload: Some(Opaque::from_json(r#"{"sdp":"v=0"}"#.into()).unwrap()),
            back: None,
        };
        let json = format!(
            "{}[{}]{ROSTER_END}",
            Envelope::claimed_prefix(&node, "bob", 77),
            m.to_json()
        );
        let env = Envelope::from_json(&json).unwrap();
        let NodeMessage::PjClaimed { to, id, queued } = env.msg else {
            panic!("{json}")
        };
        assert_eq!((to, &*id), (77, "bob"));
        assert_eq!(
            queued[0].clone().into_server_message().encode(),
            r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":"v=0"}}"#
        );
    }

    #[test]
    fn direct_relays_and_their_misses_read_back() {
        let node = NodeId::new("n-a").unwrap();
        let msgs = [
            NodeMessage::SioRelay {
                to: "t".into(),
                event: SioRelay::Offer,
                payload: Opaque::from_json(r#"{"from":"s"}"#.into()).unwrap(),
                back: Some(SioBack {
                    conn: 7,
                    room: Some("lobby-*".into()),
                }),
            },
            NodeMessage::SioMiss {
                conn: 7,
                event: SioRelay::IceCandidate,
                to: "t".into(),
                wrong_room: true,
            },
            NodeMessage::PjRelay(PjRelayed {
                kind: PjType::Candidate,
                src: "a".into(),
                dst: "b".into(),
                payload: None,
                back: Some(9),
            }),
            NodeMessage::PjMiss {
                conn: 9,
                kind: PjType::Answer,
                src: "a".into(),
                dst: "b".into(),
            },
        ];
        for msg in msgs {
            let env = Envelope::from_json(&Envelope::encode(&node, &msg)).unwrap();
            assert_eq!(env.msg, msg);
        }
        // What the registry queues carries no `back`: its JSON is as before.
        let queued = PjRelayed {
            kind: PjType::Leave,
            src: "a".into(),
            dst: "b".into(),
            payload: None,
            back: None,
        };
        assert_eq!(queued.to_json(), r#"{"type":"LEAVE","src":"a","dst":"b"}"#);
    }

    #[test]
    fn a_batch_reads_back_and_a_single_envelope_reads_as_a_batch_of_one() {
        let node = NodeId::new("n-a").unwrap();
        let m = |to| NodeMessage::AmLeft {
            app: App::new("live").unwrap(),
            room: StreamId::new("r").unwrap(),
            to,
            from: 2,
        };
        let msgs = [m(1), m(3)];
        let batch = Batch::read(&Batch::encode(&node, &msgs)).unwrap();
        assert_eq!((batch.node.as_str(), batch.msgs), ("n-a", msgs.to_vec()));
        let one = Batch::read(Envelope::encode(&node, &msgs[0]).as_bytes()).unwrap();
        assert_eq!(one.msgs, vec![msgs[0].clone()]);
        // What the scripts publish: a JSON batch.
        let json = format!(
            r#"{{"msgs":[{}],"node":"n-b"}}"#,
            serde_json::to_string(&msgs[1]).unwrap()
        );
        let batch = Batch::read(json.as_bytes()).unwrap();
        assert_eq!(
            (batch.node.as_str(), batch.msgs),
            ("n-b", vec![msgs[1].clone()])
        );
    }

    fn opaque(json: &str) -> Opaque {
        Opaque::from_json(json.into()).unwrap()
    }

    fn am_bodies() -> Vec<AmRelayed> {
        vec![
            AmRelayed::TakeConfiguration {
                kind: SdpType::Offer,
                sdp: opaque(r#""v=0\r\no=- \"x\" \u00e9""#),
            },
            AmRelayed::TakeCandidate {
                label: Some(opaque("0")),
                id: Some(opaque(r#""0""#)),
                candidate: opaque(r#""candidate:1 1 udp 2 1.2.3.4 5 typ host""#),
            },
            AmRelayed::TakeCandidate {
                label: None,
                id: None,
                candidate: opaque(r#""""#),
            },
            AmRelayed::PeerMessageCommand {
                definition: Some(opaque(r#""chat""#)),
                data: Some(opaque(r#"{"a":[1,2,{"b":null}]}"#)),
            },
            AmRelayed::PeerMessageCommand {
                definition: None,
                data: None,
            },
        ]
    }

    #[test]
    fn a_rendered_frame_is_the_message_its_receiver_would_get() {
        let room = StreamId::new("room-1").unwrap();
        for body in am_bodies() {
            let frame = body.frame(&room);
            assert_eq!(
                frame.as_str(),
                body.into_server_message(room.clone()).encode()
            );
        }
        for payload in [None, Some(opaque(r#"{"sdp":"v=0","type":"offer"}"#))] {
            let m = PjRelayed {
                kind: PjType::Offer,
                src: "al\"ice\u{1}".into(),
                dst: "bób".into(),
                payload,
                back: Some(3),
            };
            assert_eq!(m.frame().as_str(), m.clone().into_server_message().encode());
        }
    }

    fn mixed() -> Vec<NodeMessage> {
        let app = App::new("live").unwrap();
        let room = StreamId::new("r").unwrap();
        let mut msgs: Vec<NodeMessage> = am_bodies()
            .into_iter()
            .map(|msg| NodeMessage::AmRelay {
                app: app.clone(),
                room: room.clone(),
                to: 7,
                from: u64::MAX,
                msg,
            })
            .collect();
        msgs.push(NodeMessage::AmLeft {
            app,
            room,
            to: 7,
            from: 8,
        });
        msgs.push(NodeMessage::PjRelay(PjRelayed {
            kind: PjType::Candidate,
            src: "a".into(),
            dst: "b".into(),
            payload: Some(opaque(r#"{"candidate":{"candidate":"c"}}"#)),
            back: Some(9),
        }));
        msgs.push(NodeMessage::PjMiss {
            conn: 9,
            kind: PjType::Answer,
            src: "a".into(),
            dst: "b".into(),
        });
        msgs.push(NodeMessage::SioRelay {
            to: "t".into(),
            event: SioRelay::Offer,
            payload: opaque(r#"{"from":"s"}"#),
            back: None,
        });
        msgs
    }

    /// What `msg` is when it arrives on another node.
    fn arrived(msg: NodeMessage) -> NodeMessage {
        match msg {
            NodeMessage::AmRelay {
                app,
                room,
                to,
                from,
                msg,
            } => NodeMessage::AmFrame {
                frame: msg.frame(&room),
                app,
                room,
                to,
                from,
            },
            NodeMessage::PjRelay(m) => NodeMessage::PjFrame {
                frame: m.frame(),
                kind: m.kind,
                src: m.src,
                dst: m.dst,
                back: m.back,
            },
            other => other,
        }
    }

    #[test]
    fn relays_cross_in_a_binary_batch_as_their_receivers_frames_in_order() {
        let node = NodeId::new("node-a").unwrap();
        let msgs = mixed();
        let bytes = Batch::encode(&node, &msgs);
        assert_eq!(bytes[0], BATCH_V1);
        let batch = Batch::read(&bytes).unwrap();
        assert_eq!(batch.node, node);
        let expected: Vec<NodeMessage> = msgs.into_iter().map(arrived).collect();
        assert_eq!(batch.msgs, expected);
        // A frame that arrived can be sent on as it is.
        let again = Batch::read(&Batch::encode(&node, &batch.msgs)).unwrap();
        assert_eq!(again.msgs, expected);
        assert_eq!(
            Batch::read(&Batch::encode(&node, &[])).unwrap().msgs,
            vec![]
        );
    }

    #[test]
    fn a_damaged_binary_batch_is_refused_without_a_panic() {
        let node = NodeId::new("node-a").unwrap();
        let bytes = Batch::encode(&node, &mixed());
        // Cut anywhere: refused, or (cut between records) the records before the cut.
        for n in 0..bytes.len() {
            if let Ok(b) = Batch::read(&bytes[..n]) {
                assert!(b.msgs.len() < mixed().len());
            }
        }
        // Every byte changed in turn: never a panic.
        for i in 0..bytes.len() {
            for v in [0, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = Batch::read(&b);
            }
        }
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(Batch::read(&v2), Err(BatchError::Version(2)));
        // A record kind this version does not know.
        let mut unknown = bytes.clone();
        unknown[2 + node.as_str().len()] = b'Z';
        assert_eq!(Batch::read(&unknown), Err(BatchError::Malformed));
        let str = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_le_bytes());
            out.extend_from_slice(s);
        };
        // A frame that is not UTF-8.
        let mut out = vec![BATCH_V1, 1, b'n', REC_PJ];
        for field in [&b"OFFER"[..], b"a", b"b"] {
            str(&mut out, field);
        }
        out.push(0);
        let good = out.clone();
        str(&mut out, &[0xc3, 0x28]);
        assert_eq!(Batch::read(&out), Err(BatchError::Malformed));
        let mut ok = good.clone();
        str(&mut ok, b"{}");
        assert_eq!(Batch::read(&ok).unwrap().msgs.len(), 1);
        // A PeerJS type the server does not relay, and a `back` flag that is neither 0 nor 1.
        let mut kind = vec![BATCH_V1, 1, b'n', REC_PJ];
        for field in [&b"OPEN"[..], b"a", b"b"] {
            str(&mut kind, field);
        }
        kind.push(0);
        str(&mut kind, b"{}");
        assert_eq!(Batch::read(&kind), Err(BatchError::Malformed));
        let mut flag = good[..good.len() - 1].to_vec();
        flag.push(2);
        str(&mut flag, b"{}");
        assert_eq!(Batch::read(&flag), Err(BatchError::Malformed));
        // A length past the end.
        let mut long = vec![BATCH_V1, 1, b'n', REC_MSG];
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Batch::read(&long), Err(BatchError::Malformed));
        // A bad name, as in JSON.
        let mut bad = vec![BATCH_V1, 1, b'n', REC_AM];
        str(&mut bad, b"live");
        str(&mut bad, b"../x");
        bad.extend_from_slice(&[0; 16]);
        str(&mut bad, b"{}");
        assert_eq!(Batch::read(&bad), Err(BatchError::Malformed));
        let mut bad_node = Batch::encode(&node, &[]);
        bad_node[2] = b' ';
        assert_eq!(Batch::read(&bad_node), Err(BatchError::Malformed));
        assert_eq!(Batch::read(b""), Err(BatchError::Malformed));
        assert_eq!(Batch::read(b"\x01\x00"), Err(BatchError::Malformed));
    }

    #[test]
    fn bad_names_are_refused_on_the_way_in() {
        let bad = r#"{"node":"a b","msg":{"am_left":{"app":"live","room":"r","to":1,"from":2}}}"#;
        assert!(Envelope::from_json(bad).is_err());
        let bad_room =
            r#"{"node":"a","msg":{"am_left":{"app":"live","room":"../x","to":1,"from":2}}}"#;
        assert!(Envelope::from_json(bad_room).is_err());
        let good = r#"{"node":"a","msg":{"am_left":{"app":"live","room":"r","to":1,"from":2}}}"#;
        assert!(Envelope::from_json(good).is_ok());
    }
}
