//! Wire types of the socket.io relay dialect: the relay events, the server's own events and
//! ack answers, and the JSON each is sent as. socket.io's framing itself (Engine.IO,
//! packets, acks) is socketioxide's; see `docs/PROTOCOLS.md` ("socket.io").

use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};

use crate::Opaque;

/// Longest socket id, room name or relay target accepted (bytes).
pub const SIO_MAX_NAME: usize = 256;

/// The three relay events of the classic socket.io signaling server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SioRelay {
    /// `offer`
    #[serde(rename = "offer")]
    Offer,
    /// `answer`
    #[serde(rename = "answer")]
    Answer,
    /// `ice-candidate`
    #[serde(rename = "ice-candidate")]
    IceCandidate,
}

impl SioRelay {
    /// The event name on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SioRelay::Offer => "offer",
            SioRelay::Answer => "answer",
            SioRelay::IceCandidate => "ice-candidate",
        }
    }

    /// Every relay event.
    pub const ALL: [SioRelay; 3] = [SioRelay::Offer, SioRelay::Answer, SioRelay::IceCandidate];
}

/// Error codes of the socket.io dialect (the `error` field of a failed ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioError {
    /// `target` is not a connected socket id (or is the sender's own).
    UnknownTarget,
    /// The payload is not an object, lacks a string `target`/`room`, or a name is too long.
    InvalidPayload,
    /// The room already holds the server's room size (`--socketio-max-room-peers`) sockets.
    RoomFull,
    /// `leave` while in no room.
    NotInRoom,
    /// The server is at its connection limit.
    ServerBusy,
    /// Over the rate limits (`--max-messages-per-sec`, `--max-joins-per-sec`); going on closes the socket.
    RateLimited,
    /// Room tokens are required and the socket's token does not admit it to this room (a
    /// `join`), or to the target's room (a relay).
    Unauthorized,
    /// Another connection with the same token identity took this socket's place.
    Replaced,
    /// Cluster mode: the cluster's registry (Redis) or the target's node cannot be reached
    /// now; the event was not carried out.
    ClusterUnavailable,
}

impl SioError {
    /// The code on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SioError::UnknownTarget => "unknown_target",
            SioError::InvalidPayload => "invalid_payload",
            SioError::RoomFull => "room_full",
            SioError::NotInRoom => "not_in_room",
            SioError::ServerBusy => "server_busy",
            SioError::RateLimited => "rate_limited",
            SioError::Unauthorized => "unauthorized_access",
            SioError::Replaced => "replaced",
            SioError::ClusterUnavailable => "cluster_unavailable",
        }
    }
}

/// An event the edge must emit to a socket.io client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SioEmit {
    /// A relayed `offer` / `answer` / `ice-candidate` (payload JSON, with `from`).
    Relay {
        /// Which event.
        event: SioRelay,
        /// The payload, as the edge serialized it.
        payload: Opaque,
    },
    /// `peer-joined` `{room, id}`.
    PeerJoined {
        /// The room.
        room: Box<str>,
        /// The newcomer's socket id.
        id: Box<str>,
    },
    /// `peer-left` `{room, id}`.
    PeerLeft {
        /// The room.
        room: Box<str>,
        /// The leaver's socket id.
        id: Box<str>,
    },
    /// `error` `{event, error, reason}`: a failure the client asked no ack for.
    Error {
        /// The event that failed.
        event: Box<str>,
        /// The code.
        error: SioError,
        /// Details.
        reason: Box<str>,
    },
}

/// The answer to an event the client asked an ack for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SioAck {
    /// `{ok: true}`
    Ok,
    /// `{ok: true, room, peers}`: the ids already in the room joined.
    Joined {
        /// The room.
        room: Box<str>,
        /// The other members' socket ids, in join order.
        peers: Vec<Box<str>>,
    },
    /// `{ok: false, error, reason}`
    Error {
        /// The code.
        error: SioError,
        /// Details.
        reason: Box<str>,
    },
}

impl SioEmit {
    /// The event name and its payload: a relayed payload as the edge serialized it (never
    /// parsed or copied again), the server's own events built here.
    #[must_use]
    pub fn into_wire(self) -> (&'static str, Box<RawValue>) {
        let (event, value) = match self {
            SioEmit::Relay { event, payload } => return (event.as_str(), payload.into_raw()),
            SioEmit::PeerJoined { room, id } => ("peer-joined", json!({"room": room, "id": id})),
            SioEmit::PeerLeft { room, id } => ("peer-left", json!({"room": room, "id": id})),
            SioEmit::Error {
                event,
                error,
                reason,
            } => (
                "error",
                json!({"event": event, "error": error.as_str(), "reason": reason}),
            ),
        };
        // Serializing a `Value` of strings cannot fail; the fallback is never taken.
        let raw = to_raw_value(&value).unwrap_or_else(|_| RawValue::NULL.to_owned());
        (event, raw)
    }
}

impl SioAck {
    /// The JSON the ack callback is answered with.
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            SioAck::Ok => json!({"ok": true}),
            SioAck::Joined { room, peers } => json!({"ok": true, "room": room, "peers": peers}),
            SioAck::Error { error, reason } => {
                json!({"ok": false, "error": error.as_str(), "reason": reason})
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_and_acks_render_as_documented() {
        let (e, p) = SioEmit::PeerJoined {
            room: "r".into(),
            id: "a".into(),
        }
        .into_wire();
        assert_eq!((e, p.get()), ("peer-joined", r#"{"id":"a","room":"r"}"#));
        let (e, p) = SioEmit::Relay {
            event: SioRelay::IceCandidate,
            payload: Opaque::from_json(r#"{"target":"b", "from":"a"}"#.into()).unwrap(),
        }
        .into_wire();
        assert_eq!(
            (e, p.get()),
            ("ice-candidate", r#"{"target":"b", "from":"a"}"#)
        );
        let (e, p) = SioEmit::Error {
            event: "offer".into(),
            error: SioError::UnknownTarget,
            reason: "no such socket".into(),
        }
        .into_wire();
        assert_eq!(e, "error");
        assert!(
            p.get().contains(r#""error":"unknown_target""#),
            "{}",
            p.get()
        );
        assert_eq!(
            SioAck::Joined {
                room: "r".into(),
                peers: vec!["a".into()]
            }
            .to_json(),
            json!({"ok": true, "room": "r", "peers": ["a"]})
        );
        assert_eq!(
            SioAck::Error {
                error: SioError::RoomFull,
                reason: "full".into()
            }
            .to_json()["error"],
            "room_full"
        );
    }
}
