//! Ant Media Server's P2P WebSocket protocol (`/<app>/websocket`).
//!
//! One text frame holds one JSON object dispatched on `"command"`. [`decode`] turns a frame
//! into a [`ClientMessage`] or a [`DecodeError`] that says which error to send back, applying
//! the contract's checks in order: JSON object with a string `command`; `ping` and
//! `getIceServerConfig` before any `streamId` check; known command; `streamId` present, then
//! valid; then the command's own fields. [`ServerMessage::encode`] writes replies.
//!
//! SDP, candidates and `peerMessageCommand` data are [`Opaque`](crate::Opaque): forwarded
//! byte for byte.

pub mod client;
mod decode;
mod server;

pub use decode::{ClientMessage, DecodeError, SdpType, decode};
pub use server::{
    EmptyMap, IceServerConfig, MeshMessage, MeshNotification, MeshRelay, Notification,
    ServerMessage,
};

/// A member of a mesh room, as `peerId` names it on the wire: a string of digits (the
/// server's connection id, unique on the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl serde::Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
