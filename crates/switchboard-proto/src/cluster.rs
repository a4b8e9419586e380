//! Messages between the nodes of a cluster (cluster mode, `--redis-url`).
//!
//! A node publishes a [`NodeMessage`] on the Redis channel of the node that holds the
//! receiver (`sb:node:<id>:in`), wrapped in an [`Envelope`] naming the sender's node. Only
//! Switchboard nodes publish there; a receiver still reads every field with the same rules as
//! client input (names validated, payloads kept as the exact JSON text) and drops what does
//! not parse. Connection ids are the sending or receiving node's own.

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
            Self::SioRelay { to, payload, .. } => to.len() + payload.json().len(),
            Self::PjRelay(m) => m.src.len() + m.dst.len() + opaque(&m.payload),
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

impl AmRelayed {
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

/// Several messages from one node in one publication (a node coalesces the messages it
/// sends to one node in one round trip): `{"msgs":[...],"node":...}`, told apart from an
/// [`Envelope`] by its first key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The messages, in order.
    pub msgs: Vec<NodeMessage>,
    /// The node that sent them.
    pub node: NodeId,
}

impl Batch {
    /// The JSON of `msgs` from `node`.
    #[must_use]
    pub fn encode<'a>(
        node: &NodeId,
        msgs: impl IntoIterator<Item = &'a NodeMessage> + Clone,
    ) -> String {
        // Written in place into one buffer sized up front (no string per message, no
        // growing copies).
        let hint: usize = msgs.clone().into_iter().map(NodeMessage::size_hint).sum();
        let mut out = Vec::with_capacity(hint + 64);
        out.extend_from_slice(br#"{"msgs":["#);
        for (i, m) in msgs.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Every field serializes (names, raw JSON values, numbers): this never fails.
            let _ = serde_json::to_writer(&mut out, m);
        }
        out.extend_from_slice(br#"],"node":"#);
        let _ = serde_json::to_writer(&mut out, node);
        out.push(b'}');
        // serde_json writes UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Reads what a node published: a batch or one [`Envelope`].
    ///
    /// # Errors
    /// When it is neither, in this version's shape.
    pub fn read(text: &str) -> Result<Self, serde_json::Error> {
        if text.starts_with(r#"{"msgs":"#) {
            serde_json::from_str(text)
        } else {
            let env = Envelope::from_json(text)?;
            Ok(Self {
                msgs: vec![env.msg],
                node: env.node,
            })
        }
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
        let one = Batch::read(&Envelope::encode(&node, &msgs[0])).unwrap();
        assert_eq!(one.msgs, vec![msgs[0].clone()]);
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
