//! Server-to-client messages.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{PeerId, SdpType};
use crate::{ErrorCode, IceServer, Opaque, StreamId};

/// `definition` of a `notification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Notification {
    /// The client joined the room.
    #[serde(rename = "joined")]
    Joined,
    /// The client left the room.
    #[serde(rename = "leaved")]
    Leaved,
    /// The server is shutting down; the socket closes next.
    #[serde(rename = "server_will_stop")]
    ServerWillStop,
}

/// The body of an `iceServerConfig` reply: Ant Media's single-server fields plus the
/// standard `iceServers` list. Clients (the native peer) read it with `serde_json`; a reply
/// of Ant Media's own, without `iceServers`, reads as one server ([`Self::servers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IceServerConfig {
    /// The one URI Ant Media clients read: a `turn:` URI is used with the credentials, a
    /// `stun:` URI for STUN only.
    #[serde(rename = "stunServerUri")]
    pub stun_server_uri: String,
    /// Username for a `turn:` `stunServerUri` (empty otherwise).
    #[serde(rename = "turnServerUsername")]
    pub turn_server_username: String,
    /// Credential for a `turn:` `stunServerUri` (empty otherwise).
    #[serde(rename = "turnServerCredential")]
    pub turn_server_credential: String,
    /// Every configured server, for clients that read the standard list.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
}

impl IceServerConfig {
    /// The servers to use: `iceServers`, or when that is empty Ant Media's single
    /// `stunServerUri` (with its credentials for a `turn:` URI).
    #[must_use]
    pub fn servers(&self) -> Vec<IceServer> {
        if !self.ice_servers.is_empty() || self.stun_server_uri.is_empty() {
            return self.ice_servers.clone();
        }
        let turn = crate::is_turn_url(&self.stun_server_uri);
        vec![IceServer {
            urls: vec![self.stun_server_uri.clone()],
            username: turn.then(|| self.turn_server_username.clone()),
            credential: turn.then(|| self.turn_server_credential.clone()),
        }]
    }

    /// Builds the reply from a list of servers: Ant Media's single URI is the first TURN
    /// URL (TURN servers answer STUN too), else the first STUN URL, else empty.
    #[must_use]
    pub fn from_servers(servers: &[IceServer]) -> Self {
        let turn = servers.iter().find(|s| s.is_turn());
        let (uri, user, cred) = match turn {
            Some(s) => (
                s.urls
                    .iter()
                    .find(|u| crate::is_turn_url(u))
                    .cloned()
                    .unwrap_or_default(),
                s.username.clone().unwrap_or_default(),
                s.credential.clone().unwrap_or_default(),
            ),
            None => (
                servers
                    .iter()
                    .flat_map(|s| s.urls.iter())
                    .next()
                    .cloned()
                    .unwrap_or_default(),
                String::new(),
                String::new(),
            ),
        };
        Self {
            stun_server_uri: uri,
            turn_server_username: user,
            turn_server_credential: cred,
            ice_servers: servers.to_vec(),
        }
    }
}

/// The `{}` that every relayed `takeConfiguration` carries as `idMapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmptyMap;

impl Serialize for EmptyMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

/// A message from the server to one client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum ServerMessage {
    /// `notification` with a `definition` (joined, leaved, server_will_stop).
    Notification {
        /// What happened.
        definition: Notification,
        /// The room, when the notification is about one.
        #[serde(rename = "streamId", skip_serializing_if = "Option::is_none")]
        stream_id: Option<StreamId>,
    },
    /// `start`: the receiver is the offerer of the room.
    Start {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
    },
    /// A relayed SDP offer or answer.
    TakeConfiguration {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
        /// Offer or answer.
        #[serde(rename = "type")]
        kind: SdpType,
        /// The SDP, untouched.
        sdp: Opaque,
        /// Always `{}`: the SDK dereferences it.
        #[serde(rename = "idMapping")]
        id_mapping: EmptyMap,
    },
    /// A relayed ICE candidate.
    TakeCandidate {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
        /// sdpMLineIndex, as the sender wrote it.
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<Opaque>,
        /// sdpMid, as the sender wrote it.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Opaque>,
        /// The candidate, untouched.
        candidate: Opaque,
    },
    /// Relayed application data.
    PeerMessageCommand {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
        /// As the sender wrote it.
        #[serde(skip_serializing_if = "Option::is_none")]
        definition: Option<Opaque>,
        /// As the sender wrote it.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<Opaque>,
    },
    /// `stop`: the other peer is gone; close the peer connection of this room.
    Stop {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
    },
    /// Reply to `ping`.
    Pong,
    /// Reply to `getIceServerConfig`.
    IceServerConfig(Arc<IceServerConfig>),
    /// An error for the receiver's own request.
    Error {
        /// What went wrong (stable name).
        definition: ErrorCode,
        /// The room the request named, when it had one.
        #[serde(rename = "streamId", skip_serializing_if = "Option::is_none")]
        stream_id: Option<Box<str>>,
        /// A short human-readable explanation (Switchboard addition).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<Box<str>>,
    },
    /// A message of a mesh room (boxed: one pointer in every other message's size).
    #[serde(untagged)]
    Mesh(Box<MeshMessage>),
    /// A relay of a mesh room.
    #[serde(untagged)]
    MeshRelay(Box<MeshRelay>),
}

/// `definition` of a mesh room's `notification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MeshNotification {
    /// The receiver joined: its own `peerId` and the other members (`peers`).
    #[serde(rename = "joined")]
    Joined,
    /// `peerId` joined the receiver's room.
    #[serde(rename = "peerJoined")]
    PeerJoined,
    /// `peerId` left the receiver's room (leave, close, idle timeout, kick, ...).
    #[serde(rename = "peerLeft")]
    PeerLeft,
}

/// The messages of a mesh room (Switchboard's extension of the Ant Media dialect, docs/
/// PROTOCOLS.md "Mesh rooms") besides its relays ([`MeshRelay`]), each naming the other
/// member of its pair in `peerId`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum MeshMessage {
    /// `notification`: joined (with the roster), peerJoined, peerLeft.
    Notification {
        /// What happened.
        definition: MeshNotification,
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
        /// The receiver itself (`joined`), or the member that came or went.
        #[serde(rename = "peerId")]
        peer_id: PeerId,
        /// `joined`: the other members, in the order they joined.
        #[serde(skip_serializing_if = "Option::is_none")]
        peers: Option<Vec<PeerId>>,
    },
    /// `start`: the receiver makes the offer to `peerId`.
    Start {
        /// The room.
        #[serde(rename = "streamId")]
        stream_id: StreamId,
        /// The member to offer to.
        #[serde(rename = "peerId")]
        peer_id: PeerId,
    },
}

/// A relay of a mesh room: the 1:1 message (`takeConfiguration`, `takeCandidate` or
/// `peerMessageCommand`, as [`ServerMessage`] renders it) with `peerId`, its sender, last.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshRelay {
    /// The message, as in a 1:1 room.
    pub msg: ServerMessage,
    /// The sender.
    pub peer_id: PeerId,
}

impl Serialize for MeshRelay {
    // The 1:1 message's text with `peerId` added: serde's `flatten` of the message would
    // make `ServerMessage` contain itself at the type level (it holds this relay).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut text = self.msg.encode();
        if text.pop() != Some('}') {
            return Err(S::Error::custom("a relay is a JSON object"));
        }
        text.push_str(",\"peerId\":\"");
        text.push_str(&self.peer_id.0.to_string());
        text.push_str("\"}");
        serde_json::value::RawValue::from_string(text)
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

impl MeshMessage {
    /// A little more than the encoded length (see [`ServerMessage::size_hint`]).
    #[must_use]
    pub fn size_hint(&self) -> usize {
        64 + match self {
            Self::Notification {
                stream_id, peers, ..
            } => stream_id.as_str().len() + peers.as_ref().map_or(0, |p| p.len() * 24),
            Self::Start { stream_id, .. } => stream_id.as_str().len(),
        }
    }
}

impl ServerMessage {
    /// An error reply without a reason.
    #[must_use]
    pub fn error(definition: ErrorCode, stream_id: Option<&StreamId>) -> Self {
        Self::Error {
            definition,
            stream_id: stream_id.map(|s| s.as_str().into()),
            reason: None,
        }
    }

    /// The JSON text of this message.
    #[must_use]
    pub fn encode(&self) -> String {
        // Written into a buffer sized for the message and trimmed to it: no regrowth while
        // writing, and a text whose length is its capacity is handed to the socket writer
        // without another allocation.
        let mut out = Vec::with_capacity(self.size_hint());
        // Serialization cannot fail: every field is a string, number, map or valid raw JSON,
        // and serde_json writes UTF-8.
        if serde_json::to_writer(&mut out, self).is_err() {
            return r#"{"command":"error","definition":"internal_error"}"#.into();
        }
        out.shrink_to_fit();
        String::from_utf8(out)
            .unwrap_or_else(|_| r#"{"command":"error","definition":"internal_error"}"#.into())
    }

    /// A little more than the encoded length: the envelope plus the opaque payloads. The
    /// server charges queued messages against its byte limits with it.
    #[must_use]
    pub fn size_hint(&self) -> usize {
        let opaque = |o: &Option<Opaque>| o.as_ref().map_or(0, |o| o.json().len());
        let stream = |s: &StreamId| s.as_str().len();
        128 + match self {
            Self::TakeConfiguration { stream_id, sdp, .. } => stream(stream_id) + sdp.json().len(),
            Self::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            } => stream(stream_id) + opaque(label) + opaque(id) + candidate.json().len(),
            Self::PeerMessageCommand {
                stream_id,
                definition,
                data,
            } => stream(stream_id) + opaque(definition) + opaque(data),
            Self::Notification { stream_id, .. } => stream_id.as_ref().map_or(0, stream),
            Self::Start { stream_id } | Self::Stop { stream_id } => stream(stream_id),
            Self::Error {
                stream_id, reason, ..
            } => stream_id.as_ref().map_or(0, |s| s.len()) + reason.as_ref().map_or(0, |r| r.len()),
            Self::Pong => 0,
            Self::IceServerConfig(_) => 512,
            Self::Mesh(m) => m.size_hint(),
            Self::MeshRelay(r) => r.msg.size_hint() + 32,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod ice_reply_tests {
    use super::IceServerConfig;

    #[test]
    fn a_client_reads_the_list_or_ant_medias_single_server() {
        // Switchboard's reply: the standard list, `urls` as a string or a list.
        let c: IceServerConfig = serde_json::from_str(
            r#"{"command":"iceServerConfig","stunServerUri":"turn:t:3478",
                "turnServerUsername":"u","turnServerCredential":"p",
                "iceServers":[{"urls":"stun:s:3478"},
                              {"urls":["turn:t:3478"],"username":"u","credential":"p"}]}"#,
        )
        .unwrap();
        let s = c.servers();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].urls, ["stun:s:3478"]);
        assert_eq!(s[1].credential.as_deref(), Some("p"));
        // Ant Media's own reply has only the single URI.
        let c: IceServerConfig = serde_json::from_str(
            r#"{"command":"iceServerConfig","stunServerUri":"turn:a:3478",
                "turnServerUsername":"u","turnServerCredential":"p"}"#,
        )
        .unwrap();
        let s = c.servers();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].username.as_deref(), Some("u"));
        let c: IceServerConfig =
            serde_json::from_str(r#"{"stunServerUri":"stun:a:3478"}"#).unwrap();
        assert_eq!(c.servers()[0].username, None);
    }
}
