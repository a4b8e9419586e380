#![allow(clippy::unwrap_used)]

use super::batch::{REC_AM, REC_MSG, REC_PJ};
use super::*;

#[test]
fn a_relay_crosses_nodes_untouched() {
    let env = Envelope {
        node: NodeId::new("node-a").unwrap(),
        msg: NodeMessage::AmRelay {
            app: App::new("live").unwrap(),
            room: StreamId::new("r1").unwrap(),
            to: 7,
            from: u64::MAX,
            msg: AmRelayed::TakeCandidate {
                label: Some(Opaque::from_json("0".into()).unwrap()),
                id: None,
                candidate: Opaque::from_json(r#""candidate:1 1 udp \u00e9""#.into()).unwrap(),
            },
        },
    };
    let json = env.to_json();
    assert_eq!(Envelope::encode(&env.node, &env.msg), json);
    let back = Envelope::from_json(&json).unwrap();
    assert_eq!(back, env);
    let NodeMessage::AmRelay { msg, room, .. } = back.msg else {
        panic!("{json}")
    };
    let wire = serde_json::to_string(&msg.into_server_message(room)).unwrap();
    assert_eq!(
        wire,
        r#"{"command":"takeCandidate","streamId":"r1","label":0,"candidate":"candidate:1 1 udp \u00e9"}"#
    );
}

#[test]
fn a_roster_built_by_the_join_script_reads_back() {
    let node = NodeId::new("n-a").unwrap();
    let json = format!(
        r#"{}[["x\"y","n-b"],["z","n-a"]]{ROSTER_END}"#,
        Envelope::roster_prefix(&node, "r\"1", 9_007_199_254_740_991)
    );
    let env = Envelope::from_json(&json).unwrap();
    assert_eq!(
        env.msg,
        NodeMessage::SioRoster {
            room: "r\"1".into(),
            to: 9_007_199_254_740_991,
            peers: vec![
                ("x\"y".into(), NodeId::new("n-b").unwrap()),
                ("z".into(), NodeId::new("n-a").unwrap())
            ],
        }
    );
    let empty = format!("{}[]{ROSTER_END}", Envelope::roster_prefix(&node, "r", 1));
    assert!(Envelope::from_json(&empty).is_ok());
}

#[test]
fn mesh_messages_built_by_the_join_script_read_back() {
    let node = NodeId::new("n-a").unwrap();
    let app = App::new("LiveApp").unwrap();
    let room = StreamId::new("r1").unwrap();
    let roster = format!(
        r#"{}[[3,"n-b",true],[7,"n-a",false]],"me":12{ROSTER_END}"#,
        Envelope::mesh_roster_prefix(&node, &app, &room, 5)
    );
    assert_eq!(
        Envelope::from_json(&roster).unwrap().msg,
        NodeMessage::MeshRoster {
            app: app.clone(),
            room: room.clone(),
            to: 5,
            me: 12,
            peers: vec![
                (3, NodeId::new("n-b").unwrap(), true),
                (7, NodeId::new("n-a").unwrap(), false)
            ],
        }
    );
    let joined = format!(
        "{}12{ROSTER_END}",
        Envelope::mesh_joined_prefix(&node, &app, &room, false)
    );
    let env = Envelope::from_json(&joined).unwrap();
    assert_eq!(env.node, node);
    assert_eq!(
        env.msg,
        NodeMessage::MeshPeerJoined {
            app,
            room,
            offer: false,
            id: 12
        }
    );
}

#[test]
fn queued_peerjs_messages_built_by_the_claim_script_read_back() {
    let node = NodeId::new("n-a").unwrap();
    let m = PjRelayed {
        kind: PjType::Offer,
        src: "alice".into(),
        dst: "bob".into(),
        payload: Some(Opaque::from_json(r#"{"sdp":"v=0"}"#.into()).unwrap()),
        back: None,
    };
    let json = format!(
        "{}[{}]{ROSTER_END}",
        Envelope::claimed_prefix(&node, "bob", 77),
        m.to_json()
    );
    let env = Envelope::from_json(&json).unwrap();
    let NodeMessage::PjClaimed { to, id, queued } = env.msg else {
        panic!("{json}")
    };
    assert_eq!((to, &*id), (77, "bob"));
    assert_eq!(
        queued[0].clone().into_server_message().encode(),
        r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":"v=0"}}"#
    );
}

#[test]
fn direct_relays_and_their_misses_read_back() {
    let node = NodeId::new("n-a").unwrap();
    let msgs = [
        NodeMessage::SioRelay {
            to: "t".into(),
            event: SioRelay::Offer,
            payload: Opaque::from_json(r#"{"from":"s"}"#.into()).unwrap(),
            back: Some(SioBack {
                conn: 7,
                room: Some("lobby-*".into()),
            }),
        },
        NodeMessage::SioMiss {
            conn: 7,
            event: SioRelay::IceCandidate,
            to: "t".into(),
            wrong_room: true,
        },
        NodeMessage::PjRelay(PjRelayed {
            kind: PjType::Candidate,
            src: "a".into(),
            dst: "b".into(),
            payload: None,
            back: Some(9),
        }),
        NodeMessage::PjMiss {
            conn: 9,
            kind: PjType::Answer,
            src: "a".into(),
            dst: "b".into(),
        },
    ];
    for msg in msgs {
        let env = Envelope::from_json(&Envelope::encode(&node, &msg)).unwrap();
        assert_eq!(env.msg, msg);
    }
    // What the registry queues carries no `back`: its JSON is as before.
    let queued = PjRelayed {
        kind: PjType::Leave,
        src: "a".into(),
        dst: "b".into(),
        payload: None,
        back: None,
    };
    assert_eq!(queued.to_json(), r#"{"type":"LEAVE","src":"a","dst":"b"}"#);
}

#[test]
fn a_batch_reads_back_and_a_single_envelope_reads_as_a_batch_of_one() {
    let node = NodeId::new("n-a").unwrap();
    let m = |to| NodeMessage::AmLeft {
        app: App::new("live").unwrap(),
        room: StreamId::new("r").unwrap(),
        to,
        from: 2,
    };
    let msgs = [m(1), m(3)];
    let batch = Batch::read(&Batch::encode(&node, &msgs)).unwrap();
    assert_eq!((batch.node.as_str(), batch.msgs), ("n-a", msgs.to_vec()));
    let one = Batch::read(Envelope::encode(&node, &msgs[0]).as_bytes()).unwrap();
    assert_eq!(one.msgs, vec![msgs[0].clone()]);
    // What the scripts publish: a JSON batch.
    let json = format!(
        r#"{{"msgs":[{}],"node":"n-b"}}"#,
        serde_json::to_string(&msgs[1]).unwrap()
    );
    let batch = Batch::read(json.as_bytes()).unwrap();
    assert_eq!(
        (batch.node.as_str(), batch.msgs),
        ("n-b", vec![msgs[1].clone()])
    );
}

fn opaque(json: &str) -> Opaque {
    Opaque::from_json(json.into()).unwrap()
}

fn am_bodies() -> Vec<AmRelayed> {
    vec![
        AmRelayed::TakeConfiguration {
            kind: SdpType::Offer,
            sdp: opaque(r#""v=0\r\no=- \"x\" \u00e9""#),
        },
        AmRelayed::TakeCandidate {
            label: Some(opaque("0")),
            id: Some(opaque(r#""0""#)),
            candidate: opaque(r#""candidate:1 1 udp 2 1.2.3.4 5 typ host""#),
        },
        AmRelayed::TakeCandidate {
            label: None,
            id: None,
            candidate: opaque(r#""""#),
        },
        AmRelayed::PeerMessageCommand {
            definition: Some(opaque(r#""chat""#)),
            data: Some(opaque(r#"{"a":[1,2,{"b":null}]}"#)),
        },
        AmRelayed::PeerMessageCommand {
            definition: None,
            data: None,
        },
    ]
}

#[test]
fn a_rendered_frame_is_the_message_its_receiver_would_get() {
    let room = StreamId::new("room-1").unwrap();
    for body in am_bodies() {
        let frame = body.frame(&room);
        assert_eq!(
            frame.as_str(),
            body.into_server_message(room.clone()).encode()
        );
    }
    for payload in [None, Some(opaque(r#"{"sdp":"v=0","type":"offer"}"#))] {
        let m = PjRelayed {
            kind: PjType::Offer,
            src: "al\"ice\u{1}".into(),
            dst: "bób".into(),
            payload,
            back: Some(3),
        };
        assert_eq!(m.frame().as_str(), m.clone().into_server_message().encode());
    }
}

/// Messages of every kind a batch carries, each with what it is when it arrives on another
/// node (relays as their receivers' frames; the rest as they were sent).
fn mixed() -> Vec<(NodeMessage, NodeMessage)> {
    let app = App::new("live").unwrap();
    let room = StreamId::new("r").unwrap();
    let mut msgs: Vec<(NodeMessage, NodeMessage)> = am_bodies()
        .into_iter()
        .map(|msg| {
            let arrived = NodeMessage::AmFrame {
                app: app.clone(),
                room: room.clone(),
                to: 7,
                from: u64::MAX,
                frame: msg.frame(&room),
            };
            let sent = NodeMessage::AmRelay {
                app: app.clone(),
                room: room.clone(),
                to: 7,
                from: u64::MAX,
                msg,
            };
            (sent, arrived)
        })
        .collect();
    let pj = PjRelayed {
        kind: PjType::Candidate,
        src: "a".into(),
        dst: "b".into(),
        payload: Some(opaque(r#"{"candidate":{"candidate":"c"}}"#)),
        back: Some(9),
    };
    msgs.push((
        NodeMessage::PjRelay(pj.clone()),
        NodeMessage::PjFrame(PjArrived {
            kind: PjType::Candidate,
            src: "a".into(),
            dst: "b".into(),
            back: Some(9),
            frame: pj.frame(),
        }),
    ));
    for m in [
        NodeMessage::AmLeft {
            app,
            room,
            to: 7,
            from: 8,
        },
        NodeMessage::PjMiss {
            conn: 9,
            kind: PjType::Answer,
            src: "a".into(),
            dst: "b".into(),
        },
        NodeMessage::SioRelay {
            to: "t".into(),
            event: SioRelay::Offer,
            payload: opaque(r#"{"from":"s"}"#),
            back: None,
        },
    ] {
        msgs.push((m.clone(), m));
    }
    msgs
}

#[test]
fn relays_cross_in_a_binary_batch_as_their_receivers_frames_in_order() {
    let node = NodeId::new("node-a").unwrap();
    let (msgs, expected): (Vec<_>, Vec<_>) = mixed().into_iter().unzip();
    let bytes = Batch::encode(&node, &msgs);
    assert_eq!(bytes[0], BATCH_V1);
    let batch = Batch::read(&bytes).unwrap();
    assert_eq!(batch.node, node);
    assert_eq!(batch.msgs, expected);
    // A frame that arrived can be sent on as it is.
    let again = Batch::read(&Batch::encode(&node, &batch.msgs)).unwrap();
    assert_eq!(again.msgs, expected);
    assert_eq!(
        Batch::read(&Batch::encode(&node, &[])).unwrap().msgs,
        vec![]
    );
}

#[test]
fn a_damaged_binary_batch_is_refused_without_a_panic() {
    let node = NodeId::new("node-a").unwrap();
    let sent: Vec<NodeMessage> = mixed().into_iter().map(|(m, _)| m).collect();
    let bytes = Batch::encode(&node, &sent);
    // Cut anywhere: refused, or (cut between records) the records before the cut.
    for n in 0..bytes.len() {
        if let Ok(b) = Batch::read(&bytes[..n]) {
            assert!(b.msgs.len() < sent.len());
        }
    }
    // Every byte changed in turn: never a panic.
    for i in 0..bytes.len() {
        for v in [0, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = Batch::read(&b);
        }
    }
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(Batch::read(&v2), Err(BatchError::Version(2)));
    // A record kind this version does not know.
    let mut unknown = bytes.clone();
    unknown[2 + node.as_str().len()] = b'Z';
    assert_eq!(Batch::read(&unknown), Err(BatchError::Malformed));
    let str = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_le_bytes());
        out.extend_from_slice(s);
    };
    // A frame that is not UTF-8.
    let mut out = vec![BATCH_V1, 1, b'n', REC_PJ];
    for field in [&b"OFFER"[..], b"a", b"b"] {
        str(&mut out, field);
    }
    out.push(0);
    let good = out.clone();
    str(&mut out, &[0xc3, 0x28]);
    assert_eq!(Batch::read(&out), Err(BatchError::Malformed));
    let mut ok = good.clone();
    str(&mut ok, b"{}");
    assert_eq!(Batch::read(&ok).unwrap().msgs.len(), 1);
    // A PeerJS type the server does not relay, and a `back` flag that is neither 0 nor 1.
    let mut kind = vec![BATCH_V1, 1, b'n', REC_PJ];
    for field in [&b"OPEN"[..], b"a", b"b"] {
        str(&mut kind, field);
    }
    kind.push(0);
    str(&mut kind, b"{}");
    assert_eq!(Batch::read(&kind), Err(BatchError::Malformed));
    let mut flag = good[..good.len() - 1].to_vec();
    flag.push(2);
    str(&mut flag, b"{}");
    assert_eq!(Batch::read(&flag), Err(BatchError::Malformed));
    // A length past the end.
    let mut long = vec![BATCH_V1, 1, b'n', REC_MSG];
    long.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Batch::read(&long), Err(BatchError::Malformed));
    // A bad name, as in JSON.
    let mut bad = vec![BATCH_V1, 1, b'n', REC_AM];
    str(&mut bad, b"live");
    str(&mut bad, b"../x");
    bad.extend_from_slice(&[0; 16]);
    str(&mut bad, b"{}");
    assert_eq!(Batch::read(&bad), Err(BatchError::Malformed));
    let mut bad_node = Batch::encode(&node, &[]);
    bad_node[2] = b' ';
    assert_eq!(Batch::read(&bad_node), Err(BatchError::Malformed));
    assert_eq!(Batch::read(b""), Err(BatchError::Malformed));
    assert_eq!(Batch::read(b"\x01\x00"), Err(BatchError::Malformed));
}

#[test]
fn bad_names_are_refused_on_the_way_in() {
    let bad = r#"{"node":"a b","msg":{"am_left":{"app":"live","room":"r","to":1,"from":2}}}"#;
    assert!(Envelope::from_json(bad).is_err());
    let bad_room = r#"{"node":"a","msg":{"am_left":{"app":"live","room":"../x","to":1,"from":2}}}"#;
    assert!(Envelope::from_json(bad_room).is_err());
    let good = r#"{"node":"a","msg":{"am_left":{"app":"live","room":"r","to":1,"from":2}}}"#;
    assert!(Envelope::from_json(good).is_ok());
}
