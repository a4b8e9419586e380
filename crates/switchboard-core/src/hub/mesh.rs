//! Mesh rooms of the Ant Media dialect (Switchboard's extension, docs/PROTOCOLS.md "Mesh
//! rooms"): a `join` with `mesh: true` enters a room of up to [`Config::max_mesh_peers`]
//! members, each with a peer connection to every other. The joiner gets its own `peerId` and
//! the roster; every member already there gets `peerJoined` and then `start` for the
//! newcomer: in each pair the member that was there first makes the offer, so no pair ever
//! negotiates twice. Offers, answers, candidates and peer messages name the member they are
//! for in `peerId`, and arrive with `peerId` set to their sender (stamped here: a member
//! cannot speak for another). A member that leaves, closes, goes idle or is kicked is
//! `peerLeft` to the others. In cluster mode a room's members may be on several nodes
//! (`cluster_mesh.rs`): member ids are then given by the registry, not connection ids.

use switchboard_proto::antmedia::{MeshMessage, MeshNotification, PeerId};
use switchboard_proto::cluster::AmRelayed;

use super::*;

/// `room_mode_mismatch`'s reason for a mesh join of a 1:1 room.
pub(super) const ONE_TO_ONE_ROOM: &str = "this room is a 1:1 room: join it without \"mesh\"";
/// `room_mode_mismatch`'s reason for a 1:1 join of a mesh room.
pub(super) const MESH_ROOM: &str = "this room is a mesh room: join it with \"mesh\": true";

impl Hub {
    /// `conn` is in `stream_id` now (1:1 or mesh): its grant and `max_call` timer start, and
    /// the edge hears of the join.
    pub(super) fn enter(
        &mut self,
        conn: ConnId,
        stream_id: &StreamId,
        grant: Option<Claims>,
        now: Instant,
    ) {
        let call_deadline = grant.as_ref().and_then(|g| g.max_call).map(|d| now + d);
        if let Some(c) = self.am.conns.get_mut(&conn) {
            c.room = Some(stream_id.clone());
            if grant.is_some() {
                let a = c.auth.get_or_insert_with(Box::default);
                a.grant = grant;
                a.call_deadline = call_deadline;
            }
            self.events
                .joined(conn, Dialect::AntMedia, c.app.as_str(), stream_id.as_str());
        }
        if let Some(at) = call_deadline {
            self.call_deadlines.insert((at, conn));
        }
    }

    /// Why a join cannot enter `key` as asked: a mesh join of a 1:1 room, or a 1:1 join of a
    /// mesh room (as this node knows them).
    pub(super) fn mode_mismatch(&self, key: &(App, StreamId), mesh: bool) -> Option<&'static str> {
        if mesh && self.am.rooms.contains_key(key) {
            return Some(ONE_TO_ONE_ROOM);
        }
        if !mesh && self.am.mesh.contains_key(key) {
            return Some(MESH_ROOM);
        }
        None
    }

    /// A mesh join of `key` (its mode checked).
    pub(super) fn mesh_join(
        &mut self,
        conn: ConnId,
        key: (App, StreamId),
        grant: Option<Claims>,
        now: Instant,
    ) {
        let stream_id = key.1.clone();
        let members = self.am.mesh.get(&key).map_or(&[][..], Vec::as_slice);
        if members.contains(&conn) {
            // Joined already: the roster again.
            let others = self.mesh_others(conn, &key);
            return self.mesh_joined(conn, stream_id, others);
        }
        if self.node_id().is_some() {
            return self.mesh_join_cluster(conn, key, grant);
        }
        if members.len() >= self.config.max_mesh_peers {
            let reason = format!("the mesh room is full ({} members)", members.len());
            return self.error(
                conn,
                ErrorCode::NoSpaceForNewPeer,
                Some(&stream_id),
                Some(&reason),
            );
        }
        if let Some(old) = self.am.conns.get(&conn).and_then(|c| c.room.clone()) {
            self.leave(conn, &old, LeaveReason::Moved);
        }
        let members = self.am.mesh.entry(key).or_default();
        let others = members.clone();
        members.push(conn);
        self.enter(conn, &stream_id, grant, now);
        let ids = others.iter().map(|c| PeerId(c.0)).collect();
        self.mesh_joined(conn, stream_id.clone(), ids);
        for other in others {
            self.mesh_send(
                other,
                MeshMessage::Notification {
                    definition: MeshNotification::PeerJoined,
                    stream_id: stream_id.clone(),
                    peer_id: PeerId(conn.0),
                    peers: None,
                },
            );
            let older = (other, PeerId(other.0), self.may_offer(other));
            self.mesh_pair_start(&stream_id, older, (conn, PeerId(conn.0)));
        }
    }

    /// Who starts the pair of an `older` member (local connection if any, id, may offer) and
    /// a newcomer (connection, id), both held here as far as they are told: the member that
    /// was there first offers, unless only the newcomer's token allows offers; when neither
    /// may offer, nobody does. A member on another node is told by its own node.
    pub(super) fn mesh_pair_start(
        &mut self,
        stream_id: &StreamId,
        older: (ConnId, PeerId, bool),
        newcomer: (ConnId, PeerId),
    ) {
        if older.2 {
            self.mesh_start(older.0, stream_id, newcomer.1);
        } else if self.may_offer(newcomer.0) {
            self.mesh_start(newcomer.0, stream_id, older.1);
        }
    }

    /// `start`: `offerer` makes the offer to member `to`.
    pub(super) fn mesh_start(&mut self, offerer: ConnId, stream_id: &StreamId, to: PeerId) {
        self.mesh_send(
            offerer,
            MeshMessage::Start {
                stream_id: stream_id.clone(),
                peer_id: to,
            },
        );
    }

    /// `joined`, with the receiver's own id and the other members.
    pub(super) fn mesh_joined(&mut self, conn: ConnId, stream_id: StreamId, others: Vec<PeerId>) {
        let me = self.mesh_id(conn);
        self.mesh_send(
            conn,
            MeshMessage::Notification {
                definition: MeshNotification::Joined,
                stream_id,
                peer_id: me,
                peers: Some(others),
            },
        );
    }

    /// A relay in a mesh room: to the member `to` names, stamped with its sender.
    pub(super) fn mesh_relay(
        &mut self,
        conn: ConnId,
        key: &(App, StreamId),
        to: Option<PeerId>,
        msg: AmRelayed,
    ) {
        let Some(to) = to else {
            return self.error(
                conn,
                ErrorCode::InvalidMessage,
                Some(&key.1),
                Some("in a mesh room, \"peerId\" names the member this is for"),
            );
        };
        let from = self.mesh_id(conn);
        let member = match self.mesh_member(key, to) {
            Some(Ok(member)) if member != conn => member,
            Some(Err(node)) => return self.mesh_relay_out(conn, key, node, (from, to), msg),
            _ => {
                return self.error(
                    conn,
                    ErrorCode::NoPeerAssociatedBefore,
                    Some(&key.1),
                    Some("no other member of this room has this peerId"),
                );
            }
        };
        self.stats.relayed_by_dialect.antmedia += 1;
        self.mesh_deliver(member, key.1.clone(), from, msg);
    }

    /// Hands a relay from member `from` to `member`, held here.
    pub(super) fn mesh_deliver(
        &mut self,
        member: ConnId,
        stream_id: StreamId,
        from: PeerId,
        msg: AmRelayed,
    ) {
        let relay = switchboard_proto::antmedia::MeshRelay {
            msg: msg.into_server_message(stream_id),
            peer_id: from,
        };
        self.send(member, ServerMessage::MeshRelay(Box::new(relay)));
    }

    /// Takes `conn` out of the mesh room `key` (its own state already cleared, the edge
    /// told): the others get `peerLeft`; the last one out ends the room.
    pub(super) fn mesh_remove(&mut self, conn: ConnId, key: &(App, StreamId)) {
        let Some(members) = self.am.mesh.get_mut(key) else {
            return;
        };
        let Some(i) = members.iter().position(|&c| c == conn) else {
            return;
        };
        members.remove(i);
        let others = members.clone();
        if others.is_empty() {
            self.am.mesh.remove(key);
        }
        let id = self.mesh_id(conn);
        self.mesh_left_cluster(conn, key, id, others.is_empty());
        self.mesh_tell_left(&others, &key.1, id);
    }

    /// Tells `members` that member `id` left.
    pub(super) fn mesh_tell_left(&mut self, members: &[ConnId], stream_id: &StreamId, id: PeerId) {
        for &other in members {
            self.mesh_send(
                other,
                MeshMessage::Notification {
                    definition: MeshNotification::PeerLeft,
                    stream_id: stream_id.clone(),
                    peer_id: id,
                    peers: None,
                },
            );
        }
    }

    pub(super) fn mesh_send(&mut self, conn: ConnId, msg: MeshMessage) {
        self.send(conn, ServerMessage::Mesh(Box::new(msg)));
    }
}
