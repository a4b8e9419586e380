//! Decoding of client frames.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::PeerId;
use crate::{ErrorCode, InvalidStreamId, MAX_STREAM_ID_LEN, Opaque, StreamId};

/// Longest invalid `streamId` echoed back in an `invalidStreamName` error; longer ones are
/// left out of the reply so an error never costs more than the frame that caused it.
const MAX_ECHO_LEN: usize = 256;

/// Longest unknown command name quoted in an `unsupported_command` reason.
const MAX_COMMAND_ECHO_LEN: usize = 64;

/// Commands of Ant Media's publish/play (non-P2P) API that Switchboard answers with
/// `unsupported_command` and a reason naming P2P mode.
const NON_P2P_COMMANDS: &[&str] = &[
    "publish",
    "play",
    "joinRoom",
    "leaveFromRoom",
    "getStreamInfo",
    "getRoomInfo",
    "enableTrack",
    "getTrackList",
    "forceStreamQuality",
    "getSubtracks",
    "getSubtrackCount",
    "updateVideoTrackAssignments",
    "registerPushNotificationToken",
    "sendPushNotification",
];

/// `type` of a `takeConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
}

/// A decoded, validated client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `ping`: answered with `pong`.
    Ping,
    /// `getIceServerConfig`: answered with `iceServerConfig`.
    GetIceServerConfig,
    /// `join` a room (`mode` and `multiPeer` are accepted and ignored).
    Join {
        /// The room.
        stream_id: StreamId,
        /// `mesh: true`: a mesh room of up to `max_mesh_peers` members (Switchboard's
        /// extension; see docs/PROTOCOLS.md, "Mesh rooms").
        mesh: bool,
        /// `token`: a room token (Switchboard's extension; the official SDK gives it on the
        /// WebSocket URL instead). Its length is checked by the hub, which refuses a token
        /// longer than 4096 bytes with `unauthorized_access`.
        token: Option<Box<str>>,
    },
    /// `takeConfiguration`: an SDP offer or answer for the other peer.
    TakeConfiguration {
        /// The room.
        stream_id: StreamId,
        /// Offer or answer.
        kind: SdpType,
        /// The SDP, a JSON string, untouched.
        sdp: Opaque,
        /// `peerId`: the member it is for (mesh rooms).
        to: Option<PeerId>,
    },
    /// `takeCandidate`: one trickled ICE candidate for the other peer.
    TakeCandidate {
        /// The room.
        stream_id: StreamId,
        /// `label` (sdpMLineIndex), as sent.
        label: Option<Opaque>,
        /// `id` (sdpMid), as sent.
        id: Option<Opaque>,
        /// The candidate line, a JSON string, untouched.
        candidate: Opaque,
        /// `peerId`: the member it is for (mesh rooms).
        to: Option<PeerId>,
    },
    /// `peerMessageCommand`: application data for the other peer.
    PeerMessage {
        /// The room.
        stream_id: StreamId,
        /// `definition`, as sent.
        definition: Option<Opaque>,
        /// `data`, as sent.
        data: Option<Opaque>,
        /// `peerId`: the member it is for (mesh rooms).
        to: Option<PeerId>,
    },
    /// `leave` (or `stop`, which P2P treats the same way).
    Leave {
        /// The room.
        stream_id: StreamId,
    },
}

impl ClientMessage {
    /// The `command` name this message was decoded from (`stop` decodes as `leave`).
    #[must_use]
    pub fn command(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::GetIceServerConfig => "getIceServerConfig",
            Self::Join { .. } => "join",
            Self::TakeConfiguration { .. } => "takeConfiguration",
            Self::TakeCandidate { .. } => "takeCandidate",
            Self::PeerMessage { .. } => "peerMessageCommand",
            Self::Leave { .. } => "leave",
        }
    }
}

/// Why a frame was rejected, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct DecodeError {
    /// The `definition` of the error reply.
    pub code: ErrorCode,
    /// The `streamId` to echo in the reply, when the frame had a usable one.
    pub stream_id: Option<Box<str>>,
    /// A short human-readable reason, sent as the reply's `reason`.
    pub reason: Cow<'static, str>,
}

impl DecodeError {
    fn new(code: ErrorCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            stream_id: None,
            reason: reason.into(),
        }
    }

    fn with_stream(mut self, s: &StreamId) -> Self {
        self.stream_id = Some(s.as_str().into());
        self
    }
}

/// The fields a client frame may carry; values stay raw until the command is known (every
/// field borrows from the frame, hence the container-wide `'de: 'a`).
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Frame<'a> {
    command: Option<&'a RawValue>,
    #[serde(rename = "streamId")]
    stream_id: Option<&'a RawValue>,
    #[serde(rename = "type")]
    kind: Option<&'a RawValue>,
    sdp: Option<&'a RawValue>,
    label: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    candidate: Option<&'a RawValue>,
    definition: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    token: Option<&'a RawValue>,
    mesh: Option<&'a RawValue>,
    #[serde(rename = "peerId")]
    peer_id: Option<&'a RawValue>,
}

/// The value of a raw JSON string, or `None` when it is not a string.
fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
}

/// Whether a raw value is JSON `null` (treated as absent, as JavaScript clients send it).
fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Decodes one text frame of the Ant Media P2P protocol.
///
/// # Errors
/// A [`DecodeError`] naming the `definition` to reply with, per the contract's check order.
pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
    let frame: Frame<'_> = serde_json::from_str(text).map_err(|e| {
        let reason = if e.is_data() {
            "expected a JSON object"
        } else {
            "not valid JSON"
        };
        DecodeError::new(ErrorCode::InvalidMessage, reason)
    })?;
    if !crate::escapes_are_valid(text) {
        return Err(DecodeError::new(
            ErrorCode::InvalidMessage,
            "not valid JSON: a \\u escape is not a character",
        ));
    }
    let command = frame
        .command
        .and_then(raw_str)
        .ok_or_else(|| DecodeError::new(ErrorCode::InvalidMessage, "missing string \"command\""))?;

    match &*command {
        "ping" => return Ok(ClientMessage::Ping),
        "getIceServerConfig" => return Ok(ClientMessage::GetIceServerConfig),
        "join" | "takeConfiguration" | "takeCandidate" | "peerMessageCommand" | "leave"
        | "stop" => {}
        other => return Err(unsupported(other)),
    }

    let stream_id = stream_id(frame.stream_id)?;
    match &*command {
        "join" => {
            let token = match frame.token.filter(|r| !is_null(r)) {
                None => None,
                Some(raw) => Some(raw_str(raw).map(Into::into).ok_or_else(|| {
                    DecodeError::new(ErrorCode::InvalidMessage, "\"token\" must be a string")
                        .with_stream(&stream_id)
                })?),
            };
            let mesh = match frame.mesh.map(RawValue::get) {
                None | Some("null" | "false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidMessage,
                        "\"mesh\" must be true or false",
                    )
                    .with_stream(&stream_id));
                }
            };
            Ok(ClientMessage::Join {
                stream_id,
                token,
                mesh,
            })
        }
        "leave" | "stop" => Ok(ClientMessage::Leave { stream_id }),
        "takeConfiguration" => {
            let kind = match frame.kind.and_then(raw_str).as_deref() {
                Some("offer") => SdpType::Offer,
                Some("answer") => SdpType::Answer,
                _ => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidMessage,
                        "\"type\" must be \"offer\" or \"answer\"",
                    )
                    .with_stream(&stream_id));
                }
            };
            let sdp = string_field(frame.sdp, "\"sdp\" must be a string", &stream_id)?;
            let to = peer_id(frame.peer_id, &stream_id)?;
            Ok(ClientMessage::TakeConfiguration {
                stream_id,
                kind,
                sdp,
                to,
            })
        }
        "takeCandidate" => {
            let candidate = string_field(
                frame.candidate,
                "\"candidate\" must be a string",
                &stream_id,
            )?;
            let to = peer_id(frame.peer_id, &stream_id)?;
            Ok(ClientMessage::TakeCandidate {
                stream_id,
                label: optional(frame.label),
                id: optional(frame.id),
                candidate,
                to,
            })
        }
        // Only "peerMessageCommand" is left after the match above.
        _ => {
            let to = peer_id(frame.peer_id, &stream_id)?;
            Ok(ClientMessage::PeerMessage {
                stream_id,
                definition: optional(frame.definition),
                data: optional(frame.data),
                to,
            })
        }
    }
}

fn unsupported(command: &str) -> DecodeError {
    let reason = if NON_P2P_COMMANDS.contains(&command) {
        format!("\"{command}\" is not available: this server speaks the P2P subset")
    } else {
        let mut name: String = command.chars().take(MAX_COMMAND_ECHO_LEN).collect();
        name = name.escape_default().collect();
        format!("unknown command \"{name}\"")
    };
    DecodeError::new(ErrorCode::UnsupportedCommand, reason)
}

fn stream_id(raw: Option<&RawValue>) -> Result<StreamId, DecodeError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Err(DecodeError::new(
            ErrorCode::NoStreamName,
            "\"streamId\" is required",
        ));
    };
    let Some(s) = raw_str(raw) else {
        return Err(DecodeError::new(
            ErrorCode::InvalidStreamName,
            "\"streamId\" must be a string",
        ));
    };
    StreamId::new(&s).map_err(|e| match e {
        InvalidStreamId::Empty => {
            DecodeError::new(ErrorCode::NoStreamName, "\"streamId\" is empty")
        }
        InvalidStreamId::TooLong | InvalidStreamId::BadChar => DecodeError {
            code: ErrorCode::InvalidStreamName,
            stream_id: (s.len() <= MAX_ECHO_LEN).then(|| s.as_ref().into()),
            reason: if e == InvalidStreamId::TooLong {
                Cow::Owned(format!(
                    "stream id is longer than {MAX_STREAM_ID_LEN} bytes"
                ))
            } else {
                Cow::Borrowed("stream id may only contain A-Z a-z 0-9 _ . -")
            },
        },
    })
}

fn string_field(
    raw: Option<&RawValue>,
    reason: &'static str,
    stream_id: &StreamId,
) -> Result<Opaque, DecodeError> {
    match raw {
        Some(r) if r.get().starts_with('"') => Ok(Opaque::from_raw(r)),
        _ => Err(DecodeError::new(ErrorCode::InvalidMessage, reason).with_stream(stream_id)),
    }
}

/// `peerId`: a member id, as a string of digits (or a number); absent or `null` is `None`.
fn peer_id(raw: Option<&RawValue>, stream_id: &StreamId) -> Result<Option<PeerId>, DecodeError> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(None);
    };
    let text = raw_str(raw).unwrap_or(Cow::Borrowed(raw.get()));
    text.parse::<u64>().map(|id| Some(PeerId(id))).map_err(|_| {
        DecodeError::new(
            ErrorCode::InvalidMessage,
            "\"peerId\" must be a member id from the room's roster",
        )
        .with_stream(stream_id)
    })
}

fn optional(raw: Option<&RawValue>) -> Option<Opaque> {
    raw.filter(|r| !is_null(r)).map(Opaque::from_raw)
}
