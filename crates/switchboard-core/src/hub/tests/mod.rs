#![allow(clippy::unwrap_used)]

use super::*;
use std::net::IpAddr;
use switchboard_proto::antmedia::decode;

mod admin;
mod auth;
mod cluster;
mod mesh;
mod peerjs;
mod socketio;

/// Drives a hub with a fake clock, for the rules of all three dialects: [`Harness::drain`]
/// renders every output as a `(conn, text)` pair and [`Harness::outputs`] returns them
/// typed; both drain to `None` (proving "nothing else happened") and check the room
/// invariants. It dereferences to the [`Hub`], so tests call its inputs directly.
struct Harness {
    hub: Hub,
    now: Instant,
}

impl std::ops::Deref for Harness {
    type Target = Hub;

    fn deref(&self) -> &Hub {
        &self.hub
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Hub {
        &mut self.hub
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            hub: Hub::new(config),
            now: Instant::now(),
        }
    }

    fn connect(&mut self, conn: u64, app: &str) {
        self.connect_with(conn, app, None);
    }

    /// Connects with `token` on the URL.
    fn connect_with(&mut self, conn: u64, app: &str, token: Option<&str>) {
        self.hub.handle_am_connect(
            ConnId(conn),
            App::new(app).unwrap(),
            Some("sb.test"),
            None,
            token,
            self.now,
        );
    }

    fn send(&mut self, conn: u64, text: &str) -> Vec<(u64, String)> {
        self.hub
            .handle_am_message(ConnId(conn), decode(text), self.now);
        self.drain()
    }

    fn advance(&mut self, secs: u64) -> Vec<(u64, String)> {
        self.now += Duration::from_secs(secs);
        if self.hub.poll_timeout().is_some_and(|t| t <= self.now) {
            self.hub.handle_timeout(self.now);
        }
        self.drain()
    }

    /// Everything the hub wants done, in order; proves "nothing else" by draining fully.
    fn drain(&mut self) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            v.push(match o {
                Output::AmSend { conn, msg } => (conn.0, msg.encode()),
                Output::PjSend { conn, msg } => (conn.0, msg.encode()),
                Output::Close { conn, reason } => (conn.0, format!("CLOSE {reason:?}")),
                other => (0, format!("{other:?}")),
            });
        }
        self.check_invariants();
        v
    }

    /// Every output, typed, drained to `None`.
    fn outputs(&mut self) -> Vec<Output> {
        let v = std::iter::from_fn(|| self.hub.poll_output()).collect();
        self.check_invariants();
        v
    }

    fn check_invariants(&self) {
        for ((app, sid), room) in &self.hub.am.rooms {
            assert!(room.peers[0].is_some(), "empty room kept");
            for p in room.peers.iter().flatten() {
                let c = &self.hub.am.conns[p];
                assert_eq!(&c.app, app);
                assert_eq!(c.room.as_ref(), Some(sid));
            }
            assert_ne!(room.peers[0], room.peers[1]);
            if room.remote.is_some() {
                assert!(
                    room.peers[1].is_none(),
                    "a third peer beside a remote partner"
                );
            }
        }
        for conn in self.hub.am.pending.keys() {
            assert!(
                self.hub.am.conns.contains_key(conn),
                "a pending join of nobody"
            );
        }
        for (key, members) in &self.hub.am.mesh {
            assert!(!members.is_empty(), "empty mesh room kept");
            assert!(members.len() <= self.hub.config.max_mesh_peers);
            assert!(!self.hub.am.rooms.contains_key(key), "a room in both modes");
            for (i, m) in members.iter().enumerate() {
                assert!(!members[..i].contains(m), "a member twice");
                assert_eq!(self.hub.am.conns[m].room.as_ref(), Some(&key.1));
            }
        }
        let mc = &self.hub.am.mesh_cluster;
        for conn in mc.ids.keys() {
            assert!(
                self.hub.am.mesh.values().any(|m| m.contains(conn)),
                "a member id of no member"
            );
        }
        if self.hub.config.cluster.is_some() {
            for m in self.hub.am.mesh.values().flatten() {
                assert!(mc.ids.contains_key(m), "a clustered member without an id");
            }
        }
        for key in mc.remote.keys() {
            assert!(
                self.hub.am.mesh.contains_key(key),
                "remote members kept for a room with none here"
            );
        }
        for conn in mc.pending.keys() {
            assert!(
                self.hub.am.conns.contains_key(conn),
                "a mesh join of nobody"
            );
        }
        for (id, c) in &self.hub.am.conns {
            if let Some(sid) = &c.room {
                let key = (c.app.clone(), sid.clone());
                if let Some(members) = self.hub.am.mesh.get(&key) {
                    assert!(members.contains(id));
                } else {
                    let room = &self.hub.am.rooms[&key];
                    assert!(room.peers.contains(&Some(*id)));
                }
            }
            if let Some(at) = c.call_deadline() {
                assert!(c.room.is_some(), "a call timer outside a room");
                assert!(self.hub.call_deadlines.contains(&(at, *id)));
            }
        }
        // Exactly one timer entry per join with a max_call grant: none left behind.
        for (at, id) in &self.hub.call_deadlines {
            assert_eq!(self.hub.am.conns[id].call_deadline(), Some(*at));
        }
    }

    /// Two peers in `room` of app `A`, outputs drained.
    fn pair(&mut self, a: u64, b: u64, room: &str) {
        self.connect(a, "A");
        self.connect(b, "A");
        self.send(a, &join(room));
        self.send(b, &join(room));
    }
}

/// STUN and minted TURN on the client's `{host}` (port 3478, one hour), with `user_prefix`.
fn turn_ice(user_prefix: &str) -> crate::ice::IceConfig {
    crate::ice::IceConfig {
        servers: vec![IceServer::stun("stun:{host}:3478")],
        turn: Some(crate::ice::TurnRest {
            secret: "s3cret".into(),
            urls: vec!["turn:{host}:3478".into()],
            ttl: Duration::from_secs(3600),
            user_prefix: user_prefix.into(),
        }),
    }
}

fn join(room: &str) -> String {
    format!(r#"{{"command":"join","streamId":"{room}"}}"#)
}

fn joined(c: u64, room: &str) -> (u64, String) {
    (
        c,
        format!(r#"{{"command":"notification","definition":"joined","streamId":"{room}"}}"#),
    )
}

fn leaved(c: u64, room: &str) -> (u64, String) {
    (
        c,
        format!(r#"{{"command":"notification","definition":"leaved","streamId":"{room}"}}"#),
    )
}

fn cmd(c: u64, command: &str, room: &str) -> (u64, String) {
    (
        c,
        format!(r#"{{"command":"{command}","streamId":"{room}"}}"#),
    )
}

fn error(c: u64, def: &str, room: &str) -> (u64, String) {
    (
        c,
        format!(r#"{{"command":"error","definition":"{def}","streamId":"{room}"}}"#),
    )
}

#[test]
fn first_join_gets_joined_only() {
    let mut h = Harness::new();
    h.connect(1, "A");
    assert_eq!(h.send(1, &join("r")), vec![joined(1, "r")]);
}

#[test]
fn second_join_starts_the_first() {
    let mut h = Harness::new();
    h.connect(1, "A");
    h.connect(2, "A");
    h.send(1, &join("r"));
    assert_eq!(
        h.send(2, &join("r")),
        vec![joined(2, "r"), cmd(1, "start", "r")]
    );
}

#[test]
fn third_peer_gets_no_space_and_nothing_changes() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.connect(3, "A");
    assert_eq!(
        h.send(3, &join("r")),
        vec![error(3, "NoSpaceForNewPeer", "r")]
    );
    // Counted by definition as it left the hub, and the connections by dialect.
    h.send(3, "{nope");
    let counts = h.error_counts();
    assert_eq!(counts.get(Dialect::AntMedia, "NoSpaceForNewPeer"), 1);
    assert_eq!(counts.get(Dialect::AntMedia, "invalid_message"), 1);
    assert_eq!(counts.iter().count(), 2);
    let stats = h.stats();
    assert_eq!(stats.connections_by_dialect.antmedia, 3);
    assert_eq!(stats.rooms_by_dialect.antmedia, 1);
    assert_eq!(stats.connections, 3);
    // The pair still relays.
    let out = h.send(
        1,
        r#"{"command":"peerMessageCommand","streamId":"r","definition":"chat","data":"hi"}"#,
    );
    assert_eq!(
        out,
        vec![(
            2,
            r#"{"command":"peerMessageCommand","streamId":"r","definition":"chat","data":"hi"}"#
                .into()
        )]
    );
}

#[test]
fn offer_answer_candidates_go_to_the_other_peer_only() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert_eq!(
        h.send(1, r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"v=0\r\n"}"#),
        vec![(2, r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"v=0\r\n","idMapping":{}}"#.into())]
    );
    assert_eq!(
        h.send(2, r#"{"command":"takeConfiguration","streamId":"r","type":"answer","sdp":"v=0 a"}"#),
        vec![(1, r#"{"command":"takeConfiguration","streamId":"r","type":"answer","sdp":"v=0 a","idMapping":{}}"#.into())]
    );
    assert_eq!(
        h.send(1, r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"candidate:1 1 udp 2 10.0.0.1 5 typ host"}"#),
        vec![(2, r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"candidate:1 1 udp 2 10.0.0.1 5 typ host"}"#.into())]
    );
    assert_eq!(h.hub.stats().relayed, 3);
}

#[test]
fn relay_without_a_pair_is_refused() {
    let mut h = Harness::new();
    h.connect(1, "A");
    let offer = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"x"}"#;
    assert_eq!(
        h.send(1, offer),
        vec![error(1, "no_peer_associated_before", "r")]
    );
    h.send(1, &join("r"));
    assert_eq!(
        h.send(1, offer),
        vec![error(1, "no_peer_associated_before", "r")]
    );
    // A paired peer naming a room it is not in is refused too.
    h.connect(2, "A");
    h.send(2, &join("r"));
    assert_eq!(
        h.send(
            2,
            r#"{"command":"takeCandidate","streamId":"other","candidate":"c"}"#
        ),
        vec![error(2, "no_peer_associated_before", "other")]
    );
}

#[test]
fn leave_stops_the_other_and_frees_the_seat() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert_eq!(
        h.send(1, r#"{"command":"leave","streamId":"r"}"#),
        vec![cmd(2, "stop", "r"), leaved(1, "r")]
    );
    // The remaining peer waits and is the offerer for the next joiner.
    h.connect(3, "A");
    assert_eq!(
        h.send(3, &join("r")),
        vec![joined(3, "r"), cmd(2, "start", "r")]
    );
    // The leaver can come back once there is room again.
    h.send(2, r#"{"command":"stop","streamId":"r"}"#);
    assert_eq!(
        h.send(1, &join("r")),
        vec![joined(1, "r"), cmd(3, "start", "r")]
    );
}

#[test]
fn last_leave_deletes_the_room() {
    let mut h = Harness::new();
    h.connect(1, "A");
    h.send(1, &join("r"));
    assert_eq!(h.hub.stats().rooms, 1);
    assert_eq!(
        h.send(1, r#"{"command":"leave","streamId":"r"}"#),
        vec![leaved(1, "r")]
    );
    assert_eq!(h.hub.stats().rooms, 0);
    assert_eq!(
        h.send(1, r#"{"command":"leave","streamId":"r"}"#),
        vec![error(1, "no_peer_associated_before", "r")]
    );
}

#[test]
fn disconnect_stops_the_other_without_stale_seat() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.hub.handle_disconnect(ConnId(2));
    assert_eq!(h.drain(), vec![cmd(1, "stop", "r")]);
    h.connect(3, "A");
    assert_eq!(
        h.send(3, &join("r")),
        vec![joined(3, "r"), cmd(1, "start", "r")]
    );
    // Disconnecting an unknown or already gone connection does nothing.
    h.hub.handle_disconnect(ConnId(2));
    h.hub.handle_disconnect(ConnId(99));
    assert_eq!(h.drain(), vec![]);
    assert_eq!(h.hub.stats().connections, 2);
}

#[test]
fn idle_peer_is_closed_and_its_peer_stopped() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert_eq!(h.hub.poll_timeout(), Some(h.now + Duration::from_secs(20)));
    assert_eq!(h.advance(10), vec![]);
    // Peer 1 pings; peer 2 stays silent.
    assert_eq!(
        h.send(1, r#"{"command":"ping"}"#),
        vec![(1, r#"{"command":"pong"}"#.into())]
    );
    assert_eq!(h.advance(9), vec![]);
    assert_eq!(
        h.advance(1),
        vec![cmd(1, "stop", "r"), (2, "CLOSE IdleTimeout".into())]
    );
    assert_eq!(h.hub.stats().idle_closed, 1);
    // Peer 1's ping at t=10 keeps it until t=30.
    assert_eq!(h.advance(9), vec![]);
    h.hub.handle_am_activity(ConnId(1), h.now); // a WebSocket ping frame at t=29
    assert_eq!(h.advance(1), vec![]);
    assert_eq!(h.advance(19), vec![(1, "CLOSE IdleTimeout".into())]);
    assert_eq!(h.hub.stats().connections, 0);
    assert_eq!(h.hub.stats().rooms, 0);
}

/// Time to the first message: a socket that upgrades and never sends anything is closed
/// after the idle timeout, counted from the upgrade.
#[test]
fn a_silent_new_connection_is_closed_after_the_idle_timeout() {
    let mut h = Harness::new();
    h.connect(1, "A");
    assert_eq!(h.advance(19), vec![]);
    assert_eq!(h.advance(1), vec![(1, "CLOSE IdleTimeout".into())]);
    assert_eq!(h.hub.stats().connections, 0);
}

#[test]
fn rejoin_is_idempotent() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert_eq!(h.send(2, &join("r")), vec![joined(2, "r")]);
    assert_eq!(h.send(1, &join("r")), vec![joined(1, "r")]);
    assert_eq!(
        h.send(
            1,
            r#"{"command":"peerMessageCommand","streamId":"r","data":1}"#
        ),
        vec![(
            2,
            r#"{"command":"peerMessageCommand","streamId":"r","data":1}"#.into()
        )]
    );
}

#[test]
fn joining_another_room_leaves_the_old_one() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.connect(3, "A");
    h.send(3, &join("s"));
    assert_eq!(
        h.send(1, &join("s")),
        vec![
            cmd(2, "stop", "r"),
            leaved(1, "r"),
            joined(1, "s"),
            cmd(3, "start", "s")
        ]
    );
    // A full target room changes nothing.
    h.connect(4, "A");
    h.send(4, &join("t"));
    assert_eq!(
        h.send(4, &join("s")),
        vec![error(4, "NoSpaceForNewPeer", "s")]
    );
    h.connect(5, "A");
    assert_eq!(
        h.send(5, &join("t")),
        vec![joined(5, "t"), cmd(4, "start", "t")]
    );
}

#[test]
fn apps_are_separate_namespaces() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.connect(3, "B");
    assert_eq!(h.send(3, &join("r")), vec![joined(3, "r")]);
    h.connect(4, "B");
    assert_eq!(
        h.send(4, &join("r")),
        vec![joined(4, "r"), cmd(3, "start", "r")]
    );
    assert_eq!(h.hub.stats().rooms, 2);
}

#[test]
fn ping_and_ice_config() {
    let mut h = Harness::new();
    h.connect(1, "A");
    assert_eq!(
        h.send(1, r#"{"command":"ping"}"#),
        vec![(1, r#"{"command":"pong"}"#.into())]
    );
    assert_eq!(
        h.send(1, r#"{"command":"getIceServerConfig"}"#),
        vec![(1, r#"{"command":"iceServerConfig","stunServerUri":"stun:stun.l.google.com:19302","turnServerUsername":"","turnServerCredential":"","iceServers":[{"urls":["stun:stun.l.google.com:19302"]}]}"#.into())]
    );
}

#[test]
fn bad_frames_get_errors_and_the_connection_carries_on() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert_eq!(
        h.send(1, "nope"),
        vec![(
            1,
            r#"{"command":"error","definition":"invalid_message","reason":"not valid JSON"}"#
                .into()
        )]
    );
    assert_eq!(
        h.send(1, r#"{"command":"publish","streamId":"r"}"#),
        vec![(1, r#"{"command":"error","definition":"unsupported_command","reason":"\"publish\" is not available: this server speaks the P2P subset"}"#.into())]
    );
    assert_eq!(
        h.send(1, r#"{"command":"join"}"#),
        vec![(1, r#"{"command":"error","definition":"noStreamNameSpecified","reason":"\"streamId\" is required"}"#.into())]
    );
    assert_eq!(
        h.send(1, r#"{"command":"join","streamId":"a/b"}"#),
        vec![(1, r#"{"command":"error","definition":"invalidStreamName","streamId":"a/b","reason":"stream id may only contain A-Z a-z 0-9 _ . -"}"#.into())]
    );
    // Still paired, still relaying.
    assert_eq!(
        h.send(
            2,
            r#"{"command":"peerMessageCommand","streamId":"r","data":"ok"}"#
        ),
        vec![(
            1,
            r#"{"command":"peerMessageCommand","streamId":"r","data":"ok"}"#.into()
        )]
    );
    assert_eq!(h.hub.stats().errors, 4);
}

#[test]
fn connection_limit() {
    let mut h = Harness::with(Config {
        max_connections: 2,
        ..Config::default()
    });
    h.connect(1, "A");
    h.connect(2, "A");
    h.connect(3, "A");
    assert_eq!(
        h.drain(),
        vec![
            (3, r#"{"command":"error","definition":"highResourceUsage","reason":"server is at its connection limit"}"#.into()),
            (3, "CLOSE Overloaded".into())
        ]
    );
    assert_eq!(
        h.send(3, &join("r")),
        vec![],
        "a refused connection is unknown"
    );
    h.hub.handle_disconnect(ConnId(1));
    h.connect(3, "A");
    assert_eq!(h.send(3, &join("r")), vec![joined(3, "r")]);
}

#[test]
fn shutdown_notifies_and_closes_everyone() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.hub.shutdown();
    let stop = r#"{"command":"notification","definition":"server_will_stop"}"#;
    assert_eq!(
        h.drain(),
        vec![
            (1, stop.into()),
            (1, "CLOSE Shutdown".into()),
            (2, stop.into()),
            (2, "CLOSE Shutdown".into())
        ]
    );
    assert_eq!(
        h.hub.stats(),
        Stats {
            relayed: 0,
            ..Stats::default()
        }
    );
    assert_eq!(h.hub.poll_timeout(), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Connect(u64, bool),
        Join(u64, u8),
        Leave(u64, u8),
        Offer(u64, u8),
        Disconnect(u64),
        Wait(u64),
        Ping(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let c = 0..6u64;
        let r = 0..3u8;
        prop_oneof![
            (c.clone(), any::<bool>()).prop_map(|(c, b)| Op::Connect(c, b)),
            (c.clone(), r.clone()).prop_map(|(c, r)| Op::Join(c, r)),
            (c.clone(), r.clone()).prop_map(|(c, r)| Op::Leave(c, r)),
            (c.clone(), r).prop_map(|(c, r)| Op::Offer(c, r)),
            c.clone().prop_map(Op::Disconnect),
            (0..30u64).prop_map(Op::Wait),
            c.prop_map(Op::Ping),
        ]
    }

    proptest! {
        /// Any sequence keeps rooms consistent (checked on every drain), never sends to a
        /// connection the hub does not know, and every `start` goes to a peer whose room
        /// just got its second member.
        #[test]
        fn rooms_stay_consistent(ops in proptest::collection::vec(op(), 1..80)) {
            let mut h = Harness::new();
            let mut known = std::collections::HashSet::new();
            for op in ops {
                let out = match op {
                    Op::Connect(c, b) => {
                        h.connect(c, if b { "A" } else { "B" });
                        known.insert(c);
                        h.drain()
                    }
                    Op::Join(c, r) => h.send(c, &join(&format!("r{r}"))),
                    Op::Leave(c, r) => h.send(c, &format!(r#"{{"command":"leave","streamId":"r{r}"}}"#)),
                    Op::Offer(c, r) => h.send(c, &format!(r#"{{"command":"takeConfiguration","streamId":"r{r}","type":"offer","sdp":"s"}}"#)),
                    Op::Disconnect(c) => { h.hub.handle_disconnect(ConnId(c)); h.drain() }
                    Op::Wait(s) => h.advance(s),
                    Op::Ping(c) => h.send(c, r#"{"command":"ping"}"#),
                };
                for (c, _) in &out {
                    prop_assert!(known.contains(c));
                }
                // Closed or disconnected connections leave the known set.
                for (c, m) in &out {
                    if m.starts_with("CLOSE") { known.remove(c); }
                }
                if let Op::Disconnect(c) = op { known.remove(&c); }
                for room in h.hub.am.rooms.values() {
                    prop_assert!(room.peers.iter().flatten().count() <= 2);
                }
            }
        }
    }
}

#[test]
fn ice_config_mints_turn_credentials_for_the_clients_host() {
    use crate::ice::rest_password;
    let mut h = Harness::with(Config {
        ice: turn_ice("sb-"),
        ..Config::default()
    });
    h.hub.handle_wall_clock(1_800_000_000);
    h.connect(7, "A");
    let out = h.send(7, r#"{"command":"getIceServerConfig"}"#);
    assert_eq!(out.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&out[0].1).unwrap();
    let user = "1800003600:sb-a1";
    assert_eq!(v["stunServerUri"], "turn:sb.test:3478");
    assert_eq!(v["turnServerUsername"], user);
    assert_eq!(v["turnServerCredential"], rest_password("s3cret", user));
    assert_eq!(v["iceServers"][0]["urls"][0], "stun:sb.test:3478");
    assert_eq!(v["iceServers"][1]["username"], user);
    // Later requests get later expiries, and every credential has a user of its own (its
    // own TURN allocation quota), also across connections.
    h.hub.handle_wall_clock(1_800_000_100);
    let out = h.send(7, r#"{"command":"getIceServerConfig"}"#);
    assert!(out[0].1.contains("1800003700:sb-a2"), "{}", out[0].1);
    h.connect(8, "A");
    let out = h.send(8, r#"{"command":"getIceServerConfig"}"#);
    assert!(out[0].1.contains("1800003700:sb-a3"), "{}", out[0].1);
}

/// The joins and leaves the hub reported, as `(conn, "joined app/room")` or
/// `(conn, "left app/room reason")`.
fn events(h: &mut Harness) -> Vec<(u64, String)> {
    std::iter::from_fn(|| h.hub.poll_event())
        .map(|e| {
            let reason = e.change.reason().map(|r| format!(" {}", r.as_str()));
            let text = format!(
                "{} {} {}/{}{}",
                e.change.as_str(),
                e.dialect.as_str(),
                e.app,
                e.room,
                reason.unwrap_or_default()
            );
            (e.conn.0, text)
        })
        .collect()
}

#[test]
fn joins_and_leaves_are_reported_once_each_with_a_reason() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.connect(3, "A");
    h.send(3, &join("r")); // full: no event
    h.send(1, &join("r")); // already there: no event
    h.send(1, &join("s")); // moves
    h.send(2, r#"{"command":"leave","streamId":"r"}"#);
    h.send(2, r#"{"command":"leave","streamId":"r"}"#); // not in it: no event
    h.hub.handle_disconnect(ConnId(1));
    h.drain();
    h.send(3, &join("t"));
    h.advance(21); // 3 (and 2) idle
    assert_eq!(
        events(&mut h),
        [
            (1, "joined antmedia A/r".into()),
            (2, "joined antmedia A/r".into()),
            (1, "left antmedia A/r moved".into()),
            (1, "joined antmedia A/s".into()),
            (2, "left antmedia A/r leave".into()),
            (1, "left antmedia A/s disconnect".into()),
            (3, "joined antmedia A/t".into()),
            (3, "left antmedia A/t idle_timeout".into()),
        ]
    );
    assert_eq!(h.hub.poll_event(), None);
}

#[test]
fn the_event_queue_is_bounded() {
    let mut h = Harness::with(Config {
        limits: Limits {
            joins: RateLimit::OFF,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1, "A");
    for i in 0..MAX_EVENTS {
        h.send(1, &join(&format!("r{i}")));
    }
    // Each join after the first also leaves the previous room: 2 * MAX_EVENTS - 1 events.
    let s = h.hub.stats();
    assert_eq!(s.events_dropped, MAX_EVENTS as u64 - 1);
    assert_eq!(events(&mut h).len(), MAX_EVENTS);
}

#[test]
fn socketio_and_peerjs_joins_and_leaves_are_reported() {
    let mut h = Harness::new();
    h.hub
        .handle_sio_connect(ConnId(1), "s1", None, None, Instant::now());
    h.hub.handle_sio_message(
        ConnId(1),
        SioInput::Join { room: "x".into() },
        None,
        Instant::now(),
    );
    h.hub.handle_sio_message(
        ConnId(1),
        SioInput::Join { room: "y".into() },
        None,
        Instant::now(),
    );
    h.hub
        .handle_sio_message(ConnId(1), SioInput::Leave, None, Instant::now());
    h.hub.handle_sio_message(
        ConnId(1),
        SioInput::Join { room: "z".into() },
        None,
        Instant::now(),
    );
    h.hub.handle_disconnect(ConnId(1));
    let now = h.now;
    let pj = |h: &mut Harness, conn| {
        h.hub.handle_pj_connect(
            ConnId(conn),
            Some("peerjs"),
            Some("p"),
            Some("t"),
            None,
            now,
        )
    };
    pj(&mut h, 2);
    pj(&mut h, 3); // same id and token: takes over
    h.hub.handle_disconnect(ConnId(3));
    h.drain();
    assert_eq!(
        events(&mut h),
        [
            (1, "joined socketio //x".into()),
            (1, "left socketio //x moved".into()),
            (1, "joined socketio //y".into()),
            (1, "left socketio //y leave".into()),
            (1, "joined socketio //z".into()),
            (1, "left socketio //z disconnect".into()),
            (2, "joined peerjs peerjs/p".into()),
            (2, "left peerjs peerjs/p replaced".into()),
            (3, "joined peerjs peerjs/p".into()),
            (3, "left peerjs peerjs/p disconnect".into()),
        ]
    );
}

/// WebSocket ping and pong frames are messages for the budget: a ping flood reaches the hub
/// as activity, and without this it was the one input a client could send without limit.
#[test]
fn ping_frames_count_against_the_message_budget() {
    let mut h = Harness::with(Config {
        limits: Limits {
            messages: RateLimit::new(50, 100),
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1, "A");
    h.connect(2, "A");
    h.send(1, &join("pair"));
    h.send(2, &join("pair"));
    h.drain();
    // The join took one of the 100 tokens: 99 pings pass, the 100th is refused.
    for _ in 0..99 {
        h.hub.handle_am_activity(ConnId(1), h.now);
    }
    assert_eq!(h.drain(), []);
    h.hub.handle_am_activity(ConnId(1), h.now);
    let out = h.drain();
    assert!(
        out.iter()
            .any(|(c, m)| *c == 1 && m.contains(r#""definition":"rate_limited""#)),
        "{out:?}"
    );
    let mut closed = false;
    for _ in 0..REFUSALS_BEFORE_CLOSE {
        h.hub.handle_am_activity(ConnId(1), h.now);
        let out = h.drain();
        if out.contains(&(1, "CLOSE RateLimited".into())) {
            assert!(
                out.iter()
                    .any(|(c, m)| *c == 2 && m.contains(r#""command":"stop""#))
            );
            closed = true;
            break;
        }
    }
    assert!(closed);
    // A second later, the same pings from connection 2 are within its own budget.
    h.now += Duration::from_secs(1);
    for _ in 0..50 {
        h.hub.handle_am_activity(ConnId(2), h.now);
    }
    assert_eq!(h.drain(), []);
}

/// Issue 15 finding 8: one connection tried 9,000 room names in 344 ms, and flooding was not
/// limited. Joins and messages now have budgets per connection (and joins per source), the
/// same in every dialect; going on after refusals closes the connection.
#[test]
fn joins_and_messages_are_rate_limited_in_every_dialect() {
    let ip: IpAddr = "198.51.100.9".parse().unwrap();
    let mut h = Harness::with(Config {
        limits: Limits {
            messages: RateLimit::new(50, 100),
            joins: RateLimit::new(10, 20),
            joins_per_source: RateLimit::new(100, 30),
        },
        ..Config::default()
    });
    let app = App::new("A").unwrap();
    h.hub
        .handle_am_connect(ConnId(1), app.clone(), None, Some(ip), None, h.now);
    h.hub
        .handle_am_connect(ConnId(2), app.clone(), None, Some(ip), None, h.now);
    // Ant Media: 20 joins pass, the 21st is refused with the room named.
    for i in 0..20 {
        assert_eq!(h.send(1, &join(&format!("r{i}")))[0].0, 1);
    }
    let out = h.send(1, &join("r20"));
    assert!(
        out.iter().any(|(c, m)| *c == 1
            && m.contains(r#""definition":"rate_limited""#)
            && m.contains(r#""streamId":"r20""#)),
        "{out:?}"
    );
    // Another connection from the same source has its own 20 but shares the source's 30.
    let ok = (0..20)
        .filter(|i| {
            h.send(2, &join(&format!("s{i}")))
                .iter()
                .any(|(_, m)| m.contains("joined"))
        })
        .count();
    assert_eq!(ok, 10);
    // A second later, ten more joins for connection 1.
    h.now += Duration::from_secs(1);
    let ok = (0..20)
        .filter(|i| {
            h.send(1, &join(&format!("t{i}")))
                .iter()
                .any(|(_, m)| m.contains("joined"))
        })
        .count();
    assert_eq!(ok, 10);
    // A message flood: refused past the budget; 100 refusals within 10 s close the
    // connection, and its partner gets `stop`.
    h.connect(3, "A");
    h.connect(4, "A");
    h.send(3, &join("pair"));
    h.send(4, &join("pair"));
    let mut closed = false;
    for _ in 0..300 {
        let out = h.send(3, r#"{"command":"ping"}"#);
        if out.contains(&(3, "CLOSE RateLimited".into())) {
            assert!(
                out.iter()
                    .any(|(c, m)| *c == 4 && m.contains(r#""command":"stop""#)),
                "{out:?}"
            );
            closed = true;
            break;
        }
    }
    assert!(closed);
    let s = h.hub.stats();
    assert_eq!(s.rate_limit_closed, 1);
    assert!(s.rate_limited >= 100, "{s:?}");
    // Connection 4 keeps working.
    assert_eq!(
        h.send(4, r#"{"command":"ping"}"#),
        [(4, r#"{"command":"pong"}"#.into())]
    );

    // socket.io: the same join budget, answered `rate_limited` in the ack.
    h.hub.handle_sio_connect(
        ConnId(10),
        "sio",
        Some("203.0.113.1".parse().unwrap()),
        None,
        h.now,
    );
    let mut refused = 0;
    for i in 0..25 {
        h.hub.handle_sio_message(
            ConnId(10),
            SioInput::Join {
                room: format!("x{i}").into(),
            },
            Some(AckId(i)),
            h.now,
        );
        while let Some(o) = h.hub.poll_output() {
            if let Output::SioAck {
                reply:
                    SioAck::Error {
                        error: SioError::RateLimited,
                        ..
                    },
                ..
            } = o
            {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5);

    // PeerJS: a connection is a join for its source; past the source's budget, `ERROR` and
    // a close.
    let pj_ip: IpAddr = "2001:db8::1".parse().unwrap();
    let mut refused = 0;
    for c in 0..40u64 {
        // Any address of the same /64 is the same source.
        let ip = IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(match pj_ip {
                IpAddr::V6(v) => v,
                IpAddr::V4(_) => unreachable!(),
            }) + u128::from(c),
        ));
        h.hub.handle_pj_connect(
            ConnId(100 + c),
            Some("peerjs"),
            Some(&format!("p{c}")),
            Some("t"),
            Some(ip),
            h.now,
        );
        let out = h.drain();
        if out.iter().any(|(_, m)| m.contains("rate_limited")) {
            assert!(out.contains(&(100 + c, "CLOSE Refused".into())), "{out:?}");
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    for c in 0..40u64 {
        h.hub.handle_disconnect(ConnId(100 + c));
    }
    for c in [1, 2, 4, 10] {
        h.hub.handle_disconnect(ConnId(c));
    }
    // Spent address budgets outlive their connections until they are full again.
    assert_eq!(h.hub.limiter.len().0, 0);
    let later = h.now + Duration::from_secs(3600);
    h.hub.limiter.sweep(&h.hub.config.limits, later);
    assert_eq!(h.hub.limiter.len(), (0, 0));
}

#[test]
fn config_validation_names_what_is_out_of_range() {
    assert_eq!(Config::default().validate(), Ok(()));
    let bad = |f: fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        c.validate().unwrap_err().0
    };
    assert!(bad(|c| c.idle_timeout = Duration::ZERO).contains("idle_timeout"));
    assert!(bad(|c| c.sio_max_room_peers = 1).contains("at least 2"));
    assert!(bad(|c| c.peerjs.key = "".into()).contains("peerjs key"));
    assert!(
        bad(|c| c.ice.servers = vec![switchboard_proto::IceServer::stun("http://x")])
            .contains("must start with stun:")
    );
}
