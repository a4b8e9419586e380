//! The client's side of the Ant Media P2P protocol: what a client sends ([`Request`]) and
//! what it reads ([`Event`]). The server's side is [`super::decode`] and
//! [`super::ServerMessage`]; the tests below check that the two sides agree, so the native
//! peer and the server cannot drift apart.

use serde::{Deserialize, Serialize};

use super::{IceServerConfig, SdpType};

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Request<'a> {
    /// Ask for the ICE servers (and fresh TURN credentials).
    GetIceServerConfig,
    /// Join a room (P2P: `multiPeer` false, `mode` "both").
    Join {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
        /// Always false for a P2P room.
        #[serde(rename = "multiPeer")]
        multi_peer: bool,
        /// "both": send and receive.
        mode: &'a str,
        /// A room token, when the server requires one.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
        /// Join as a member of a mesh room (Switchboard's extension; sent only when true).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        mesh: bool,
    },
    /// Leave a room.
    Leave {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
    },
    /// An SDP offer or answer for the other peer.
    TakeConfiguration {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
        /// Offer or answer.
        #[serde(rename = "type")]
        kind: SdpType,
        /// The SDP.
        sdp: &'a str,
        /// In a mesh room: the member it is for.
        #[serde(rename = "peerId", skip_serializing_if = "Option::is_none")]
        peer_id: Option<&'a str>,
    },
    /// An ICE candidate for the other peer.
    TakeCandidate {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: &'a str,
        /// sdpMLineIndex.
        label: u32,
        /// sdpMid.
        id: &'a str,
        /// The candidate line (`candidate:...`).
        candidate: &'a str,
        /// In a mesh room: the member it is for.
        #[serde(rename = "peerId", skip_serializing_if = "Option::is_none")]
        peer_id: Option<&'a str>,
    },
    /// Keep-alive; answered `pong`.
    Ping,
}

impl Request<'_> {
    /// The JSON text of this request.
    #[must_use]
    pub fn encode(&self) -> String {
        // Strings, numbers and a bool: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A message from the server, as a client reads it. Fields a client does not need are
/// skipped; a command it does not know reads as [`Event::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Event {
    /// `joined`, `leaved`, `server_will_stop`, ...; in a mesh room also `peerJoined` and
    /// `peerLeft`.
    Notification {
        /// What happened.
        definition: String,
        /// Mesh rooms: this client's id (`joined`), or the member that came or went.
        #[serde(default, rename = "peerId")]
        peer_id: Option<String>,
        /// Mesh rooms, `joined`: the members already there, in the order they joined.
        #[serde(default)]
        peers: Vec<String>,
    },
    /// The ICE servers to use.
    IceServerConfig(IceServerConfig),
    /// This client makes the offer (in a mesh room: to the member `peer_id`).
    Start {
        /// Mesh rooms: the member to offer to.
        #[serde(default, rename = "peerId")]
        peer_id: Option<String>,
    },
    /// The other peer's offer or answer.
    TakeConfiguration {
        /// `offer` or `answer`.
        #[serde(rename = "type")]
        kind: String,
        /// The SDP.
        sdp: String,
        /// Mesh rooms: the member it is from (stamped by the server).
        #[serde(default, rename = "peerId")]
        peer_id: Option<String>,
    },
    /// One of the other peer's ICE candidates.
    TakeCandidate {
        /// The candidate line (`candidate:...`, or with an `a=` prefix).
        candidate: String,
        /// Mesh rooms: the member it is from (stamped by the server).
        #[serde(default, rename = "peerId")]
        peer_id: Option<String>,
    },
    /// The other peer is gone.
    Stop {},
    /// An error for this client's request.
    Error {
        /// What went wrong (a stable name, e.g. `NoSpaceForNewPeer`).
        definition: String,
        /// Why, in words, when the server says (e.g. which check a room token failed).
        #[serde(default)]
        reason: Option<String>,
    },
    /// Reply to `ping`.
    Pong {},
    /// A command this client does not act on (`peerMessageCommand`, newer ones).
    #[serde(other)]
    Other,
}

impl Event {
    /// Reads a server frame; `None` if it is not a JSON object with a known shape.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::antmedia::{
        ClientMessage, EmptyMap, MeshMessage, MeshNotification, MeshRelay, Notification, PeerId,
        ServerMessage, decode,
    };
    use crate::{ErrorCode, IceServer, Opaque, StreamId};

    /// Every request the client sends is what the server decodes.
    #[test]
    fn the_server_decodes_every_request() {
        let room = "room-1";
        let cases = [
            Request::GetIceServerConfig,
            Request::Join {
                stream_id: room,
                multi_peer: false,
                mode: "both",
                token: Some("t.k.n"),
                mesh: false,
            },
            Request::Leave { stream_id: room },
            Request::TakeConfiguration {
                stream_id: room,
                kind: SdpType::Offer,
                sdp: "v=0\r\n",
                peer_id: None,
            },
            Request::TakeCandidate {
                stream_id: room,
                label: 0,
                id: "0",
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                peer_id: None,
            },
            Request::Ping,
        ];
        let mesh_join = Request::Join {
            stream_id: room,
            multi_peer: false,
            mode: "both",
            token: None,
            mesh: true,
        };
        assert!(matches!(
            decode(&mesh_join.encode()).unwrap(),
            ClientMessage::Join { mesh: true, .. }
        ));
        let to_member = Request::TakeCandidate {
            stream_id: room,
            label: 0,
            id: "0",
            candidate: "candidate:1",
            peer_id: Some("12"),
        };
        assert!(matches!(
            decode(&to_member.encode()).unwrap(),
            ClientMessage::TakeCandidate {
                to: Some(PeerId(12)),
                ..
            }
        ));
        for r in cases {
            let decoded = decode(&r.encode()).unwrap();
            let ok = match (&r, &decoded) {
                (Request::GetIceServerConfig, ClientMessage::GetIceServerConfig)
                | (Request::Ping, ClientMessage::Ping) => true,
                (
                    Request::Join { .. },
                    ClientMessage::Join {
                        stream_id, token, ..
                    },
                ) => stream_id.as_str() == room && token.as_deref() == Some("t.k.n"),
                (Request::Leave { .. }, ClientMessage::Leave { stream_id }) => {
                    stream_id.as_str() == room
                }
                (
                    Request::TakeConfiguration { kind, .. },
                    ClientMessage::TakeConfiguration { kind: k, sdp, .. },
                ) => k == kind && sdp.json() == r#""v=0\r\n""#,
                (Request::TakeCandidate { .. }, ClientMessage::TakeCandidate { .. }) => true,
                _ => false,
            };
            assert!(ok, "{r:?} decoded as {decoded:?}");
        }
    }

    /// Every message the server sends reads as the event a client expects.
    #[test]
    fn a_client_reads_every_server_message() {
        let room = StreamId::new("room-1").unwrap();
        let opaque = Opaque::string;
        let cases = [
            (
                ServerMessage::Notification {
                    definition: Notification::Joined,
                    stream_id: Some(room.clone()),
                },
                Event::Notification {
                    definition: "joined".into(),
                    peer_id: None,
                    peers: Vec::new(),
                },
            ),
            (
                ServerMessage::Start {
                    stream_id: room.clone(),
                },
                Event::Start { peer_id: None },
            ),
            (
                ServerMessage::TakeConfiguration {
                    stream_id: room.clone(),
                    kind: SdpType::Answer,
                    sdp: opaque("v=0\r\n"),
                    id_mapping: EmptyMap,
                },
                Event::TakeConfiguration {
                    kind: "answer".into(),
                    sdp: "v=0\r\n".into(),
                    peer_id: None,
                },
            ),
            (
                ServerMessage::TakeCandidate {
                    stream_id: room.clone(),
                    label: None,
                    id: None,
                    candidate: opaque("candidate:1"),
                },
                Event::TakeCandidate {
                    candidate: "candidate:1".into(),
                    peer_id: None,
                },
            ),
            (
                ServerMessage::Stop {
                    stream_id: room.clone(),
                },
                Event::Stop {},
            ),
            (ServerMessage::Pong, Event::Pong {}),
            (
                ServerMessage::error(ErrorCode::NoSpaceForNewPeer, Some(&room)),
                Event::Error {
                    definition: "NoSpaceForNewPeer".into(),
                    reason: None,
                },
            ),
            (
                ServerMessage::Error {
                    definition: ErrorCode::UnauthorizedAccess,
                    stream_id: Some(room.as_str().into()),
                    reason: Some("the token has expired".into()),
                },
                Event::Error {
                    definition: "unauthorized_access".into(),
                    reason: Some("the token has expired".into()),
                },
            ),
            (
                ServerMessage::PeerMessageCommand {
                    stream_id: room.clone(),
                    definition: None,
                    data: None,
                },
                Event::Other,
            ),
        ];
        for (sent, read) in cases {
            assert_eq!(Event::decode(&sent.encode()), Some(read), "{sent:?}");
        }
        // Mesh rooms: the roster, members coming and going, `start` and relays name a member.
        let mesh = |m: MeshMessage| ServerMessage::Mesh(Box::new(m));
        let mesh_cases = [
            (
                mesh(MeshMessage::Notification {
                    definition: MeshNotification::Joined,
                    stream_id: room.clone(),
                    peer_id: PeerId(7),
                    peers: Some(vec![PeerId(3), PeerId(5)]),
                }),
                Event::Notification {
                    definition: "joined".into(),
                    peer_id: Some("7".into()),
                    peers: vec!["3".into(), "5".into()],
                },
            ),
            (
                mesh(MeshMessage::Notification {
                    definition: MeshNotification::PeerLeft,
                    stream_id: room.clone(),
                    peer_id: PeerId(3),
                    peers: None,
                }),
                Event::Notification {
                    definition: "peerLeft".into(),
                    peer_id: Some("3".into()),
                    peers: Vec::new(),
                },
            ),
            (
                mesh(MeshMessage::Start {
                    stream_id: room.clone(),
                    peer_id: PeerId(9),
                }),
                Event::Start {
                    peer_id: Some("9".into()),
                },
            ),
            (
                ServerMessage::MeshRelay(Box::new(MeshRelay {
                    msg: ServerMessage::TakeCandidate {
                        stream_id: room.clone(),
                        label: None,
                        id: None,
                        candidate: opaque("candidate:2"),
                    },
                    peer_id: PeerId(5),
                })),
                Event::TakeCandidate {
                    candidate: "candidate:2".into(),
                    peer_id: Some("5".into()),
                },
            ),
        ];
        for (sent, read) in mesh_cases {
            assert_eq!(Event::decode(&sent.encode()), Some(read), "{sent:?}");
        }
        let servers = vec![IceServer::stun("stun:s:3478")];
        let sent =
            ServerMessage::IceServerConfig(Arc::new(IceServerConfig::from_servers(&servers)));
        let Some(Event::IceServerConfig(c)) = Event::decode(&sent.encode()) else {
            panic!("not read as iceServerConfig");
        };
        assert_eq!(c.servers(), servers);
    }
}
