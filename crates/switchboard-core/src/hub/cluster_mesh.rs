//! Cluster mode for mesh rooms: a room's members may be held by several nodes.
//!
//! - **Places.** A mesh join takes its place in the registry ([`ClusterOutput::MeshJoin`],
//!   the room size counted over every node), which gives the member its id (unique in the
//!   room: the member ids of a clustered mesh room are the registry's, not connection ids)
//!   and publishes the roster on the joiner's node's own channel
//!   ([`NodeMessage::MeshRoster`]) and [`NodeMessage::MeshPeerJoined`] to the nodes of the
//!   other members, in one atomic step: every node hears of every member in the order the
//!   registry placed them.
//! - **Who offers.** For each pair, the older member's node hears `MeshPeerJoined` and
//!   sends the older member `start` when it may offer; the newcomer's node reads the roster
//!   (with each member's right to offer) and sends the newcomer `start` when only it may.
//!   A pair on one node is decided there, as on a single node.
//! - **Relays** to a member on another node cross as [`NodeMessage::MeshRelay`], checked on
//!   arrival against the receiving node's roster (sender and receiver still members).
//! - **Leaving.** [`ClusterOutput::MeshLeave`] frees the place; the registry tells the other
//!   members' nodes ([`NodeMessage::MeshPeerLeft`]). When a node dies, every node drops its
//!   members from its rosters (`peerLeft`).

use switchboard_proto::antmedia::{MeshMessage, MeshNotification, PeerId};
use switchboard_proto::cluster::{AmRelayed, NodeId, NodeMessage};

use super::antmedia::PendingJoin;
use super::cluster::{ClusterOutput, JoinOutcome};
use super::*;

/// A place in a mesh room ([`ClusterOutput::MeshJoin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshJoin {
    /// The joiner.
    pub conn: ConnId,
    /// The room's app.
    pub app: App,
    /// The room.
    pub room: StreamId,
    /// `None` for a join (the registry gives the member id); the member's id for a place
    /// taken again after Redis forgot it (never refused, nothing published).
    pub id: Option<u64>,
    /// The room size, counted over every node.
    pub max: usize,
    /// Whether the joiner may make offers.
    pub offer: bool,
}

/// What a node knows of its clustered mesh rooms beyond its own members.
#[derive(Debug, Default)]
pub(super) struct MeshCluster {
    /// Member ids the registry gave this node's members.
    pub(super) ids: HashMap<ConnId, u64>,
    /// Per room with members here: the members held by other nodes, in the order this node
    /// heard of them.
    pub(super) remote: HashMap<(App, StreamId), Vec<(u64, NodeId)>>,
    /// Mesh joins waiting for their roster.
    pub(super) pending: HashMap<ConnId, PendingJoin>,
}

impl Hub {
    /// `conn`'s member id: the registry's in cluster mode, else its connection id.
    pub(super) fn mesh_id(&self, conn: ConnId) -> PeerId {
        PeerId(
            self.am
                .mesh_cluster
                .ids
                .get(&conn)
                .copied()
                .unwrap_or(conn.0),
        )
    }

    /// The members of `key` but `conn`, in the order this node knows them: its own, then
    /// those held elsewhere.
    pub(super) fn mesh_others(&self, conn: ConnId, key: &(App, StreamId)) -> Vec<PeerId> {
        let local = self.am.mesh.get(key).map_or(&[][..], Vec::as_slice);
        let remote = self
            .am
            .mesh_cluster
            .remote
            .get(key)
            .map_or(&[][..], Vec::as_slice);
        local
            .iter()
            .filter(|&&c| c != conn)
            .map(|&c| self.mesh_id(c))
            .chain(remote.iter().map(|(id, _)| PeerId(*id)))
            .collect()
    }

    /// The member of `key` with id `id`: its connection here, or the node that holds it.
    pub(super) fn mesh_member(
        &self,
        key: &(App, StreamId),
        id: PeerId,
    ) -> Option<Result<ConnId, NodeId>> {
        let local = self.am.mesh.get(key)?;
        if let Some(&c) = local.iter().find(|&&c| self.mesh_id(c) == id) {
            return Some(Ok(c));
        }
        let remote = self.am.mesh_cluster.remote.get(key)?;
        remote
            .iter()
            .find(|(m, _)| *m == id.0)
            .map(|(_, node)| Err(node.clone()))
    }

    /// A relay from member `ids.0` (`conn`, here) to member `ids.1`, held by `node`.
    pub(super) fn mesh_relay_out(
        &mut self,
        conn: ConnId,
        key: &(App, StreamId),
        node: NodeId,
        ids: (PeerId, PeerId),
        msg: AmRelayed,
    ) {
        self.stats.relayed_by_dialect.antmedia += 1;
        self.cluster.sent += 1;
        self.cluster_out(ClusterOutput::Send {
            node,
            from: Some(conn),
            msg: NodeMessage::MeshRelay {
                app: key.0.clone(),
                room: key.1.clone(),
                to: ids.1.0,
                from: ids.0.0,
                msg,
            },
        });
    }

    /// A mesh join in cluster mode: the place is taken in the registry first; the join goes
    /// on when the roster comes ([`NodeMessage::MeshRoster`]).
    pub(super) fn mesh_join_cluster(
        &mut self,
        conn: ConnId,
        key: (App, StreamId),
        grant: Option<Claims>,
    ) {
        if self.am.mesh_cluster.pending.contains_key(&conn) {
            return self.error(
                conn,
                ErrorCode::RateLimited,
                Some(&key.1),
                Some("a join is still in progress; wait for joined"),
            );
        }
        if let Some(old) = self.am.conns.get(&conn).and_then(|c| c.room.clone()) {
            self.leave(conn, &old, LeaveReason::Moved);
        }
        let offer = grant.as_ref().is_none_or(|g| g.offer);
        let pending = PendingJoin {
            room: key.1.clone(),
            grant,
        };
        self.am.mesh_cluster.pending.insert(conn, pending);
        self.cluster_out(ClusterOutput::MeshJoin(MeshJoin {
            conn,
            app: key.0,
            room: key.1,
            id: None,
            max: self.config.max_mesh_peers,
            offer,
        }));
    }

    /// The registry's answer to a [`ClusterOutput::MeshJoin`] of `conn`.
    pub fn handle_mesh_join_reply(
        &mut self,
        conn: ConnId,
        key: &(App, StreamId),
        outcome: JoinOutcome,
    ) {
        if outcome == JoinOutcome::Queued || !self.mesh_pending_is(conn, key) {
            return;
        }
        self.am.mesh_cluster.pending.remove(&conn);
        if outcome == JoinOutcome::OtherMode {
            self.other_mode(conn, &key.1, true);
        } else if outcome == JoinOutcome::Full {
            let reason = format!(
                "the mesh room is full ({} members)",
                self.config.max_mesh_peers
            );
            self.error(
                conn,
                ErrorCode::NoSpaceForNewPeer,
                Some(&key.1),
                Some(&reason),
            );
        } else {
            self.cluster_unavailable(conn, Some(&key.1));
        }
    }

    /// A [`ClusterOutput::MeshJoin`] the edge could not carry out: a join is refused
    /// (`cluster_unavailable`); a place taken again is taken at the next re-registration.
    pub(super) fn mesh_join_failed(&mut self, join: MeshJoin) {
        if join.id.is_none() {
            let key = (join.app, join.room);
            self.handle_mesh_join_reply(join.conn, &key, JoinOutcome::Unavailable);
        }
    }

    /// The registry refused a join (`mesh` or 1:1) of `stream_id`: the room is held in the
    /// other mode on some node.
    pub(super) fn other_mode(&mut self, conn: ConnId, stream_id: &StreamId, mesh: bool) {
        let why = if mesh {
            super::mesh::ONE_TO_ONE_ROOM
        } else {
            super::mesh::MESH_ROOM
        };
        self.error(
            conn,
            ErrorCode::RoomModeMismatch,
            Some(stream_id),
            Some(why),
        );
    }

    /// Whether `conn`'s mesh join of `key` waits for its roster.
    fn mesh_pending_is(&self, conn: ConnId, key: &(App, StreamId)) -> bool {
        self.am.mesh_cluster.pending.get(&conn).is_some_and(|p| {
            p.room == key.1 && self.am.conns.get(&conn).is_some_and(|c| c.app == key.0)
        })
    }

    pub(super) fn mesh_node_message(&mut self, from: &NodeId, msg: NodeMessage, now: Instant) {
        match msg {
            NodeMessage::MeshRoster {
                app,
                room,
                to,
                me,
                peers,
            } => self.mesh_roster((app, room), ConnId(to), me, peers, now),
            NodeMessage::MeshPeerJoined { app, room, id, .. } => {
                let key = (app, room);
                let Some(members) = self.am.mesh.get(&key).cloned() else {
                    self.cluster.stale += 1;
                    return;
                };
                let remote = self.am.mesh_cluster.remote.entry(key.clone()).or_default();
                if remote.iter().any(|(m, _)| *m == id) {
                    return; // known from a roster already
                }
                remote.push((id, from.clone()));
                self.cluster.received += 1;
                for member in members {
                    self.mesh_announce(member, &key.1, PeerId(id));
                    // This older member offers when it may; when only the newcomer may, its
                    // own node tells it.
                    if self.may_offer(member) {
                        self.mesh_start(member, &key.1, PeerId(id));
                    }
                }
            }
            NodeMessage::MeshPeerLeft { app, room, id } => {
                let key = (app, room);
                let gone = self.am.mesh_cluster.remote.get_mut(&key).and_then(|list| {
                    let at = list.iter().position(|(m, n)| *m == id && n == from)?;
                    list.remove(at);
                    Some(())
                });
                if gone.is_none() {
                    self.cluster.stale += 1;
                    return;
                }
                self.cluster.received += 1;
                let members = self.am.mesh.get(&key).cloned().unwrap_or_default();
                self.mesh_tell_left(&members, &key.1, PeerId(id));
            }
            NodeMessage::MeshRelay {
                app,
                room,
                to,
                from: sender,
                msg,
            } => {
                let key = (app, room);
                let known = self
                    .am
                    .mesh_cluster
                    .remote
                    .get(&key)
                    .is_some_and(|l| l.iter().any(|(m, n)| *m == sender && n == from));
                match self.mesh_member(&key, PeerId(to)) {
                    Some(Ok(member)) if known => {
                        self.cluster.received += 1;
                        self.mesh_deliver(member, key.1, PeerId(sender), msg);
                    }
                    _ => self.cluster.stale += 1,
                }
            }
            _ => {}
        }
    }

    /// `peerJoined` of member `id` to `member`.
    fn mesh_announce(&mut self, member: ConnId, stream_id: &StreamId, id: PeerId) {
        self.mesh_send(
            member,
            MeshMessage::Notification {
                definition: MeshNotification::PeerJoined,
                stream_id: stream_id.clone(),
                peer_id: id,
                peers: None,
            },
        );
    }

    /// The roster of `conn`'s join of `key`: it is member `me`; `peers` were there before
    /// it (member id, node, may offer), in join order.
    fn mesh_roster(
        &mut self,
        key: (App, StreamId),
        conn: ConnId,
        me: u64,
        peers: Vec<(u64, NodeId, bool)>,
        now: Instant,
    ) {
        if !self.mesh_pending_is(conn, &key) {
            // Left, or moved on, while the place was being taken: give it back (the others
            // hear `peerLeft` after the `peerJoined` they heard).
            self.cluster.stale += 1;
            return self.cluster_out(ClusterOutput::MeshLeave {
                conn,
                app: key.0,
                room: key.1,
                id: me,
            });
        }
        self.cluster.received += 1;
        let Some(pending) = self.am.mesh_cluster.pending.remove(&conn) else {
            return;
        };
        let local_node = self.node_id().cloned();
        let members = self.am.mesh.get(&key).cloned().unwrap_or_default();
        self.am.mesh.entry(key.clone()).or_default().push(conn);
        self.am.mesh_cluster.ids.insert(conn, me);
        self.enter(conn, &key.1, pending.grant, now);
        let ids = peers.iter().map(|(id, _, _)| PeerId(*id)).collect();
        self.mesh_joined(conn, key.1.clone(), ids);
        let newcomer = (conn, PeerId(me));
        for (id, node, offer) in peers {
            if Some(&node) == local_node.as_ref() {
                let Some(&older) = members.iter().find(|&&c| self.mesh_id(c).0 == id) else {
                    continue; // gone meanwhile: its leave is on its way
                };
                self.mesh_announce(older, &key.1, PeerId(me));
                let older = (older, PeerId(id), self.may_offer(older));
                self.mesh_pair_start(&key.1, older, newcomer);
            } else {
                let remote = self.am.mesh_cluster.remote.entry(key.clone()).or_default();
                if !remote.iter().any(|(m, _)| *m == id) {
                    remote.push((id, node));
                }
                // The older member's node starts the pair when it may offer; else, when
                // the newcomer may, this node does.
                if !offer && self.may_offer(conn) {
                    self.mesh_start(conn, &key.1, PeerId(id));
                }
            }
        }
    }

    /// `conn` (member `id` of `key`) left: the registry frees its place and tells the other
    /// nodes; `last`: no member of the room is left here.
    pub(super) fn mesh_left_cluster(
        &mut self,
        conn: ConnId,
        key: &(App, StreamId),
        id: PeerId,
        last: bool,
    ) {
        if self.am.mesh_cluster.ids.remove(&conn).is_none() {
            return;
        }
        if last {
            self.am.mesh_cluster.remote.remove(key);
        }
        self.cluster_out(ClusterOutput::MeshLeave {
            conn,
            app: key.0.clone(),
            room: key.1.clone(),
            id: id.0,
        });
    }

    /// `node` died: its members leave every roster here (`peerLeft`).
    pub(super) fn mesh_node_down(&mut self, node: &NodeId) {
        let mut rooms: Vec<(App, StreamId)> = self
            .am
            .mesh_cluster
            .remote
            .iter()
            .filter(|(_, list)| list.iter().any(|(_, n)| n == node))
            .map(|(k, _)| k.clone())
            .collect();
        rooms.sort_unstable();
        for key in rooms {
            let Some(list) = self.am.mesh_cluster.remote.get_mut(&key) else {
                continue;
            };
            let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, n)| n == node);
            *list = kept;
            let members = self.am.mesh.get(&key).cloned().unwrap_or_default();
            for (id, _) in gone {
                self.cluster.partner_node_down += 1;
                self.mesh_tell_left(&members, &key.1, PeerId(id));
            }
        }
    }

    /// The nodes that hold members of this node's mesh rooms.
    pub(super) fn mesh_remote_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.am
            .mesh_cluster
            .remote
            .values()
            .flatten()
            .map(|(_, n)| n.clone())
    }

    /// Takes every mesh place held here again ([`Hub::handle_cluster_reregister`]).
    pub(super) fn mesh_reregister(&mut self) {
        let mut places: Vec<(App, StreamId, ConnId, u64)> = self
            .am
            .mesh
            .iter()
            .flat_map(|(k, members)| {
                members.iter().filter_map(|c| {
                    let id = self.am.mesh_cluster.ids.get(c)?;
                    Some((k.0.clone(), k.1.clone(), *c, *id))
                })
            })
            .collect();
        places.sort_unstable();
        for (app, room, conn, id) in places {
            let offer = self.may_offer(conn);
            self.cluster_out(ClusterOutput::MeshJoin(MeshJoin {
                conn,
                app,
                room,
                id: Some(id),
                max: usize::MAX,
                offer,
            }));
        }
    }
}
