//! Attacks on the HTTP edge, reproduced against the real binary on loopback (issue 15):
//! descriptors held without a request, and one address taking every connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http_get, rss_kib, start_switchboard};

fn stats(port: u16) -> serde_json::Value {
    serde_json::from_str(&http_get(port, "/api/v1/stats")).unwrap()
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // e.g. a 408 answer before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Before: a connection that sent nothing, or a header byte by byte, stayed open (150 s and
/// more), so 20,000 of them took every descriptor. Now each is closed after the header
/// timeout, counted, and the server keeps answering.
#[test]
fn connections_that_send_no_whole_request_are_closed_after_the_header_timeout() {
    let sb = start_switchboard(&["--header-timeout-secs", "1"], &[]);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", sb.port)).unwrap())
        .collect();
    // Slowloris: a header trickled a byte at a time, never finished.
    let mut slow = TcpStream::connect(("127.0.0.1", sb.port)).unwrap();
    let trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    let mut slow_closed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if slow
            .write_all(&trickle[sent % trickle.len()..][..1])
            .is_err()
        {
            slow_closed = true;
            break;
        }
        sent += 1;
        if closed_by_server(&mut slow, Duration::from_millis(200)) {
            slow_closed = true;
            break;
        }
    }
    assert!(
        slow_closed,
        "a header trickled byte by byte kept the connection open"
    );
    // Meanwhile the server answers others.
    assert!(http_get(sb.port, "/healthz").contains(r#"{"status":"ok"}"#));
    for s in &mut silent {
        assert!(
            closed_by_server(s, Duration::from_secs(5)),
            "a silent connection stayed open"
        );
    }
    let http = &stats(sb.port)["http"];
    assert!(http["header_timeouts"].as_u64().unwrap() >= 51, "{http}");
}

/// Before: no limit per address, so one client could hold every descriptor. Now the
/// connection over the limit is closed at accept and counted; the places come back when the
/// held connections close.
#[test]
fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let sb = start_switchboard(&["--max-connections-per-ip", "20"], &[]);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", sb.port)).unwrap())
        .collect();
    // Let the server account for all of them.
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(("127.0.0.1", sb.port)).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed_by_server(&mut over, Duration::from_secs(5)),
        "the 21st connection from one address was served"
    );
    drop(held);
    // The server sees the closes and gives the places back.
    std::thread::sleep(Duration::from_millis(300));
    let http = &stats(sb.port)["http"];
    assert!(http["refused_per_ip"].as_u64().unwrap() >= 1, "{http}");
    assert!(http_get(sb.port, "/healthz").contains(r#"{"status":"ok"}"#));
}

/// Issue 15 finding 9: PeerJS queues for absent ids counted messages, not bytes. 10,000
/// messages of 65 KB to 200 absent ids took the server from 10 MB to 646 MB, and every other
/// user's queued offer got an immediate EXPIRE. Now the bytes are bounded per receiver, per
/// sender and in total; the flood's excess is answered EXPIRE at once and a bystander's
/// offer still waits for its receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peerjs_flood_to_absent_ids_is_bounded_in_bytes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::Message;

    let sb = start_switchboard(&[], &[]);
    let url = |id: &str| {
        format!(
            "ws://127.0.0.1:{}/peerjs/peerjs?key=peerjs&id={id}&token=t",
            sb.port
        )
    };
    let before = rss_kib(sb.pid());
    // Ten attackers (each its own sender id) send 200 messages of 65 KB each to 200 ids.
    let payload = "x".repeat(65_000);
    let mut attackers = Vec::new();
    for a in 0..10 {
        let (mut ws, _) = connect_async(url(&format!("mallory{a}"))).await.unwrap();
        for i in 0..200 {
            let m = format!(r#"{{"type":"OFFER","dst":"ghost{i}","payload":"{payload}"}}"#);
            ws.send(Message::text(m)).await.unwrap();
        }
        attackers.push(ws);
    }
    // Each attacker is told at once for most of its messages (EXPIRE).
    let mut expired = 0;
    for ws in &mut attackers {
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(200), ws.next()).await
        {
            if m.to_text().unwrap_or("").contains("EXPIRE") {
                expired += 1;
            }
        }
    }
    let hub = stats(sb.port)["hub"].clone();
    assert!(expired > 1_500, "only {expired} EXPIREs; {hub}");
    assert!(
        hub["peerjs_queued_bytes"].as_u64().unwrap() <= 16 * 1024 * 1024,
        "{hub}"
    );
    let grown = rss_kib(sb.pid()).saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    // A bystander's offer waits for bob and reaches him when he connects.
    let (mut alice, _) = connect_async(url("alice")).await.unwrap();
    let open = alice.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().contains("OPEN"), "{open:?}");
    alice
        .send(Message::text(
            r#"{"type":"OFFER","dst":"bob","payload":{"sdp":"v=0"}}"#,
        ))
        .await
        .unwrap();
    let (mut bob, _) = connect_async(url("bob")).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), bob.next()).await {
        got.push(m.to_text().unwrap().to_owned());
        if got.iter().any(|m| m.contains("v=0")) {
            break;
        }
    }
    assert!(
        got.iter().any(|m| m.contains("v=0")),
        "bob did not get alice's offer: {got:?}"
    );
    if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), alice.next()).await {
        panic!("alice was answered: {m:?}");
    }
}

/// Issue 15 finding 8: one connection tried 9,000 room names in 344 ms and 60 connections
/// found a waiting peer (and got its offer). Now joins are rate-limited per connection and
/// per source address: the scanner gets `rate_limited`, is closed when it goes on, and never
/// reaches the waiting peer; a normal call from the same address still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_scanning_is_rate_limited_and_a_normal_call_still_works() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::Message;

    let sb = start_switchboard(&[], &[]);
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", sb.port);
    let join = |room: &str| Message::text(format!(r#"{{"command":"join","streamId":"{room}"}}"#));
    // The victim waits in room-5075.
    let (mut victim, _) = connect_async(&url).await.unwrap();
    victim.send(join("room-5075")).await.unwrap();
    let m = victim.next().await.unwrap().unwrap();
    assert!(m.to_text().unwrap().contains("joined"), "{m:?}");

    // One connection tries 9,000 names without waiting for answers.
    let (mut scanner, _) = connect_async(&url).await.unwrap();
    for i in 0..9_000 {
        if scanner.send(join(&format!("room-{i}"))).await.is_err() {
            break; // closed by the server
        }
    }
    let (mut joined, mut limited, mut close) = (0, 0, None);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), scanner.next()).await {
        match m {
            Message::Text(t) if t.contains("\"joined\"") => joined += 1,
            Message::Text(t) if t.contains("rate_limited") => limited += 1,
            Message::Close(c) => {
                close = c;
                break;
            }
            _ => {}
        }
    }
    assert!(joined <= 21, "the scanner joined {joined} rooms");
    assert!(limited >= 100, "only {limited} refusals");
    assert_eq!(
        close.map(|c| u16::from(c.code)),
        Some(1008),
        "not closed as a policy violation"
    );

    // Sixty connections from the same address, 150 names each: the address's budget runs
    // out long before the waiting room.
    let mut scanners = Vec::new();
    for k in 0..60 {
        let (mut ws, _) = connect_async(&url).await.unwrap();
        for i in 0..150 {
            let _ = ws.send(join(&format!("room-{}", k * 150 + i))).await;
        }
        scanners.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The victim was never paired (no `start`, which asks it for an offer).
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(300), victim.next()).await
    {
        assert!(
            !m.to_text().unwrap_or("").contains("start"),
            "the victim was found: {m:?}"
        );
    }
    let hub = stats(sb.port)["hub"].clone();
    assert!(hub["rate_limited"].as_u64().unwrap() > 100, "{hub}");
    assert!(hub["rate_limit_closed"].as_u64().unwrap() >= 1, "{hub}");
    drop(scanners);

    // A normal call from the same address, later, still pairs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut b, _) = connect_async(&url).await.unwrap();
    b.send(join("room-5075")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = victim.next().await.unwrap().unwrap();
            if m.to_text().unwrap_or("").contains("start") {
                return m;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the victim's partner could not join");
}

/// WebSocket ping frames went to the hub without counting against any budget: the one input
/// a client could send without limit. They now count as messages: a ping flood is refused
/// and closed (1008), and its partner is told `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_frame_flood_is_rate_limited_like_messages() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::Message;

    let sb = start_switchboard(&[], &[]);
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", sb.port);
    let join = Message::text(r#"{"command":"join","streamId":"ping-flood"}"#);
    let (mut partner, _) = connect_async(&url).await.unwrap();
    partner.send(join.clone()).await.unwrap();
    let (mut flooder, _) = connect_async(&url).await.unwrap();
    flooder.send(join).await.unwrap();
    for _ in 0..30_000 {
        if flooder
            .feed(Message::Ping(Vec::new().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = flooder.flush().await;
    let mut close = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), flooder.next()).await {
        if let Message::Close(c) = m {
            close = c;
            break;
        }
    }
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008), "not closed");
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = partner.next().await {
            if m.to_text().unwrap_or("").contains(r#""command":"stop""#) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(stopped, Ok(true), "the partner was not told stop");
    let hub = stats(sb.port)["hub"].clone();
    assert_eq!(hub["rate_limit_closed"].as_u64(), Some(1), "{hub}");
}

/// Bytes held for a client that does not read are bounded (issue 15: "bytes, not only
/// messages, held per connection and per process"): 128 queued messages of 60 KB held
/// 7.7 MB for one such client. Now it is dropped once 1 MiB waits for it, and its partner
/// gets `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_holds_at_most_its_byte_budget() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::Message;

    let sb = start_switchboard(&[], &[]);
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", sb.port);
    let join = Message::text(r#"{"command":"join","streamId":"sink"}"#);
    let (mut a, _) = connect_async(&url).await.unwrap();
    a.send(join.clone()).await.unwrap();
    a.next().await.unwrap().unwrap(); // joined
    let (mut b, _) = connect_async(&url).await.unwrap();
    b.send(join).await.unwrap();
    // b reads nothing from now on.
    let data = "x".repeat(60_000);
    let big = format!(
        r#"{{"command":"peerMessageCommand","streamId":"sink","definition":"d","data":"{data}"}}"#
    );
    let port = sb.port;
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..400 {
            let v = tokio::task::spawn_blocking(move || stats(port))
                .await
                .unwrap();
            peak = peak.max(v["hub"]["queued_bytes"].as_u64().unwrap());
            if v["hub"]["slow_consumers"].as_u64().unwrap() > 0 {
                return (peak, true);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (peak, false)
    });
    let mut stopped = false;
    for _ in 0..600 {
        if a.send(Message::text(big.clone())).await.is_err() {
            break;
        }
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(1), a.next()).await {
            stopped |= m.to_text().unwrap_or("").contains(r#""command":"stop""#);
        }
        if stopped {
            break;
        }
    }
    let (peak, dropped) = sampler.await.unwrap();
    assert!(dropped, "the client that does not read was not dropped");
    assert!(peak <= (1 << 20) + 64 * 1024, "{peak} bytes waited for it");
    while !stopped {
        let m = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .expect("no stop for the partner")
            .unwrap()
            .unwrap();
        stopped = m.to_text().unwrap_or("").contains(r#""command":"stop""#);
    }
    drop(b);
    // Everything charged was given back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(sb.port)["hub"]["queued_bytes"], 0);
}

/// Joins `room` on a new connection that says it carries `forwarded_for`'s request (the
/// `X-Forwarded-For` a reverse proxy adds); returns the socket and the first reply.
async fn join_forwarded(
    port: u16,
    forwarded_for: &str,
    room: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut req = format!("ws://127.0.0.1:{port}/LiveApp/websocket")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let join = format!(r#"{{"command":"join","streamId":"{room}"}}"#);
    ws.send(Message::text(join)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (ws, reply.to_text().unwrap().to_owned())
}

/// Behind a load balancer every connection comes from its address: the per-address limits
/// would hold all its clients to one address's share. With `--trusted-proxies`, the client
/// that `X-Forwarded-For` names is counted instead, and the proxy's connections are held to
/// the total only; without it, the header is the client's own claim and is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_are_told_apart_and_others_cannot_pick_an_address() {
    let limits = [
        "--max-joins-per-ip-per-sec",
        "1",
        "--max-connections-per-ip",
        "8",
    ];
    let mut args = limits.to_vec();
    args.extend(["--trusted-proxies", "10.0.0.0/8,127.0.0.1/32"]);
    let proxied = start_switchboard(&args, &[]);
    // One client (behind the proxy) joining room after room runs out of its budget (a burst
    // of ten)...
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..14 {
        let (ws, reply) =
            join_forwarded(proxied.port, "198.51.100.7, 203.0.113.1", &format!("a-{i}")).await;
        refused += usize::from(reply.contains("rate_limited"));
        held.push(ws);
    }
    assert!(refused >= 2, "{refused} refused");
    // ...on 14 connections from the proxy's one address, more than --max-connections-per-ip:
    // the proxy is held to the total only. Another client behind it joins at once.
    let (_ws, reply) = join_forwarded(proxied.port, "203.0.113.2", "b").await;
    assert!(reply.contains("joined"), "{reply}");
    let hub = &stats(proxied.port)["hub"];
    assert_eq!(
        hub["rate_limited"].as_u64().unwrap(),
        refused as u64,
        "{hub}"
    );
    drop(held);

    // Without --trusted-proxies the same header changes nothing: one address, one budget.
    let direct = start_switchboard(&limits, &[]);
    let mut held = Vec::new();
    for i in 0..8 {
        let (ws, _) =
            join_forwarded(direct.port, &format!("203.0.113.{i}"), &format!("c-{i}")).await;
        held.push(ws);
    }
    // The ninth connection from 127.0.0.1 is refused at accept, whatever it claims.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{}/LiveApp/websocket", direct.port),
    )
    .unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.99".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = 0;
    for i in 0..6 {
        let (_ws, reply) =
            join_forwarded(direct.port, &format!("192.0.2.{i}"), &format!("d-{i}")).await;
        refused += usize::from(reply.contains("rate_limited"));
    }
    // Eight joins and six more from "different" clients: the one budget (ten) ran out.
    assert!(refused >= 3, "{refused} refused");
}
