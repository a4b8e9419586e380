//! The socket.io dialect's rules, driven through the shared [`super::Harness`].

use super::*;
use crate::Config;
use std::time::Instant;
use switchboard_proto::Opaque;

fn hub() -> Harness {
    let mut h = Harness::new();
    for (c, id) in [(1, "a"), (2, "b"), (3, "c")] {
        h.handle_sio_connect(ConnId(c), id, None, None, Instant::now());
    }
    h
}

fn outputs(h: &mut Harness) -> Vec<Output> {
    h.outputs()
}

fn relay(target: &str) -> SioInput {
    SioInput::Relay {
        event: SioRelay::Offer,
        target: target.into(),
        payload: Opaque::from_json(format!(r#"{{"target":"{target}","from":"a"}}"#)).unwrap(),
    }
}

#[test]
fn relay_reaches_the_target_only_and_acks() {
    let mut h = hub();
    h.handle_sio_message(ConnId(1), relay("b"), Some(AckId(7)), Instant::now());
    assert_eq!(
        outputs(&mut h),
        [
            Output::SioEmit {
                conn: ConnId(2),
                emit: SioEmit::Relay {
                    event: SioRelay::Offer,
                    payload: Opaque::from_json(r#"{"target":"b","from":"a"}"#.into()).unwrap()
                }
            },
            Output::SioAck {
                conn: ConnId(1),
                ack: AckId(7),
                reply: SioAck::Ok
            }
        ]
    );
    assert_eq!(h.stats().relayed, 1);
}

#[test]
fn unknown_or_own_target_is_an_error_ack_or_event() {
    let mut h = hub();
    h.handle_sio_message(ConnId(1), relay("nobody"), Some(AckId(1)), Instant::now());
    h.handle_sio_message(ConnId(1), relay("a"), None, Instant::now());
    let out = outputs(&mut h);
    assert!(matches!(
        &out[0],
        Output::SioAck {
            conn: ConnId(1),
            reply: SioAck::Error {
                error: SioError::UnknownTarget,
                ..
            },
            ..
        }
    ));
    assert!(matches!(
        &out[1],
        Output::SioEmit {
            conn: ConnId(1),
            emit: SioEmit::Error {
                error: SioError::UnknownTarget,
                ..
            }
        }
    ));
    assert_eq!(out.len(), 2);
    assert_eq!(h.stats().errors, 2);
    assert_eq!(
        h.error_counts().get(Dialect::SocketIo, "unknown_target"),
        2,
        "the ack and the event"
    );
    assert_eq!(h.stats().connections_by_dialect.socketio, 3);
}

#[test]
fn rooms_give_rosters_and_peer_events() {
    let mut h = hub();
    h.handle_sio_message(
        ConnId(1),
        SioInput::Join { room: "r".into() },
        Some(AckId(1)),
        Instant::now(),
    );
    assert_eq!(
        outputs(&mut h),
        [Output::SioAck {
            conn: ConnId(1),
            ack: AckId(1),
            reply: SioAck::Joined {
                room: "r".into(),
                peers: vec![]
            }
        }]
    );
    h.handle_sio_message(
        ConnId(2),
        SioInput::Join { room: "r".into() },
        Some(AckId(2)),
        Instant::now(),
    );
    let out = outputs(&mut h);
    assert!(out.contains(&Output::SioEmit {
        conn: ConnId(1),
        emit: SioEmit::PeerJoined {
            room: "r".into(),
            id: "b".into()
        }
    }));
    assert!(out.contains(&Output::SioAck {
        conn: ConnId(2),
        ack: AckId(2),
        reply: SioAck::Joined {
            room: "r".into(),
            peers: vec!["a".into()]
        }
    }));
    // A room name is not a relay target.
    h.handle_sio_message(ConnId(3), relay("r"), Some(AckId(3)), Instant::now());
    assert!(matches!(
        &outputs(&mut h)[0],
        Output::SioAck {
            reply: SioAck::Error {
                error: SioError::UnknownTarget,
                ..
            },
            ..
        }
    ));
    h.handle_disconnect(ConnId(2));
    assert_eq!(
        outputs(&mut h),
        [Output::SioEmit {
            conn: ConnId(1),
            emit: SioEmit::PeerLeft {
                room: "r".into(),
                id: "b".into()
            }
        }]
    );
    h.handle_sio_message(ConnId(1), SioInput::Leave, None, Instant::now());
    h.handle_sio_message(ConnId(1), SioInput::Leave, Some(AckId(9)), Instant::now());
    assert!(matches!(
        &outputs(&mut h)[0],
        Output::SioAck {
            reply: SioAck::Error {
                error: SioError::NotInRoom,
                ..
            },
            ..
        }
    ));
    assert_eq!(h.stats().rooms, 0);
    // The id is free again after a disconnect.
    h.handle_sio_message(ConnId(1), relay("b"), Some(AckId(4)), Instant::now());
    assert!(matches!(
        &outputs(&mut h)[0],
        Output::SioAck {
            reply: SioAck::Error {
                error: SioError::UnknownTarget,
                ..
            },
            ..
        }
    ));
}

#[test]
fn room_size_and_connection_limits() {
    let mut h = Harness::with(Config {
        sio_max_room_peers: 1,
        max_connections: 2,
        ..Config::default()
    });
    h.handle_sio_connect(ConnId(1), "a", None, None, Instant::now());
    h.handle_sio_connect(ConnId(2), "b", None, None, Instant::now());
    h.handle_sio_connect(ConnId(3), "c", None, None, Instant::now());
    let out = outputs(&mut h);
    assert!(matches!(
        &out[..],
        [
            Output::SioEmit {
                conn: ConnId(3),
                emit: SioEmit::Error {
                    error: SioError::ServerBusy,
                    ..
                }
            },
            Output::Close {
                conn: ConnId(3),
                reason: CloseReason::Overloaded
            }
        ]
    ));
    h.handle_sio_message(
        ConnId(1),
        SioInput::Join { room: "r".into() },
        None,
        Instant::now(),
    );
    h.handle_sio_message(
        ConnId(2),
        SioInput::Join { room: "r".into() },
        Some(AckId(1)),
        Instant::now(),
    );
    let out = outputs(&mut h);
    assert!(matches!(
        out.last().unwrap(),
        Output::SioAck {
            reply: SioAck::Error {
                error: SioError::RoomFull,
                ..
            },
            ..
        }
    ));
}
