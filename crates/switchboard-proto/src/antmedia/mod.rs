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
pub use server::{EmptyMap, IceServerConfig, Notification, ServerMessage};

#[cfg(test)]
mod tests;
