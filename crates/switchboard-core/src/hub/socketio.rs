//! The socket.io dialect of the hub: the classic relay (`offer` / `answer` / `ice-candidate`
//! to a `target` socket id) plus rooms for discovery (`join` → roster, `peer-joined`,
//! `peer-left`). See `docs/PROTOCOLS.md` ("socket.io").
//!
//! The edge decodes socket.io packets (socketioxide) and stamps `from` into relay payloads;
//! the hub decides who receives what and answers acks. Payloads are opaque JSON text here.

use std::collections::HashMap;

use switchboard_proto::Opaque;
use switchboard_proto::socketio::{SioAck, SioEmit, SioError, SioRelay};

use switchboard_proto::cluster::{NodeId, NodeMessage, SioBack};

use super::cluster::{ClusterOutput, RouteScope, SioJoin, SioRoute};
use super::{AuthError, Claims, CloseReason, ConnId, Dialect, Hub, LeaveReason, Output};

/// An event from a socket.io client, decoded by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SioInput {
    /// `join` `{room}`: enter a room (leaving the previous one).
    Join {
        /// The room.
        room: Box<str>,
    },
    /// `leave`: leave the current room.
    Leave,
    /// `offer` / `answer` / `ice-candidate` for `target`.
    Relay {
        /// Which event.
        event: SioRelay,
        /// The receiver's socket id.
        target: Box<str>,
        /// The payload, `from` already stamped by the edge.
        payload: Opaque,
    },
    /// An event whose payload could not be used (the edge says why).
    Invalid {
        /// The event name.
        event: Box<str>,
        /// Why, for the client.
        reason: Box<str>,
    },
}

/// Ack identifier chosen by the edge (it keeps the ack callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckId(pub u64);

/// What the hub knows of one socket.io connection.
#[derive(Debug)]
pub(super) struct SioConn {
    pub(super) id: Box<str>,
    pub(super) room: Option<Box<str>>,
    /// The claims of its handshake token (room tokens on); boxed: a pointer when off.
    pub(super) grant: Option<Box<Claims>>,
}

/// socket.io connections, their ids and rooms.
#[derive(Debug, Default)]
pub(super) struct SocketIo {
    pub(super) conns: HashMap<ConnId, SioConn>,
    pub(super) ids: HashMap<Box<str>, ConnId>,
    pub(super) rooms: HashMap<Box<str>, Vec<ConnId>>,
    /// Cluster mode: joins waiting for their roster (room, ack).
    pub(super) pending: HashMap<ConnId, (Box<str>, Option<AckId>)>,
    /// Cluster mode: members on other nodes of the rooms with members (or joins pending)
    /// here: (socket id, node).
    pub(super) remote: HashMap<Box<str>, Vec<(Box<str>, NodeId)>>,
    /// Cluster mode: the nodes where socket ids held elsewhere were last found.
    pub(super) routes: super::cluster_routes::Routes,
}

/// An event's failure: (event, code, reason).
pub(super) type SioFailure = (Box<str>, SioError, Box<str>);

impl Hub {
    /// A new socket.io connection with socket id `id`, from `ip` (for the per-source
    /// limits), admitted by a handshake token with `grant` (room tokens on: the edge checked
    /// the token with [`crate::auth::AuthConfig::admit`]; its `sub`, when it has one, is the
    /// socket's `id`). Over [`super::Config::max_connections`] it gets an `error` event
    /// (`server_busy`) and is closed. A repeated `conn` is ignored. An `id` in use: taken over
    /// when both sockets hold tokens of that identity (the old one gets `error` `replaced`
    /// and is closed, its room hears `peer-left`), else the new socket is refused.
    pub fn handle_sio_connect(
        &mut self,
        conn: ConnId,
        id: &str,
        ip: Option<std::net::IpAddr>,
        grant: Option<Claims>,
        now: std::time::Instant,
    ) {
        if self.sio.conns.contains_key(&conn) {
            return;
        }
        if let Some(&old) = self.sio.ids.get(id) {
            let identity =
                |g: Option<&Claims>| g.and_then(|g| g.sub.as_ref()).map(|s| s.as_str() == id);
            let old_grant = self.sio.conns.get(&old).and_then(|c| c.grant.as_deref());
            if identity(grant.as_ref()) != Some(true) || identity(old_grant) != Some(true) {
                self.stats.errors += 1;
                let why = "another socket has this id";
                return self.sio_close(conn, SioError::Replaced, why, CloseReason::Refused);
            }
            self.sio_forget(old, LeaveReason::Replaced);
            let why = "the same identity connected again";
            self.sio_close(old, SioError::Replaced, why, CloseReason::Replaced);
        }
        if self.am.conns.len() + self.sio.conns.len() + self.pj.len() >= self.config.max_connections
        {
            self.stats.errors += 1;
            let why = "server is at its connection limit";
            return self.sio_close(conn, SioError::ServerBusy, why, CloseReason::Overloaded);
        }
        self.sio.ids.insert(id.into(), conn);
        if self.node_id().is_some() {
            self.cluster_out(ClusterOutput::SioRegister {
                conn,
                id: id.into(),
            });
        }
        self.sio.conns.insert(
            conn,
            SioConn {
                id: id.into(),
                room: None,
                grant: grant.map(Box::new),
            },
        );
        self.limiter.connect(conn, ip, &self.config.limits, now);
    }

    /// Tells socket `conn` why (an `error` event for `connect`) and closes it.
    fn sio_close(&mut self, conn: ConnId, error: SioError, reason: &str, close: CloseReason) {
        self.out.push_back(Output::SioEmit {
            conn,
            emit: SioEmit::Error {
                event: "connect".into(),
                error,
                reason: reason.into(),
            },
        });
        self.out.push_back(Output::Close {
            conn,
            reason: close,
        });
    }

    /// An event from socket.io connection `conn`; `ack` when the client asked for one.
    pub fn handle_sio_message(
        &mut self,
        conn: ConnId,
        input: SioInput,
        ack: Option<AckId>,
        now: std::time::Instant,
    ) {
        if !self.sio.conns.contains_key(&conn) {
            return;
        }
        let limits = self.config.limits;
        let verdict = match self.limiter.message(conn, &limits, now) {
            super::Verdict::Allow if matches!(input, SioInput::Join { .. }) => {
                self.limiter.join(conn, &limits, now)
            }
            v => v,
        };
        let input = match verdict {
            super::Verdict::Allow => {
                let result = self.sio_result(conn, input, ack);
                return self.sio_answer(conn, result, ack);
            }
            _ => input,
        };
        // Refused: only now is the event's name needed (no allocation on the relay path).
        let event: Box<str> = match input {
            SioInput::Relay { event, .. } => event.as_str().into(),
            SioInput::Join { .. } => "join".into(),
            SioInput::Leave => "leave".into(),
            SioInput::Invalid { event, .. } => event,
        };
        if verdict == super::Verdict::Refuse {
            let reason = "too many messages or joins a second; slow down".into();
            return self.sio_answer(conn, Err((event, SioError::RateLimited, reason)), ack);
        }
        self.stats.errors += 1;
        self.out.push_back(Output::SioEmit {
            conn,
            emit: SioEmit::Error {
                event,
                error: SioError::RateLimited,
                reason: "closed: went on sending over the rate limits".into(),
            },
        });
        self.sio_forget(conn, LeaveReason::RateLimited);
        self.out.push_back(Output::Close {
            conn,
            reason: CloseReason::RateLimited,
        });
    }

    /// The answer to an event: `Ok(None)` when it comes later (cluster mode: a join waits
    /// for its roster, a relay to another node for the registry).
    fn sio_result(
        &mut self,
        conn: ConnId,
        input: SioInput,
        ack: Option<AckId>,
    ) -> Result<Option<SioAck>, SioFailure> {
        match input {
            SioInput::Relay {
                event,
                target,
                payload,
            } => self.sio_relay(conn, event, target, payload, ack),
            SioInput::Join { room } => self.sio_join(conn, room, ack),
            SioInput::Leave => self
                .sio_leave(conn, LeaveReason::Leave)
                .map(|()| Some(SioAck::Ok)),
            SioInput::Invalid { event, reason } => Err((event, SioError::InvalidPayload, reason)),
        }
    }

    pub(super) fn sio_answer(
        &mut self,
        conn: ConnId,
        result: Result<Option<SioAck>, SioFailure>,
        ack: Option<AckId>,
    ) {
        match (result, ack) {
            (Ok(Some(reply)), Some(ack)) => {
                self.out.push_back(Output::SioAck { conn, ack, reply });
            }
            (Ok(_), _) => {}
            (Err((event, error, reason)), ack) => {
                self.stats.errors += 1;
                match ack {
                    Some(ack) => self.out.push_back(Output::SioAck {
                        conn,
                        ack,
                        reply: SioAck::Error { error, reason },
                    }),
                    None => self.out.push_back(Output::SioEmit {
                        conn,
                        emit: SioEmit::Error {
                            event,
                            error,
                            reason,
                        },
                    }),
                }
            }
        }
    }

    fn sio_relay(
        &mut self,
        conn: ConnId,
        event: SioRelay,
        target: Box<str>,
        payload: Opaque,
        ack: Option<AckId>,
    ) -> Result<Option<SioAck>, SioFailure> {
        let to = self.sio.ids.get(&*target).copied();
        if to.is_none() && self.node_id().is_some() {
            // Maybe on another node: the registry routes it (with the sender's room claim,
            // checked against the target's room there) and the answer comes later.
            let scope = match (&self.config.auth, self.sio_grant(conn)) {
                (None, _) => RouteScope::Any,
                (Some(_), None) => {
                    self.stats.auth_refused += 1;
                    let e = AuthError::Missing.to_string();
                    return Err((event.as_str().into(), SioError::Unauthorized, e.into()));
                }
                (Some(_), Some(g)) => g.room.clone().map_or(RouteScope::Any, RouteScope::Room),
            };
            self.cluster.sent += 1;
            if let (None, Some(node)) = (ack, self.sio.routes.get(&target)) {
                // Where the id was last found: straight there. A miss comes back as
                // `unknown_target` (an `error` event: no ack was asked).
                let room = match scope {
                    RouteScope::Any => None,
                    RouteScope::Room(rule) => Some(rule.to_claim()),
                };
                let msg = NodeMessage::SioRelay {
                    to: target,
                    event,
                    payload,
                    back: Some(SioBack { conn: conn.0, room }),
                };
                self.stats.relayed_by_dialect.socketio += 1;
                self.cluster.routed_direct += 1;
                self.cluster_out(ClusterOutput::Send {
                    node: node.clone(),
                    from: Some(conn),
                    msg,
                });
                return Ok(None);
            }
            self.cluster_out(ClusterOutput::SioRoute(SioRoute {
                conn,
                ack,
                event,
                target,
                payload,
                scope,
            }));
            return Ok(None);
        }
        if let (Some(to), true) = (to, self.config.auth.is_some()) {
            // The sender's token must allow the target's room: a room claim bounds whom a
            // token holder can reach, not only where it may sit (a target in no room is
            // reachable only without a room claim). Times are not checked: a call goes on
            // after its token expired.
            let target_room = self.sio.conns.get(&to).and_then(|c| c.room.as_deref());
            let grant = self.sio.conns.get(&conn).and_then(|c| c.grant.as_deref());
            let allowed = match (grant.map(|g| g.room.as_ref()), target_room) {
                (None, _) => Err(AuthError::Missing),
                (Some(None), _) => Ok(()),
                (Some(Some(rule)), Some(room)) if rule.allows(room) => Ok(()),
                (Some(Some(_)), _) => Err(AuthError::WrongRoom),
            };
            if let Err(e) = allowed {
                self.stats.auth_refused += 1;
                return Err((
                    event.as_str().into(),
                    SioError::Unauthorized,
                    e.to_string().into(),
                ));
            }
        }
        match to {
            Some(to) if to != conn => {
                self.stats.relayed_by_dialect.socketio += 1;
                self.out.push_back(Output::SioEmit {
                    conn: to,
                    emit: SioEmit::Relay { event, payload },
                });
                Ok(Some(SioAck::Ok))
            }
            Some(_) => Err((
                event.as_str().into(),
                SioError::UnknownTarget,
                "target is the sender itself".into(),
            )),
            None => Err((
                event.as_str().into(),
                SioError::UnknownTarget,
                "no connected socket has this id".into(),
            )),
        }
    }

    fn sio_join(
        &mut self,
        conn: ConnId,
        room: Box<str>,
        ack: Option<AckId>,
    ) -> Result<Option<SioAck>, SioFailure> {
        let Some(c) = self.sio.conns.get(&conn) else {
            return Ok(Some(SioAck::Ok));
        };
        let id = c.id.clone();
        let members = self.sio.rooms.get(&room).map(Vec::as_slice).unwrap_or(&[]);
        let mut peers: Vec<Box<str>> = members
            .iter()
            .filter(|&&m| m != conn)
            .filter_map(|m| self.sio.conns.get(m).map(|c| c.id.clone()))
            .collect();
        if c.room.as_ref() == Some(&room) {
            if let Some(remote) = self.sio.remote.get(&room) {
                peers.extend(remote.iter().map(|(id, _)| id.clone()));
            }
            return Ok(Some(SioAck::Joined { room, peers }));
        }
        if let Some(auth) = &self.config.auth {
            let allowed = match c.grant.as_deref() {
                Some(g) => auth.check(g, self.unix_now, None, Some(&room)),
                None => Err(AuthError::Missing),
            };
            if let Err(e) = allowed {
                self.stats.auth_refused += 1;
                return Err(("join".into(), SioError::Unauthorized, e.to_string().into()));
            }
        }
        let clustered = self.node_id().is_some();
        if clustered && self.sio.pending.contains_key(&conn) {
            return Err((
                "join".into(),
                SioError::RateLimited,
                "a join is still in progress; wait for its answer".into(),
            ));
        }
        // In cluster mode the registry counts the room's members on every node.
        if !clustered && members.len() >= self.config.sio_max_room_peers {
            return Err(self.sio_room_full());
        }
        if c.room.is_some() {
            let _ = self.sio_leave(conn, LeaveReason::Moved);
        }
        if clustered {
            self.sio.pending.insert(conn, (room.clone(), ack));
            self.cluster_out(ClusterOutput::SioJoin(SioJoin {
                conn,
                id,
                room,
                max: self.config.sio_max_room_peers,
                announce: true,
            }));
            return Ok(None);
        }
        let others: Vec<ConnId> = self.sio.rooms.get(&room).cloned().unwrap_or_default();
        self.sio_seat(conn, &id, &room, &others);
        Ok(Some(SioAck::Joined { room, peers }))
    }

    /// The `room_full` failure of a join.
    pub(super) fn sio_room_full(&self) -> SioFailure {
        (
            "join".into(),
            SioError::RoomFull,
            format!(
                "the room holds {} sockets already",
                self.config.sio_max_room_peers
            )
            .into(),
        )
    }

    /// Puts `conn` (socket `id`) in `room`, whose other local members `others` hear
    /// `peer-joined`.
    pub(super) fn sio_seat(&mut self, conn: ConnId, id: &str, room: &str, others: &[ConnId]) {
        self.sio.rooms.entry(room.into()).or_default().push(conn);
        if let Some(c) = self.sio.conns.get_mut(&conn) {
            c.room = Some(room.into());
        }
        self.events.joined(conn, Dialect::SocketIo, "/", room);
        for &other in others {
            self.out.push_back(Output::SioEmit {
                conn: other,
                emit: SioEmit::PeerJoined {
                    room: room.into(),
                    id: id.into(),
                },
            });
        }
    }

    /// The claims of socket `conn`'s handshake token.
    fn sio_grant(&self, conn: ConnId) -> Option<&Claims> {
        self.sio.conns.get(&conn).and_then(|c| c.grant.as_deref())
    }

    fn sio_leave(&mut self, conn: ConnId, reason: LeaveReason) -> Result<(), SioFailure> {
        let Some(c) = self.sio.conns.get_mut(&conn) else {
            return Ok(());
        };
        let Some(room) = c.room.take() else {
            return Err((
                "leave".into(),
                SioError::NotInRoom,
                "this socket is in no room".into(),
            ));
        };
        let id = c.id.clone();
        self.sio_vacate(conn, &id, room, reason);
        Ok(())
    }

    /// Removes `conn` from `room` and tells the others.
    fn sio_vacate(&mut self, conn: ConnId, id: &str, room: Box<str>, reason: LeaveReason) {
        let Some(members) = self.sio.rooms.get_mut(&room) else {
            return;
        };
        self.events
            .left(conn, Dialect::SocketIo, "/", &room, reason);
        members.retain(|&m| m != conn);
        let others = members.clone();
        if others.is_empty() {
            self.sio.rooms.remove(&room);
            if !self.sio.pending.values().any(|(r, _)| *r == room) {
                self.sio.remote.remove(&room);
            }
        }
        if self.node_id().is_some() {
            self.cluster_out(ClusterOutput::SioLeave {
                conn,
                id: id.into(),
                room: room.clone(),
            });
        }
        for other in others {
            self.out.push_back(Output::SioEmit {
                conn: other,
                emit: SioEmit::PeerLeft {
                    room: room.clone(),
                    id: id.into(),
                },
            });
        }
    }

    /// Forgets a socket.io connection (its room is told why); whether it was one.
    pub(super) fn sio_forget(&mut self, conn: ConnId, reason: LeaveReason) -> bool {
        let Some(c) = self.sio.conns.remove(&conn) else {
            return false;
        };
        if self.sio.ids.get(&c.id) == Some(&conn) {
            self.sio.ids.remove(&c.id);
        }
        if let Some(room) = c.room {
            self.sio_vacate(conn, &c.id, room, reason);
        }
        if self.node_id().is_some() {
            if let Some((room, _)) = self.sio.pending.remove(&conn) {
                // Its join may have taken a place in the registry: give it back.
                self.cluster_out(ClusterOutput::SioLeave {
                    conn,
                    id: c.id.clone(),
                    room,
                });
            }
            self.cluster_out(ClusterOutput::SioUnregister { conn, id: c.id });
        }
        true
    }

    /// Closes every socket.io connection (shutdown).
    pub(super) fn sio_shutdown(&mut self) {
        self.close_for_shutdown(self.sio.conns.keys().copied().collect());
        self.sio.conns.clear();
        self.sio.ids.clear();
        self.sio.rooms.clear();
        self.sio.pending.clear();
        self.sio.remote.clear();
    }
}
