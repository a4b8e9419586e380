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
//! - [`StreamId`] (a room) and [`App`] (a namespace of rooms) are validated [`Name`]s; [`Opaque`] carries SDP, candidates and
//!   application data as the exact JSON text the sender wrote, so the server never parses,
//!   unescapes or rewrites them (forwarding is a copy of bytes, not a re-encoding).
//! - [`ErrorCode`] is the single list of error `definition`s Switchboard sends, documented
//!   in `docs/PROTOCOLS.md`.
//! - [`IceServer`] is the standard `RTCIceServer` shape handed to clients.
//! - [`peerjs`] and [`socketio`] are the other two dialects' messages; [`antmedia::client`]
//!   is the Ant Media protocol from a client's side (the native peer's).
//! - [`cluster`] is what cluster nodes tell each other over Redis.

pub mod antmedia;
pub mod cluster;
mod error_code;
mod ice;
mod ids;
pub mod peerjs;
pub mod socketio;

pub use error_code::ErrorCode;
pub use ice::{IceServer, is_ice_url, is_turn_url};
pub use ids::{
    App, InvalidApp, InvalidName, InvalidStreamId, MAX_APP_LEN, MAX_STREAM_ID_LEN, Name, Opaque,
    StreamId,
};

/// Whether every `\u` escape in `text` (JSON that serde_json already parsed) is a character:
/// serde_json's raw values, kept undecoded on the relay path, accept an escaped lone UTF-16
/// surrogate, which strict parsers (and so the receiving client) refuse. Found by fuzzing.
/// A scan, no allocation; a text without `\u` is not looked at twice.
pub(crate) fn escapes_are_valid(text: &str) -> bool {
    if !text.contains("\\u") {
        return true;
    }
    let b = text.as_bytes();
    let hex = |at: usize| -> Option<u16> {
        let h = b.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2; // any other escape, including an escaped backslash
            continue;
        }
        let Some(unit) = hex(i + 2) else {
            return false;
        };
        i += 6;
        match unit {
            0xD800..=0xDBFF => {
                // A high surrogate must be followed by an escaped low one.
                let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                    .then(|| hex(i + 2))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return false;
                }
                i += 6;
            }
            0xDC00..=0xDFFF => return false,
            _ => {}
        }
    }
    true
}
