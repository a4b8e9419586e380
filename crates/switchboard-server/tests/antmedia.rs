//! The Ant Media P2P state machine and its bad-input cases over real loopback WebSockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Server, http_get, pair};
use futures_util::SinkExt;
use serde_json::json;
use switchboard_server::ServerConfig;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn full_call_flow() {
    let server = Server::default().await;
    let (mut a, mut b) = pair(&server, "WebRTCAppEE", "room1").await;

    a.send(r#"{"command":"takeConfiguration","streamId":"room1","type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#).await;
    b.expect_exact(json!({"command":"takeConfiguration","streamId":"room1","type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","idMapping":{}})).await;
    b.send(
        r#"{"command":"takeConfiguration","streamId":"room1","type":"answer","sdp":"v=0 answer"}"#,
    )
    .await;
    a.expect_exact(json!({"command":"takeConfiguration","streamId":"room1","type":"answer","sdp":"v=0 answer","idMapping":{}})).await;
    b.send(r#"{"command":"takeCandidate","streamId":"room1","label":0,"id":"0","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"}"#).await;
    a.expect_exact(json!({"command":"takeCandidate","streamId":"room1","label":0,"id":"0","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"})).await;
    a.send(r#"{"command":"peerMessageCommand","streamId":"room1","definition":"chat","data":{"text":"hi"}}"#).await;
    b.expect_exact(json!({"command":"peerMessageCommand","streamId":"room1","definition":"chat","data":{"text":"hi"}})).await;
    // Nothing went back to the sender.
    a.expect_nothing_else().await;
    b.expect_nothing_else().await;

    // Leave: stop to the other, leaved to the leaver.
    a.send(r#"{"command":"leave","streamId":"room1"}"#).await;
    a.expect_exact(json!({"command":"notification","definition":"leaved","streamId":"room1"}))
        .await;
    b.expect_exact(json!({"command":"stop","streamId":"room1"}))
        .await;
    // Re-join: the waiting peer is told to start again.
    a.join("room1").await;
    a.expect_exact(json!({"command":"notification","definition":"joined","streamId":"room1"}))
        .await;
    b.expect_exact(json!({"command":"start","streamId":"room1"}))
        .await;
    a.expect_nothing_else().await;
}

#[tokio::test]
async fn sdk_query_string_is_accepted() {
    let server = Server::default().await;
    let mut c = Client::connect(&format!(
        "ws://{}/LiveApp/websocket?target=origin",
        server.addr
    ))
    .await;
    c.expect_nothing_else().await;
}

#[tokio::test]
async fn third_peer_gets_no_space() {
    let server = Server::default().await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    let mut c = server.client("App").await;
    c.join("r").await;
    c.expect_exact(json!({"command":"error","definition":"NoSpaceForNewPeer","streamId":"r"}))
        .await;
    a.expect_nothing_else().await;
    b.expect_nothing_else().await;
}

#[tokio::test]
async fn closing_a_socket_stops_the_peer_and_frees_the_seat() {
    let server = Server::default().await;
    let (mut a, b) = pair(&server, "App", "r").await;
    drop(b); // TCP closed without a close frame
    a.expect_exact(json!({"command":"stop","streamId":"r"}))
        .await;
    let mut c = server.client("App").await;
    c.join("r").await;
    c.expect(json!({"definition":"joined"})).await;
    a.expect_exact(json!({"command":"start","streamId":"r"}))
        .await;

    // A clean close frame works the same way.
    c.ws.close(None).await.unwrap();
    a.expect_exact(json!({"command":"stop","streamId":"r"}))
        .await;
}

#[tokio::test]
async fn apps_are_separate_namespaces() {
    let server = Server::default().await;
    let (mut a, _b) = pair(&server, "AppOne", "same").await;
    let mut c = server.client("AppTwo").await;
    c.join("same").await;
    c.expect_exact(json!({"command":"notification","definition":"joined","streamId":"same"}))
        .await;
    c.expect_nothing_else().await;
    a.expect_nothing_else().await;
}

#[tokio::test]
async fn ping_and_ice_config() {
    let server = Server::default().await;
    let mut c = server.client("App").await;
    c.send(r#"{"command":"ping"}"#).await;
    c.expect_exact(json!({"command":"pong"})).await;
    c.send(r#"{"command":"getIceServerConfig"}"#).await;
    c.expect_exact(json!({"command":"iceServerConfig","stunServerUri":"stun:stun.l.google.com:19302","turnServerUsername":"","turnServerCredential":"","iceServers":[{"urls":["stun:stun.l.google.com:19302"]}]})).await;
}

#[tokio::test]
async fn relay_without_peer_is_an_error() {
    let server = Server::default().await;
    let mut c = server.client("App").await;
    c.send(r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"c"}"#)
        .await;
    c.expect_exact(
        json!({"command":"error","definition":"no_peer_associated_before","streamId":"r"}),
    )
    .await;
    c.send(r#"{"command":"leave","streamId":"r"}"#).await;
    c.expect_exact(
        json!({"command":"error","definition":"no_peer_associated_before","streamId":"r"}),
    )
    .await;
}

#[tokio::test]
async fn bad_input_gets_documented_errors_and_affects_no_one() {
    let server = Server::default().await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    let mut bad = server.client("App").await;
    let long = format!(r#"{{"command":"join","streamId":"{}"}}"#, "x".repeat(129));
    let cases: Vec<(String, serde_json::Value)> = vec![
        (
            "{not json".into(),
            json!({"definition":"invalid_message","reason":"not valid JSON"}),
        ),
        (
            "[1,2,3]".into(),
            json!({"definition":"invalid_message","reason":"expected a JSON object"}),
        ),
        (
            r#"{"streamId":"r"}"#.into(),
            json!({"definition":"invalid_message"}),
        ),
        (
            r#"{"command":42}"#.into(),
            json!({"definition":"invalid_message"}),
        ),
        (
            r#"{"command":"warp"}"#.into(),
            json!({"definition":"unsupported_command"}),
        ),
        (
            r#"{"command":"publish","streamId":"r"}"#.into(),
            json!({"definition":"unsupported_command"}),
        ),
        (
            r#"{"command":"join"}"#.into(),
            json!({"definition":"noStreamNameSpecified"}),
        ),
        (
            r#"{"command":"join","streamId":""}"#.into(),
            json!({"definition":"noStreamNameSpecified"}),
        ),
        (
            r#"{"command":"join","streamId":"../etc"}"#.into(),
            json!({"definition":"invalidStreamName","streamId":"../etc"}),
        ),
        (long, json!({"definition":"invalidStreamName"})),
        (
            r#"{"command":"takeConfiguration","streamId":"r","type":"offer"}"#.into(),
            json!({"definition":"invalid_message","streamId":"r"}),
        ),
    ];
    for (frame, want) in cases {
        bad.send(&frame).await;
        let got = bad.expect(want.clone()).await;
        assert_eq!(got["command"], "error", "{frame} -> {got}");
    }
    bad.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    bad.expect(json!({"command":"error","definition":"binary_frame_not_supported"}))
        .await;
    // The bad client's connection still works, and the pair never noticed.
    bad.expect_nothing_else().await;
    a.send(r#"{"command":"peerMessageCommand","streamId":"r","data":"still here"}"#)
        .await;
    b.expect_exact(json!({"command":"peerMessageCommand","streamId":"r","data":"still here"}))
        .await;
    a.expect_nothing_else().await;
}

#[tokio::test]
async fn oversize_frame_closes_with_1009_and_affects_no_one() {
    let server = Server::start(ServerConfig {
        max_message_size: 4096,
        ..ServerConfig::default()
    })
    .await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    let huge = format!(
        r#"{{"command":"peerMessageCommand","streamId":"r","data":"{}"}}"#,
        "x".repeat(5000)
    );
    a.send(&huge).await;
    assert_eq!(a.expect_close().await, Some(1009));
    b.expect_exact(json!({"command":"stop","streamId":"r"}))
        .await;
    b.expect_nothing_else().await;
    // A message just under the limit is fine.
    let (mut c, mut d) = pair(&server, "App", "s").await;
    let ok = format!(
        r#"{{"command":"peerMessageCommand","streamId":"s","data":"{}"}}"#,
        "y".repeat(3900)
    );
    c.send(&ok).await;
    assert_eq!(d.recv().await["data"].as_str().map(str::len), Some(3900));
}

#[tokio::test]
async fn idle_peer_is_dropped_and_its_seat_freed() {
    let mut config = ServerConfig::default();
    config.hub.idle_timeout = Duration::from_millis(600);
    let server = Server::start(config).await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    // `a` keeps pinging; `b` goes silent (still connected, just not sending).
    let pinger = tokio::spawn(async move {
        for _ in 0..10 {
            a.send(r#"{"command":"ping"}"#).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        a
    });
    assert_eq!(b.expect_close().await, Some(1001));
    let mut a = pinger.await.unwrap();
    let mut saw_stop = false;
    loop {
        let m = a.recv().await;
        if m == json!({"command":"stop","streamId":"r"}) {
            saw_stop = true;
        } else {
            assert_eq!(m, json!({"command":"pong"}));
        }
        if saw_stop {
            break;
        }
    }
    let mut c = server.client("App").await;
    c.join("r").await;
    c.expect(json!({"definition":"joined"})).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected() {
    let server = Server::start(ServerConfig {
        outbound_queue: 16,
        ..ServerConfig::default()
    })
    .await;
    let (mut sender, reader_that_never_reads) = pair(&server, "App", "r").await;
    let payload = format!(
        r#"{{"command":"peerMessageCommand","streamId":"r","data":"{}"}}"#,
        "z".repeat(60_000)
    );
    // Flood until the server drops the non-reader and tells us `stop`. Bounded: at most
    // 2,000 messages (120 MB), far more than socket buffers plus the 16-message queue.
    let mut stopped = false;
    for _ in 0..2000 {
        sender.send(&payload).await;
        // Non-blocking check for the stop.
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(
            Duration::from_millis(1),
            futures_util::StreamExt::next(&mut sender.ws),
        )
        .await
        {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v == json!({"command":"stop","streamId":"r"}) {
                stopped = true;
                break;
            }
            assert_eq!(v["command"], "error", "unexpected {v}");
        }
    }
    if !stopped {
        sender
            .expect_exact(json!({"command":"stop","streamId":"r"}))
            .await;
    }
    // Once the sender stops flooding, the server is fine and the seat is free.
    let mut c = server.client("App").await;
    c.join("r").await;
    c.expect(json!({"definition":"joined"})).await;
    drop(reader_that_never_reads);
}

#[tokio::test]
async fn per_connection_order_is_kept() {
    let server = Server::default().await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    a.send(r#"{"command":"takeConfiguration","streamId":"r","type":"offer","sdp":"o"}"#)
        .await;
    for i in 0..300 {
        a.send(&format!(
            r#"{{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"c{i}"}}"#
        ))
        .await;
    }
    b.expect(json!({"command":"takeConfiguration"})).await;
    for i in 0..300 {
        b.expect(json!({"candidate":format!("c{i}")})).await;
    }
}

#[tokio::test]
async fn connection_limit_answers_high_resource_usage() {
    let mut config = ServerConfig::default();
    config.hub.max_connections = 2;
    let server = Server::start(config).await;
    let mut a = server.client("App").await;
    let mut b = server.client("App").await;
    a.expect_nothing_else().await;
    b.expect_nothing_else().await;
    let mut c = server.client("App").await;
    c.expect(json!({"command":"error","definition":"highResourceUsage"}))
        .await;
    assert_eq!(c.expect_close().await, Some(1013));
    drop(a);
    // Once a slot frees up (the hub saw the close), a new client gets in.
    let mut d = loop {
        let mut d = server.client("App").await;
        d.send(r#"{"command":"ping"}"#).await;
        let m = d.recv().await;
        if m == json!({"command":"pong"}) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    d.expect_nothing_else().await;
}

#[tokio::test]
async fn graceful_shutdown_notifies_everyone() {
    let mut server = Server::default().await;
    let (mut a, mut b) = pair(&server, "App", "r").await;
    let mut c = server.client("Other").await;
    c.expect_nothing_else().await;
    let stop = tokio::spawn(async move {
        let r = server.stop().await;
        (server, r)
    });
    for client in [&mut a, &mut b, &mut c] {
        client
            .expect_exact(json!({"command":"notification","definition":"server_will_stop"}))
            .await;
        assert_eq!(client.expect_close().await, Some(1001));
    }
    let (_server, result) = stop.await.unwrap();
    result.unwrap();
}

#[tokio::test]
async fn http_routes() {
    let server = Server::default().await;
    let (status, body) = http_get(server.addr, "/healthz", "").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, r#"{"status":"ok"}"#);
    let upgrade = "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let (status, _) = http_get(server.addr, "/bad%20app/websocket", upgrade).await;
    assert!(status.contains("404"), "{status}");
    // Not a WebSocket handshake: 426 and a reason; a wrong version names the supported one.
    let (status, body) = http_get(server.addr, "/App/websocket", "").await;
    assert!(status.contains("426"), "{status}");
    assert!(body.contains("WebSocket endpoint"), "{body}");
    let v12 = upgrade.replace("Version: 13", "Version: 12");
    let (status, body) = http_get(server.addr, "/App/websocket", &v12).await;
    assert!(status.contains("426"), "{status}");
    assert!(body.contains("13 is supported"), "{body}");
    let no_key = "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n";
    let (status, _) = http_get(server.addr, "/App/websocket", no_key).await;
    assert!(status.contains("400"), "{status}");
    // A key that is not the base64 of 16 bytes, and a request without Host: 400 with a reason
    // (issue 15: both were upgraded).
    for bad in [
        "not base64!!",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZR==",
    ] {
        let h = upgrade.replace("dGhlIHNhbXBsZSBub25jZQ==", bad);
        let (status, body) = http_get(server.addr, "/App/websocket", &h).await;
        assert!(status.contains("400"), "{bad}: {status}");
        assert!(body.contains("base64 of 16 bytes"), "{body}");
    }
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req = format!("GET /App/websocket HTTP/1.1\r\nConnection: close\r\n{upgrade}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
    let (status, body) = http_get(server.addr, "/", "").await;
    assert!(
        status.contains("200") && body.contains("Switchboard"),
        "{status}"
    );
}

/// Mesh rooms (docs/PROTOCOLS.md "Mesh rooms") over real WebSockets: the roster, who offers,
/// relays named and stamped, leave and close, and the size limit.
#[tokio::test]
async fn mesh_room_of_three_over_websockets() {
    let server = Server::start(ServerConfig {
        hub: switchboard_core::Config {
            max_mesh_peers: 3,
            ..switchboard_core::Config::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let join = r#"{"command":"join","streamId":"g","mesh":true}"#;
    let mut members = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut c = server.client("LiveApp").await;
        c.send(join).await;
        let joined = c
            .expect(json!({"command":"notification","definition":"joined","streamId":"g"}))
            .await;
        assert_eq!(
            joined["peers"],
            json!(ids),
            "the roster is the members before it"
        );
        let id = joined["peerId"].as_str().unwrap().to_owned();
        // Every member there first hears of it and makes the offer.
        for m in &mut members {
            let m: &mut common::Client = m;
            m.expect_exact(json!({"command":"notification","definition":"peerJoined","streamId":"g","peerId":id}))
                .await;
            m.expect_exact(json!({"command":"start","streamId":"g","peerId":id}))
                .await;
        }
        members.push(c);
        ids.push(id);
    }
    // A fourth is refused; nobody else hears of it.
    let mut fourth = server.client("LiveApp").await;
    fourth.send(join).await;
    fourth
        .expect(json!({"command":"error","definition":"NoSpaceForNewPeer","streamId":"g"}))
        .await;
    // An offer from the first to the third, with a forged sender: stamped, to the third only.
    members[0]
        .send_json(json!({"command":"takeConfiguration","streamId":"g","type":"offer","sdp":"v=0","peerId":ids[2]}))
        .await;
    members[2]
        .expect_exact(json!({"command":"takeConfiguration","streamId":"g","type":"offer","sdp":"v=0","idMapping":{},"peerId":ids[0]}))
        .await;
    members[1]
        .send_json(json!({"command":"peerMessageCommand","streamId":"g","definition":"chat","data":"hi","peerId":ids[0]}))
        .await;
    members[0]
        .expect_exact(json!({"command":"peerMessageCommand","streamId":"g","definition":"chat","data":"hi","peerId":ids[1]}))
        .await;
    for m in &mut members {
        m.expect_nothing_else().await;
    }
    // The second closes its socket: the others get peerLeft.
    let second = members.remove(1);
    drop(second);
    for m in &mut members {
        m.expect_exact(json!({"command":"notification","definition":"peerLeft","streamId":"g","peerId":ids[1]}))
            .await;
    }
    // Now there is room: the fourth gets in, with the two left as its roster.
    fourth.send(join).await;
    let joined = fourth
        .expect(json!({"command":"notification","definition":"joined","streamId":"g"}))
        .await;
    assert_eq!(joined["peers"], json!([ids[0], ids[2]]));
}
