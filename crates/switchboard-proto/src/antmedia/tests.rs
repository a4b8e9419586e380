#![allow(clippy::unwrap_used)]
use super::*;
use crate::ErrorCode as E;
use crate::{Opaque, StreamId};

fn err(text: &str) -> DecodeError {
    match decode(text) {
        Err(e) => e,
        Ok(m) => panic!("{text} decoded as {m:?}"),
    }
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("valid")
}

#[test]
fn ping_and_ice_need_no_stream() {
    assert_eq!(decode(r#"{"command":"ping"}"#), Ok(ClientMessage::Ping));
    assert_eq!(
        decode(r#"{"command":"getIceServerConfig","streamId":"bad id"}"#),
        Ok(ClientMessage::GetIceServerConfig)
    );
}

#[test]
fn join_and_leave() {
    assert_eq!(
        decode(r#"{"command":"join","streamId":"room1","multiPeer":false,"mode":"both"}"#),
        Ok(ClientMessage::Join {
            stream_id: sid("room1"),
            token: None,
            mesh: false,
        })
    );
    assert_eq!(
        decode(r#"{"command":"join","streamId":"room1","token":"a.b.c"}"#),
        Ok(ClientMessage::Join {
            stream_id: sid("room1"),
            token: Some("a.b.c".into()),
            mesh: false,
        })
    );
    assert_eq!(
        decode(r#"{"command":"join","streamId":"room1","token":null}"#),
        Ok(ClientMessage::Join {
            stream_id: sid("room1"),
            token: None,
            mesh: false,
        })
    );
    let e = decode(r#"{"command":"join","streamId":"room1","token":7}"#).unwrap_err();
    assert_eq!(e.code, E::InvalidMessage);
    // Mesh rooms (Switchboard's extension).
    assert_eq!(
        decode(r#"{"command":"join","streamId":"room1","mesh":true}"#),
        Ok(ClientMessage::Join {
            stream_id: sid("room1"),
            token: None,
            mesh: true,
        })
    );
    let e = decode(r#"{"command":"join","streamId":"room1","mesh":"yes"}"#).unwrap_err();
    assert_eq!(e.code, E::InvalidMessage);
    assert_eq!(e.stream_id.as_deref(), Some("room1"));
    assert_eq!(
        decode(r#"{"command":"stop","streamId":"r"}"#),
        Ok(ClientMessage::Leave {
            stream_id: sid("r")
        })
    );
}

#[test]
fn sdp_is_kept_verbatim() {
    let text = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"v=0\r\na=x:\u00e9\"q\""}"#;
    let Ok(ClientMessage::TakeConfiguration { sdp, kind, .. }) = decode(text) else {
        panic!("decode failed");
    };
    assert_eq!(kind, SdpType::Offer);
    assert_eq!(sdp.json(), r#""v=0\r\na=x:\u00e9\"q\"""#);
}

#[test]
fn candidate_fields_forwarded_as_sent() {
    let text = r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#;
    let Ok(ClientMessage::TakeCandidate {
        label,
        id,
        candidate,
        ..
    }) = decode(text)
    else {
        panic!("decode failed");
    };
    assert_eq!(label.map(|l| l.json().to_owned()).as_deref(), Some("0"));
    assert_eq!(id.map(|l| l.json().to_owned()).as_deref(), Some("\"0\""));
    assert!(candidate.is_string());
}

#[test]
fn envelope_errors() {
    for bad in [
        "",
        "not json",
        "{",
        "[1,2]",
        "42",
        "\"join\"",
        "null",
        "{}",
        r#"{"command":5}"#,
        r#"{"command":null}"#,
        r#"{"command":"ping","command":"ping"}"#,
    ] {
        assert_eq!(err(bad).code, E::InvalidMessage, "{bad}");
    }
}

#[test]
fn unsupported_commands() {
    let e = err(r#"{"command":"publish","streamId":"r"}"#);
    assert_eq!(e.code, E::UnsupportedCommand);
    assert!(e.reason.contains("P2P"), "{}", e.reason);
    let e = err(r#"{"command":"frobnicate"}"#);
    assert_eq!(e.code, E::UnsupportedCommand);
    assert!(e.reason.contains("frobnicate"));
    // Unknown names are quoted bounded and escaped.
    let long = format!(r#"{{"command":"{}\n"}}"#, "x".repeat(1000));
    assert!(err(&long).reason.len() < 120);
}

#[test]
fn stream_id_checks_in_order() {
    assert_eq!(err(r#"{"command":"join"}"#).code, E::NoStreamName);
    assert_eq!(
        err(r#"{"command":"join","streamId":null}"#).code,
        E::NoStreamName
    );
    assert_eq!(
        err(r#"{"command":"join","streamId":""}"#).code,
        E::NoStreamName
    );
    let e = err(r#"{"command":"join","streamId":"a b"}"#);
    assert_eq!(
        (e.code, e.stream_id.as_deref()),
        (E::InvalidStreamName, Some("a b"))
    );
    let e = err(r#"{"command":"join","streamId":7}"#);
    assert_eq!((e.code, e.stream_id), (E::InvalidStreamName, None));
    let long = format!(r#"{{"command":"join","streamId":"{}"}}"#, "a".repeat(300));
    let e = err(&long);
    assert_eq!((e.code, e.stream_id), (E::InvalidStreamName, None));
}

#[test]
fn command_fields() {
    let e = err(r#"{"command":"takeConfiguration","streamId":"r","type":"pranswer","sdp":"x"}"#);
    assert_eq!(
        (e.code, e.stream_id.as_deref()),
        (E::InvalidMessage, Some("r"))
    );
    let e = err(r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":{}}"#);
    assert_eq!(e.code, E::InvalidMessage);
    let e = err(r#"{"command":"takeCandidate","streamId":"r","label":0}"#);
    assert_eq!(e.code, E::InvalidMessage);
}

#[test]
fn encode_shapes() {
    let m = ServerMessage::TakeConfiguration {
        stream_id: sid("r"),
        kind: SdpType::Answer,
        sdp: Opaque::string("v=0\r\n"),
        id_mapping: EmptyMap,
    };
    assert_eq!(
        m.encode(),
        r#"{"command":"takeConfiguration","streamId":"r","type":"answer","sdp":"v=0\r\n","idMapping":{}}"#
    );
    assert_eq!(ServerMessage::Pong.encode(), r#"{"command":"pong"}"#);
    assert_eq!(
        ServerMessage::Notification {
            definition: Notification::ServerWillStop,
            stream_id: None
        }
        .encode(),
        r#"{"command":"notification","definition":"server_will_stop"}"#
    );
    assert_eq!(
        ServerMessage::error(E::NoSpaceForNewPeer, Some(&sid("r"))).encode(),
        r#"{"command":"error","definition":"NoSpaceForNewPeer","streamId":"r"}"#
    );
    let ice = IceServerConfig::from_servers(&[
        crate::IceServer::stun("stun:a:1"),
        crate::IceServer {
            urls: vec!["turn:b:3478".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        },
    ]);
    assert_eq!(
        ServerMessage::IceServerConfig(std::sync::Arc::new(ice)).encode(),
        r#"{"command":"iceServerConfig","stunServerUri":"turn:b:3478","turnServerUsername":"u","turnServerCredential":"p","iceServers":[{"urls":["stun:a:1"]},{"urls":["turn:b:3478"],"username":"u","credential":"p"}]}"#
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input decodes to a message or an error; never a panic.
        #[test]
        fn decode_never_panics(s in ".{0,200}") {
            let _ = decode(&s);
        }

        /// Any relayed SDP string survives decode + encode unchanged.
        #[test]
        fn sdp_round_trip(sdp in ".{0,300}") {
            let frame = serde_json::json!({"command":"takeConfiguration","streamId":"r","type":"offer","sdp":sdp}).to_string();
            let Ok(ClientMessage::TakeConfiguration { stream_id, kind, sdp: opaque, .. }) = decode(&frame) else {
                panic!("decode failed");
            };
            let out = ServerMessage::TakeConfiguration { stream_id, kind, sdp: opaque, id_mapping: EmptyMap }.encode();
            let v: serde_json::Value = serde_json::from_str(&out).expect("json");
            prop_assert_eq!(v["sdp"].as_str(), Some(sdp.as_str()));
        }
    }
}

/// Found by fuzzing: serde_json's raw values accept `\u` escapes of lone surrogates, which
/// would be relayed verbatim to a client whose strict parser refuses the whole message.
#[test]
fn lone_surrogate_escapes_are_refused_and_valid_escapes_kept() {
    let bad = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"a\uDBDD}"}"#;
    assert_eq!(err(bad).code, E::InvalidMessage);
    let good = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"\u00e9\uD83D\uDE00\\u"}"#;
    let Ok(ClientMessage::TakeConfiguration { sdp, .. }) = decode(good) else {
        panic!("{good}");
    };
    assert_eq!(sdp.json(), r#""\u00e9\uD83D\uDE00\\u""#);
}

#[test]
fn escapes_are_checked_without_refusing_valid_json() {
    use crate::escapes_are_valid as ok;
    assert!(ok(r#"{"a":"\u00e9\uD83D\uDE00\\u","n":1e999}"#));
    assert!(ok(r#"{"a":"\\uD800"}"#)); // an escaped backslash, then text
    assert!(!ok(r#"{"a":"\uD800"}"#));
    assert!(!ok(r#"{"a":"\uDC00"}"#));
    assert!(!ok(r#"{"a":"\uD800\u0041"}"#));
    assert!(!ok(r#"{"a":"\uDBDD}"}"#));
}

#[test]
fn relays_may_name_a_member_and_mesh_messages_name_theirs() {
    use super::{MeshMessage, MeshNotification, PeerId, ServerMessage};
    for to in [r#""42""#, "42"] {
        let text = format!(
            r#"{{"command":"takeCandidate","streamId":"r","candidate":"c","peerId":{to}}}"#
        );
        let Ok(ClientMessage::TakeCandidate { to, .. }) = decode(&text) else {
            panic!("{text}");
        };
        assert_eq!(to, Some(PeerId(42)));
    }
    for bad in [r#""x""#, "-1", "{}", r#""""#] {
        let text = format!(r#"{{"command":"peerMessageCommand","streamId":"r","peerId":{bad}}}"#);
        assert_eq!(decode(&text).unwrap_err().code, E::InvalidMessage, "{text}");
    }
    let joined = ServerMessage::Mesh(Box::new(MeshMessage::Notification {
        definition: MeshNotification::Joined,
        stream_id: sid("r"),
        peer_id: PeerId(3),
        peers: Some(vec![PeerId(1), PeerId(2)]),
    }));
    assert_eq!(
        joined.encode(),
        r#"{"command":"notification","definition":"joined","streamId":"r","peerId":"3","peers":["1","2"]}"#
    );
    let start = ServerMessage::Mesh(Box::new(MeshMessage::Start {
        stream_id: sid("r"),
        peer_id: PeerId(3),
    }));
    assert_eq!(
        start.encode(),
        r#"{"command":"start","streamId":"r","peerId":"3"}"#
    );
    assert!(start.size_hint() >= start.encode().len());
}
