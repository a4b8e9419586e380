//! Two native peers meet through a real Switchboard server (the `switchboard-server` edge
//! on a loopback port) and exchange data-channel messages both ways.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use switchboard_peer::{Peer, PeerConfig, PeerEvent};
use tokio::time::timeout;

async fn server() -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(switchboard_server::run(
        switchboard_server::ServerConfig::default(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    (port, stop)
}

async fn peer(port: u16, room: &str) -> Peer {
    let (peer, driver) = Peer::connect(PeerConfig {
        url: format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket"),
        room: room.into(),
    })
    .await
    .unwrap();
    tokio::spawn(driver);
    peer
}

async fn until(peer: &mut Peer, want: impl Fn(&PeerEvent) -> bool, what: &str) -> PeerEvent {
    timeout(Duration::from_secs(10), async {
        loop {
            match peer.next_event().await {
                Some(e) if want(&e) => return e,
                Some(_) => {}
                None => panic!("session ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_native_peers_exchange_text_and_binary() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (port, _stop) = server().await;
    let mut a = peer(port, "native-room").await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A joined").await;
    let started = Instant::now();
    let mut b = peer(port, "native-room").await;
    until(&mut b, |e| *e == PeerEvent::Joined, "B joined").await;
    eprintln!("B joined: {:?}", started.elapsed());
    until(&mut a, |e| *e == PeerEvent::Open, "A's channel open").await;
    eprintln!("A open: {:?}", started.elapsed());
    until(&mut b, |e| *e == PeerEvent::Open, "B's channel open").await;
    eprintln!("join -> both channels open: {:?}", started.elapsed());

    a.send_text("hello from A").await.unwrap();
    b.send_binary(&[0, 1, 2, 255]).await.unwrap();
    assert_eq!(
        until(&mut b, |e| matches!(e, PeerEvent::Text(_)), "text at B").await,
        PeerEvent::Text("hello from A".into())
    );
    assert_eq!(
        until(&mut a, |e| matches!(e, PeerEvent::Binary(_)), "binary at A").await,
        PeerEvent::Binary(vec![0, 1, 2, 255])
    );
    // A 100 KB message (larger than one SCTP chunk and than the 64 KiB that breaks some
    // stacks) arrives whole.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    a.send_binary(&big).await.unwrap();
    assert_eq!(
        until(&mut b, |e| matches!(e, PeerEvent::Binary(_)), "100 KB at B").await,
        PeerEvent::Binary(big)
    );

    // Hang-up: the other side is told.
    a.hangup().await;
    until(&mut b, |e| *e == PeerEvent::PeerLeft, "B told A left").await;
}
