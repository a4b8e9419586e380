//! Room tokens in the Ant Media dialect, with a fake verifier (the real one, with real
//! signatures, is tested in `switchboard-auth` and over real sockets in the server).

use super::*;
use crate::auth::{AuthConfig, Claims, Identity, RoomRule, TokenVerifier};

/// Wall-clock time of every test: tokens expire at `NOW + 100` unless said otherwise.
const NOW: u64 = 1_800_000_000;

/// Tokens are names of claim sets; "forged" has a bad signature.
#[derive(Debug)]
struct Fake;

impl TokenVerifier for Fake {
    fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut c = Claims::expiring(NOW + 100);
        match token {
            "any" => {}
            "r-only" => c.room = Some(RoomRule::parse("r").unwrap()),
            "team" => c.room = Some(RoomRule::parse("team-*").unwrap()),
            "app-B" => c.app = Some("B".into()),
            "alice" => c.sub = Some(Identity::new("alice").unwrap()),
            "no-turn" => c.turn = false,
            "no-offer" => c.offer = false,
            "short" => c.max_call = Some(Duration::from_secs(60)),
            "expired" => c.exp = NOW - 31,
            "future" => c.nbf = Some(NOW + 31),
            _ => return Err(AuthError::Signature),
        }
        Ok(c)
    }
}

fn harness() -> Harness {
    let mut h = Harness::with(Config {
        auth: Some(AuthConfig::new(Arc::new(Fake))),
        ice: turn_ice("0badcafe-"),
        ..Config::default()
    });
    h.hub.handle_wall_clock(NOW);
    h
}

fn join_with(room: &str, token: &str) -> String {
    format!(r#"{{"command":"join","streamId":"{room}","token":"{token}"}}"#)
}

fn refused(c: u64, room: &str, reason: &str) -> (u64, String) {
    (
        c,
        format!(
            r#"{{"command":"error","definition":"unauthorized_access","streamId":"{room}","reason":"{reason}"}}"#
        ),
    )
}

#[test]
fn without_a_token_a_join_is_refused_and_the_connection_stays_usable() {
    let mut h = harness();
    h.connect(1, "A");
    assert_eq!(
        h.send(1, &join("r")),
        vec![refused(1, "r", "a room token is required")]
    );
    assert_eq!(h.stats().auth_refused, 1);
    assert_eq!(h.stats().rooms, 0);
    // The same connection joins once it has a token.
    assert_eq!(h.send(1, &join_with("r", "any")), vec![joined(1, "r")]);
}

#[test]
fn every_bad_token_is_refused_with_its_reason_and_members_hear_nothing() {
    let mut h = harness();
    h.connect(1, "A");
    h.connect(2, "A");
    h.send(1, &join_with("r", "any"));
    h.send(2, &join_with("r", "any"));
    h.send(1, &join_with("x", "any"));
    h.send(1, &join_with("r", "any"));
    h.drain();
    let cases = [
        ("forged", "the token's signature is not valid"),
        ("expired", "the token has expired"),
        ("future", "the token is not valid yet"),
        ("app-B", "the token is for another app"),
        ("r-only", "the token is for another room"),
        ("team", "the token is for another room"),
    ];
    h.connect(3, "A");
    for (token, reason) in cases {
        // Room "s" so that even a good token would not meet the full room "r".
        assert_eq!(
            h.send(3, &join_with("s", token)),
            vec![refused(3, "s", reason)],
            "{token}"
        );
    }
    // Into the busy room: refused before the room is even looked at (no NoSpaceForNewPeer,
    // nothing to its members).
    assert_eq!(
        h.send(3, &join_with("r", "forged")),
        vec![refused(3, "r", "the token's signature is not valid")]
    );
    let long = "a".repeat(crate::auth::MAX_TOKEN_LEN + 1);
    assert_eq!(
        h.send(3, &join_with("s", &long)),
        vec![refused(3, "s", "the token is longer than 4096 bytes")]
    );
    assert_eq!(h.stats().auth_refused, 8);
    assert_eq!(
        h.send(3, &join_with("team-1", "team")),
        vec![joined(3, "team-1")]
    );
}

#[test]
fn the_url_token_admits_and_a_join_token_overrides_it() {
    let mut h = harness();
    h.connect_with(1, "A", Some("r-only"));
    assert_eq!(
        h.send(1, &join("s")),
        vec![refused(1, "s", "the token is for another room")]
    );
    assert_eq!(h.send(1, &join("r")), vec![joined(1, "r")]);
    // A bad URL token is reported at the join, with its own reason.
    h.connect_with(2, "A", Some("forged"));
    assert_eq!(
        h.send(2, &join("r")),
        vec![refused(2, "r", "the token's signature is not valid")]
    );
    assert_eq!(
        h.send(2, &join_with("r", "any")),
        vec![joined(2, "r"), cmd(1, "start", "r")]
    );
}

#[test]
fn expiry_during_a_call_does_not_cut_it_but_a_rejoin_needs_a_fresh_token() {
    let mut h = harness();
    h.connect_with(1, "A", Some("any"));
    h.connect_with(2, "A", Some("any"));
    h.send(1, &join("r"));
    h.send(2, &join("r"));
    h.hub.handle_wall_clock(NOW + 1_000);
    let offer = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"o"}"#;
    assert_eq!(h.send(1, offer).len(), 1, "relayed after expiry");
    h.send(2, r#"{"command":"leave","streamId":"r"}"#);
    assert_eq!(
        h.send(2, &join("r")),
        vec![refused(2, "r", "the token has expired")]
    );
}

#[test]
fn the_offer_grant_decides_who_starts_and_who_may_offer() {
    let mut h = harness();
    h.connect(1, "A");
    h.connect(2, "A");
    h.send(1, &join_with("r", "no-offer"));
    // The first joiner may not offer: `start` goes to the second.
    assert_eq!(
        h.send(2, &join_with("r", "any")),
        vec![joined(2, "r"), cmd(2, "start", "r")]
    );
    let offer = r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"o"}"#;
    assert_eq!(
        h.send(1, offer),
        vec![refused(1, "r", "this token does not allow making offers")]
    );
    let answer = r#"{"command":"takeConfiguration","streamId":"r","type":"answer","sdp":"a"}"#;
    assert_eq!(h.send(1, answer).len(), 1);
    assert_eq!(h.send(2, offer).len(), 1);
}

fn ice(h: &mut Harness, conn: u64) -> serde_json::Value {
    let out = h.send(conn, r#"{"command":"getIceServerConfig"}"#);
    assert_eq!(out.len(), 1);
    serde_json::from_str(&out[0].1).unwrap()
}

#[test]
fn turn_credentials_only_for_a_valid_token_granting_turn_with_its_identity() {
    let mut h = harness();
    // No token, a forged one, an expired one, one without the grant: STUN only.
    for (conn, token) in [
        (1, None),
        (2, Some("forged")),
        (3, Some("expired")),
        (4, Some("no-turn")),
    ] {
        h.connect_with(conn, "A", token);
        let v = ice(&mut h, conn);
        assert_eq!(
            v["iceServers"].as_array().map(Vec::len),
            Some(1),
            "{token:?}"
        );
        assert_eq!(v["iceServers"][0]["urls"][0], "stun:sb.test:3478");
        assert!(v["iceServers"][0].get("username").is_none());
        assert_eq!(v["turnServerUsername"], "");
        assert_eq!(v["stunServerUri"], "stun:sb.test:3478");
    }
    // An identity: the TURN user is `u.<sub>`, the expiry one TTL from now.
    h.connect_with(5, "A", Some("alice"));
    let v = ice(&mut h, 5);
    assert_eq!(v["iceServers"][1]["username"], "1800003600:u.alice");
    // No identity: an anonymous user of its own.
    h.connect_with(6, "A", Some("any"));
    let v = ice(&mut h, 6);
    assert_eq!(v["iceServers"][1]["username"], "1800003600:0badcafe-a1");
    // The token a connection joined with counts, not only its URL's.
    h.connect(7, "A");
    h.send(7, &join_with("r", "alice"));
    let v = ice(&mut h, 7);
    assert_eq!(v["iceServers"][1]["username"], "1800003600:u.alice");
}

#[test]
fn max_call_ends_the_join_and_frees_the_seat() {
    let mut h = harness();
    h.connect(1, "A");
    h.connect(2, "A");
    h.send(1, &join_with("r", "short"));
    h.send(2, &join_with("r", "any"));
    // Both stay active (the idle timeout is 20 s) until the 60 s grant runs out.
    for _ in 0..3 {
        assert!(h.advance(15).is_empty());
        h.send(1, r#"{"command":"ping"}"#);
        h.send(2, r#"{"command":"ping"}"#);
    }
    assert_eq!(
        h.advance(15),
        vec![
            cmd(2, "stop", "r"),
            (
                1,
                r#"{"command":"error","definition":"max_call_reached","streamId":"r","reason":"the token's max_call time is over"}"#
                    .into()
            ),
            leaved(1, "r"),
        ]
    );
    assert_eq!(h.stats().max_call_ended, 1);
    // The seat is free; its timer is gone (the harness checks no entry is left behind).
    h.connect(3, "A");
    assert_eq!(
        h.send(3, &join_with("r", "any")),
        vec![joined(3, "r"), cmd(2, "start", "r")]
    );
}

#[test]
fn a_max_call_timer_goes_with_a_leave_a_move_or_a_close() {
    let mut h = harness();
    h.connect(1, "A");
    h.send(1, &join_with("r", "short"));
    h.send(1, r#"{"command":"leave","streamId":"r"}"#);
    assert!(h.hub.call_deadlines.is_empty());
    h.send(1, &join_with("r", "short"));
    h.send(1, &join_with("s", "any"));
    assert!(h.hub.call_deadlines.is_empty());
    h.send(1, &join_with("r", "short"));
    h.hub.handle_disconnect(ConnId(1));
    assert!(h.hub.call_deadlines.is_empty());
    assert!(h.advance(120).is_empty());
}

#[test]
fn without_auth_tokens_are_ignored() {
    let mut h = Harness::new();
    h.connect_with(1, "A", Some("forged"));
    assert_eq!(h.send(1, &join_with("r", "junk")), vec![joined(1, "r")]);
}

// ---- socket.io: the edge admitted the handshake token; the hub binds rooms and ids -------

fn sio_relay(target: &str) -> SioInput {
    SioInput::Relay {
        event: SioRelay::Offer,
        target: target.into(),
        payload: switchboard_proto::Opaque::from_json(format!(r#"{{"target":"{target}"}}"#))
            .unwrap(),
    }
}

fn claims_of(token: &str) -> Claims {
    Fake.verify(token).unwrap()
}

fn sio_join(h: &mut Harness, conn: u64, room: &str) -> Vec<Output> {
    h.hub.handle_sio_message(
        ConnId(conn),
        SioInput::Join { room: room.into() },
        Some(AckId(1)),
        h.now,
    );
    h.outputs()
}

fn unauthorized(conn: u64, reason: &str) -> Output {
    Output::SioAck {
        conn: ConnId(conn),
        ack: AckId(1),
        reply: SioAck::Error {
            error: SioError::Unauthorized,
            reason: reason.into(),
        },
    }
}

#[test]
fn socketio_joins_are_bound_to_the_token_room_and_relays_to_rooms_it_allows() {
    let mut h = harness();
    let now = h.now;
    h.hub
        .handle_sio_connect(ConnId(1), "s1", None, Some(claims_of("r-only")), now);
    h.hub
        .handle_sio_connect(ConnId(2), "s2", None, Some(claims_of("any")), now);
    h.hub
        .handle_sio_connect(ConnId(3), "s3", None, Some(claims_of("r-only")), now);
    assert_eq!(
        sio_join(&mut h, 1, "other"),
        [unauthorized(1, "the token is for another room")]
    );
    assert!(matches!(
        sio_join(&mut h, 1, "r")[..],
        [Output::SioAck {
            reply: SioAck::Joined { .. },
            ..
        }]
    ));
    sio_join(&mut h, 2, "elsewhere");
    // s3 (room r only) may not reach s2 in "elsewhere", nor a socket in no room; it may reach
    // s1 in r. s2 (any room) reaches s1.
    h.hub
        .handle_sio_message(ConnId(3), sio_relay("s2"), Some(AckId(1)), now);
    assert_eq!(
        h.outputs(),
        [unauthorized(3, "the token is for another room")]
    );
    h.hub
        .handle_sio_message(ConnId(3), sio_relay("s1"), Some(AckId(1)), now);
    assert_eq!(h.outputs().len(), 2, "relayed and acked");
    h.hub
        .handle_sio_message(ConnId(2), sio_relay("s1"), Some(AckId(1)), now);
    assert_eq!(h.outputs().len(), 2, "relayed and acked");
    // An expired token does not cut relays, but a new join is refused.
    h.hub.handle_wall_clock(NOW + 1_000);
    h.hub
        .handle_sio_message(ConnId(3), sio_relay("s1"), Some(AckId(1)), now);
    assert_eq!(h.outputs().len(), 2, "relayed after expiry");
    assert_eq!(
        sio_join(&mut h, 3, "r"),
        [unauthorized(3, "the token has expired")]
    );
    assert_eq!(h.stats().auth_refused, 3);
}

#[test]
fn socketio_identity_is_taken_over_by_the_same_identity_only() {
    let mut h = harness();
    let now = h.now;
    h.hub
        .handle_sio_connect(ConnId(1), "alice", None, Some(claims_of("alice")), now);
    h.hub
        .handle_sio_connect(ConnId(9), "bob", None, Some(claims_of("any")), now);
    sio_join(&mut h, 1, "r");
    sio_join(&mut h, 9, "r");
    h.outputs();
    // A second socket of alice takes the id over: the old one is told and closed, the room
    // hears it leave.
    h.hub
        .handle_sio_connect(ConnId(2), "alice", None, Some(claims_of("alice")), now);
    let out = h.outputs();
    assert!(out.contains(&Output::Close {
        conn: ConnId(1),
        reason: CloseReason::Replaced
    }));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::SioEmit {
            conn: ConnId(9),
            emit: SioEmit::PeerLeft { .. }
        }
    )));
    h.hub
        .handle_sio_message(ConnId(9), sio_relay("alice"), None, now);
    assert!(matches!(
        h.outputs()[..],
        [Output::SioEmit {
            conn: ConnId(2),
            ..
        }]
    ));
    // A socket whose token has no such identity cannot take it.
    h.hub
        .handle_sio_connect(ConnId(3), "alice", None, Some(claims_of("any")), now);
    assert_eq!(
        h.outputs().last(),
        Some(&Output::Close {
            conn: ConnId(3),
            reason: CloseReason::Refused
        })
    );
    assert_eq!(h.stats().connections, 2);
}

// ---- PeerJS: the key is the token; its sub is the only id it may hold -------------------

fn pj(h: &mut Harness, conn: u64, key: &str, id: &str) -> Vec<(u64, String)> {
    let now = h.now;
    h.hub
        .handle_pj_connect(ConnId(conn), Some(key), Some(id), Some("t"), None, now);
    h.drain()
}

fn pj_refused(conn: u64, reason: &str) -> Vec<(u64, String)> {
    vec![
        (
            conn,
            format!(r#"{{"type":"ERROR","payload":{{"msg":"unauthorized_access: {reason}"}}}}"#),
        ),
        (conn, "CLOSE Refused".into()),
    ]
}

#[test]
fn peerjs_keys_are_tokens_bound_to_their_identity_and_room() {
    let mut h = harness();
    // The configured key is no longer enough; a forged or expired token neither.
    assert_eq!(
        pj(&mut h, 1, "peerjs", "x"),
        pj_refused(1, "the token's signature is not valid")
    );
    assert_eq!(
        pj(&mut h, 2, "expired", "x"),
        pj_refused(2, "the token has expired")
    );
    // A token with a sub holds that id only: nobody can squat "alice".
    assert_eq!(
        pj(&mut h, 3, "alice", "bob"),
        pj_refused(3, "the token is for another id (its sub)")
    );
    assert_eq!(
        pj(&mut h, 4, "alice", "alice"),
        vec![(4, r#"{"type":"OPEN"}"#.into())]
    );
    // A room rule applies to ids: "team-*" holds team-… ids and reaches only them.
    assert_eq!(
        pj(&mut h, 5, "team", "x"),
        pj_refused(5, "the token is for another room")
    );
    assert_eq!(
        pj(&mut h, 6, "team", "team-b"),
        vec![(6, r#"{"type":"OPEN"}"#.into())]
    );
    let now = h.now;
    let offer = |dst: &str| {
        switchboard_proto::peerjs::decode(&format!(
            r#"{{"type":"OFFER","dst":"{dst}","payload":{{"sdp":"o"}}}}"#
        ))
        .map_err(|_| ())
    };
    h.hub.handle_pj_message(ConnId(6), offer("alice"), now);
    assert_eq!(
        h.drain(),
        [(
            6,
            r#"{"type":"ERROR","payload":{"msg":"unauthorized_access: the token is for another room"}}"#
                .into()
        )]
    );
    h.hub.handle_pj_message(ConnId(4), offer("team-b"), now);
    assert_eq!(h.drain().len(), 1, "alice (no room claim) reaches team-b");
    assert_eq!(h.stats().auth_refused, 5);
}

// ---- a flood of forged tokens costs at most the join budgets in signature checks ---------

/// Refuses every token, counting the checks it was asked for.
#[derive(Debug, Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl TokenVerifier for Counting {
    fn verify(&self, _token: &str) -> Result<Claims, AuthError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(AuthError::Signature)
    }
}

fn counting() -> (Harness, Arc<Counting>) {
    let verifier = Arc::new(Counting::default());
    let h = Harness::with(Config {
        auth: Some(AuthConfig::new(
            Arc::clone(&verifier) as Arc<dyn TokenVerifier>
        )),
        ..Config::default()
    });
    (h, verifier)
}

fn checks(v: &Counting) -> usize {
    v.0.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn forged_tokens_in_joins_are_checked_at_most_the_join_budget() {
    let (mut h, verifier) = counting();
    h.connect(1, "A");
    let mut refused = 0;
    for i in 0..200 {
        let out = h.send(1, &join_with(&format!("r{i}"), "forged"));
        refused += out
            .iter()
            .filter(|(_, m)| m.contains("rate_limited"))
            .count();
        if out.iter().any(|(_, m)| m.starts_with("CLOSE")) {
            break;
        }
    }
    // One connection's join burst (20); the rest refused unread, then the connection closed.
    assert_eq!(checks(&verifier), 20);
    assert!(refused >= 100, "{refused}");
}

#[test]
fn forged_url_tokens_from_one_address_are_checked_at_most_its_join_budget() {
    let (mut h, verifier) = counting();
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let app = App::new("A").unwrap();
    let now = h.now;
    for c in 0..3_000 {
        h.hub
            .handle_am_connect(ConnId(c), app.clone(), None, Some(ip), Some("forged"), now);
    }
    // The address's join burst (1,000); the others were not looked at, and say why when
    // they are used (once the address's join budget has refilled).
    assert_eq!(checks(&verifier), 1_000);
    assert!(h.advance(1).is_empty());
    assert_eq!(
        h.send(2_999, &join("r")),
        vec![refused(
            2_999,
            "r",
            "too many token checks from this address; try again in a moment"
        )]
    );
}

#[test]
fn forged_peerjs_keys_cost_one_check_per_admitted_connection() {
    let (mut h, verifier) = counting();
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let now = h.now;
    for c in 0..3_000 {
        h.hub.handle_pj_connect(
            ConnId(c),
            Some("forged"),
            Some("x"),
            Some("t"),
            Some(ip),
            now,
        );
    }
    h.drain();
    // One check per admitted connection, never more; and a refused connection does not give
    // its address a fresh budget (it used to: the address's budget was forgotten with its
    // last connection), so one address gets at most its burst of checks (1,000) at once.
    assert_eq!(checks(&verifier), 1_000);
}
