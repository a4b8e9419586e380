//! The bodies of Switchboard's fuzz targets, one per decoder, each driving what it decodes
//! through the component that consumes it:
//!
//! - [`antmedia`]: Ant Media frames into a hub with a paired room;
//! - [`peerjs`]: PeerJS frames into a hub with two ids (and queued messages, expiring);
//! - [`socketio`]: socket.io event payloads through the endpoint's validation into a hub;
//! - [`turn`]: STUN/TURN packets (UDP and TCP) through the TURN server's state.
//!
//! An input is a sequence of frames (see each function). Every function checks what must
//! hold whatever the input (the hub's counters stay consistent, every output encodes to
//! JSON) and panics otherwise: a panic is a finding. `fuzz/` wraps each one in a libFuzzer
//! target; `tests/smoke.rs` runs them on the seed corpus and mutations of it in the normal
//! test suite.

use std::time::{Duration, Instant};

use switchboard_core::{App, Config, ConnId, Hub, Output, SioInput};

/// Splits an input into frames at `\n` (at most 64, so one input stays cheap).
fn frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').take(64)
}

/// Panics unless `text` is JSON a strict parser takes: serde_json's `Value`, except for
/// numbers beyond `f64` (valid JSON that JavaScript reads as `Infinity`).
fn is_json(text: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        assert!(
            e.to_string().starts_with("number out of range"),
            "not JSON ({e}): {text}"
        );
    }
}

/// Drains a hub's outputs, encoding each message; returns how many there were.
fn drain(hub: &mut Hub) -> usize {
    let mut n = 0;
    while let Some(o) = hub.poll_output() {
        n += 1;
        match o {
            Output::AmSend { msg, .. } => {
                let text = msg.encode();
                is_json(&text);
                assert!(text.starts_with('{'), "{text}");
            }
            Output::PjSend { msg, .. } => is_json(&msg.encode()),
            Output::SioEmit { .. } | Output::SioAck { .. } | Output::Close { .. } => {}
            Output::Cluster(c) => panic!("a single-node hub asked for {c:?}"),
            Output::Frame { frame, .. } => panic!("a single-node hub sent {frame:?}"),
        }
    }
    while hub.poll_event().is_some() {}
    n
}

/// Checks what holds after any input: no more rooms than connections, and the hub still
/// answers a ping from a fresh connection.
fn check(hub: &mut Hub, now: Instant) {
    let s = hub.stats();
    assert!(s.rooms <= s.connections.max(1) * 2, "{s:?}");
    let probe = ConnId(u64::MAX);
    hub.handle_am_connect(
        probe,
        App::new("probe").expect("valid"),
        None,
        None,
        None,
        now,
    );
    hub.handle_am_message(
        probe,
        switchboard_proto::antmedia::decode(r#"{"command":"ping"}"#),
        now,
    );
    let mut pong = false;
    while let Some(o) = hub.poll_output() {
        if let Output::AmSend { conn, msg } = o {
            pong |= conn == probe && msg.encode().contains("pong");
        }
    }
    assert!(pong, "the hub stopped answering");
    hub.handle_disconnect(probe);
}

/// Ant Media: each frame is sent by connection 1 (joined with connection 2 in room `r`)
/// or, when it starts with `2`, by connection 2; the clock advances 1 s every 8 frames.
pub fn antmedia(data: &[u8]) {
    let mut now = Instant::now();
    let mut hub = Hub::new(Config::default());
    let app = App::new("LiveApp").expect("valid");
    for c in [1, 2] {
        hub.handle_am_connect(ConnId(c), app.clone(), Some("fuzz.test"), None, None, now);
        hub.handle_am_message(
            ConnId(c),
            switchboard_proto::antmedia::decode(r#"{"command":"join","streamId":"r"}"#),
            now,
        );
    }
    drain(&mut hub);
    for (i, frame) in frames(data).enumerate() {
        let (conn, frame) = match frame.split_first() {
            Some((b'2', rest)) => (2, rest),
            _ => (1, frame),
        };
        let Ok(text) = std::str::from_utf8(frame) else {
            continue;
        };
        hub.handle_am_message(ConnId(conn), switchboard_proto::antmedia::decode(text), now);
        drain(&mut hub);
        if i % 8 == 7 {
            now += Duration::from_secs(1);
            hub.handle_timeout(now);
            drain(&mut hub);
        }
    }
    check(&mut hub, now);
}

/// PeerJS: ids `a` (connection 1) and `b` (connection 2); each frame is sent by `a`, or by
/// `b` when it starts with `2`; a frame `T` advances the clock 3 s (queues expire after 5).
pub fn peerjs(data: &[u8]) {
    let mut now = Instant::now();
    let mut hub = Hub::new(Config::default());
    for (c, id) in [(1, "a"), (2, "b")] {
        hub.handle_pj_connect(ConnId(c), Some("peerjs"), Some(id), Some("t"), None, now);
    }
    drain(&mut hub);
    for frame in frames(data) {
        if frame == b"T" {
            now += Duration::from_secs(3);
            hub.handle_timeout(now);
            drain(&mut hub);
            continue;
        }
        let (conn, frame) = match frame.split_first() {
            Some((b'2', rest)) => (2, rest),
            _ => (1, frame),
        };
        let Ok(text) = std::str::from_utf8(frame) else {
            continue;
        };
        let msg = switchboard_proto::peerjs::decode(text).map_err(|_| ());
        hub.handle_pj_message(ConnId(conn), msg, now);
        drain(&mut hub);
    }
    now += Duration::from_secs(10);
    hub.handle_timeout(now);
    drain(&mut hub);
    let s = hub.stats();
    assert_eq!(
        (s.queued, s.queued_bytes),
        (0, 0),
        "queues left after expiry: {s:?}"
    );
    check(&mut hub, now);
}

/// socket.io: sockets `s1` (connection 1) and `s2` (connection 2). Each frame is
/// `<event>\t<JSON payload>` from `s1` (from `s2` when it starts with `2`); the event names
/// the handler as socketioxide would route it.
pub fn socketio(data: &[u8]) {
    let now = Instant::now();
    let mut hub = Hub::new(Config::default());
    hub.handle_sio_connect(ConnId(1), "s1", None, None, now);
    hub.handle_sio_connect(ConnId(2), "s2", None, None, now);
    drain(&mut hub);
    for frame in frames(data) {
        let (conn, from, frame) = match frame.split_first() {
            Some((b'2', rest)) => (2, "s2", rest),
            _ => (1, "s1", frame),
        };
        let mut parts = frame.splitn(2, |&b| b == b'\t');
        let Ok(event) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
            continue;
        };
        let Ok(payload) = serde_json::from_slice(parts.next().unwrap_or_default()) else {
            continue;
        };
        let input = switchboard_server::fuzzing::sio_input(event, payload, from);
        if let SioInput::Relay { payload, .. } = &input {
            let v: serde_json::Value =
                serde_json::from_str(payload.json()).expect("a relayed payload is JSON");
            assert_eq!(v["from"], from, "the sender is stamped");
        }
        hub.handle_sio_message(ConnId(conn), input, Some(switchboard_core::AckId(1)), now);
        drain(&mut hub);
    }
    check(&mut hub, now);
}

/// STUN/TURN: frames of `[flags][len: u16 big-endian][len bytes]`; flags bit 0 picks TCP,
/// bits 1–3 the client port (8 clients); a zero length ticks the clock. Checks that the
/// answers never exceed eight times what was sent plus 256 bytes a packet (the server must
/// not be an amplifier).
pub fn turn(data: &[u8]) {
    let mut h = switchboard_turn::fuzzing::Harness::new();
    // Bytes sent, bytes answered, packets.
    let mut totals = (0usize, 0usize, 0usize);
    let mut rest = data;
    let mut unix = 1_800_000_000;
    for _ in 0..64 {
        let [flags, hi, lo, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        if packet.is_empty() {
            unix += 60;
            h.tick(unix);
            continue;
        }
        let port = 40_000 + u16::from((flags >> 1) & 7);
        let (_, bytes) = h.packet(flags & 1 == 1, port, packet);
        // No amplification beyond what STUN's own answers need: a 20-byte request gets at
        // most a 401 with realm and nonce (about 100 bytes). Counted over the whole input: a
        // TCP read may complete requests buffered earlier, and the state may send answers
        // it owed other clients along with this packet's.
        totals = (totals.0 + packet.len(), totals.1 + bytes, totals.2 + 1);
        assert!(
            totals.1 <= 8 * totals.0 + 256 * totals.2,
            "{} bytes answered {} bytes in {} packets",
            totals.1,
            totals.0,
            totals.2
        );
    }
}
