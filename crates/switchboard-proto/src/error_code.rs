//! The one list of error `definition`s Switchboard sends.

use serde::Serialize;

/// Every error `definition` Switchboard sends in `{"command":"error","definition":...}`.
///
/// Ant Media's own names are kept where one exists (so SDK callbacks behave as against Ant
/// Media Server); Switchboard's additions are stable snake_case names. Documented in
/// `docs/PROTOCOLS.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorCode {
    /// Not JSON, not an object, no string `command`, or a field of the wrong type.
    #[serde(rename = "invalid_message")]
    InvalidMessage,
    /// A command this server does not implement (e.g. `publish`, or an unknown name).
    #[serde(rename = "unsupported_command")]
    UnsupportedCommand,
    /// A binary WebSocket frame: the protocol is text frames only.
    #[serde(rename = "binary_frame_not_supported")]
    BinaryFrame,
    /// `streamId` missing or empty.
    #[serde(rename = "noStreamNameSpecified")]
    NoStreamName,
    /// `streamId` too long or with characters outside `[A-Za-z0-9_.-]`.
    #[serde(rename = "invalidStreamName")]
    InvalidStreamName,
    /// The room already holds two peers.
    #[serde(rename = "NoSpaceForNewPeer")]
    NoSpaceForNewPeer,
    /// A relay or leave for a room the sender is not paired in.
    #[serde(rename = "no_peer_associated_before")]
    NoPeerAssociatedBefore,
    /// The server is at a configured limit (connections or rooms).
    #[serde(rename = "highResourceUsage")]
    HighResourceUsage,
    /// More messages or joins a second than the server's rate limits allow (Switchboard's;
    /// Ant Media has none). Going on after many refusals closes the connection.
    #[serde(rename = "rate_limited")]
    RateLimited,
    /// Room tokens are required and the one given (or its absence) does not admit the
    /// client to this app and room, or does not grant what it asked (Ant Media's name for
    /// its JWT filter's refusal). The `reason` says why.
    #[serde(rename = "unauthorized_access")]
    UnauthorizedAccess,
    /// A join's `max_call` grant ran out: the member was taken out of the room (its partner
    /// got `stop`).
    #[serde(rename = "max_call_reached")]
    MaxCallReached,
    /// Cluster mode: the cluster's registry (Redis), or the node of the other peer, cannot
    /// be reached right now; the join or message was not carried out. Try again.
    #[serde(rename = "cluster_unavailable")]
    ClusterUnavailable,
    /// A mesh join of a 1:1 room, a 1:1 join of a mesh room, or a mesh join in cluster
    /// mode (mesh rooms are single-node for now). The `reason` says which.
    #[serde(rename = "room_mode_mismatch")]
    RoomModeMismatch,
}

impl ErrorCode {
    /// The `definition` string as sent on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMessage => "invalid_message",
            Self::UnsupportedCommand => "unsupported_command",
            Self::BinaryFrame => "binary_frame_not_supported",
            Self::NoStreamName => "noStreamNameSpecified",
            Self::InvalidStreamName => "invalidStreamName",
            Self::NoSpaceForNewPeer => "NoSpaceForNewPeer",
            Self::NoPeerAssociatedBefore => "no_peer_associated_before",
            Self::HighResourceUsage => "highResourceUsage",
            Self::RateLimited => "rate_limited",
            Self::UnauthorizedAccess => "unauthorized_access",
            Self::MaxCallReached => "max_call_reached",
            Self::ClusterUnavailable => "cluster_unavailable",
            Self::RoomModeMismatch => "room_mode_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for c in [
            ErrorCode::InvalidMessage,
            ErrorCode::UnsupportedCommand,
            ErrorCode::BinaryFrame,
            ErrorCode::RateLimited,
            ErrorCode::NoStreamName,
            ErrorCode::InvalidStreamName,
            ErrorCode::NoSpaceForNewPeer,
            ErrorCode::NoPeerAssociatedBefore,
            ErrorCode::HighResourceUsage,
            ErrorCode::ClusterUnavailable,
            ErrorCode::UnauthorizedAccess,
            ErrorCode::MaxCallReached,
            ErrorCode::RoomModeMismatch,
        ] {
            assert_eq!(
                serde_json::to_string(&c).ok(),
                Some(format!("\"{}\"", c.as_str()))
            );
        }
    }
}
