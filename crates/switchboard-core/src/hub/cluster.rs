//! Cluster mode: a room's two seats may be held by peers on two nodes.
//!
//! The hub stays sans-IO: it asks the edge to take and free seats in the cluster-wide
//! registry ([`ClusterOutput::Claim`], [`ClusterOutput::Release`]) and to send messages to
//! other nodes ([`ClusterOutput::Send`]); the edge answers claims with
//! [`Hub::handle_am_seat`], hands in what other nodes sent with [`Hub::handle_node_message`]
//! and reports nodes that died with [`Hub::handle_node_down`]. The edge must carry out the
//! cluster outputs in the order they come (one Redis connection, pipelined), which keeps a
//! pair's messages in order across nodes and a release after the claim it undoes.
//!
//! Ant Media in cluster mode: every join takes its seat in the registry first (atomic across
//! nodes, so two joins racing on two nodes can never make a third peer fit), and learns the
//! seat's other holder. A pair on one node relays locally, as in single-node mode; a pair on
//! two nodes relays through the edge. Each side keeps the other's address in its room, so a
//! relay costs no lookup.

use switchboard_proto::cluster::{NodeId, NodeMessage};

use super::AckId;
pub use super::cluster_mesh::MeshJoin;
pub use super::counts::ClusterStats;

use super::*;

/// A peer held by another node: its node and its connection id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    /// The node that holds it.
    pub node: NodeId,
    /// Its connection id on that node.
    pub conn: u64,
}

/// A seat's holder, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The node that holds the seat (maybe this one).
    pub node: NodeId,
    /// The connection id on that node.
    pub conn: u64,
    /// Whether its token lets it make offers (always, with room tokens off).
    pub offer: bool,
}

/// A seat claim: what [`ClusterOutput::Claim`] asks and [`Hub::handle_am_seat`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatClaim {
    /// The joiner, on this node.
    pub conn: ConnId,
    /// The room's app.
    pub app: App,
    /// The room.
    pub room: StreamId,
    /// Whether the joiner may make offers.
    pub offer: bool,
    /// A seat this node already held, claimed again after Redis forgot it (restart, or this
    /// node's lease ran out): nobody is told anything unless it no longer fits.
    pub again: bool,
}

/// The registry's answer to a [`SeatClaim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatReply {
    /// The seat is taken; `other` holds the room's other seat, if anyone does.
    Seated {
        /// The other holder.
        other: Option<Seat>,
    },
    /// Two live peers hold the room.
    Full,
    /// The room is a mesh room on some node (`room_mode_mismatch`).
    OtherMode,
    /// The registry could not be reached (Redis down or too slow).
    Unavailable,
}

/// Something the edge must do in Redis, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOutput {
    /// Take a seat for the claim's connection, atomically across the cluster; answer with
    /// [`Hub::handle_am_seat`].
    Claim(SeatClaim),
    /// Free `conn`'s seat in the room (nothing to answer).
    Release {
        /// The peer that left, on this node.
        conn: ConnId,
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
    },
    /// Publish `msg` to `node`. When it cannot be delivered (Redis unreachable, or `node`
    /// not listening), tell the hub with [`Hub::handle_node_unreachable`] so `from` hears it.
    Send {
        /// The receiving node.
        node: NodeId,
        /// The local peer the message is from, to be told when it cannot be delivered.
        from: Option<ConnId>,
        /// The message.
        msg: NodeMessage,
    },
    /// Forget every seat this node holds in the registry; the claims that follow take them
    /// again ([`Hub::handle_cluster_reregister`]).
    PurgeOwn,
    /// socket.io: socket `id` is held here (by `conn`); a socket with this id on another
    /// node is replaced ([`NodeMessage::SioReplaced`] to its node).
    SioRegister {
        /// The connection.
        conn: ConnId,
        /// Its socket id.
        id: Box<str>,
    },
    /// socket.io: socket `id` (held by `conn`) is gone; forget it unless another
    /// connection holds the id now.
    SioUnregister {
        /// The connection.
        conn: ConnId,
        /// Its socket id.
        id: Box<str>,
    },
    /// socket.io: relay to a socket id this node does not hold; answer with
    /// [`Hub::handle_sio_routed`].
    SioRoute(SioRoute),
    /// socket.io: take a place in `room` (at most `max` members on all nodes). The registry
    /// answers with [`Hub::handle_sio_join_reply`] and, when the place is taken, publishes the
    /// roster to this node ([`NodeMessage::SioRoster`]) and, when `announce`,
    /// [`NodeMessage::SioPeerJoined`] to the nodes of the other members.
    SioJoin(SioJoin),
    /// PeerJS: claim `id` for `conn` (with its token: the same token takes it over from
    /// another node); answer with [`Hub::handle_pj_claim_reply`]. Unless `again`, the
    /// registry then publishes [`NodeMessage::PjClaimed`] with what waited for the id.
    PjClaim(PjClaim),
    /// PeerJS: `conn` no longer holds `id` (unless another connection holds it now).
    PjUnregister {
        /// The connection.
        conn: ConnId,
        /// The id.
        id: Box<str>,
    },
    /// PeerJS: a message for an id this node does not hold: to its node, else (when
    /// `queue`) into its queue in the registry, bounded by `max_msgs` and `max_bytes`;
    /// answer with [`Hub::handle_pj_sent`].
    PjSend {
        /// What the hub needs back.
        sent: PjSent,
        /// The message.
        msg: switchboard_proto::cluster::PjRelayed,
        /// Whether it may wait for its receiver (not `LEAVE`).
        queue: bool,
        /// Most messages waiting for one id.
        max_msgs: usize,
        /// Most bytes waiting for one id.
        max_bytes: usize,
        /// How long it may wait.
        expire: std::time::Duration,
    },
    /// PeerJS: the messages `entries` (tag, sender id) that this node queued for `dst` are
    /// due: take those still waiting out of the queue; answer with
    /// [`Hub::handle_pj_expired`] and the ones taken out.
    PjExpire {
        /// The receiver's id.
        dst: Box<str>,
        /// Tags and senders.
        entries: Vec<(u64, Box<str>)>,
    },
    /// Ant Media mesh rooms: a place in a mesh room (at most `max` members on all nodes).
    /// The registry answers with [`Hub::handle_mesh_join_reply`] and, for a new place
    /// (`id: None`), gives it a member id, publishes the roster to this node
    /// ([`NodeMessage::MeshRoster`]) and [`NodeMessage::MeshPeerJoined`] to the nodes of
    /// the other members.
    MeshJoin(MeshJoin),
    /// Ant Media mesh rooms: member `id` (held by `conn`) leaves its room; the nodes of the
    /// other members hear [`NodeMessage::MeshPeerLeft`].
    MeshLeave {
        /// The connection.
        conn: ConnId,
        /// The room's app.
        app: App,
        /// The room.
        room: StreamId,
        /// Its member id.
        id: u64,
    },
    /// socket.io: give up the place of `id` in `room`; the nodes of the other members hear
    /// [`NodeMessage::SioPeerLeft`].
    SioLeave {
        /// The connection.
        conn: ConnId,
        /// Its socket id.
        id: Box<str>,
        /// The room.
        room: Box<str>,
    },
}

/// A PeerJS message sent through the registry: what the hub needs back with the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PjSent {
    /// The sender's connection.
    pub conn: ConnId,
    /// This node's number for the message.
    pub tag: u64,
    /// The sender's id.
    pub from: Box<str>,
    /// The receiver's id.
    pub dst: Box<str>,
    /// Bytes it is counted as, against the queue limits.
    pub bytes: usize,
}

/// What became of a [`ClusterOutput::PjSend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PjSendOutcome {
    /// Handed to the node holding the receiver, this one (remembered: the next messages to
    /// the receiver go straight there).
    Delivered(NodeId),
    /// No node holds the receiver: queued in the registry until it connects or the message
    /// expires.
    Queued,
    /// The receiver's queue in the registry is full (`EXPIRE` at once).
    Full,
    /// No node holds the receiver and the message is not queued (`LEAVE`).
    Absent,
    /// The registry or the receiver's node could not be reached (`EXPIRE` at once).
    Unavailable,
}

/// The registry's answer to a [`ClusterOutput::PjClaim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PjClaimOutcome {
    /// Claimed; `PjClaimed` follows on this node's channel (for a claim made again, only
    /// when messages waited for the id meanwhile).
    Done,
    /// Another live node holds the id with another token.
    Taken,
    /// The registry could not be reached.
    Unavailable,
}

/// Whom a routed socket.io relay may reach: the sender's room claim (room tokens on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteScope {
    /// Any socket.
    Any,
    /// Only a socket in a room the rule allows.
    Room(crate::auth::RoomRule),
}

/// A socket.io relay to a socket id held by another node (or by none).
#[derive(Debug, Clone, PartialEq)]
pub struct SioRoute {
    /// The sender.
    pub conn: ConnId,
    /// Its ack, answered with the outcome.
    pub ack: Option<AckId>,
    /// Which event.
    pub event: switchboard_proto::socketio::SioRelay,
    /// The receiver's socket id.
    pub target: Box<str>,
    /// The payload, `from` stamped.
    pub payload: switchboard_proto::Opaque,
    /// Whom it may reach.
    pub scope: RouteScope,
}

/// A socket.io join of a room whose size counts every node ([`ClusterOutput::SioJoin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioJoin {
    /// The joiner.
    pub conn: ConnId,
    /// Its socket id.
    pub id: Box<str>,
    /// The room.
    pub room: Box<str>,
    /// The room size.
    pub max: usize,
    /// Whether the others hear of it (false when a place is taken again after Redis lost it:
    /// they know already).
    pub announce: bool,
}

/// A PeerJS id claim ([`ClusterOutput::PjClaim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PjClaim {
    /// The connection.
    pub conn: ConnId,
    /// The id.
    pub id: Box<str>,
    /// Its token.
    pub token: Box<str>,
    /// Claimed again after Redis forgot it (nothing is published).
    pub again: bool,
}

/// What became of a [`SioRoute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Handed to the target's node, this one (remembered: the next relays to the target
    /// that ask no ack go straight there).
    Delivered(NodeId),
    /// No live node holds a socket with this id.
    Unknown,
    /// The target is not in a room the sender's token allows.
    WrongRoom,
    /// The registry or the target's node could not be reached.
    Unavailable,
}

/// The registry's answer to a [`ClusterOutput::SioJoin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The place is taken; the roster follows on this node's channel.
    Queued,
    /// The room holds `max` members.
    Full,
    /// The registry could not be reached.
    Unavailable,
    /// A mesh join of a room that is a 1:1 room on some node (never for socket.io).
    OtherMode,
}

impl Hub {
    /// This node's id, in cluster mode.
    pub(super) fn node_id(&self) -> Option<&NodeId> {
        self.config.cluster.as_ref()
    }

    pub(super) fn cluster_out(&mut self, out: ClusterOutput) {
        self.out.push_back(Output::Cluster(out));
    }

    /// The registry answered `claim`.
    pub fn handle_am_seat(&mut self, claim: SeatClaim, reply: SeatReply, now: Instant) {
        if claim.again {
            return self.am_seat_again(claim, reply);
        }
        let pending = match self.am.pending.get(&claim.conn) {
            Some(p) if p.room == claim.room => self.am.pending.remove(&claim.conn),
            _ => None, // the joiner left, or moved on, meanwhile (its claim was released)
        };
        let Some(pending) = pending else {
            return;
        };
        match reply {
            SeatReply::Full => {
                self.error(
                    claim.conn,
                    ErrorCode::NoSpaceForNewPeer,
                    Some(&claim.room),
                    None,
                );
                // It holds no seat; free the registry's in case the reply was lost.
            }
            SeatReply::Unavailable => self.cluster_unavailable(claim.conn, Some(&claim.room)),
            SeatReply::OtherMode => self.other_mode(claim.conn, &claim.room, false),
            SeatReply::Seated { other } => {
                let local = self.node_id().cloned();
                let remote = other.filter(|s| Some(&s.node) != local.as_ref()).map(|s| {
                    (
                        RemotePeer {
                            node: s.node,
                            conn: s.conn,
                        },
                        s.offer,
                    )
                });
                self.seat(claim.conn, claim.room, pending.grant, remote, now);
            }
        }
    }

    /// A claim of a seat this node already held.
    fn am_seat_again(&mut self, claim: SeatClaim, reply: SeatReply) {
        let key = (claim.app.clone(), claim.room.clone());
        let held = self
            .am
            .conns
            .get(&claim.conn)
            .is_some_and(|c| c.room.as_ref() == Some(&claim.room) && c.app == claim.app);
        if !held {
            return;
        }
        match reply {
            SeatReply::Seated { other } => {
                // A peer on another node that this one is not paired with (this node was
                // cut off and both sides got `stop`): they pair again, as at a join, and
                // the call starts over.
                let local = self.node_id().cloned();
                let Some(s) = other.filter(|s| Some(&s.node) != local.as_ref()) else {
                    return;
                };
                let Some(room) = self.am.rooms.get_mut(&key) else {
                    return;
                };
                if room.peers != [Some(claim.conn), None] || room.remote.is_some() {
                    return;
                }
                let peer = RemotePeer {
                    node: s.node,
                    conn: s.conn,
                };
                room.remote = Some(Box::new(peer.clone()));
                let starter = self.tell_remote_first(
                    claim.conn,
                    claim.app,
                    claim.room.clone(),
                    &peer,
                    s.offer,
                );
                if let Some(starter) = starter {
                    self.send(
                        starter,
                        ServerMessage::Start {
                            stream_id: claim.room,
                        },
                    );
                }
            }
            // Someone took the room while Redis had forgotten this node's seat: this node's
            // peer gives way.
            SeatReply::Full => {
                if let Some(c) = self.am.conns.get_mut(&claim.conn) {
                    c.room = None;
                    if let Some(at) = c.end_grant() {
                        self.call_deadlines.remove(&(at, claim.conn));
                    }
                }
                self.remove_from_room(
                    claim.conn,
                    claim.app,
                    claim.room.clone(),
                    LeaveReason::Evicted,
                );
                self.error(
                    claim.conn,
                    ErrorCode::NoSpaceForNewPeer,
                    Some(&claim.room),
                    Some("the room was taken while the cluster registry was unreachable"),
                );
                self.notify(claim.conn, Notification::Leaved, claim.room);
            }
            // The edge asks again when Redis answers; a place taken again is never refused.
            SeatReply::Unavailable | SeatReply::OtherMode => {}
        }
    }

    /// Another node sent `msg` (from node `from`).
    pub fn handle_node_message(&mut self, from: &NodeId, msg: NodeMessage, now: Instant) {
        match msg {
            NodeMessage::AmJoined {
                app,
                room,
                to,
                from: joiner,
                start,
            } => {
                let partner = RemotePeer {
                    node: from.clone(),
                    conn: joiner,
                };
                let key = (app.clone(), room.clone());
                let to = ConnId(to);
                let fits = self.am_holds(to, &app, &room)
                    && self.am.rooms.get(&key).is_some_and(|r| {
                        r.peers == [Some(to), None]
                            && r.remote.as_deref().is_none_or(|p| *p == partner)
                    });
                if !fits {
                    // Gone (or paired otherwise) meanwhile: the joiner is alone.
                    self.cluster.stale += 1;
                    return self.cluster_out(ClusterOutput::Send {
                        node: from.clone(),
                        from: None,
                        msg: NodeMessage::AmLeft {
                            app,
                            room,
                            to: joiner,
                            from: to.0,
                        },
                    });
                }
                self.cluster.received += 1;
                let Some(r) = self.am.rooms.get_mut(&key) else {
                    return;
                };
                if r.remote.is_some() {
                    return; // told twice (claimed again after an outage)
                }
                r.remote = Some(Box::new(partner));
                if start {
                    self.send(to, ServerMessage::Start { stream_id: room });
                }
            }
            NodeMessage::AmLeft {
                app,
                room,
                to,
                from: left,
            } => {
                let to = ConnId(to);
                let partner = RemotePeer {
                    node: from.clone(),
                    conn: left,
                };
                let key = (app, room);
                match self.am.rooms.get_mut(&key) {
                    Some(r) if r.peers[0] == Some(to) && r.remote.as_deref() == Some(&partner) => {
                        r.remote = None;
                        self.cluster.received += 1;
                        self.send(to, ServerMessage::Stop { stream_id: key.1 });
                    }
                    _ => self.cluster.stale += 1,
                }
            }
            NodeMessage::AmRelay {
                app,
                room,
                to,
                from: sender,
                msg,
            } => {
                if let Some(room) = self.am_relay_in(from, (app, room), ConnId(to), sender) {
                    self.send(ConnId(to), msg.into_server_message(room));
                }
            }
            NodeMessage::AmFrame {
                app,
                room,
                to,
                from: sender,
                frame,
            } => {
                if self
                    .am_relay_in(from, (app, room), ConnId(to), sender)
                    .is_some()
                {
                    self.out.push_back(Output::Frame {
                        conn: ConnId(to),
                        frame,
                    });
                }
            }
            NodeMessage::SioRelay { .. }
            | NodeMessage::SioRoster { .. }
            | NodeMessage::SioPeerJoined { .. }
            | NodeMessage::SioPeerLeft { .. }
            | NodeMessage::SioReplaced { .. }
            | NodeMessage::SioMiss { .. } => self.sio_node_message(from, msg),
            NodeMessage::MeshRoster { .. }
            | NodeMessage::MeshPeerJoined { .. }
            | NodeMessage::MeshPeerLeft { .. }
            | NodeMessage::MeshRelay { .. } => self.mesh_node_message(from, msg, now),
            NodeMessage::PjRelay(_)
            | NodeMessage::PjFrame(_)
            | NodeMessage::PjClaimed { .. }
            | NodeMessage::PjReplaced { .. }
            | NodeMessage::PjMiss { .. } => self.pj_node_message(from, msg, now),
        }
    }

    /// Whether a relay from `sender` on `node` may reach `to` in the room `key`: they are
    /// still each other's partner (then the room is given back). Counted either way.
    fn am_relay_in(
        &mut self,
        node: &NodeId,
        key: (App, StreamId),
        to: ConnId,
        sender: u64,
    ) -> Option<StreamId> {
        let paired = self.am.rooms.get(&key).is_some_and(|r| {
            r.peers[0] == Some(to)
                && r.remote
                    .as_deref()
                    .is_some_and(|p| p.node == *node && p.conn == sender)
        });
        if paired {
            self.cluster.received += 1;
            Some(key.1)
        } else {
            self.cluster.stale += 1;
            None
        }
    }

    /// Whether `conn` is an Ant Media connection of `app` joined to `room`.
    fn am_holds(&self, conn: ConnId, app: &App, room: &StreamId) -> bool {
        self.am
            .conns
            .get(&conn)
            .is_some_and(|c| c.app == *app && c.room.as_ref() == Some(room))
    }

    /// `node` died (its lease ran out) or left: every pair with a peer there ends, the
    /// peer here gets `stop` and keeps its seat (the room can be joined again).
    pub fn handle_node_down(&mut self, node: &NodeId) {
        let mut ended: Vec<(App, StreamId)> = self
            .am
            .rooms
            .iter()
            .filter(|(_, r)| r.remote.as_deref().is_some_and(|p| p.node == *node))
            .map(|(k, _)| k.clone())
            .collect();
        ended.sort_unstable();
        self.sio.routes.forget_node(node);
        self.pj.routes.forget_node(node);
        self.sio_node_down(node);
        self.mesh_node_down(node);
        for key in ended {
            let Some(r) = self.am.rooms.get_mut(&key) else {
                continue;
            };
            r.remote = None;
            self.cluster.partner_node_down += 1;
            if let Some(peer) = r.peers[0] {
                self.send(peer, ServerMessage::Stop { stream_id: key.1 });
            }
        }
    }

    /// This node's lease ran out while it could not reach Redis: the other nodes took it for
    /// dead and stopped its peers' partners there, so every pair across nodes ends here too
    /// (`stop`). Followed by [`Hub::handle_cluster_reregister`].
    pub fn handle_cluster_isolated(&mut self) {
        self.sio.routes.clear();
        self.pj.routes.clear();
        let mut nodes: Vec<NodeId> = self
            .am
            .rooms
            .values()
            .filter_map(|r| r.remote.as_deref().map(|p| p.node.clone()))
            .chain(self.sio.remote.values().flatten().map(|(_, n)| n.clone()))
            .chain(self.mesh_remote_nodes())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            self.handle_node_down(&node);
        }
    }

    /// Redis forgot this node's seats (it restarted, or this node's lease ran out while it
    /// could not reach it): forget what is left of them and claim every seat (and socket.io
    /// id and room place) held here again, in a deterministic order. `announce`: the other
    /// nodes took this one for dead, so its socket.io members are announced to their rooms
    /// again (after [`Hub::handle_cluster_isolated`]).
    pub fn handle_cluster_reregister(&mut self, announce: bool) {
        if self.node_id().is_none() {
            return;
        }
        // Redis forgot where ids live: what was learnt from it may be stale too.
        self.sio.routes.clear();
        self.pj.routes.clear();
        self.cluster_out(ClusterOutput::PurgeOwn);
        let mut seats: Vec<(App, StreamId, ConnId)> = self
            .am
            .rooms
            .iter()
            .flat_map(|(k, r)| {
                r.peers
                    .iter()
                    .flatten()
                    .map(|&c| (k.0.clone(), k.1.clone(), c))
            })
            .collect();
        seats.sort_unstable();
        for (app, room, conn) in seats {
            let offer = self.may_offer(conn);
            self.cluster_out(ClusterOutput::Claim(SeatClaim {
                conn,
                app,
                room,
                offer,
                again: true,
            }));
        }
        self.sio_reregister(announce);
        self.pj_reregister();
        self.mesh_reregister();
    }

    /// A [`ClusterOutput::Send`] could not be delivered: its sender hears
    /// `cluster_unavailable`.
    pub fn handle_node_unreachable(&mut self, from: Option<ConnId>, msg: NodeMessage) {
        let Some(from) = from else {
            return;
        };
        let room = match msg {
            NodeMessage::SioRelay { to, event, .. } => {
                // Sent straight to a cached route: the next one asks the registry.
                self.sio.routes.forget_id(&to);
                return self.sio_route_answer(from, None, event, RouteOutcome::Unavailable);
            }
            NodeMessage::PjRelay(m) => {
                self.pj.routes.forget_id(&m.dst);
                self.cluster.unavailable += 1;
                self.stats.errors += 1;
                return self.pj_direct_failed(from, m.kind, m.src, m.dst);
            }
            NodeMessage::AmJoined { room, .. }
            | NodeMessage::AmLeft { room, .. }
            | NodeMessage::AmRelay { room, .. }
            | NodeMessage::MeshRelay { room, .. } => room,
            _ => return,
        };
        if self.am.conns.contains_key(&from) {
            self.cluster_unavailable(from, Some(&room));
        }
    }

    /// The edge could not carry `out` out (Redis unreachable or too slow, or the queue in
    /// front of it full): it is answered as the registry's `Unavailable` would be. Returns
    /// whether the registry may now disagree with this node (a claim, release or
    /// registration that may or may not have reached it): the edge has every seat claimed
    /// again ([`Hub::handle_cluster_reregister`]) once it can.
    pub fn handle_cluster_failed(&mut self, out: ClusterOutput, now: Instant) -> bool {
        match out {
            ClusterOutput::Claim(claim) => {
                self.handle_am_seat(claim, SeatReply::Unavailable, now);
                true
            }
            ClusterOutput::Send { from, msg, .. } => {
                self.handle_node_unreachable(from, msg);
                false
            }
            ClusterOutput::SioRoute(r) => {
                let outcome = RouteOutcome::Unavailable;
                self.handle_sio_routed(r.conn, r.ack, r.event, &r.target, outcome);
                false
            }
            ClusterOutput::SioJoin(join) => {
                self.handle_sio_join_reply(join.conn, &join.room, JoinOutcome::Unavailable);
                true
            }
            ClusterOutput::PjClaim(c) => {
                self.handle_pj_claim_reply(c.conn, &c.id, c.again, PjClaimOutcome::Unavailable);
                true
            }
            ClusterOutput::PjSend { sent, .. } => {
                self.handle_pj_sent(sent, PjSendOutcome::Unavailable, now);
                false
            }
            ClusterOutput::PjExpire { dst, entries } => {
                // Whether they were delivered is unknown: their senders hear EXPIRE, as the
                // receiver did not connect in time as far as this node can tell.
                self.handle_pj_expired(&dst, &entries);
                false
            }
            ClusterOutput::MeshJoin(join) => {
                self.mesh_join_failed(join);
                true
            }
            ClusterOutput::Release { .. }
            | ClusterOutput::MeshLeave { .. }
            | ClusterOutput::PurgeOwn
            | ClusterOutput::SioRegister { .. }
            | ClusterOutput::SioUnregister { .. }
            | ClusterOutput::SioLeave { .. }
            | ClusterOutput::PjUnregister { .. } => true,
        }
    }

    pub(super) fn cluster_unavailable(&mut self, conn: ConnId, room: Option<&StreamId>) {
        self.cluster.unavailable += 1;
        self.error(
            conn,
            ErrorCode::ClusterUnavailable,
            room,
            Some("the cluster cannot reach the other peer's node right now; try again"),
        );
    }

    /// Counters of cluster mode.
    #[must_use]
    pub fn cluster_stats(&self) -> ClusterStats {
        let routes = self.sio.routes.len() + self.pj.routes.len();
        ClusterStats {
            routes: u64::try_from(routes).unwrap_or(u64::MAX),
            ..self.cluster
        }
    }
}
