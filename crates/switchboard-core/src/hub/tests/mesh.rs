//! Mesh rooms: roster, who offers to whom, relays named and stamped, leaving, the size limit
//! and the mode of a room.

use super::*;

pub(super) const JOIN: &str = r#"{"command":"join","streamId":"m","mesh":true}"#;

pub(super) fn joined(peer: u64, peers: &[u64]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        r#"{{"command":"notification","definition":"joined","streamId":"m","peerId":"{peer}","peers":[{}]}}"#,
        peers.join(",")
    )
}

pub(super) fn peer_joined(peer: u64) -> String {
    format!(
        r#"{{"command":"notification","definition":"peerJoined","streamId":"m","peerId":"{peer}"}}"#
    )
}

pub(super) fn start(peer: u64) -> String {
    format!(r#"{{"command":"start","streamId":"m","peerId":"{peer}"}}"#)
}

pub(super) fn peer_left(peer: u64) -> String {
    format!(
        r#"{{"command":"notification","definition":"peerLeft","streamId":"m","peerId":"{peer}"}}"#
    )
}

/// Members 1..=n joined in order, outputs drained.
fn mesh(n: u64) -> Harness {
    let mut h = Harness::new();
    for c in 1..=n {
        h.connect(c, "A");
        h.send(c, JOIN);
    }
    h
}

#[test]
fn a_joiner_gets_the_roster_and_each_member_there_first_offers_to_it() {
    let mut h = Harness::new();
    for c in 1..=3 {
        h.connect(c, "A");
    }
    assert_eq!(h.send(1, JOIN), [(1, joined(1, &[]))]);
    assert_eq!(
        h.send(2, JOIN),
        [(2, joined(2, &[1])), (1, peer_joined(2)), (1, start(2))]
    );
    assert_eq!(
        h.send(3, JOIN),
        [
            (3, joined(3, &[1, 2])),
            (1, peer_joined(3)),
            (1, start(3)),
            (2, peer_joined(3)),
            (2, start(3)),
        ]
    );
    // Joining again: the roster again, nobody else hears of it.
    assert_eq!(h.send(2, JOIN), [(2, joined(2, &[1, 3]))]);
    assert_eq!(h.stats().rooms_by_dialect.antmedia, 1);
    assert_eq!(h.room_members(Dialect::AntMedia, "A", "m").len(), 3);
}

#[test]
fn relays_go_to_the_named_member_only_stamped_with_their_sender() {
    let mut h = mesh(3);
    // A forged peerId of the sender is overwritten; only member 2 receives it.
    let out = h.send(
        1,
        r#"{"command":"takeConfiguration","streamId":"m","type":"offer","sdp":"v=0","peerId":"2"}"#,
    );
    assert_eq!(
        out,
        [(
            2,
            r#"{"command":"takeConfiguration","streamId":"m","type":"offer","sdp":"v=0","idMapping":{},"peerId":"1"}"#
                .into()
        )]
    );
    let out = h.send(
        3,
        r#"{"command":"takeCandidate","streamId":"m","label":0,"id":"0","candidate":"c","peerId":1}"#,
    );
    assert_eq!(
        out,
        [(
            1,
            r#"{"command":"takeCandidate","streamId":"m","label":0,"id":"0","candidate":"c","peerId":"3"}"#
                .into()
        )]
    );
    let out = h.send(
        2,
        r#"{"command":"peerMessageCommand","streamId":"m","definition":"chat","data":"hi","peerId":"3"}"#,
    );
    assert_eq!(
        out,
        [(
            3,
            r#"{"command":"peerMessageCommand","streamId":"m","definition":"chat","data":"hi","peerId":"2"}"#
                .into()
        )]
    );
    // Without peerId, to itself, or to someone not in the room: an error to the sender only.
    for (to, definition) in [
        ("", "invalid_message"),
        (r#","peerId":"1""#, "no_peer_associated_before"),
        (r#","peerId":"99""#, "no_peer_associated_before"),
    ] {
        let out = h.send(
            1,
            &format!(r#"{{"command":"peerMessageCommand","streamId":"m","data":"x"{to}}}"#),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, 1);
        assert!(out[0].1.contains(definition), "{out:?}");
    }
}

#[test]
fn leaving_closing_and_going_idle_are_peer_left_to_the_others() {
    let mut h = mesh(3);
    assert_eq!(
        h.send(2, r#"{"command":"leave","streamId":"m"}"#),
        [
            (1, peer_left(2)),
            (3, peer_left(2)),
            (
                2,
                r#"{"command":"notification","definition":"leaved","streamId":"m"}"#.into()
            ),
        ]
    );
    h.handle_disconnect(ConnId(3));
    assert_eq!(h.drain(), [(1, peer_left(3))]);
    // It rejoins: the one left offers to it.
    h.connect(3, "A");
    assert_eq!(
        h.send(3, JOIN),
        [(3, joined(3, &[1])), (1, peer_joined(3)), (1, start(3))]
    );
    // Member 1 goes silent; member 3 keeps talking.
    h.now += Duration::from_secs(15);
    h.send(3, r#"{"command":"ping"}"#);
    let out = h.advance(10);
    assert!(out.contains(&(3, peer_left(1))), "{out:?}");
    assert!(out.contains(&(1, "CLOSE IdleTimeout".into())), "{out:?}");
    h.handle_disconnect(ConnId(3));
    h.drain();
    assert_eq!(
        h.stats().rooms_by_dialect.antmedia,
        0,
        "the last one out ends it"
    );
    // The edge heard of every join and leave (logs, /metrics, webhooks).
    let ev = events(&mut h);
    let joins = ev.iter().filter(|(_, e)| e.starts_with("joined")).count();
    let left: Vec<&str> = ev
        .iter()
        .filter(|(_, e)| e.starts_with("left"))
        .map(|(_, e)| e.rsplit(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(joins, 4, "{ev:?}");
    assert_eq!(
        left,
        ["leave", "disconnect", "idle_timeout", "disconnect"],
        "{ev:?}"
    );
}

#[test]
fn a_full_mesh_refuses_the_next_member_and_a_room_keeps_its_mode() {
    let mut h = Harness::with(Config {
        max_mesh_peers: 3,
        ..Config::default()
    });
    for c in 1..=4 {
        h.connect(c, "A");
        h.send(c, JOIN);
    }
    let out = h.drain();
    assert!(out.is_empty());
    assert_eq!(h.room_members(Dialect::AntMedia, "A", "m").len(), 3);
    // The fourth was refused, with the same error as a full 1:1 room.
    h.connect(5, "A");
    let out = h.send(5, JOIN);
    assert_eq!(out.len(), 1);
    assert!(out[0].1.contains("NoSpaceForNewPeer"), "{out:?}");
    // A 1:1 join of a mesh room, and a mesh join of a 1:1 room: room_mode_mismatch.
    let out = h.send(5, r#"{"command":"join","streamId":"m"}"#);
    assert!(out[0].1.contains("room_mode_mismatch"), "{out:?}");
    h.send(5, r#"{"command":"join","streamId":"one"}"#);
    h.connect(6, "A");
    let out = h.send(6, r#"{"command":"join","streamId":"one","mesh":true}"#);
    assert!(out[0].1.contains("room_mode_mismatch"), "{out:?}");
    // Another app's room of the same name is another room.
    h.connect(7, "B");
    assert_eq!(h.send(7, JOIN), [(7, joined(7, &[]))]);
    assert!(
        Config {
            max_mesh_peers: 1,
            ..Config::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn a_member_moving_to_another_room_leaves_the_mesh_and_kicks_are_peer_left() {
    let mut h = mesh(3);
    let out = h.send(1, r#"{"command":"join","streamId":"elsewhere"}"#);
    assert!(
        out.contains(&(2, peer_left(1))) && out.contains(&(3, peer_left(1))),
        "{out:?}"
    );
    assert!(h.handle_kick(ConnId(2)));
    let out = h.drain();
    assert!(out.contains(&(3, peer_left(2))), "{out:?}");
    assert!(out.contains(&(2, "CLOSE Kicked".into())), "{out:?}");
    assert_eq!(h.handle_close_room(Dialect::AntMedia, "A", "m"), 1);
    h.drain();
    assert_eq!(
        h.stats().rooms_by_dialect.antmedia,
        1,
        "only \"elsewhere\" is left"
    );
}

#[test]
fn members_joining_at_the_same_instant_get_one_offer_per_pair() {
    // Five joins handled back to back (as one batch of the hub task), then every output:
    // each pair gets exactly one `start`, to the member that joined first.
    let mut h = Harness::new();
    for c in 1..=5 {
        h.connect(c, "A");
    }
    for c in 1..=5 {
        h.hub.handle_am_message(ConnId(c), decode(JOIN), h.now);
    }
    let out = h.drain();
    for a in 1..=5u64 {
        for b in (a + 1)..=5 {
            let starts = |from: u64, to: u64| {
                out.iter()
                    .filter(|(c, m)| *c == from && *m == start(to))
                    .count()
            };
            assert_eq!(
                (starts(a, b), starts(b, a)),
                (1, 0),
                "pair {a}-{b}: {out:?}"
            );
        }
    }
}
