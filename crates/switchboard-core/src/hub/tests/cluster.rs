//! Cluster mode's rules: several hubs (nodes) share a seat registry and pass messages. The
//! registry and the message bus here are in-memory stand-ins for Redis with its rules (a
//! claim is atomic; seats of dead nodes do not count; messages between two nodes keep their
//! order); the real ones are tested in `crates/switchboard/tests/cluster.rs`.

use std::collections::VecDeque;

use switchboard_proto::cluster::{Batch, NodeId, NodeMessage, PjRelayed};

use super::*;
use crate::hub::cluster::{PjClaimOutcome, PjSendOutcome};

mod mesh;

/// A seat in the registry: node, conn, may offer.
type Held = (NodeId, u64, bool);

/// A place in a mesh room in the registry: member id, node, conn, may offer.
type MeshPlace = (u64, NodeId, u64, bool);

/// Nodes, a registry and a bus.
struct Cluster {
    nodes: Vec<(NodeId, Harness)>,
    /// (app, room) → seats in the order taken: (node, conn, offer).
    seats: HashMap<(String, String), Vec<Held>>,
    /// Messages on their way: (to, from, message, sender conn).
    bus: VecDeque<(NodeId, NodeId, NodeMessage, Option<ConnId>)>,
    /// Nodes that died: their seats no longer count.
    dead: Vec<NodeId>,
    /// Whether the registry answers.
    up: bool,
    /// What clients received: (node index, conn, text).
    got: Vec<(usize, u64, String)>,
    /// In which order nodes' outputs reach the registry and the bus.
    order: Vec<usize>,
    /// socket.io ids: id → (node, conn, room).
    sio_ids: HashMap<String, (NodeId, u64, Option<String>)>,
    /// socket.io rooms: room → members (id, node, conn), in join order.
    sio_rooms: HashMap<String, Vec<(String, NodeId, u64)>>,
    /// PeerJS ids: id → (node, conn, token).
    pj_ids: HashMap<String, (NodeId, u64, String)>,
    /// PeerJS queues in the registry: id → (node, tag, message).
    pj_queues: HashMap<String, Vec<(NodeId, u64, PjRelayed)>>,
    /// Relays the registry routed (socket.io routes and PeerJS sends).
    routed: usize,
    /// Mesh rooms: (app, room) → members (id, node, conn, may offer), in join order.
    mesh_rooms: HashMap<(String, String), Vec<MeshPlace>>,
    /// The registry's last member id.
    mesh_seq: u64,
}

/// The nodes other than `me` that hold members of a room, each once.
fn other_nodes(members: &[(String, NodeId, u64)], me: &NodeId) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = Vec::new();
    for (_, n, _) in members {
        if n != me && !nodes.contains(n) {
            nodes.push(n.clone());
        }
    }
    nodes
}

/// Removes `id` if this node's `conn` still holds it (the scripts' compare-and-delete).
fn forget<T>(ids: &mut HashMap<String, (NodeId, u64, T)>, id: &str, me: &NodeId, conn: ConnId) {
    if ids.get(id).is_some_and(|(n, c, _)| n == me && *c == conn.0) {
        ids.remove(id);
    }
}

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

impl Cluster {
    fn new(n: usize) -> Self {
        Self::with(n, Config::default())
    }

    /// `n` nodes, and PeerJS id "alice" (token "ta") connected on node 0 as connection 1.
    fn with_alice(n: usize) -> Self {
        let mut c = Self::new(n);
        c.pj_connect(0, 1, "alice", "ta");
        c
    }

    /// `n` nodes with `config` (and each its node id).
    fn with(n: usize, config: Config) -> Self {
        let nodes = (0..n)
            .map(|i| {
                let id = node(&format!("n{i}"));
                let h = Harness::with(Config {
                    cluster: Some(id.clone()),
                    ..config.clone()
                });
                (id, h)
            })
            .collect();
        Self {
            nodes,
            seats: HashMap::new(),
            bus: VecDeque::new(),
            dead: Vec::new(),
            up: true,
            got: Vec::new(),
            order: (0..n).collect(),
            sio_ids: HashMap::new(),
            sio_rooms: HashMap::new(),
            pj_ids: HashMap::new(),
            pj_queues: HashMap::new(),
            routed: 0,
            mesh_rooms: HashMap::new(),
            mesh_seq: 0,
        }
    }

    fn connect(&mut self, n: usize, conn: u64) {
        self.nodes[n].1.connect(conn, "A");
    }

    /// A client frame, without running the cluster (to queue racing inputs).
    fn input(&mut self, n: usize, conn: u64, text: &str) {
        let h = &mut self.nodes[n].1;
        let now = h.now;
        h.hub.handle_am_message(ConnId(conn), decode(text), now);
    }

    /// A client frame, then everything that follows from it; what clients got.
    fn send(&mut self, n: usize, conn: u64, text: &str) -> Vec<(usize, u64, String)> {
        self.input(n, conn, text);
        self.run()
    }

    /// Two nodes: a pair on node 0 in room "local" (1 and 2), and a pair across the nodes
    /// in room "r" (3 on node 0, 4 on node 1).
    fn local_and_cross_pairs() -> Self {
        let mut c = Self::new(2);
        for (n, conn, room) in [(0, 1, "local"), (0, 2, "local"), (0, 3, "r"), (1, 4, "r")] {
            c.join(n, conn, room);
        }
        c
    }

    /// A new connection `conn` on node `n` joins `room`; what clients got.
    fn join(&mut self, n: usize, conn: u64, room: &str) -> Vec<(usize, u64, String)> {
        self.connect(n, conn);
        self.send(n, conn, &join(room))
    }

    /// A new connection `conn` on node `n` joins `room` as its second peer: it gets `joined`,
    /// and the first peer, `first` = (node, conn), gets `start`.
    #[track_caller]
    fn joins_second(&mut self, n: usize, conn: u64, room: &str, first: (usize, u64)) {
        self.connect(n, conn);
        assert_eq!(
            self.send(n, conn, &join(room)),
            vec![
                at(n, joined(conn, room)),
                at(first.0, cmd(first.1, "start", room))
            ]
        );
    }

    /// Runs outputs, claims and messages until nothing is left; returns what clients got.
    fn run(&mut self) -> Vec<(usize, u64, String)> {
        loop {
            let mut busy = false;
            for i in self.order.clone() {
                for out in self.nodes[i].1.outputs() {
                    busy = true;
                    self.carry_out(i, out);
                }
            }
            if let Some((to, from, msg, _)) = self.bus.pop_front() {
                busy = true;
                if let Some(i) = self.index(&to) {
                    // As the receiving node reads it off its channel: relays arrive as the
                    // frames their receivers get.
                    let wire = Batch::encode(&from, [&msg]);
                    let h = &mut self.nodes[i].1;
                    let now = h.now;
                    for msg in Batch::read(&wire).unwrap().msgs {
                        h.hub.handle_node_message(&from, msg, now);
                    }
                }
            }
            if !busy {
                return std::mem::take(&mut self.got);
            }
        }
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|(n, _)| n == id)
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        let me = self.nodes[i].0.clone();
        match out {
            Output::AmSend { conn, msg } => self.got.push((i, conn.0, msg.encode())),
            Output::SioEmit { conn, emit } => {
                let (event, payload) = emit.into_wire();
                self.got
                    .push((i, conn.0, format!("{event} {}", payload.get())));
            }
            Output::PjSend { conn, msg } => self.got.push((i, conn.0, msg.encode())),
            Output::Frame { conn, frame } => self.got.push((i, conn.0, frame.into_string())),
            Output::SioAck { conn, ack, reply } => {
                self.got
                    .push((i, conn.0, format!("ack{} {}", ack.0, reply.to_json())));
            }
            Output::Close { conn, reason } => {
                self.got.push((i, conn.0, format!("CLOSE {reason:?}")));
            }
            Output::Cluster(ClusterOutput::Claim(claim)) => {
                let reply = self.claim(&me, &claim);
                let h = &mut self.nodes[i].1;
                let now = h.now;
                h.hub.handle_am_seat(claim, reply, now);
            }
            Output::Cluster(ClusterOutput::Release { conn, app, room }) => {
                if self.up {
                    let key = (app.to_string(), room.to_string());
                    if let Some(s) = self.seats.get_mut(&key) {
                        s.retain(|(n, c, _)| !(*n == me && *c == conn.0));
                    }
                }
            }
            Output::Cluster(ClusterOutput::Send { node, from, msg }) => {
                if self.up && !self.dead.contains(&node) {
                    self.bus.push_back((node, me, msg, from));
                } else {
                    self.nodes[i].1.hub.handle_node_unreachable(from, msg);
                }
            }
            Output::Cluster(ClusterOutput::PurgeOwn) => {
                for s in self.seats.values_mut() {
                    s.retain(|(n, _, _)| *n != me);
                }
                self.sio_ids.retain(|_, (n, _, _)| *n != me);
                for m in self.sio_rooms.values_mut() {
                    m.retain(|(_, n, _)| *n != me);
                }
                for m in self.mesh_rooms.values_mut() {
                    m.retain(|(_, n, _, _)| *n != me);
                }
            }
            Output::Cluster(
                out @ (ClusterOutput::MeshJoin(_) | ClusterOutput::MeshLeave { .. }),
            ) => {
                self.mesh_registry(i, &me, out);
            }
            Output::Cluster(
                out @ (ClusterOutput::PjClaim(_)
                | ClusterOutput::PjUnregister { .. }
                | ClusterOutput::PjSend { .. }
                | ClusterOutput::PjExpire { .. }),
            ) => self.pj_registry(i, &me, out),
            Output::Cluster(out) => self.sio_registry(i, &me, out),
        }
    }

    /// The socket.io scripts' rules.
    fn sio_registry(&mut self, i: usize, me: &NodeId, out: ClusterOutput) {
        let live = |dead: &[NodeId], n: &NodeId| !dead.contains(n);
        match out {
            ClusterOutput::SioRegister { conn, id } => {
                if !self.up {
                    return;
                }
                let old = self
                    .sio_ids
                    .insert(id.to_string(), (me.clone(), conn.0, None));
                if let Some((node, _, _)) = old {
                    if node != *me && live(&self.dead, &node) {
                        self.bus.push_back((
                            node,
                            me.clone(),
                            NodeMessage::SioReplaced { id },
                            None,
                        ));
                    }
                }
            }
            ClusterOutput::SioUnregister { conn, id } => {
                if self.up {
                    forget(&mut self.sio_ids, &id, me, conn);
                }
            }
            ClusterOutput::SioRoute(route) => {
                self.routed += 1;
                let outcome = if !self.up {
                    RouteOutcome::Unavailable
                } else {
                    match self.sio_ids.get(&*route.target) {
                        Some((node, _, room)) if live(&self.dead, node) => {
                            let allowed = match &route.scope {
                                RouteScope::Any => true,
                                RouteScope::Room(rule) => {
                                    room.as_deref().is_some_and(|r| rule.allows(r))
                                }
                            };
                            if allowed {
                                let msg = NodeMessage::SioRelay {
                                    to: route.target.clone(),
                                    event: route.event,
                                    payload: route.payload.clone(),
                                    back: None,
                                };
                                self.bus.push_back((node.clone(), me.clone(), msg, None));
                                RouteOutcome::Delivered(node.clone())
                            } else {
                                RouteOutcome::WrongRoom
                            }
                        }
                        _ => RouteOutcome::Unknown,
                    }
                };
                let h = &mut self.nodes[i].1;
                h.hub
                    .handle_sio_routed(route.conn, route.ack, route.event, &route.target, outcome);
            }
            ClusterOutput::SioJoin(SioJoin {
                conn,
                id,
                room,
                max,
                announce,
            }) => {
                let outcome = if self.up {
                    let dead = self.dead.clone();
                    let members = self.sio_rooms.entry(room.to_string()).or_default();
                    members.retain(|(m, n, _)| live(&dead, n) && *m != *id);
                    if members.len() >= max {
                        JoinOutcome::Full
                    } else {
                        let peers: Vec<(Box<str>, NodeId)> = members
                            .iter()
                            .map(|(m, n, _)| (m.as_str().into(), n.clone()))
                            .collect();
                        let nodes = other_nodes(members, me);
                        members.push((id.to_string(), me.clone(), conn.0));
                        if let Some(e) = self.sio_ids.get_mut(&*id) {
                            e.2 = Some(room.to_string());
                        }
                        if announce {
                            let roster = NodeMessage::SioRoster {
                                room: room.clone(),
                                to: conn.0,
                                peers,
                            };
                            self.bus.push_back((me.clone(), me.clone(), roster, None));
                            for n in nodes {
                                let msg = NodeMessage::SioPeerJoined {
                                    room: room.clone(),
                                    id: id.clone(),
                                };
                                self.bus.push_back((n, me.clone(), msg, None));
                            }
                        }
                        JoinOutcome::Queued
                    }
                } else {
                    JoinOutcome::Unavailable
                };
                self.nodes[i]
                    .1
                    .hub
                    .handle_sio_join_reply(conn, &room, outcome);
            }
            ClusterOutput::SioLeave { conn, id, room } => {
                if !self.up {
                    return;
                }
                let members = self.sio_rooms.entry(room.to_string()).or_default();
                members.retain(|(m, n, c)| !(*m == *id && n == me && *c == conn.0));
                let nodes = other_nodes(members, me);
                if let Some(e) = self.sio_ids.get_mut(&*id) {
                    e.2 = None;
                }
                for n in nodes {
                    let msg = NodeMessage::SioPeerLeft {
                        room: room.clone(),
                        id: id.clone(),
                    };
                    self.bus.push_back((n, me.clone(), msg, None));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The PeerJS scripts' rules.
    fn pj_registry(&mut self, i: usize, me: &NodeId, out: ClusterOutput) {
        let now = self.nodes[i].1.now;
        match out {
            ClusterOutput::PjClaim(PjClaim {
                conn,
                id,
                token,
                again,
            }) => {
                let outcome = if !self.up {
                    PjClaimOutcome::Unavailable
                } else {
                    let old = self.pj_ids.get(&*id).cloned();
                    match old {
                        Some((node, _, tok))
                            if node != *me && !self.dead.contains(&node) && tok != *token =>
                        {
                            PjClaimOutcome::Taken
                        }
                        old => {
                            if let Some((node, _, _)) = old {
                                if node != *me && !self.dead.contains(&node) {
                                    let msg = NodeMessage::PjReplaced { id: id.clone() };
                                    self.bus.push_back((node, me.clone(), msg, None));
                                }
                            }
                            self.pj_ids
                                .insert(id.to_string(), (me.clone(), conn.0, token.to_string()));
                            let waiting = self.pj_queues.get(&*id).is_some_and(|q| !q.is_empty());
                            if !again || waiting {
                                let queued = self
                                    .pj_queues
                                    .remove(&*id)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|(_, _, m)| m)
                                    .collect();
                                let msg = NodeMessage::PjClaimed {
                                    to: conn.0,
                                    id: id.clone(),
                                    queued,
                                };
                                self.bus.push_back((me.clone(), me.clone(), msg, None));
                            }
                            PjClaimOutcome::Done
                        }
                    }
                };
                self.nodes[i]
                    .1
                    .hub
                    .handle_pj_claim_reply(conn, &id, again, outcome);
            }
            ClusterOutput::PjUnregister { conn, id } => {
                if self.up {
                    forget(&mut self.pj_ids, &id, me, conn);
                }
            }
            ClusterOutput::PjSend {
                sent,
                msg,
                queue,
                max_msgs,
                ..
            } => {
                self.routed += 1;
                let outcome = if !self.up {
                    PjSendOutcome::Unavailable
                } else {
                    match self.pj_ids.get(&*sent.dst) {
                        Some((node, _, _)) if !self.dead.contains(node) => {
                            let m = NodeMessage::PjRelay(msg);
                            self.bus.push_back((node.clone(), me.clone(), m, None));
                            PjSendOutcome::Delivered(node.clone())
                        }
                        _ if !queue => PjSendOutcome::Absent,
                        _ => {
                            let q = self.pj_queues.entry(sent.dst.to_string()).or_default();
                            if q.len() >= max_msgs {
                                PjSendOutcome::Full
                            } else {
                                q.push((me.clone(), sent.tag, msg));
                                PjSendOutcome::Queued
                            }
                        }
                    }
                };
                self.nodes[i].1.hub.handle_pj_sent(sent, outcome, now);
            }
            ClusterOutput::PjExpire { dst, entries } => {
                let q = self.pj_queues.entry(dst.to_string()).or_default();
                let expired: Vec<(u64, Box<str>)> = entries
                    .into_iter()
                    .filter(|(tag, _)| q.iter().any(|(n, t, _)| n == me && t == tag))
                    .collect();
                q.retain(|(n, t, _)| !(n == me && expired.iter().any(|(e, _)| e == t)));
                self.nodes[i].1.hub.handle_pj_expired(&dst, &expired);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn pj_connect(
        &mut self,
        n: usize,
        conn: u64,
        id: &str,
        token: &str,
    ) -> Vec<(usize, u64, String)> {
        let h = &mut self.nodes[n].1;
        let now = h.now;
        h.hub.handle_pj_connect(
            ConnId(conn),
            Some("peerjs"),
            Some(id),
            Some(token),
            None,
            now,
        );
        self.run()
    }

    fn pj(&mut self, n: usize, conn: u64, text: &str) -> Vec<(usize, u64, String)> {
        let h = &mut self.nodes[n].1;
        let now = h.now;
        let msg = switchboard_proto::peerjs::decode(text).map_err(|_| ());
        h.hub.handle_pj_message(ConnId(conn), msg, now);
        self.run()
    }

    /// Time passes on every node.
    fn advance(&mut self, secs: u64) -> Vec<(usize, u64, String)> {
        for (_, h) in &mut self.nodes {
            h.now += Duration::from_secs(secs);
            let now = h.now;
            if h.hub.poll_timeout().is_some_and(|t| t <= now) {
                h.hub.handle_timeout(now);
            }
        }
        self.run()
    }

    fn sio_connect(&mut self, n: usize, conn: u64, id: &str) {
        let h = &mut self.nodes[n].1;
        let now = h.now;
        h.hub.handle_sio_connect(ConnId(conn), id, None, None, now);
    }

    fn sio(&mut self, n: usize, conn: u64, input: SioInput, ack: u64) -> Vec<(usize, u64, String)> {
        let h = &mut self.nodes[n].1;
        let now = h.now;
        h.hub
            .handle_sio_message(ConnId(conn), input, (ack > 0).then_some(AckId(ack)), now);
        self.run()
    }

    /// The claim script's rules.
    fn claim(&mut self, me: &NodeId, claim: &SeatClaim) -> SeatReply {
        if !self.up {
            return SeatReply::Unavailable;
        }
        let key = (claim.app.to_string(), claim.room.to_string());
        let mesh = self.mesh_rooms.get(&key).map_or(&[][..], Vec::as_slice);
        if !claim.again && mesh.iter().any(|(_, n, _, _)| !self.dead.contains(n)) {
            return SeatReply::OtherMode;
        }
        let seats = self.seats.entry(key).or_default();
        seats.retain(|(n, _, _)| !self.dead.contains(n));
        let others: Vec<_> = seats
            .iter()
            .filter(|(n, c, _)| !(n == me && *c == claim.conn.0))
            .cloned()
            .collect();
        if others.len() >= 2 {
            return SeatReply::Full;
        }
        if !seats.iter().any(|(n, c, _)| n == me && *c == claim.conn.0) {
            seats.push((me.clone(), claim.conn.0, claim.offer));
        }
        SeatReply::Seated {
            other: others.first().map(|(n, c, o)| Seat {
                node: n.clone(),
                conn: *c,
                offer: *o,
            }),
        }
    }

    /// Node `n` dies: its seats stop counting and every other node hears of it.
    fn kill(&mut self, n: usize) -> Vec<(usize, u64, String)> {
        let id = self.nodes[n].0.clone();
        self.dead.push(id.clone());
        self.sio_ids.retain(|_, (node, _, _)| *node != id);
        for m in self.sio_rooms.values_mut() {
            m.retain(|(_, node, _)| *node != id);
        }
        for m in self.mesh_rooms.values_mut() {
            m.retain(|(_, node, _, _)| *node != id);
        }
        self.bus.retain(|(to, from, _, _)| *to != id && *from != id);
        for (_, h) in self.nodes.iter_mut().filter(|(i, _)| *i != id) {
            h.hub.handle_node_down(&id);
        }
        self.run().into_iter().filter(|(i, _, _)| *i != n).collect()
    }
}

/// Asserts that every (node, connection) in `who` got `text`.
#[track_caller]
fn all_got(got: &[(usize, u64, String)], text: &str, who: &[(usize, u64)]) {
    for &(n, conn) in who {
        assert!(got.contains(&(n, conn, text.into())), "{n}/{conn}: {got:?}");
    }
}

fn at(n: usize, (c, text): (u64, String)) -> (usize, u64, String) {
    (n, c, text)
}

const OFFER: &str = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"v=0"}"#;
const CANDIDATE: &str =
    r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"c1"}"#;

#[test]
fn a_pair_on_two_nodes_calls_as_on_one() {
    let mut c = Cluster::new(2);
    assert_eq!(c.join(0, 1, "r"), vec![at(0, joined(1, "r"))]);
    // The second joiner is on another node: the first gets `start` there.
    c.joins_second(1, 2, "r", (0, 1));
    assert_eq!(
        c.send(0, 1, OFFER),
        vec![(
            1,
            2,
            r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"v=0","idMapping":{}}"#.into()
        )]
    );
    assert_eq!(
        c.send(1, 2, CANDIDATE),
        vec![(
            0,
            1,
            r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"c1"}"#
                .into()
        )]
    );
    // A third peer, on either node, finds the room full.
    assert_eq!(
        c.join(0, 3, "r"),
        vec![at(0, error(3, "NoSpaceForNewPeer", "r"))]
    );
    assert_eq!(
        c.join(1, 4, "r"),
        vec![at(1, error(4, "NoSpaceForNewPeer", "r"))]
    );
    // Leaving stops the partner on the other node and frees the seat for anyone.
    assert_eq!(
        c.send(1, 2, r#"{"command":"leave","streamId":"r"}"#),
        vec![at(1, leaved(2, "r")), at(0, cmd(1, "stop", "r"))]
    );
    c.joins_second(1, 6, "r", (0, 1));
    let a = c.nodes[0].1.cluster_stats();
    let b = c.nodes[1].1.cluster_stats();
    assert_eq!((a.sent, b.received), (1, 1), "one offer from a to b");
    assert_eq!(a.stale + b.stale, 0);
}

#[test]
fn joins_racing_on_three_nodes_seat_exactly_two() {
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
        let mut c = Cluster::new(3);
        for (n, conn) in [(0, 1), (1, 2), (2, 3)] {
            c.connect(n, conn);
        }
        // All three joins are in before any claim is answered; the claims reach the
        // registry in `order`.
        for n in 0..3 {
            c.input(n, n as u64 + 1, &join("r"));
        }
        c.order = order.to_vec();
        let got = c.run();
        let full: Vec<_> = got
            .iter()
            .filter(|(_, _, t)| t.contains("NoSpaceForNewPeer"))
            .collect();
        let starts = got.iter().filter(|(_, _, t)| t.contains("start")).count();
        assert_eq!(full.len(), 1, "{got:?}");
        assert_eq!(starts, 1, "{got:?}");
        // The refused one is the last claim to reach the registry.
        assert_eq!(full[0].1, order[2] as u64 + 1);
    }
}

#[test]
fn a_pair_on_one_node_stays_local_and_a_disconnect_frees_the_seat_everywhere() {
    let mut c = Cluster::new(2);
    c.join(0, 1, "r");
    c.joins_second(0, 2, "r", (0, 1));
    c.send(0, 1, OFFER);
    assert_eq!(
        c.nodes[0].1.cluster_stats().sent,
        0,
        "no message left the node"
    );
    c.nodes[0].1.hub.handle_disconnect(ConnId(1));
    assert_eq!(c.run(), vec![at(0, cmd(2, "stop", "r"))]);
    c.joins_second(1, 5, "r", (0, 2));
}

#[test]
fn a_dead_nodes_partners_are_stopped_and_its_seats_freed() {
    let mut c = Cluster::new(3);
    c.join(0, 1, "r");
    c.join(1, 2, "r");
    assert_eq!(c.kill(1), vec![at(0, cmd(1, "stop", "r"))]);
    assert_eq!(c.nodes[0].1.cluster_stats().partner_node_down, 1);
    // The room takes a new second peer, on a third node.
    c.joins_second(2, 3, "r", (0, 1));
    assert_eq!(
        c.send(2, 3, CANDIDATE).len(),
        1,
        "the new pair relays across nodes"
    );
}

#[test]
fn a_join_that_crosses_a_leave_leaves_nobody_paired_with_a_ghost() {
    // b:2 takes the second seat while a:1, the first, leaves: the registry saw the claim
    // first, so the leave does not know of b:2; b:2's `joined` to a gets an AmLeft back.
    let mut c = Cluster::new(2);
    c.connect(0, 1);
    c.connect(1, 2);
    c.send(0, 1, &join("r"));
    c.input(1, 2, &join("r"));
    // Carry out b's claim only.
    for out in c.nodes[1].1.outputs() {
        c.carry_out(1, out);
    }
    c.input(0, 1, r#"{"command":"leave","streamId":"r"}"#);
    let got = c.run();
    assert!(got.contains(&at(0, leaved(1, "r"))), "{got:?}");
    assert!(got.contains(&at(1, joined(2, "r"))), "{got:?}");
    assert!(got.contains(&at(1, cmd(2, "stop", "r"))), "{got:?}");
    assert_eq!(c.nodes[0].1.cluster_stats().stale, 1);
    // b:2 is alone in the room and can be joined.
    c.joins_second(0, 3, "r", (1, 2));
}

#[test]
fn a_disconnect_while_the_claim_is_out_frees_the_claimed_seat() {
    let mut c = Cluster::new(2);
    c.connect(0, 1);
    c.input(0, 1, &join("r"));
    c.nodes[0].1.hub.handle_disconnect(ConnId(1));
    assert_eq!(c.run(), vec![]);
    assert!(c.seats.values().all(Vec::is_empty), "{:?}", c.seats);
    // A second join while the first is out is refused, not queued.
    c.connect(0, 2);
    c.input(0, 2, &join("r"));
    c.input(0, 2, &join("s"));
    let got = c.run();
    assert_eq!(
        got,
        vec![
            (
                0,
                2,
                r#"{"command":"error","definition":"rate_limited","streamId":"s","reason":"a join is still in progress; wait for joined"}"#.into()
            ),
            at(0, joined(2, "r")),
        ]
    );
}

#[test]
fn without_the_registry_joins_and_cross_node_messages_are_refused_and_local_pairs_go_on() {
    let mut c = Cluster::local_and_cross_pairs();
    c.up = false;
    let unavailable = |c: u64, room: &str| {
        format!(
            r#"{{"command":"error","definition":"cluster_unavailable","streamId":"{room}","reason":"the cluster cannot reach the other peer's node right now; try again"}}"#
        )
        .replace("{c}", &c.to_string())
    };
    // The local pair relays as before.
    let local = r#"{"command":"peerMessageCommand","streamId":"local","data":"hi"}"#;
    assert_eq!(c.send(0, 1, local).len(), 1);
    // The cross-node pair's messages get an error instead of vanishing.
    assert_eq!(c.send(0, 3, CANDIDATE), vec![(0, 3, unavailable(3, "r"))]);
    // A join cannot take its seat.
    assert_eq!(c.join(1, 5, "x"), vec![(1, 5, unavailable(5, "x"))]);
    assert_eq!(c.nodes[1].1.cluster_stats().unavailable, 1);
    // Redis comes back empty (restarted): both nodes claim their seats again, and the
    // registry knows the rooms as they are: a third peer is refused, the pairs go on.
    c.up = true;
    c.seats.clear();
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    c.nodes[1].1.hub.handle_cluster_reregister(false);
    assert_eq!(c.run(), vec![]);
    assert_eq!(
        c.join(1, 6, "r"),
        vec![at(1, error(6, "NoSpaceForNewPeer", "r"))]
    );
    assert_eq!(c.send(0, 3, CANDIDATE).len(), 1);
    assert_eq!(
        c.send(1, 6, &join("local")),
        vec![at(1, error(6, "NoSpaceForNewPeer", "local"))]
    );
}

#[test]
fn a_seat_taken_while_the_registry_forgot_it_is_given_up() {
    let mut c = Cluster::new(2);
    c.join(0, 1, "r");
    // The registry forgets node 0's seat; two peers on node 1 take the room.
    c.seats.clear();
    c.join(1, 2, "r");
    c.join(1, 3, "r");
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    assert_eq!(
        c.run(),
        vec![
            (
                0,
                1,
                r#"{"command":"error","definition":"NoSpaceForNewPeer","streamId":"r","reason":"the room was taken while the cluster registry was unreachable"}"#.into()
            ),
            at(0, leaved(1, "r")),
        ]
    );
}

#[test]
fn messages_for_pairs_that_are_gone_are_dropped_and_counted() {
    let mut c = Cluster::new(2);
    c.join(0, 1, "r");
    let stranger = node("n1");
    let now = c.nodes[0].1.now;
    c.nodes[0].1.hub.handle_node_message(
        &stranger,
        NodeMessage::AmRelay {
            app: App::new("A").unwrap(),
            room: StreamId::new("r").unwrap(),
            to: 1,
            from: 99,
            msg: switchboard_proto::cluster::AmRelayed::PeerMessageCommand {
                definition: None,
                data: None,
            },
        },
        now,
    );
    assert_eq!(c.run(), vec![]);
    assert_eq!(c.nodes[0].1.cluster_stats().stale, 1);
    // The same, as a frame rendered by the sending node.
    let body = switchboard_proto::cluster::AmRelayed::PeerMessageCommand {
        definition: None,
        data: None,
    };
    let room = StreamId::new("r").unwrap();
    c.nodes[0].1.hub.handle_node_message(
        &stranger,
        NodeMessage::AmFrame {
            app: App::new("A").unwrap(),
            frame: body.frame(&room),
            room,
            to: 1,
            from: 99,
        },
        now,
    );
    assert_eq!(c.run(), vec![]);
    assert_eq!(c.nodes[0].1.cluster_stats().stale, 2);
}

#[test]
fn a_node_cut_off_past_its_lease_ends_its_pairs_across_nodes_and_keeps_local_ones() {
    let mut c = Cluster::local_and_cross_pairs();
    // Node 0 was taken for dead: node 1 stopped its side, the registry dropped its seats.
    c.nodes[1].1.hub.handle_node_down(&node("n0"));
    for s in c.seats.values_mut() {
        s.retain(|(n, _, _)| *n != node("n0"));
    }
    assert_eq!(c.run(), vec![at(1, cmd(4, "stop", "r"))]);
    c.nodes[0].1.hub.handle_cluster_isolated();
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    // Its side stops too; then the two, each alone in r, pair again and the call starts
    // over (the first seat, on node 1, makes the offer).
    assert_eq!(
        c.run(),
        vec![at(0, cmd(3, "stop", "r")), at(1, cmd(4, "start", "r"))]
    );
    assert_eq!(c.send(1, 4, OFFER).len(), 1);
    assert_eq!(c.send(0, 3, CANDIDATE).len(), 1);
    // The local pair went on; both rooms are known to the registry again.
    assert_eq!(
        c.send(
            0,
            1,
            r#"{"command":"peerMessageCommand","streamId":"local","data":"x"}"#
        )
        .len(),
        1
    );
    c.connect(1, 5);
    for room in ["local", "r"] {
        assert_eq!(
            c.send(1, 5, &join(room)),
            vec![at(1, error(5, "NoSpaceForNewPeer", room))]
        );
    }
    assert_eq!(
        c.nodes[0].1.cluster_stats().stale + c.nodes[1].1.cluster_stats().stale,
        0
    );
}

fn sio_join(room: &str) -> SioInput {
    SioInput::Join { room: room.into() }
}

fn sio_offer(target: &str, from: &str) -> SioInput {
    sio_offer_of(
        target,
        format!(r#"{{"target":"{target}","from":"{from}","sdp":{{}}}}"#),
    )
}

/// An `offer` to `target` carrying `payload` (JSON).
fn sio_offer_of(target: &str, payload: String) -> SioInput {
    SioInput::Relay {
        event: switchboard_proto::socketio::SioRelay::Offer,
        target: target.into(),
        payload: switchboard_proto::Opaque::from_json(payload).unwrap(),
    }
}

#[test]
fn socketio_targets_rooms_and_rosters_span_nodes() {
    let mut c = Cluster::new(3);
    c.sio_connect(0, 1, "alice");
    c.sio_connect(1, 2, "bob");
    c.sio_connect(2, 3, "carol");
    assert_eq!(
        c.sio(0, 1, sio_join("r"), 1),
        vec![(0, 1, r#"ack1 {"ok":true,"peers":[],"room":"r"}"#.into())]
    );
    assert_eq!(
        c.sio(1, 2, sio_join("r"), 2),
        vec![
            (
                1,
                2,
                r#"ack2 {"ok":true,"peers":["alice"],"room":"r"}"#.into()
            ),
            (0, 1, r#"peer-joined {"id":"bob","room":"r"}"#.into()),
        ]
    );
    let got = c.sio(2, 3, sio_join("r"), 3);
    assert_eq!(
        got[0],
        (
            2,
            3,
            r#"ack3 {"ok":true,"peers":["alice","bob"],"room":"r"}"#.into()
        )
    );
    all_got(
        &got,
        r#"peer-joined {"id":"carol","room":"r"}"#,
        &[(0, 1), (1, 2)],
    );
    // A target on another node gets the relay; the sender its ack after the registry answered.
    assert_eq!(
        c.sio(0, 1, sio_offer("carol", "alice"), 4),
        vec![
            (0, 1, r#"ack4 {"ok":true}"#.into()),
            (
                2,
                3,
                r#"offer {"target":"carol","from":"alice","sdp":{}}"#.into()
            ),
        ]
    );
    // An id held nowhere is unknown_target, as on one node.
    assert_eq!(
        c.sio(0, 1, sio_offer("nobody", "alice"), 5),
        vec![(
            0,
            1,
            r#"ack5 {"error":"unknown_target","ok":false,"reason":"no connected socket has this id"}"#.into()
        )]
    );
    // A rejoin answers the cluster-wide roster.
    assert_eq!(
        c.sio(1, 2, sio_join("r"), 6),
        vec![(
            1,
            2,
            r#"ack6 {"ok":true,"peers":["alice","carol"],"room":"r"}"#.into()
        )]
    );
    // Leaving is heard on every node.
    let got = c.sio(1, 2, SioInput::Leave, 7);
    all_got(
        &got,
        r#"peer-left {"id":"bob","room":"r"}"#,
        &[(0, 1), (2, 3)],
    );
    // A disconnect too; its id is then unknown everywhere.
    c.nodes[2].1.hub.handle_disconnect(ConnId(3));
    let got = c.run();
    assert_eq!(
        got,
        vec![(0, 1, r#"peer-left {"id":"carol","room":"r"}"#.into())]
    );
    let got = c.sio(0, 1, sio_offer("carol", "alice"), 8);
    assert!(got[0].2.contains("unknown_target"), "{got:?}");
}

#[test]
fn socketio_room_size_counts_every_node_and_a_dead_nodes_members_leave() {
    let mut c = Cluster::new(3);
    let max = c.nodes[0].1.config().sio_max_room_peers;
    for k in 0..max {
        let n = k % 2;
        let conn = 100 + k as u64;
        c.sio_connect(n, conn, &format!("s{k}"));
        let got = c.sio(n, conn, sio_join("big"), 1);
        assert!(
            got.iter()
                .any(|(_, cc, t)| *cc == conn && t.contains(r#""ok":true"#)),
            "{got:?}"
        );
    }
    c.sio_connect(2, 1, "late");
    let got = c.sio(2, 1, sio_join("big"), 9);
    assert!(got[0].2.contains("room_full"), "{got:?}");
    // Node 1 dies: its members leave the rosters on the other nodes, and make room.
    let got = c.kill(1);
    let left = got
        .iter()
        .filter(|(n, _, t)| *n == 0 && t.starts_with("peer-left"))
        .count();
    let half = max / 2;
    assert_eq!(left, half * (max - half), "{got:?}");
    let got = c.sio(2, 1, sio_join("big"), 10);
    assert!(got[0].2.contains(r#""ok":true"#), "{got:?}");
}

#[test]
fn socketio_same_identity_takes_over_across_nodes() {
    let mut c = Cluster::new(2);
    c.sio_connect(0, 1, "alice");
    c.sio(0, 1, sio_join("r"), 1);
    c.sio_connect(1, 2, "bob");
    c.sio(1, 2, sio_join("r"), 2);
    // alice connects again on node 1: the node-0 socket is replaced and leaves its room.
    c.sio_connect(1, 3, "alice");
    let got = c.run();
    assert!(got.contains(&(0, 1, r#"error {"error":"replaced","event":"connect","reason":"the same identity connected again"}"#.into())), "{got:?}");
    assert!(got.contains(&(0, 1, "CLOSE Replaced".into())), "{got:?}");
    all_got(&got, r#"peer-left {"id":"alice","room":"r"}"#, &[(1, 2)]);
    // The id now reaches the new socket.
    let got = c.sio(1, 2, sio_offer("alice", "bob"), 3);
    assert!(
        got.contains(&(
            1,
            3,
            r#"offer {"target":"alice","from":"bob","sdp":{}}"#.into()
        )),
        "{got:?}"
    );
}

#[test]
fn socketio_without_the_registry_cross_node_relays_and_joins_are_refused() {
    let mut c = Cluster::new(2);
    c.sio_connect(0, 1, "alice");
    c.sio_connect(0, 2, "ann");
    c.sio_connect(1, 3, "bob");
    c.up = false;
    let got = c.sio(0, 1, sio_offer("ann", "alice"), 1);
    assert!(
        got.iter()
            .any(|(_, cc, t)| *cc == 2 && t.starts_with("offer")),
        "local goes on: {got:?}"
    );
    let got = c.sio(0, 1, sio_offer("bob", "alice"), 2);
    assert!(got[0].2.contains("cluster_unavailable"), "{got:?}");
    let got = c.sio(0, 1, sio_join("r"), 3);
    assert!(got[0].2.contains("cluster_unavailable"), "{got:?}");
    // A second join while one is out is refused, not queued.
    c.up = true;
    let now = c.nodes[0].1.now;
    c.nodes[0]
        .1
        .hub
        .handle_sio_message(ConnId(1), sio_join("r"), Some(AckId(4)), now);
    let got = c.sio(0, 1, sio_join("s"), 5);
    assert!(
        got.iter()
            .any(|(_, _, t)| t.starts_with("ack5") && t.contains("join is still in progress")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(_, _, t)| t.starts_with("ack4") && t.contains(r#""ok":true"#)),
        "{got:?}"
    );
}

const OPEN: &str = r#"{"type":"OPEN"}"#;

fn pj_offer(dst: &str, n: u32) -> String {
    format!(r#"{{"type":"OFFER","dst":"{dst}","payload":{{"n":{n}}}}}"#)
}

#[test]
fn peerjs_ids_are_unique_across_nodes_and_the_same_token_takes_over() {
    let mut c = Cluster::new(2);
    assert_eq!(c.pj_connect(0, 1, "alice", "ta"), vec![(0, 1, OPEN.into())]);
    // Another token on another node: ID-TAKEN.
    assert_eq!(
        c.pj_connect(1, 2, "alice", "other"),
        vec![
            (
                1,
                2,
                r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#.into()
            ),
            (1, 2, "CLOSE Refused".into())
        ]
    );
    // The same token on another node: the old socket is replaced.
    let got = c.pj_connect(1, 3, "alice", "ta");
    assert!(got.contains(&(1, 3, OPEN.into())), "{got:?}");
    assert!(got.contains(&(0, 1, "CLOSE Replaced".into())), "{got:?}");
    // Messages to alice reach the new socket, from either node.
    assert_eq!(c.pj_connect(0, 4, "bob", "tb"), vec![(0, 4, OPEN.into())]);
    assert_eq!(
        c.pj(0, 4, &pj_offer("alice", 1)),
        vec![(
            1,
            3,
            r#"{"type":"OFFER","src":"bob","dst":"alice","payload":{"n":1}}"#.into()
        )]
    );
}

#[test]
fn peerjs_messages_wait_for_an_id_that_connects_on_another_node_in_order() {
    let mut c = Cluster::with_alice(2);
    for n in 0..3 {
        assert_eq!(c.pj(0, 1, &pj_offer("bob", n)), vec![]);
    }
    let got = c.pj_connect(1, 2, "bob", "tb");
    assert_eq!(
        got,
        vec![
            (1, 2, OPEN.into()),
            (
                1,
                2,
                r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"n":0}}"#.into()
            ),
            (
                1,
                2,
                r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"n":1}}"#.into()
            ),
            (
                1,
                2,
                r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"n":2}}"#.into()
            ),
        ]
    );
    // Delivered: no EXPIRE when the wait is over, and the counts are back to zero.
    assert_eq!(c.advance(6), vec![]);
    assert_eq!(c.nodes[0].1.stats().queued, 0);
}

#[test]
fn peerjs_messages_for_an_id_that_never_connects_expire_once_per_sender() {
    let mut c = Cluster::with_alice(2);
    for n in 0..3 {
        c.pj(0, 1, &pj_offer("ghost", n));
    }
    assert_eq!(c.nodes[0].1.stats().queued, 3);
    assert_eq!(c.advance(4), vec![]);
    assert_eq!(c.advance(2), vec![expire_to_alice("ghost")]);
    assert_eq!(c.nodes[0].1.stats().queued, 0);
    assert!(c.pj_queues.values().all(Vec::is_empty));
    // LEAVE to an absent id is dropped, as on one node.
    assert_eq!(c.pj(0, 1, r#"{"type":"LEAVE","dst":"ghost"}"#), vec![]);
    assert_eq!(c.advance(10), vec![]);
}

#[test]
fn peerjs_without_the_registry_connects_and_cross_node_messages_are_refused() {
    let mut c = Cluster::with_alice(2);
    c.pj_connect(0, 2, "ann", "tn");
    c.pj_connect(1, 3, "bob", "tb");
    c.up = false;
    // On one node: unaffected.
    assert_eq!(c.pj(0, 1, &pj_offer("ann", 1)).len(), 1);
    // Across nodes: EXPIRE at once (PeerJS clients report the peer unavailable).
    assert_eq!(
        c.pj(0, 1, &pj_offer("bob", 2)),
        vec![expire_to_alice("bob")]
    );
    // A new id cannot be claimed.
    let got = c.pj_connect(1, 4, "carol", "tc");
    assert!(got[0].2.contains("cluster_unavailable"), "{got:?}");
    // Redis back, empty: ids claimed again are unique again.
    c.up = true;
    c.pj_ids.clear();
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    c.nodes[1].1.hub.handle_cluster_reregister(false);
    assert_eq!(c.run(), vec![]);
    let got = c.pj_connect(1, 5, "alice", "intruder");
    assert!(got[0].2.contains("ID-TAKEN"), "{got:?}");
    assert_eq!(c.pj(1, 3, &pj_offer("alice", 3)).len(), 1);
}

fn sio_offer_n(target: &str, n: u32) -> SioInput {
    sio_offer_of(target, format!(r#"{{"n":{n}}}"#))
}

fn sio_unknown(n: usize, conn: u64) -> (usize, u64, String) {
    (
        n,
        conn,
        r#"error {"error":"unknown_target","event":"offer","reason":"no connected socket has this id"}"#
            .into(),
    )
}

#[test]
fn socketio_relays_without_ack_go_straight_to_the_targets_node_until_it_misses() {
    let mut c = Cluster::new(3);
    c.sio_connect(0, 1, "alice");
    c.sio_connect(1, 2, "bob");
    c.run();
    // The first relay asks the registry, which tells where bob is.
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 0), 0),
        vec![(1, 2, r#"offer {"n":0}"#.into())]
    );
    assert_eq!(c.routed, 1);
    // The next ones without an ack go straight to bob's node, in order.
    for n in 1..4 {
        assert_eq!(
            c.sio(0, 1, sio_offer_n("bob", n), 0),
            vec![(1, 2, format!(r#"offer {{"n":{n}}}"#))]
        );
    }
    assert_eq!(
        (c.routed, c.nodes[0].1.cluster_stats().routed_direct),
        (1, 3)
    );
    assert_eq!(c.nodes[0].1.cluster_stats().routes, 1);
    // One that asks an ack is still answered by the registry.
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 4), 9),
        vec![
            (0, 1, r#"ack9 {"ok":true}"#.into()),
            (1, 2, r#"offer {"n":4}"#.into())
        ]
    );
    assert_eq!(c.routed, 2);
    // bob connects again on node 2 (same identity): node 1 no longer holds it. The relay
    // sent there misses: alice hears unknown_target, as if bob had been gone when she sent;
    // nothing is sent on elsewhere.
    c.sio_connect(2, 3, "bob");
    let got = c.run();
    assert!(got.contains(&(1, 2, "CLOSE Replaced".into())), "{got:?}");
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 5), 0),
        vec![sio_unknown(0, 1)]
    );
    assert_eq!(c.nodes[0].1.cluster_stats().route_misses, 1);
    assert_eq!(c.nodes[1].1.cluster_stats().stale, 1);
    // The next one asks the registry again, and reaches the new socket; then straight.
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 6), 0),
        vec![(2, 3, r#"offer {"n":6}"#.into())]
    );
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 7), 0),
        vec![(2, 3, r#"offer {"n":7}"#.into())]
    );
    assert_eq!(
        (c.routed, c.nodes[0].1.cluster_stats().routed_direct),
        (3, 5)
    );
    // Node 2 dies: routes to it are forgotten, the registry answers unknown_target.
    c.kill(2);
    assert_eq!(c.nodes[0].1.cluster_stats().routes, 0);
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 8), 0),
        vec![sio_unknown(0, 1)]
    );
    assert_eq!(c.routed, 4);
}

#[test]
fn socketio_direct_relays_fail_clearly_without_redis_and_can_be_turned_off() {
    let mut c = Cluster::new(2);
    c.sio_connect(0, 1, "alice");
    c.sio_connect(1, 2, "bob");
    c.run();
    c.sio(0, 1, sio_offer_n("bob", 0), 0);
    c.up = false;
    let got = c.sio(0, 1, sio_offer_n("bob", 1), 0);
    assert_eq!(got.len(), 1);
    assert!(got[0].2.contains("cluster_unavailable"), "{got:?}");
    // The route was dropped with the failure: back up, the registry is asked again.
    c.up = true;
    let routed = c.routed;
    assert_eq!(c.sio(0, 1, sio_offer_n("bob", 2), 0).len(), 1);
    assert_eq!(c.routed, routed + 1);
    // route_cache = 0: every relay asks the registry.
    let mut c = Cluster::with(
        2,
        Config {
            route_cache: 0,
            ..Config::default()
        },
    );
    c.sio_connect(0, 1, "alice");
    c.sio_connect(1, 2, "bob");
    c.run();
    for n in 0..3 {
        assert_eq!(c.sio(0, 1, sio_offer_n("bob", n), 0).len(), 1);
    }
    assert_eq!(
        (c.routed, c.nodes[0].1.cluster_stats().routed_direct),
        (3, 0)
    );
}

/// Grants are handed to the hub by the tests; no token is ever checked here.
#[derive(Debug)]
struct NoTokens;

impl crate::auth::TokenVerifier for NoTokens {
    fn verify(&self, _token: &str) -> Result<crate::auth::Claims, AuthError> {
        Err(AuthError::Signature)
    }
}

#[test]
fn socketio_direct_relays_keep_the_senders_room_claim() {
    let mut c = Cluster::with(
        2,
        Config {
            auth: Some(crate::auth::AuthConfig::new(Arc::new(NoTokens))),
            ..Config::default()
        },
    );
    let mut grant = crate::auth::Claims::expiring(u64::MAX);
    grant.room = Some(crate::auth::RoomRule::parse("team-*").unwrap());
    for (n, conn, id) in [(0, 1, "alice"), (1, 2, "bob")] {
        let h = &mut c.nodes[n].1;
        let now = h.now;
        h.hub
            .handle_sio_connect(ConnId(conn), id, None, Some(grant.clone()), now);
    }
    c.sio(1, 2, sio_join("team-a"), 1);
    c.sio(0, 1, sio_offer_n("bob", 0), 0);
    assert_eq!(
        c.sio(0, 1, sio_offer_n("bob", 1), 0),
        vec![(1, 2, r#"offer {"n":1}"#.into())]
    );
    assert_eq!(c.nodes[0].1.cluster_stats().routed_direct, 1);
    // carol may sit anywhere; alice's token reaches her only in a team room. Refused by
    // the registry: nothing is learnt.
    let mut anywhere = crate::auth::Claims::expiring(u64::MAX);
    anywhere.room = Some(crate::auth::RoomRule::parse("*").unwrap());
    let h = &mut c.nodes[1].1;
    let now = h.now;
    h.hub
        .handle_sio_connect(ConnId(3), "carol", None, Some(anywhere), now);
    c.sio(1, 3, sio_join("lobby"), 2);
    for n in 2..4 {
        let got = c.sio(0, 1, sio_offer_n("carol", n), 0);
        assert!(got[0].2.contains("unauthorized_access"), "{got:?}");
    }
    assert_eq!(c.nodes[0].1.cluster_stats().routed_direct, 1);
    // In a team room she is reached (and her node learnt); back in the lobby, the relay
    // sent straight to her node is refused there.
    c.sio(1, 3, sio_join("team-b"), 3);
    assert_eq!(
        c.sio(0, 1, sio_offer_n("carol", 4), 0),
        vec![(1, 3, r#"offer {"n":4}"#.into())]
    );
    c.sio(1, 3, sio_join("lobby"), 4);
    let got = c.sio(0, 1, sio_offer_n("carol", 5), 0);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.contains("unauthorized_access"), "{got:?}");
    assert_eq!(c.nodes[0].1.cluster_stats().routed_direct, 2);
    assert_eq!(c.nodes[0].1.cluster_stats().route_misses, 1);
}

/// The `EXPIRE` alice (connection 1 on node 0) gets for a message to `dst`.
fn expire_to_alice(dst: &str) -> (usize, u64, String) {
    (
        0,
        1,
        format!(r#"{{"type":"EXPIRE","src":"{dst}","dst":"alice"}}"#),
    )
}

fn pj_relay(n: u32) -> String {
    format!(r#"{{"type":"OFFER","src":"alice","dst":"bob","payload":{{"n":{n}}}}}"#)
}

#[test]
fn peerjs_messages_go_straight_to_the_receivers_node_and_a_miss_expires() {
    let mut c = Cluster::with_alice(3);
    c.pj_connect(1, 2, "bob", "tb");
    assert_eq!(c.pj(0, 1, &pj_offer("bob", 0)), vec![(1, 2, pj_relay(0))]);
    assert_eq!(c.routed, 1);
    for n in 1..4 {
        assert_eq!(c.pj(0, 1, &pj_offer("bob", n)), vec![(1, 2, pj_relay(n))]);
    }
    assert_eq!(
        (c.routed, c.nodes[0].1.cluster_stats().routed_direct),
        (1, 3)
    );
    // bob leaves node 1: the message sent there misses and alice gets EXPIRE at once.
    c.nodes[1].1.hub.handle_disconnect(ConnId(2));
    c.run();
    assert_eq!(
        c.pj(0, 1, &pj_offer("bob", 4)),
        vec![expire_to_alice("bob")]
    );
    assert_eq!(c.nodes[0].1.cluster_stats().route_misses, 1);
    // The next one goes through the registry again: queued for bob.
    c.pj(0, 1, &pj_offer("bob", 5));
    assert_eq!(c.routed, 2);
    // bob connects on node 2: what waited arrives, then messages go straight there.
    let got = c.pj_connect(2, 3, "bob", "tb");
    assert_eq!(got, vec![(2, 3, OPEN.into()), (2, 3, pj_relay(5))]);
    assert_eq!(c.pj(0, 1, &pj_offer("bob", 6)), vec![(2, 3, pj_relay(6))]);
    assert_eq!(c.pj(0, 1, &pj_offer("bob", 7)), vec![(2, 3, pj_relay(7))]);
    assert_eq!(
        (c.routed, c.nodes[0].1.cluster_stats().routed_direct),
        (3, 5)
    );
    // A LEAVE that misses is dropped, as for an absent id.
    c.nodes[2].1.hub.handle_disconnect(ConnId(3));
    c.run();
    assert_eq!(c.pj(0, 1, r#"{"type":"LEAVE","dst":"bob"}"#), vec![]);
    assert_eq!(c.nodes[0].1.cluster_stats().route_misses, 2);
    // Without Redis a message sent straight is answered EXPIRE too.
    c.pj_connect(1, 4, "bob", "tb");
    c.pj(0, 1, &pj_offer("bob", 8));
    c.pj(0, 1, &pj_offer("bob", 9));
    c.up = false;
    assert_eq!(
        c.pj(0, 1, &pj_offer("bob", 10)),
        vec![expire_to_alice("bob")]
    );
    assert_eq!(c.advance(10), vec![]);
}

#[test]
fn peerjs_messages_sent_while_redis_forgot_an_id_are_delivered_when_it_is_claimed_again() {
    let mut c = Cluster::with_alice(2);
    c.pj_connect(1, 2, "bob", "tb");
    // Redis came back empty; node 1 has not claimed bob again yet.
    c.pj_ids.clear();
    c.nodes[0].1.hub.handle_cluster_reregister(false);
    c.run();
    assert_eq!(c.pj(0, 1, &pj_offer("bob", 1)), vec![], "waits in Redis");
    // bob is claimed again: what waited is delivered (not left to expire), then the rest.
    c.nodes[1].1.hub.handle_cluster_reregister(false);
    assert_eq!(c.run(), vec![(1, 2, pj_relay_from("alice", 1))]);
    assert_eq!(
        c.pj(0, 1, &pj_offer("bob", 2)),
        vec![(1, 2, pj_relay_from("alice", 2))]
    );
    assert_eq!(c.advance(10), vec![], "no EXPIRE");
}

fn pj_relay_from(src: &str, n: u32) -> String {
    format!(r#"{{"type":"OFFER","src":"{src}","dst":"bob","payload":{{"n":{n}}}}}"#)
}

#[test]
fn a_client_relaying_to_many_ids_on_other_nodes_cannot_grow_the_route_table_past_its_bound() {
    let mut c = Cluster::with(
        2,
        Config {
            route_cache: 3,
            ..Config::default()
        },
    );
    c.sio_connect(0, 1, "mallory");
    let targets: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for (i, t) in targets.iter().enumerate() {
        c.sio_connect(1, 10 + i as u64, t);
    }
    c.run();
    for _ in 0..3 {
        for (n, t) in targets.iter().enumerate() {
            assert_eq!(c.sio(0, 1, sio_offer_n(t, n as u32), 0).len(), 1);
        }
    }
    let stats = c.nodes[0].1.cluster_stats();
    assert!(stats.routes <= 3, "{stats:?}");
    assert!(stats.route_resets >= 9, "{stats:?}");
    // Ids that exist nowhere are never learnt.
    for n in 0..50 {
        c.sio(0, 1, sio_offer_n(&format!("ghost{n}"), n), 0);
    }
    assert!(c.nodes[0].1.cluster_stats().routes <= 3);
}
