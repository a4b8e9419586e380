//! What an operator does to peers (the admin API's rules, the same in every dialect): kick a
//! connection, close a room, list who is where.

use switchboard_proto::antmedia::ServerMessage;

use super::{CloseReason, ConnId, Dialect, Hub, LeaveReason, Output};

/// A connection the hub knows, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The connection.
    pub conn: ConnId,
    /// Its dialect.
    pub dialect: Dialect,
    /// The namespace of its rooms: the Ant Media app, `/` for socket.io, the PeerJS key.
    pub app: Box<str>,
    /// The room it is in (PeerJS: its id, once open), if any.
    pub room: Option<Box<str>>,
    /// Its socket.io or PeerJS id.
    pub id: Option<Box<str>>,
}

impl Hub {
    /// Kicks `conn`: its room or partner hears of it as of a leave (reason `kicked`: Ant
    /// Media partners get `stop`, socket.io rooms `peer-left`), an Ant Media peer first gets
    /// `stop` for its own room (so the SDK ends the call), and the connection is closed
    /// ([`CloseReason::Kicked`]). Whether the hub knew the connection.
    pub fn handle_kick(&mut self, conn: ConnId) -> bool {
        let known = if let Some(c) = self.am.conns.remove(&conn) {
            if let Some(stream_id) = c.room.clone() {
                self.send(conn, ServerMessage::Stop { stream_id });
            }
            self.vacate(conn, &c, LeaveReason::Kicked);
            true
        } else {
            self.sio_forget(conn, LeaveReason::Kicked) || self.pj_forget(conn, LeaveReason::Kicked)
        };
        if known {
            self.limiter.forget(conn, &self.config.limits);
            self.stats.kicked += 1;
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Kicked,
            });
        }
        known
    }

    /// Closes a room of this hub: every member here is kicked ([`Hub::handle_kick`]).
    /// PeerJS has no rooms: `room` is then an id, and its holder is kicked. How many were.
    pub fn handle_close_room(&mut self, dialect: Dialect, app: &str, room: &str) -> usize {
        let members = self.room_members(dialect, app, room);
        members.iter().filter(|&&c| self.handle_kick(c)).count()
    }

    /// The connections in a room of this hub (PeerJS: the holder of the id `room`).
    #[must_use]
    pub fn room_members(&self, dialect: Dialect, app: &str, room: &str) -> Vec<ConnId> {
        let mut members: Vec<ConnId> = match dialect {
            Dialect::AntMedia => self
                .am
                .rooms
                .iter()
                .find(|((a, r), _)| a.as_str() == app && r.as_str() == room)
                .map(|(_, r)| r.peers.iter().flatten().copied().collect())
                .or_else(|| {
                    self.am
                        .mesh
                        .iter()
                        .find(|((a, r), _)| a.as_str() == app && r.as_str() == room)
                        .map(|(_, m)| m.clone())
                })
                .unwrap_or_default(),
            Dialect::SocketIo => (app == "/")
                .then(|| self.sio.rooms.get(room).cloned())
                .flatten()
                .unwrap_or_default(),
            Dialect::PeerJs => (*app == *self.config.peerjs.key)
                .then(|| self.pj.ids.get(room).map(|h| h.conn))
                .flatten()
                .into_iter()
                .collect(),
        };
        members.sort_unstable();
        members
    }

    /// Up to `limit` rooms of one app with members here, in name order from the first after
    /// `after`, each with its member count (PeerJS: its ids, one member each).
    #[must_use]
    pub fn rooms_of(
        &self,
        dialect: Dialect,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(Box<str>, usize)> {
        let after = |r: &str| after.is_none_or(|a| r > a);
        let mut rooms: Vec<(Box<str>, usize)> = match dialect {
            Dialect::AntMedia => self
                .am
                .rooms
                .iter()
                .filter(|((a, r), _)| a.as_str() == app && after(r.as_str()))
                .map(|((_, r), room)| (r.as_str().into(), room.peers.iter().flatten().count()))
                .chain(
                    self.am
                        .mesh
                        .iter()
                        .filter(|((a, r), _)| a.as_str() == app && after(r.as_str()))
                        .map(|((_, r), m)| (r.as_str().into(), m.len())),
                )
                .collect(),
            Dialect::SocketIo if app == "/" => self
                .sio
                .rooms
                .iter()
                .filter(|(r, _)| after(r))
                .map(|(r, m)| (r.clone(), m.len()))
                .collect(),
            Dialect::PeerJs if *app == *self.config.peerjs.key => self
                .pj
                .ids
                .keys()
                .filter(|id| after(id))
                .map(|id| (id.clone(), 1))
                .collect(),
            _ => Vec::new(),
        };
        if limit < rooms.len() {
            rooms.select_nth_unstable(limit);
            rooms.truncate(limit);
        }
        rooms.sort_unstable();
        rooms
    }

    /// What the hub knows of `conn`.
    #[must_use]
    pub fn peer(&self, conn: ConnId) -> Option<PeerInfo> {
        if let Some(c) = self.am.conns.get(&conn) {
            return Some(PeerInfo {
                conn,
                dialect: Dialect::AntMedia,
                app: c.app.as_str().into(),
                room: c.room.as_ref().map(|r| r.as_str().into()),
                id: None,
            });
        }
        if let Some(c) = self.sio.conns.get(&conn) {
            return Some(PeerInfo {
                conn,
                dialect: Dialect::SocketIo,
                app: "/".into(),
                room: c.room.clone(),
                id: Some(c.id.clone()),
            });
        }
        self.pj.id_of(conn).map(|id| PeerInfo {
            conn,
            dialect: Dialect::PeerJs,
            app: self.config.peerjs.key.clone(),
            room: Some(id.into()),
            id: Some(id.into()),
        })
    }

    /// Up to `limit` connections in connection order, from the first after `after`: one
    /// page of the admin API's list (the hub never builds a list of every connection).
    #[must_use]
    pub fn peers(&self, after: Option<ConnId>, limit: usize) -> Vec<PeerInfo> {
        let after = after.map_or(0, |c| c.0.saturating_add(1));
        // The `limit` smallest ids in a max-heap of `limit` entries: one pass over the
        // connections, memory for the page only.
        let mut page = std::collections::BinaryHeap::with_capacity(limit.min(4096) + 1);
        let all = self
            .am
            .conns
            .keys()
            .chain(self.sio.conns.keys())
            .copied()
            .chain(self.pj.conn_ids());
        for c in all.filter(|c| c.0 >= after) {
            if page.len() < limit {
                page.push(c);
            } else if page.peek().is_some_and(|top| c < *top) {
                page.pop();
                page.push(c);
            }
        }
        page.into_sorted_vec()
            .into_iter()
            .filter_map(|c| self.peer(c))
            .collect()
    }
}
