//! Mesh rooms in cluster mode: members on several nodes, ids from the registry, one offer
//! per pair, relays across nodes, leaving and node death.

use super::super::joined as joined_1_1;
use super::super::mesh::{JOIN, joined, peer_joined, peer_left, start};
use super::*;
use crate::hub::cluster::MeshJoin;

impl Cluster {
    /// The mesh join and leave scripts' rules.
    pub(super) fn mesh_registry(&mut self, i: usize, me: &NodeId, out: ClusterOutput) {
        match out {
            ClusterOutput::MeshJoin(MeshJoin {
                conn,
                app,
                room,
                id,
                max,
                offer,
            }) => {
                let key = (app.clone(), room.clone());
                if !self.up {
                    if id.is_none() {
                        let h = &mut self.nodes[i].1;
                        h.hub
                            .handle_mesh_join_reply(conn, &key, JoinOutcome::Unavailable);
                    }
                    return;
                }
                let dead = self.dead.clone();
                let name = (app.to_string(), room.to_string());
                let seats = self.seats.get(&name).map_or(&[][..], Vec::as_slice);
                if id.is_none() && seats.iter().any(|(n, _, _)| !dead.contains(n)) {
                    let h = &mut self.nodes[i].1;
                    return h
                        .hub
                        .handle_mesh_join_reply(conn, &key, JoinOutcome::OtherMode);
                }
                let members = self
                    .mesh_rooms
                    .entry((app.to_string(), room.to_string()))
                    .or_default();
                members.retain(|(m, n, _, _)| !dead.contains(n) && Some(*m) != id);
                if id.is_none() && members.len() >= max {
                    let h = &mut self.nodes[i].1;
                    return h.hub.handle_mesh_join_reply(conn, &key, JoinOutcome::Full);
                }
                let peers: Vec<(u64, NodeId, bool)> = members
                    .iter()
                    .map(|(m, n, _, o)| (*m, n.clone(), *o))
                    .collect();
                let mut nodes: Vec<NodeId> = Vec::new();
                for (_, n, _) in &peers {
                    if n != me && !nodes.contains(n) {
                        nodes.push(n.clone());
                    }
                }
                let new = id.is_none();
                // A fresh id, unique in the room (the counter starts over when Redis does).
                let id = id.unwrap_or_else(|| {
                    loop {
                        self.mesh_seq += 1;
                        if !members.iter().any(|(m, ..)| *m == self.mesh_seq) {
                            break self.mesh_seq;
                        }
                    }
                });
                members.push((id, me.clone(), conn.0, offer));
                self.nodes[i]
                    .1
                    .hub
                    .handle_mesh_join_reply(conn, &key, JoinOutcome::Queued);
                if new {
                    let roster = NodeMessage::MeshRoster {
                        app: app.clone(),
                        room: room.clone(),
                        to: conn.0,
                        me: id,
                        peers,
                    };
                    self.bus.push_back((me.clone(), me.clone(), roster, None));
                    for n in nodes {
                        let (app, room) = (app.clone(), room.clone());
                        let msg = NodeMessage::MeshPeerJoined {
                            app,
                            room,
                            offer,
                            id,
                        };
                        self.bus.push_back((n, me.clone(), msg, None));
                    }
                }
            }
            ClusterOutput::MeshLeave {
                conn,
                app,
                room,
                id,
            } => {
                if !self.up {
                    return;
                }
                let members = self
                    .mesh_rooms
                    .entry((app.to_string(), room.to_string()))
                    .or_default();
                members.retain(|(m, n, c, _)| !(*m == id && n == me && *c == conn.0));
                let mut nodes: Vec<NodeId> = Vec::new();
                for (_, n, _, _) in members.iter() {
                    if n != me && !nodes.contains(n) {
                        nodes.push(n.clone());
                    }
                }
                for n in nodes {
                    let (app, room) = (app.clone(), room.clone());
                    let msg = NodeMessage::MeshPeerLeft { app, room, id };
                    self.bus.push_back((n, me.clone(), msg, None));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A new connection `conn` on node `n` joins mesh room "m"; what clients got.
    fn mesh_join(&mut self, n: usize, conn: u64) -> Vec<(usize, u64, String)> {
        self.connect(n, conn);
        self.send(n, conn, JOIN)
    }

    /// Members of "m" in the registry: (id, node index, conn).
    fn registry_members(&self) -> Vec<(u64, usize, u64)> {
        let key = ("A".to_string(), "m".to_string());
        self.mesh_rooms.get(&key).map_or(Vec::new(), |m| {
            m.iter()
                .map(|(id, n, c, _)| (*id, self.index(n).unwrap(), *c))
                .collect()
        })
    }
}

fn got(list: &[(usize, u64, String)]) -> Vec<(usize, u64, String)> {
    let mut list = list.to_vec();
    list.sort();
    list
}

fn offer_to(id: u64) -> String {
    format!(
        r#"{{"command":"takeConfiguration","streamId":"m","type":"offer","sdp":"v=0","peerId":"{id}"}}"#
    )
}

fn offer_from(id: u64) -> String {
    format!(
        r#"{{"command":"takeConfiguration","streamId":"m","type":"offer","sdp":"v=0","idMapping":{{}},"peerId":"{id}"}}"#
    )
}

/// Three nodes, four members: ids 1 (node 0, conn 11), 2 (node 1, conn 21), 3 (node 0,
/// conn 12), 4 (node 2, conn 31).
fn four_on_three_nodes() -> Cluster {
    let mut c = Cluster::new(3);
    for (n, conn) in [(0, 11), (1, 21), (0, 12), (2, 31)] {
        c.mesh_join(n, conn);
    }
    c
}

#[test]
fn members_on_three_nodes_get_registry_ids_rosters_and_one_start_per_pair() {
    let mut c = Cluster::new(3);
    assert_eq!(c.mesh_join(0, 11), [(0, 11, joined(1, &[]))]);
    // A member on another node: the older one offers, told by its own node.
    assert_eq!(
        got(&c.mesh_join(1, 21)),
        [
            (0, 11, peer_joined(2)),
            (0, 11, start(2)),
            (1, 21, joined(2, &[1]))
        ]
    );
    // A second member on node 0: its pair with member 1 is decided on node 0, its pair with
    // member 2 on node 1.
    assert_eq!(
        got(&c.mesh_join(0, 12)),
        [
            (0, 11, peer_joined(3)),
            (0, 11, start(3)),
            (0, 12, joined(3, &[1, 2])),
            (1, 21, peer_joined(3)),
            (1, 21, start(3)),
        ]
    );
    let all = c.mesh_join(2, 31);
    assert!(all.contains(&(2, 31, joined(4, &[1, 2, 3]))), "{all:?}");
    for (n, conn, older) in [(0, 11, 1), (1, 21, 2), (0, 12, 3)] {
        all_got(&all, &peer_joined(4), &[(n, conn)]);
        all_got(&all, &start(4), &[(n, conn)]);
        assert!(!all.contains(&(2, 31, start(older))), "{all:?}");
    }
    assert_eq!(all.len(), 7, "{all:?}");
    assert_eq!(
        c.registry_members(),
        [(1, 0, 11), (2, 1, 21), (3, 0, 12), (4, 2, 31)]
    );
    // A join again: the roster again, every member named by its registry id.
    assert_eq!(c.send(1, 21, JOIN), [(1, 21, joined(2, &[1, 3, 4]))]);
}

#[test]
fn relays_cross_nodes_to_the_named_member_stamped_with_their_sender() {
    let mut c = four_on_three_nodes();
    let sent_before = c.nodes[1].1.hub.cluster_stats().sent;
    // Across nodes: 21 (member 2) to member 3 on node 0; a forged sender is overwritten.
    assert_eq!(c.send(1, 21, &offer_to(3)), [(0, 12, offer_from(2))]);
    assert_eq!(c.nodes[1].1.hub.cluster_stats().sent, sent_before + 1);
    // On one node: member 3 to member 1, no hop.
    assert_eq!(c.send(0, 12, &offer_to(1)), [(0, 11, offer_from(3))]);
    // Node 2's member to each of the others.
    for (n, conn, id) in [(0, 11, 1), (1, 21, 2), (0, 12, 3)] {
        assert_eq!(c.send(2, 31, &offer_to(id)), [(n, conn, offer_from(4))]);
    }
    // A connection id is not a member id: no member 11 or 31; nor is the sender itself.
    for id in [11, 31, 4] {
        let out = c.send(2, 31, &offer_to(id));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].1 == 31 && out[0].2.contains("no_peer_associated_before"),
            "{out:?}"
        );
    }
}

#[test]
fn the_room_size_counts_every_node() {
    let mut c = Cluster::with(
        3,
        Config {
            max_mesh_peers: 3,
            ..Config::default()
        },
    );
    for (n, conn) in [(0, 11), (1, 21), (2, 31)] {
        c.mesh_join(n, conn);
    }
    for (n, conn) in [(0, 12), (1, 22)] {
        let out = c.mesh_join(n, conn);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].1 == conn && out[0].2.contains("NoSpaceForNewPeer"),
            "{out:?}"
        );
    }
    assert_eq!(c.registry_members().len(), 3);
    // One leaves: the place is free for a member on any node.
    c.send(2, 31, r#"{"command":"leave","streamId":"m"}"#);
    let out = c.mesh_join(1, 23);
    assert!(out.contains(&(1, 23, joined(4, &[1, 2]))), "{out:?}");
}

#[test]
fn a_member_that_leaves_closes_or_dies_with_its_node_is_peer_left_everywhere() {
    let mut c = four_on_three_nodes();
    // A leave: the others on every node hear it; it is out of the registry.
    let out = c.send(1, 21, r#"{"command":"leave","streamId":"m"}"#);
    all_got(&out, &peer_left(2), &[(0, 11), (0, 12), (2, 31)]);
    assert!(!c.registry_members().iter().any(|m| m.0 == 2));
    // A closed connection: the same.
    c.nodes[0].1.hub.handle_disconnect(ConnId(12));
    let out = c.run();
    all_got(&out, &peer_left(3), &[(0, 11), (2, 31)]);
    assert_eq!(out.len(), 2, "{out:?}");
    // Node 2 dies: its member leaves every roster, counted; the room goes on.
    let out = c.kill(2);
    assert_eq!(out, [(0, 11, peer_left(4))]);
    assert_eq!(c.nodes[0].1.hub.cluster_stats().partner_node_down, 1);
    let out = c.mesh_join(1, 22);
    assert_eq!(
        got(&out),
        [
            (0, 11, peer_joined(5)),
            (0, 11, start(5)),
            (1, 22, joined(5, &[1]))
        ]
    );
    // Relays to a member that is gone: refused at its sender's node.
    let out = c.send(0, 11, &offer_to(4));
    assert!(out[0].2.contains("no_peer_associated_before"), "{out:?}");
}

#[test]
fn a_member_gone_while_its_place_was_being_taken_gives_the_place_back() {
    let mut c = Cluster::new(2);
    c.mesh_join(0, 11);
    c.connect(1, 21);
    c.input(1, 21, JOIN);
    c.nodes[1].1.hub.handle_disconnect(ConnId(21));
    let out = c.run();
    // The registry had placed it: member 1 hears it come and go; the place is free.
    assert_eq!(
        out,
        [
            (0, 11, peer_joined(2)),
            (0, 11, start(2)),
            (0, 11, peer_left(2))
        ]
    );
    assert_eq!(c.registry_members(), [(1, 0, 11)]);
}

#[test]
fn without_the_registry_mesh_joins_are_refused_and_members_on_one_node_go_on() {
    let mut c = Cluster::new(2);
    c.mesh_join(0, 11);
    c.mesh_join(0, 12);
    c.up = false;
    let out = c.mesh_join(1, 21);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].2.contains("cluster_unavailable"), "{out:?}");
    assert_eq!(c.send(0, 12, &offer_to(1)), [(0, 11, offer_from(2))]);
    // Redis back, empty: node 0 takes its members' places again under the same ids; a
    // newcomer gets a fresh id and meets both.
    c.up = true;
    c.mesh_rooms.clear();
    c.mesh_seq = 0;
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    assert_eq!(c.run(), []);
    assert_eq!(c.registry_members(), [(1, 0, 11), (2, 0, 12)]);
    let out = c.mesh_join(1, 21);
    assert!(out.contains(&(1, 21, joined(3, &[1, 2]))), "{out:?}");
    all_got(&out, &start(3), &[(0, 11), (0, 12)]);
}

#[test]
fn a_room_keeps_its_mode_across_nodes() {
    let mut c = Cluster::new(2);
    c.mesh_join(0, 11);
    // A 1:1 join of the mesh room on another node: refused, nothing taken.
    c.connect(1, 21);
    let out = c.send(1, 21, r#"{"command":"join","streamId":"m"}"#);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].2.contains("room_mode_mismatch") && out[0].2.contains("mesh room"),
        "{out:?}"
    );
    // A mesh join of a 1:1 room held on another node: the same.
    c.join(0, 12, "r");
    c.connect(1, 22);
    let out = c.send(1, 22, r#"{"command":"join","streamId":"r","mesh":true}"#);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].2.contains("room_mode_mismatch") && out[0].2.contains("1:1 room"),
        "{out:?}"
    );
    // Once the mesh room's last member left, it may become a 1:1 room.
    c.send(0, 11, r#"{"command":"leave","streamId":"m"}"#);
    let out = c.send(1, 21, r#"{"command":"join","streamId":"m"}"#);
    assert_eq!(out, [(1, 21, joined_1_1(21, "m").1)]);
}
