//! Admin requests run on the hub task: what they may read and do.

use std::collections::HashMap;

use socketioxide::extract::SocketRef;
use switchboard_core::{ConnId, Hub};

use crate::outbound::ConnHandle;

/// What the edge knows of a connection besides the hub: its address, when it connected and
/// how many messages it read and wrote (Ant Media and PeerJS; socket.io: the address only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnExtra {
    pub(crate) remote_address: Option<std::net::IpAddr>,
    pub(crate) connected_at: Option<u64>,
    pub(crate) messages_in: Option<u64>,
    pub(crate) messages_out: Option<u64>,
    pub(crate) joined_at: Option<u64>,
}

/// An admin request's view of the hub task: the hub, and the edge's record of each
/// connection.
pub(crate) struct AdminCtx<'a> {
    pub(crate) hub: &'a mut Hub,
    pub(super) conns: &'a HashMap<ConnId, ConnHandle>,
    pub(super) sio: &'a HashMap<ConnId, SocketRef>,
    pub(super) joined_at: &'a HashMap<ConnId, u64>,
}

impl AdminCtx<'_> {
    /// The edge's record of `conn`.
    pub(crate) fn extra(&self, conn: ConnId) -> ConnExtra {
        let joined_at = self.joined_at.get(&conn).copied();
        if let Some(h) = self.conns.get(&conn) {
            let (messages_in, messages_out) = h.shared.messages();
            return ConnExtra {
                remote_address: h.shared.ip,
                connected_at: Some(h.shared.connected_at),
                messages_in: Some(messages_in),
                messages_out: Some(messages_out),
                joined_at,
            };
        }
        ConnExtra {
            remote_address: self.sio.get(&conn).and_then(|s| {
                s.req_parts()
                    .extensions
                    .get::<crate::accept::ClientAddr>()
                    .map(|a| a.0.ip())
            }),
            joined_at,
            ..ConnExtra::default()
        }
    }
}

/// An admin request: runs on the hub task, its outputs carried out right after.
pub(crate) type AdminJob = Box<dyn FnOnce(&mut AdminCtx<'_>) + Send>;
