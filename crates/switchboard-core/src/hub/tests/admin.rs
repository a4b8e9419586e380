//! The operator's actions (admin API rules) in every dialect: kick, close a room, list.

use super::*;

#[test]
fn a_kicked_ant_media_peer_gets_stop_and_is_closed_and_its_partner_gets_stop() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    assert!(h.handle_kick(ConnId(1)));
    assert_eq!(
        h.drain(),
        vec![
            cmd(1, "stop", "r"),
            cmd(2, "stop", "r"),
            (1, "CLOSE Kicked".into())
        ]
    );
    let left: Vec<_> = std::iter::from_fn(|| h.poll_event())
        .filter_map(|e| e.change.reason())
        .collect();
    assert_eq!(left, vec![LeaveReason::Kicked]);
    assert_eq!(h.stats().kicked, 1);
    // The seat is free; a kick of an unknown or closed connection does nothing.
    h.connect(3, "A");
    assert_eq!(
        h.send(3, &join("r")),
        vec![joined(3, "r"), cmd(2, "start", "r")]
    );
    assert!(!h.handle_kick(ConnId(1)));
    assert!(!h.handle_kick(ConnId(99)));
    assert_eq!(h.drain(), vec![]);
}

#[test]
fn closing_a_room_kicks_its_members_in_every_dialect() {
    let t = Instant::now();
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.connect(3, "B");
    h.send(3, &join("r"));
    assert_eq!(
        h.room_members(Dialect::AntMedia, "A", "r"),
        [ConnId(1), ConnId(2)]
    );
    assert_eq!(h.handle_close_room(Dialect::AntMedia, "A", "r"), 2);
    let out = h.drain();
    assert!(out.contains(&(1, "CLOSE Kicked".into())), "{out:?}");
    assert!(out.contains(&(2, "CLOSE Kicked".into())), "{out:?}");
    assert_eq!(h.handle_close_room(Dialect::AntMedia, "A", "r"), 0);
    assert_eq!(
        h.peer(ConnId(3)).and_then(|p| p.room).as_deref(),
        Some("r"),
        "other app"
    );

    // socket.io: the room's members are kicked; one left outside hears nothing.
    for (c, id) in [(10, "a"), (11, "b"), (12, "c")] {
        h.handle_sio_connect(ConnId(c), id, None, None, t);
    }
    for c in [10, 11] {
        h.handle_sio_message(
            ConnId(c),
            SioInput::Join {
                room: "lobby".into(),
            },
            None,
            t,
        );
    }
    h.drain();
    assert_eq!(h.handle_close_room(Dialect::SocketIo, "/", "lobby"), 2);
    let out = h.outputs();
    assert!(
        out.iter().all(|o| !matches!(
            o,
            Output::SioEmit {
                conn: ConnId(12),
                ..
            }
        )),
        "{out:?}"
    );
    let closed: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Close { conn, reason } => Some((conn.0, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        [(10, CloseReason::Kicked), (11, CloseReason::Kicked)]
    );

    // PeerJS: the "room" is the id.
    h.handle_pj_connect(ConnId(20), Some("peerjs"), Some("pa"), Some("t"), None, t);
    h.drain();
    assert_eq!(h.handle_close_room(Dialect::PeerJs, "peerjs", "pa"), 1);
    assert_eq!(h.drain(), vec![(20, "CLOSE Kicked".into())]);
    // The id is free again.
    h.handle_pj_connect(ConnId(21), Some("peerjs"), Some("pa"), Some("u"), None, t);
    assert_eq!(h.drain(), vec![(21, r#"{"type":"OPEN"}"#.into())]);
    assert_eq!(h.stats().kicked, 5);
}

#[test]
fn peers_are_listed_a_page_at_a_time_in_connection_order() {
    let t = Instant::now();
    let mut h = Harness::new();
    h.pair(5, 3, "r");
    h.handle_sio_connect(ConnId(4), "s4", None, None, t);
    h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("p1"), Some("t"), None, t);
    h.drain();
    let page = h.peers(None, 2);
    assert_eq!(
        page.iter().map(|p| p.conn.0).collect::<Vec<_>>(),
        [1, 3],
        "{page:?}"
    );
    assert_eq!(page[0].dialect, Dialect::PeerJs);
    assert_eq!(page[0].id.as_deref(), Some("p1"));
    assert_eq!(page[1].room.as_deref(), Some("r"));
    let rest = h.peers(Some(ConnId(3)), 10);
    assert_eq!(rest.iter().map(|p| p.conn.0).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(rest[0].app.as_ref(), "/");
    assert!(h.peers(Some(ConnId(5)), 10).is_empty());
}

#[test]
fn a_slow_consumer_leaves_with_its_own_reason() {
    let mut h = Harness::new();
    h.pair(1, 2, "r");
    h.handle_slow_consumer(ConnId(1));
    // Nothing to the dropped connection (the edge closed it); its partner gets stop.
    assert_eq!(h.drain(), vec![cmd(2, "stop", "r")]);
    let left: Vec<_> = std::iter::from_fn(|| h.poll_event())
        .filter_map(|e| e.change.reason())
        .collect();
    assert_eq!(left, vec![LeaveReason::SlowConsumer]);
}

#[test]
fn an_apps_rooms_are_listed_a_page_at_a_time_in_name_order() {
    let mut h = Harness::new();
    h.pair(1, 2, "b");
    h.connect(3, "A");
    h.send(3, &join("a"));
    h.connect(4, "A");
    h.send(4, &join("c"));
    h.connect(5, "Other");
    h.send(5, &join("a"));
    let all = h.rooms_of(Dialect::AntMedia, "A", None, 10);
    assert_eq!(all, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]);
    assert_eq!(h.rooms_of(Dialect::AntMedia, "A", None, 2).len(), 2);
    assert_eq!(
        h.rooms_of(Dialect::AntMedia, "A", Some("b"), 10),
        vec![("c".into(), 1)]
    );
    assert!(h.rooms_of(Dialect::SocketIo, "A", None, 10).is_empty());
}
