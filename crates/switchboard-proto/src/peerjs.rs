//! The PeerJS server protocol (npm `peer` 1.0, client npm `peerjs` 1.5): JSON envelopes
//! `{"type","src"?,"dst"?,"payload"?}` over a WebSocket. See `docs/PROTOCOLS.md` ("PeerJS").

use serde::Deserialize;
use serde_json::value::RawValue;

/// Message types the server handles (others are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PjType {
    /// Liveness; the only message that refreshes `alive_timeout`.
    Heartbeat,
    /// Relayed.
    Offer,
    /// Relayed.
    Answer,
    /// Relayed.
    Candidate,
    /// Relayed; never queued.
    Leave,
    /// Sent by the server when a queued message expires; never queued.
    Expire,
}

impl PjType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PjType::Heartbeat => "HEARTBEAT",
            PjType::Offer => "OFFER",
            PjType::Answer => "ANSWER",
            PjType::Candidate => "CANDIDATE",
            PjType::Leave => "LEAVE",
            PjType::Expire => "EXPIRE",
        }
    }

    /// The type of a wire name, if the server handles it.
    #[must_use]
    pub fn parse(s: &str) -> Option<PjType> {
        Some(match s {
            "HEARTBEAT" => PjType::Heartbeat,
            "OFFER" => PjType::Offer,
            "ANSWER" => PjType::Answer,
            "CANDIDATE" => PjType::Candidate,
            "LEAVE" => PjType::Leave,
            "EXPIRE" => PjType::Expire,
            _ => return None,
        })
    }
}

impl serde::Serialize for PjType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PjType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        PjType::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown PeerJS type"))
    }
}

/// A decoded client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PjClientMessage {
    /// The type; `None` for a type the server does not handle (ignored).
    pub kind: Option<PjType>,
    /// The receiver's id.
    pub dst: Option<Box<str>>,
    /// The payload, verbatim.
    pub payload: Option<crate::Opaque>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    dst: Option<serde_json::Value>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// Decodes a client frame. `src` and any other field are dropped (the server stamps `src`).
///
/// # Errors
/// The frame is not a JSON object, or not strict JSON (a `\u` escape of a lone surrogate).
pub fn decode(text: &str) -> Result<PjClientMessage, serde_json::Error> {
    let raw: Raw<'_> = serde_json::from_str(text)?;
    if !crate::escapes_are_valid(text) {
        return Err(serde::de::Error::custom(
            "a \\u escape is not a character (a lone surrogate)",
        ));
    }
    Ok(PjClientMessage {
        kind: raw.kind.as_deref().and_then(PjType::parse),
        dst: match raw.dst {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.into()),
            _ => None,
        },
        payload: raw.payload.map(crate::Opaque::from_raw),
    })
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PjServerMessage {
    /// `{"type":"OPEN"}`: the id is this socket's.
    Open,
    /// `{"type":"ERROR","payload":{"msg":...}}` (then the socket is closed).
    Error {
        /// The message.
        msg: &'static str,
    },
    /// `{"type":"ERROR","payload":{"msg":"unauthorized_access: <reason>"}}`: room tokens are
    /// required and the key (the token) does not admit this id, or a message's `dst`.
    Unauthorized {
        /// Why (the token check that failed).
        reason: Box<str>,
    },
    /// `{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}` (then closed).
    IdTaken,
    /// `{"type":"EXPIRE","src":<dst>,"dst":<sender>}`: a message queued for `src` expired.
    Expire {
        /// The id that never connected.
        src: Box<str>,
        /// The original sender.
        dst: Box<str>,
    },
    /// A relayed message, `src` stamped by the server.
    Relay {
        /// Its type.
        kind: PjType,
        /// The sender's id.
        src: Box<str>,
        /// The receiver's id.
        dst: Box<str>,
        /// The payload, verbatim.
        payload: Option<crate::Opaque>,
    },
}

/// Error messages, as peerjs-server words them.
pub mod errors {
    /// id, token or key missing.
    pub const MISSING: &str = "No id, token, or key supplied to websocket server";
    /// Wrong key.
    pub const INVALID_KEY: &str = "Invalid key provided";
    /// At `concurrent_limit`.
    pub const LIMIT: &str = "Server has reached its concurrent user limit";
    /// Id or token over 256 bytes (Switchboard's bound; peerjs-server has none).
    pub const TOO_LONG: &str = "id or token is too long";
    /// Cluster mode: the id could not be claimed in the cluster's registry (Redis down).
    pub const CLUSTER_UNAVAILABLE: &str =
        "cluster_unavailable: the cluster's registry cannot be reached right now; try again";
    /// Over a rate limit (Switchboard's; peerjs-server has none).
    pub const RATE_LIMITED: &str = "rate_limited: too many messages or connections a second";
}

impl PjServerMessage {
    /// A short stable name of the error this message reports (for metrics), or `None` when
    /// it is not one: `ERROR`'s causes (`missing_parameters`, `invalid_key`,
    /// `concurrent_limit`, `too_long`, `cluster_unavailable`, `rate_limited`,
    /// `unauthorized_access`), `id_taken`, and `expire` (a message that did not reach its id).
    #[must_use]
    pub fn error_name(&self) -> Option<&'static str> {
        Some(match self {
            PjServerMessage::Error { msg } => match *msg {
                errors::MISSING => "missing_parameters",
                errors::INVALID_KEY => "invalid_key",
                errors::LIMIT => "concurrent_limit",
                errors::TOO_LONG => "too_long",
                errors::CLUSTER_UNAVAILABLE => "cluster_unavailable",
                errors::RATE_LIMITED => "rate_limited",
                _ => "error",
            },
            PjServerMessage::Unauthorized { .. } => "unauthorized_access",
            PjServerMessage::IdTaken => "id_taken",
            PjServerMessage::Expire { .. } => "expire",
            PjServerMessage::Open | PjServerMessage::Relay { .. } => return None,
        })
    }

    /// The JSON text of the message.
    #[must_use]
    pub fn encode(&self) -> String {
        let s = |v: &str| serde_json::Value::String(v.to_owned()).to_string();
        match self {
            PjServerMessage::Open => r#"{"type":"OPEN"}"#.to_owned(),
            PjServerMessage::Error { msg } => {
                format!(r#"{{"type":"ERROR","payload":{{"msg":{}}}}}"#, s(msg))
            }
            PjServerMessage::Unauthorized { reason } => format!(
                r#"{{"type":"ERROR","payload":{{"msg":{}}}}}"#,
                s(&format!("unauthorized_access: {reason}"))
            ),
            PjServerMessage::IdTaken => {
                r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#.to_owned()
            }
            PjServerMessage::Expire { src, dst } => {
                format!(r#"{{"type":"EXPIRE","src":{},"dst":{}}}"#, s(src), s(dst))
            }
            PjServerMessage::Relay {
                kind,
                src,
                dst,
                payload,
            } => {
                let mut out = Vec::new();
                write_relay(&mut out, *kind, src, dst, payload.as_ref());
                // Every piece is UTF-8 (names and escaped strings, and JSON text).
                String::from_utf8(out).unwrap_or_default()
            }
        }
    }
}

/// Writes the text of [`PjServerMessage::Relay`] into `out`, in one buffer sized up front:
/// `{"type":...,"src":...,"dst":...,"payload":...}`. Also what a node renders for a
/// receiver on another node ([`crate::cluster::PjRelayed::frame`]).
pub(crate) fn write_relay(
    out: &mut Vec<u8>,
    kind: PjType,
    src: &str,
    dst: &str,
    payload: Option<&crate::Opaque>,
) {
    out.reserve(48 + src.len() + dst.len() + payload.map_or(0, |p| p.json().len()));
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(br#"","src":"#);
    // Strings always serialize.
    let _ = serde_json::to_writer(&mut *out, src);
    out.extend_from_slice(br#","dst":"#);
    let _ = serde_json::to_writer(&mut *out, dst);
    if let Some(p) = payload {
        out.extend_from_slice(br#","payload":"#);
        out.extend_from_slice(p.json().as_bytes());
    }
    out.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn lone_surrogate_escapes_are_refused() {
        assert!(super::decode(r#"{"type":"OFFER","dst":"b","payload":{"k\uDBDD}":1}}"#).is_err());
        let ok =
            super::decode(r#"{"type":"OFFER","dst":"b","payload":{"k":"\uD83D\uDE00"}}"#).unwrap();
        assert_eq!(
            ok.payload.as_ref().map(crate::Opaque::json),
            Some(r#"{"k":"\uD83D\uDE00"}"#)
        );
    }

    use super::*;

    #[test]
    fn decode_keeps_payload_verbatim_and_drops_src() {
        let m = decode(
            r#"{"type":"OFFER","src":"forged","dst":"bob","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"media","connectionId":"mc_1"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(m.kind, Some(PjType::Offer));
        assert_eq!(m.dst.as_deref(), Some("bob"));
        let out = PjServerMessage::Relay {
            kind: PjType::Offer,
            src: "alice".into(),
            dst: "bob".into(),
            payload: m.payload,
        }
        .encode();
        assert_eq!(
            out,
            r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"media","connectionId":"mc_1"}}"#
        );
        assert_eq!(decode(r#"{"type":"WHATEVER"}"#).unwrap().kind, None);
        assert_eq!(
            decode(r#"{"type":"HEARTBEAT"}"#).unwrap().kind,
            Some(PjType::Heartbeat)
        );
        assert!(decode("not json").is_err());
        assert!(decode("[1,2]").is_err());
        assert_eq!(decode(r#"{"type":"LEAVE","dst":5}"#).unwrap().dst, None);
    }

    #[test]
    fn server_messages_encode_as_peerjs_server_does() {
        assert_eq!(PjServerMessage::Open.encode(), r#"{"type":"OPEN"}"#);
        assert_eq!(
            PjServerMessage::Error {
                msg: errors::INVALID_KEY
            }
            .encode(),
            r#"{"type":"ERROR","payload":{"msg":"Invalid key provided"}}"#
        );
        assert_eq!(
            PjServerMessage::Expire {
                src: "dave".into(),
                dst: "alice".into()
            }
            .encode(),
            r#"{"type":"EXPIRE","src":"dave","dst":"alice"}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&PjServerMessage::IdTaken.encode()).unwrap();
        assert_eq!(v["type"], "ID-TAKEN");
    }
}
