//! Cluster mode for the socket.io dialect: socket ids, relays and rooms across nodes.
//!
//! - **Ids.** Every socket registers its id in the registry ([`ClusterOutput::SioRegister`]);
//!   a relay to an id this node does not hold goes to the registry
//!   ([`ClusterOutput::SioRoute`]), which hands it to the holder's node or answers that no
//!   live node holds it (`unknown_target`, as on one node).
//! - **Rooms.** A join takes its place in the registry ([`ClusterOutput::SioJoin`], the room
//!   size counted over every node); the registry publishes the roster on this node's own
//!   channel, so the roster and every later change of the room arrive in one ordered stream.
//!   Each node keeps, for the rooms it has members in, the members held elsewhere, learnt
//!   from rosters and from [`NodeMessage::SioPeerJoined`] / [`NodeMessage::SioPeerLeft`];
//!   when their node dies its members leave every roster (`peer-left`).

use switchboard_proto::cluster::{NodeId, NodeMessage};
use switchboard_proto::socketio::{SioAck, SioEmit, SioError};

use super::cluster::{ClusterOutput, JoinOutcome, RouteOutcome, SioJoin};
use super::{AckId, ConnId, Hub, LeaveReason, Output};

impl Hub {
    /// The registry's answer to a [`ClusterOutput::SioRoute`] of `conn`.
    /// `target` is the relay's target id.
    pub fn handle_sio_routed(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        event: switchboard_proto::socketio::SioRelay,
        target: &str,
        outcome: RouteOutcome,
    ) {
        let node = match &outcome {
            RouteOutcome::Delivered(node) => Some(node),
            _ => None,
        };
        if self
            .sio
            .routes
            .answered(target, node, self.config.route_cache)
        {
            self.cluster.route_resets += 1;
        }
        self.sio_route_answer(conn, ack, event, outcome);
    }

    /// Answers the sender of a relay to another node with what became of it.
    pub(super) fn sio_route_answer(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        event: switchboard_proto::socketio::SioRelay,
        outcome: RouteOutcome,
    ) {
        if !self.sio.conns.contains_key(&conn) {
            return;
        }
        let fail =
            |error: SioError, reason: &str| Err((event.as_str().into(), error, reason.into()));
        let result = match outcome {
            RouteOutcome::Delivered(_) => {
                self.stats.relayed_by_dialect.socketio += 1;
                Ok(Some(SioAck::Ok))
            }
            RouteOutcome::Unknown => {
                fail(SioError::UnknownTarget, "no connected socket has this id")
            }
            RouteOutcome::WrongRoom => {
                self.stats.auth_refused += 1;
                fail(
                    SioError::Unauthorized,
                    &crate::auth::AuthError::WrongRoom.to_string(),
                )
            }
            RouteOutcome::Unavailable => {
                self.cluster.unavailable += 1;
                fail(
                    SioError::ClusterUnavailable,
                    "the cluster cannot reach the target's node right now; try again",
                )
            }
        };
        self.sio_answer(conn, result, ack);
    }

    /// The registry's answer to a [`ClusterOutput::SioJoin`] of `conn`.
    pub fn handle_sio_join_reply(&mut self, conn: ConnId, room: &str, outcome: JoinOutcome) {
        let failure = match outcome {
            JoinOutcome::Queued => return,
            JoinOutcome::Full => self.sio_room_full(),
            JoinOutcome::Unavailable | JoinOutcome::OtherMode => {
                self.cluster.unavailable += 1;
                (
                    "join".into(),
                    SioError::ClusterUnavailable,
                    "the cluster's registry cannot be reached right now; try again".into(),
                )
            }
        };
        let ack = match self.sio.pending.get(&conn) {
            Some((r, ack)) if **r == *room => *ack,
            _ => return, // gone or moved on meanwhile
        };
        self.sio.pending.remove(&conn);
        if !self.sio.rooms.contains_key(room)
            && !self.sio.pending.values().any(|(r, _)| **r == *room)
        {
            self.sio.remote.remove(room);
        }
        self.sio_answer(conn, Err(failure), ack);
    }

    pub(super) fn sio_node_message(&mut self, from: &NodeId, msg: NodeMessage) {
        match msg {
            NodeMessage::SioRelay {
                to,
                event,
                payload,
                back,
            } => {
                let held = self.sio.ids.get(&*to).copied();
                // Sent straight here from a cached route: the sender's room claim is
                // checked here, where the target's room is known.
                let allowed = |c: ConnId| {
                    let Some(claim) = back.as_ref().and_then(|b| b.room.as_deref()) else {
                        return true;
                    };
                    let room = self.sio.conns.get(&c).and_then(|s| s.room.as_deref());
                    crate::auth::RoomRule::parse(claim)
                        .is_ok_and(|rule| room.is_some_and(|r| rule.allows(r)))
                };
                match held {
                    Some(conn) if allowed(conn) => {
                        self.cluster.received += 1;
                        self.out.push_back(Output::SioEmit {
                            conn,
                            emit: SioEmit::Relay { event, payload },
                        });
                    }
                    _ => {
                        self.cluster.stale += 1;
                        if let Some(back) = back {
                            let msg = NodeMessage::SioMiss {
                                conn: back.conn,
                                event,
                                to,
                                wrong_room: held.is_some(),
                            };
                            self.cluster_out(ClusterOutput::Send {
                                node: from.clone(),
                                from: None,
                                msg,
                            });
                        }
                    }
                }
            }
            NodeMessage::SioMiss {
                conn,
                event,
                to,
                wrong_room,
            } => {
                self.sio.routes.forget(&to, from);
                self.cluster.route_misses += 1;
                let outcome = if wrong_room {
                    RouteOutcome::WrongRoom
                } else {
                    RouteOutcome::Unknown
                };
                self.sio_route_answer(ConnId(conn), None, event, outcome);
            }
            NodeMessage::SioRoster { room, to, peers } => self.sio_roster(ConnId(to), room, peers),
            NodeMessage::SioPeerJoined { room, id } => {
                let here = self.sio.rooms.contains_key(&room)
                    || self.sio.pending.values().any(|(r, _)| *r == room);
                if !here {
                    self.cluster.stale += 1;
                    return;
                }
                self.cluster.received += 1;
                if self.sio_remote_add(&room, &id, from) {
                    self.sio_tell_room(
                        &room,
                        None,
                        &SioEmit::PeerJoined {
                            room: room.clone(),
                            id,
                        },
                    );
                }
            }
            NodeMessage::SioPeerLeft { room, id } => {
                let known = self.sio.remote.get_mut(&room).and_then(|list| {
                    let at = list.iter().position(|(i, n)| *i == id && n == from)?;
                    list.remove(at);
                    Some(())
                });
                if known.is_none() {
                    self.cluster.stale += 1;
                    return;
                }
                self.cluster.received += 1;
                self.sio_tell_left(&room, id);
            }
            NodeMessage::SioReplaced { id } => {
                let Some(old) = self.sio.ids.get(&*id).copied() else {
                    self.cluster.stale += 1;
                    return;
                };
                self.cluster.received += 1;
                self.sio_replace(old);
            }
            _ => {}
        }
    }

    /// The roster of `conn`'s join of `room`: the join is done (or, for a socket already
    /// in the room, its roster refreshed).
    fn sio_roster(&mut self, conn: ConnId, room: Box<str>, peers: Vec<(Box<str>, NodeId)>) {
        let me = self.node_id().cloned();
        let mut fresh = Vec::new();
        for (id, node) in &peers {
            if Some(node) != me.as_ref() && self.sio_remote_add(&room, id, node) {
                fresh.push(id.clone());
            }
        }
        let pending = matches!(self.sio.pending.get(&conn), Some((r, _)) if *r == room);
        if !pending {
            let member = self
                .sio
                .conns
                .get(&conn)
                .is_some_and(|c| c.room.as_deref() == Some(&*room));
            if !member {
                self.cluster.stale += 1;
                if !self.sio.rooms.contains_key(&room)
                    && !self.sio.pending.values().any(|(r, _)| *r == room)
                {
                    self.sio.remote.remove(&room);
                }
                return;
            }
            // Claimed again after this node was taken for dead: members held elsewhere
            // that this node had dropped are announced again.
            for id in fresh {
                let emit = SioEmit::PeerJoined {
                    room: room.clone(),
                    id,
                };
                self.sio_tell_room(&room, None, &emit);
            }
            return;
        }
        self.cluster.received += 1;
        let Some((_, ack)) = self.sio.pending.remove(&conn) else {
            return;
        };
        let Some(id) = self.sio.conns.get(&conn).map(|c| c.id.clone()) else {
            return;
        };
        let others: Vec<ConnId> = self.sio.rooms.get(&room).cloned().unwrap_or_default();
        self.sio_seat(conn, &id, &room, &others);
        let peers = peers.into_iter().map(|(id, _)| id).collect();
        self.sio_answer(conn, Ok(Some(SioAck::Joined { room, peers })), ack);
    }

    /// Records `id` on `node` as a member of `room`; whether it was new.
    fn sio_remote_add(&mut self, room: &str, id: &str, node: &NodeId) -> bool {
        let list = self.sio.remote.entry(room.into()).or_default();
        if list.iter().any(|(i, n)| **i == *id && n == node) {
            return false;
        }
        list.push((id.into(), node.clone()));
        true
    }

    /// Emits `emit` to every member of `room` held here (but `except`).
    fn sio_tell_room(&mut self, room: &str, except: Option<ConnId>, emit: &SioEmit) {
        let members = self.sio.rooms.get(room).cloned().unwrap_or_default();
        for conn in members.into_iter().filter(|&c| Some(c) != except) {
            self.out.push_back(Output::SioEmit {
                conn,
                emit: emit.clone(),
            });
        }
    }

    /// Tells the room's members here that `id`, a member held by another node, left.
    fn sio_tell_left(&mut self, room: &str, id: Box<str>) {
        let emit = SioEmit::PeerLeft {
            room: room.into(),
            id,
        };
        self.sio_tell_room(room, None, &emit);
    }

    /// A socket of the same identity connected on another node: this one is replaced.
    fn sio_replace(&mut self, old: ConnId) {
        let _ = self.sio_forget(old, LeaveReason::Replaced);
        self.out.push_back(Output::SioEmit {
            conn: old,
            emit: SioEmit::Error {
                event: "connect".into(),
                error: SioError::Replaced,
                reason: "the same identity connected again".into(),
            },
        });
        self.out.push_back(Output::Close {
            conn: old,
            reason: super::CloseReason::Replaced,
        });
    }

    /// Every room member held by `node` leaves the rosters here (`peer-left`).
    pub(super) fn sio_node_down(&mut self, node: &NodeId) {
        let mut rooms: Vec<Box<str>> = self
            .sio
            .remote
            .iter()
            .filter(|(_, list)| list.iter().any(|(_, n)| n == node))
            .map(|(r, _)| r.clone())
            .collect();
        rooms.sort_unstable();
        for room in rooms {
            let Some(list) = self.sio.remote.get_mut(&room) else {
                continue;
            };
            let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, n)| n == node);
            *list = kept;
            for (id, _) in gone {
                self.cluster.partner_node_down += 1;
                self.sio_tell_left(&room, id);
            }
        }
    }

    /// Registers every socket and room place held here again ([`Hub::handle_cluster_reregister`]).
    pub(super) fn sio_reregister(&mut self, announce: bool) {
        let mut conns: Vec<(ConnId, Box<str>, Option<Box<str>>)> = self
            .sio
            .conns
            .iter()
            .map(|(&c, s)| (c, s.id.clone(), s.room.clone()))
            .collect();
        conns.sort_unstable();
        for (conn, id, room) in conns {
            self.cluster_out(ClusterOutput::SioRegister {
                conn,
                id: id.clone(),
            });
            if let Some(room) = room {
                self.cluster_out(ClusterOutput::SioJoin(SioJoin {
                    conn,
                    id,
                    room,
                    max: usize::MAX, // already in: never refused
                    announce,
                }));
            }
        }
    }
}
