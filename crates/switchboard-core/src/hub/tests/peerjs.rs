//! The PeerJS dialect's rules, driven through the shared [`super::Harness`].

use super::*;
use crate::Config;
use switchboard_proto::peerjs::{decode, errors};

fn out(h: &mut Harness) -> Vec<(u64, String)> {
    h.drain()
}

fn msg(h: &mut Harness, conn: u64, text: &str, now: Instant) {
    h.handle_pj_message(ConnId(conn), decode(text).map_err(|_| ()), now);
}

#[test]
fn connect_checks_in_order_and_relays_with_src_stamped() {
    let t = Instant::now();
    let mut h = Harness::new();
    h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), None, None, t);
    h.handle_pj_connect(ConnId(2), Some("nope"), Some("alice"), Some("t"), None, t);
    assert_eq!(
        out(&mut h),
        [
            (
                1,
                format!(
                    r#"{{"type":"ERROR","payload":{{"msg":"{}"}}}}"#,
                    errors::MISSING
                )
            ),
            (1, "CLOSE Refused".into()),
            (
                2,
                r#"{"type":"ERROR","payload":{"msg":"Invalid key provided"}}"#.into()
            ),
            (2, "CLOSE Refused".into()),
        ]
    );
    let counts = h.error_counts();
    assert_eq!(counts.get(Dialect::PeerJs, "missing_parameters"), 1);
    assert_eq!(counts.get(Dialect::PeerJs, "invalid_key"), 1);
    h.handle_pj_connect(
        ConnId(3),
        Some("peerjs"),
        Some("alice"),
        Some("ta"),
        None,
        t,
    );
    h.handle_pj_connect(ConnId(4), Some("peerjs"), Some("bob"), Some("tb"), None, t);
    h.handle_pj_connect(
        ConnId(5),
        Some("peerjs"),
        Some("bob"),
        Some("other"),
        None,
        t,
    );
    assert_eq!(
        out(&mut h),
        [
            (3, r#"{"type":"OPEN"}"#.into()),
            (4, r#"{"type":"OPEN"}"#.into()),
            (
                5,
                r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#.into()
            ),
            (5, "CLOSE Refused".into()),
        ]
    );
    msg(
        &mut h,
        3,
        r#"{"type":"OFFER","src":"mallory","dst":"bob","payload":{"sdp":1}}"#,
        t,
    );
    msg(&mut h, 3, "not json", t);
    msg(&mut h, 3, r#"{"type":"UNKNOWN","dst":"bob"}"#, t);
    assert_eq!(
        out(&mut h),
        [(
            4,
            r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":1}}"#.into()
        )]
    );
    // Same token: take over, old socket closed.
    h.handle_pj_connect(ConnId(6), Some("peerjs"), Some("bob"), Some("tb"), None, t);
    assert_eq!(
        out(&mut h),
        [
            (4, "CLOSE Replaced".into()),
            (6, r#"{"type":"OPEN"}"#.into())
        ]
    );
    h.handle_disconnect(ConnId(4)); // the old socket's close does not free the id
    msg(
        &mut h,
        3,
        r#"{"type":"ANSWER","dst":"bob","payload":{}}"#,
        t,
    );
    assert_eq!(out(&mut h)[0].0, 6);
}

#[test]
fn queued_messages_are_delivered_after_open_or_expire_once_per_sender() {
    let t = Instant::now();
    let mut h = Harness::new();
    h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), Some("t"), None, t);
    out(&mut h);
    msg(
        &mut h,
        1,
        r#"{"type":"OFFER","dst":"carol","payload":{"n":1}}"#,
        t,
    );
    msg(
        &mut h,
        1,
        r#"{"type":"CANDIDATE","dst":"carol","payload":{"n":2}}"#,
        t,
    );
    msg(&mut h, 1, r#"{"type":"LEAVE","dst":"carol"}"#, t); // never queued
    assert!(out(&mut h).is_empty());
    h.handle_pj_connect(ConnId(2), Some("peerjs"), Some("carol"), Some("t"), None, t);
    let o = out(&mut h);
    assert_eq!(o.len(), 3);
    assert!(o[1].1.contains(r#""n":1"#) && o[2].1.contains(r#""n":2"#));

    msg(
        &mut h,
        1,
        r#"{"type":"OFFER","dst":"dave","payload":{}}"#,
        t,
    );
    msg(
        &mut h,
        1,
        r#"{"type":"CANDIDATE","dst":"dave","payload":{}}"#,
        t,
    );
    assert_eq!(h.poll_timeout(), Some(t + Duration::from_secs(5)));
    h.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(
        out(&mut h),
        [(1, r#"{"type":"EXPIRE","src":"dave","dst":"alice"}"#.into())]
    );
}

#[test]
fn queues_are_bounded_and_silence_is_closed() {
    let t = Instant::now();
    let mut h = Harness::with(Config {
        peerjs: PeerJsConfig {
            queue_per_peer: 2,
            ..PeerJsConfig::default()
        },
        ..Config::default()
    });
    h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), Some("t"), None, t);
    out(&mut h);
    for _ in 0..3 {
        msg(
            &mut h,
            1,
            r#"{"type":"OFFER","dst":"ghost","payload":{}}"#,
            t,
        );
    }
    assert_eq!(
        out(&mut h),
        [(1, r#"{"type":"EXPIRE","src":"ghost","dst":"alice"}"#.into())]
    );
    // HEARTBEAT keeps the socket; silence for alive_timeout closes it and frees the id.
    msg(
        &mut h,
        1,
        r#"{"type":"HEARTBEAT"}"#,
        t + Duration::from_secs(50),
    );
    h.handle_timeout(t + Duration::from_secs(60));
    assert!(!out(&mut h).iter().any(|(_, m)| m.starts_with("CLOSE")));
    h.handle_timeout(t + Duration::from_secs(110));
    assert!(out(&mut h).contains(&(1, "CLOSE IdleTimeout".into())));
    h.handle_pj_connect(
        ConnId(2),
        Some("peerjs"),
        Some("alice"),
        Some("new"),
        None,
        t,
    );
    assert_eq!(out(&mut h)[0], (2, r#"{"type":"OPEN"}"#.into()));
}

/// Issue 15 finding 9: 65 KB messages to 200 absent ids used to be held by count only
/// (650 MB), and filled the shared queue so every other sender's offer got `EXPIRE`.
#[test]
fn queues_are_bounded_in_bytes_per_receiver_per_sender_and_in_total() {
    let t = Instant::now();
    let mut h = Harness::new();
    let cfg = PeerJsConfig::default();
    h.handle_pj_connect(
        ConnId(1),
        Some("peerjs"),
        Some("mallory"),
        Some("t"),
        None,
        t,
    );
    h.handle_pj_connect(ConnId(2), Some("peerjs"), Some("alice"), Some("t"), None, t);
    out(&mut h);
    let big = format!(
        r#"{{"type":"OFFER","dst":"ghost{{}}","payload":"{}"}}"#,
        "x".repeat(65_000)
    );
    let mut expired = 0;
    for i in 0..2_000 {
        msg(&mut h, 1, &big.replace("{}", &i.to_string()), t);
        expired += out(&mut h).iter().filter(|(c, _)| *c == 1).count();
    }
    let s = h.stats();
    assert!(s.queued_bytes <= cfg.queue_bytes_per_sender, "{s:?}");
    assert_eq!(s.queue_refused as usize, expired);
    assert_eq!(s.queued + expired, 2_000);
    // Another sender's offer still waits for its receiver.
    msg(
        &mut h,
        2,
        r#"{"type":"OFFER","dst":"bob","payload":{"sdp":"v=0"}}"#,
        t,
    );
    assert!(out(&mut h).is_empty(), "alice's offer was refused");
    h.handle_pj_connect(ConnId(3), Some("peerjs"), Some("bob"), Some("t"), None, t);
    assert!(
        out(&mut h)
            .iter()
            .any(|(c, m)| *c == 3 && m.contains("v=0"))
    );

    // Many senders together stop at the total, and per receiver at its bound.
    let mut h = Harness::with(Config {
        peerjs: PeerJsConfig {
            queue_bytes_total: 1_000_000,
            ..PeerJsConfig::default()
        },
        ..Config::default()
    });
    for c in 0..40u64 {
        let id = format!("m{c}");
        h.handle_pj_connect(
            ConnId(10 + c),
            Some("peerjs"),
            Some(&id),
            Some("t"),
            None,
            t,
        );
        for i in 0..10 {
            msg(&mut h, 10 + c, &big.replace("{}", &format!("{c}-{i}")), t);
        }
    }
    assert!(h.stats().queued_bytes <= 1_000_000);
    let s = h.stats();
    assert!(s.queued_bytes <= 1_000_000, "{s:?}");
    // One absent id holds at most its bound, whoever sends.
    h.handle_timeout(t + Duration::from_secs(6));
    assert_eq!(h.stats().queued_bytes, 0);
    let before = h.stats().queue_refused;
    for c in 0..10 {
        let victim = big.replace("ghost{}", "victim");
        msg(&mut h, 10 + c, &victim, t + Duration::from_secs(7));
    }
    let held = h.pj.queues.get("victim").map_or(0, |q| q.bytes);
    assert!(held <= cfg.queue_bytes_per_peer, "{held}");
    assert_eq!(h.stats().queue_refused - before, 10 - held as u64 / 65_000);
    // Everything expires and every count returns to zero.
    h.handle_timeout(t + Duration::from_secs(20));
    let s = h.stats();
    assert_eq!((s.queued, s.queued_bytes), (0, 0), "{s:?}");
    assert!(h.pj.sender_bytes.is_empty() && h.pj.queues.is_empty());
}
