//! Wire types of Switchboard's signaling dialects.
//!
//! This crate is the vocabulary shared by the sans-IO hub (`switchboard-core`) and the IO
//! edges (`switchboard-server`, clients and load tools). It depends on `serde` only: no
//! tokio, no sockets.
//!
//! # Architecture
//! - [`antmedia`] decodes one WebSocket text frame of Ant Media Server's P2P protocol into a
//!   typed [`antmedia::ClientMessage`] (or a precise [`antmedia::DecodeError`]) and encodes
//!   [`antmedia::ServerMessage`] back to JSON.
//! - [`StreamId`] is a validated room name; [`Opaque`] carries SDP, candidates and
//!   application data as the exact JSON text the sender wrote, so the server never parses,
//!   unescapes or rewrites them (forwarding is a copy of bytes, not a re-encoding).
//! - [`ErrorCode`] is the single list of error `definition`s Switchboard sends, documented
//!   in `docs/PROTOCOLS.md`.
//! - [`IceServer`] is the standard `RTCIceServer` shape handed to clients.

pub mod antmedia;
mod error_code;
mod ice;
mod ids;
pub mod peerjs;

pub use error_code::ErrorCode;
pub use ice::{IceServer, is_ice_url, is_turn_url};
pub use ids::{InvalidStreamId, MAX_STREAM_ID_LEN, Opaque, StreamId};

/// Whether `text` is strict JSON where it matters for relaying it verbatim: serde_json's raw
/// values (kept undecoded on the relay path) accept a `\u` escape of a lone UTF-16
/// surrogate, which strict parsers (and so the receiving client) refuse. Only a text with a
/// `\u` escape is parsed again, fully; found by fuzzing.
pub(crate) fn escapes_are_valid(text: &str) -> bool {
    !text.contains("\\u") || serde_json::from_str::<serde_json::Value>(text).is_ok()
}
