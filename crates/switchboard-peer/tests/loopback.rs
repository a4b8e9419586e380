//! Two native peers meet through a real Switchboard server (the `switchboard-server` edge
//! on a loopback port) and exchange data-channel messages and media both ways.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use switchboard_peer::{
    AudioSource, IcePolicy, MediaConfig, Peer, PeerConfig, PeerEvent, Track, VideoSource,
};
use tokio::time::timeout;

async fn server() -> (u16, tokio::sync::oneshot::Sender<()>) {
    server_on(0).await
}

async fn server_on(port: u16) -> (u16, tokio::sync::oneshot::Sender<()>) {
    // After a stop, the old server may hold the port until its graceful shutdown ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline && port != 0 => {
                eprintln!("port {port} still busy ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("binding 127.0.0.1:{port}: {e}"),
        }
    };
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
    peer_receiving(port, room, None).await
}

async fn peer_receiving(port: u16, room: &str, receive_dir: Option<std::path::PathBuf>) -> Peer {
    let (peer, driver) = Peer::connect(PeerConfig {
        receive_dir,
        ..PeerConfig::new(format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket"), room)
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

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_whole_with_its_sha256_and_is_refused_without_a_directory() {
    let (port, _stop) = server().await;
    let dir = std::env::temp_dir().join(format!("sb-peer-files-{}", std::process::id()));
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    // 5 MB of varied bytes (not a multiple of the 16 KiB chunk).
    let data: Vec<u8> = (0..5_000_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = dir.join("payload.bin");
    std::fs::write(&src, &data).unwrap();

    let mut a = peer(port, "files").await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A joined").await;
    let mut b = peer_receiving(port, "files", Some(inbox.clone())).await;
    until(&mut a, |e| *e == PeerEvent::Open, "A open").await;
    until(&mut b, |e| *e == PeerEvent::Open, "B open").await;

    let started = Instant::now();
    let id = a.send_file(&src).await.unwrap();
    let mut sender_progress = 0;
    let sent = timeout(Duration::from_secs(60), async {
        loop {
            match a.next_event().await.unwrap() {
                PeerEvent::FileProgress { sending: true, .. } => sender_progress += 1,
                e @ (PeerEvent::FileSent { .. } | PeerEvent::FileFailed { .. }) => return e,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        sent,
        PeerEvent::FileSent {
            id: id.clone(),
            name: "payload.bin".into(),
            size: data.len() as u64
        }
    );
    assert!(sender_progress > 5, "{sender_progress} progress events");
    let got = until(
        &mut b,
        |e| matches!(e, PeerEvent::FileReceived { .. }),
        "file at B",
    )
    .await;
    let PeerEvent::FileReceived {
        path,
        size,
        sha256,
        verified,
        name,
        ..
    } = got
    else {
        unreachable!()
    };
    assert_eq!(
        (name.as_str(), size, verified),
        ("payload.bin", data.len() as u64, Some(true))
    );
    assert_eq!(sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    eprintln!(
        "5 MB file: {elapsed:?} ({:.1} MB/s, debug build)",
        data.len() as f64 / 1e6 / elapsed.as_secs_f64()
    );

    // B refuses files when it has no receive directory... (A sends to a fresh B.)
    b.hangup().await;
    until(&mut a, |e| *e == PeerEvent::PeerLeft, "A told B left").await;
    let mut c = peer(port, "files").await;
    until(&mut a, |e| *e == PeerEvent::Open, "A open again").await;
    until(&mut c, |e| *e == PeerEvent::Open, "C open").await;
    a.send_file(&src).await.unwrap();
    let failed = until(
        &mut a,
        |e| matches!(e, PeerEvent::FileFailed { .. } | PeerEvent::FileSent { .. }),
        "refusal",
    )
    .await;
    assert!(
        matches!(&failed, PeerEvent::FileFailed { reason, .. } if reason.contains("reject")),
        "{failed:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_through_a_server_restart_and_both_rejoin() {
    let (port, stop) = server().await;
    let mut a = peer(port, "restart").await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A joined").await;
    let mut b = peer(port, "restart").await;
    until(&mut a, |e| *e == PeerEvent::Open, "A open").await;
    until(&mut b, |e| *e == PeerEvent::Open, "B open").await;

    // The server goes away: both notice, the peer-to-peer channel keeps working.
    stop.send(()).unwrap();
    until(&mut a, |e| *e == PeerEvent::Reconnecting, "A reconnecting").await;
    until(&mut b, |e| *e == PeerEvent::Reconnecting, "B reconnecting").await;
    a.send_text("during the outage").await.unwrap();
    assert_eq!(
        until(
            &mut b,
            |e| matches!(e, PeerEvent::Text(_)),
            "text during outage"
        )
        .await,
        PeerEvent::Text("during the outage".into())
    );

    // It comes back on the same port: both re-join by themselves, the call goes on.
    let (_, _stop2) = server_on(port).await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A re-joined").await;
    until(&mut b, |e| *e == PeerEvent::Joined, "B re-joined").await;
    b.send_text("after the restart").await.unwrap();
    assert_eq!(
        until(
            &mut a,
            |e| matches!(e, PeerEvent::Text(_)),
            "text after restart"
        )
        .await,
        PeerEvent::Text("after the restart".into())
    );
    // And the re-joined room is whole: a hang-up still reaches the other side.
    a.hangup().await;
    until(&mut b, |e| *e == PeerEvent::PeerLeft, "B told A left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_peers_connect_through_the_built_in_turn_server() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // Switchboard with its built-in STUN/TURN, advertised with minted credentials.
    let secret = "relay-test-secret";
    let turn = switchboard_turn::start(switchboard_turn::TurnConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        secret: secret.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = switchboard_server::ServerConfig::default();
    config.hub.ice = switchboard_core::ice::IceConfig {
        servers: vec![],
        turn: Some(switchboard_core::ice::TurnRest {
            secret: secret.into(),
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port())],
            ttl: Duration::from_secs(600),
            user_prefix: "loopback-".into(),
        }),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(switchboard_server::run(
        config,
        listener,
        std::future::pending(),
    ));

    let relay_peer = |room: &'static str| async move {
        let (peer, driver) = Peer::connect(PeerConfig {
            ice: IcePolicy::RelayOnly,
            stats_interval: Some(Duration::from_millis(200)),
            ..PeerConfig::new(format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket"), room)
        })
        .await
        .unwrap();
        tokio::spawn(driver);
        peer
    };
    let mut a = relay_peer("relay-room").await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A joined").await;
    let mut b = relay_peer("relay-room").await;
    until(&mut a, |e| *e == PeerEvent::Open, "A open").await;
    until(&mut b, |e| *e == PeerEvent::Open, "B open").await;
    a.send_text("through two relays").await.unwrap();
    assert_eq!(
        until(&mut b, |e| matches!(e, PeerEvent::Text(_)), "text at B").await,
        PeerEvent::Text("through two relays".into())
    );
    for (who, p) in [("A", &mut a), ("B", &mut b)] {
        let PeerEvent::Stats(s) = until(
            p,
            |e| matches!(e, PeerEvent::Stats(s) if s.path.is_some()),
            "stats with a selected pair",
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(s.path, Some("relay"), "{who}: {s:?}");
    }
    let stats = turn.stats();
    assert!(stats.allocations_active >= 2, "{stats:?}");
    assert!(
        stats.relayed_to_peers > 0 && stats.relayed_from_peers > 0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn test_pattern_and_tone_both_ways_are_recorded() {
    let (port, _stop) = server().await;
    let dir = std::env::temp_dir().join(format!("sb-peer-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let media_peer = |side: &str| {
        let config = PeerConfig {
            media: MediaConfig {
                video: Some(VideoSource::TestPattern),
                audio: Some(AudioSource::Tone),
                record_video: Some(dir.join(format!("{side}.ivf"))),
                record_audio: Some(dir.join(format!("{side}.ogg"))),
                ..MediaConfig::default()
            },
            stats_interval: Some(Duration::from_millis(200)),
            ice: IcePolicy::HostOnly,
            ..PeerConfig::new(
                format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket"),
                "media-room",
            )
        };
        async move {
            let (peer, driver) = Peer::connect(config).await.unwrap();
            (peer, tokio::spawn(driver))
        }
    };
    let (mut a, a_driver) = media_peer("a").await;
    until(&mut a, |e| *e == PeerEvent::Joined, "A joined").await;
    let (mut b, b_driver) = media_peer("b").await;
    for p in [&mut a, &mut b] {
        let mut started = Vec::new();
        while started.len() < 2 {
            if let PeerEvent::MediaStarted { track, codec } = until(
                p,
                |e| matches!(e, PeerEvent::MediaStarted { .. }),
                "media started",
            )
            .await
            {
                started.push((track, codec));
            }
        }
        started.sort_by_key(|(t, _)| *t == Track::Audio);
        assert_eq!(
            started,
            [
                (Track::Video, "vp8".to_owned()),
                (Track::Audio, "opus".to_owned())
            ]
        );
        // Sent and received counts grow independently: wait for one report with all four.
        let PeerEvent::Stats(s) = until(
            p,
            |e| {
                matches!(e, PeerEvent::Stats(s) if s.video_frames_received >= 10
                    && s.audio_frames_received >= 30
                    && s.video_frames_sent >= 10
                    && s.audio_frames_sent >= 30)
            },
            "stats counting frames both ways",
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(s.path, Some("host"), "{s:?}");
        assert!(s.rtt.is_some() && s.bytes_received > 10_000, "{s:?}");
        assert!(
            s.video_frames_sent >= 10 && s.audio_frames_sent >= 30,
            "{s:?}"
        );
    }
    a.hangup().await;
    b.hangup().await;
    for (p, driver) in [(&mut a, a_driver), (&mut b, b_driver)] {
        driver.await.unwrap().unwrap();
        let mut recorded = Vec::new();
        while let Some(e) = p.next_event().await {
            if let PeerEvent::Recorded {
                track,
                path,
                frames,
            } = e
            {
                recorded.push((track, path, frames));
            }
        }
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        for (track, path, frames) in recorded {
            let min = if track == Track::Video { 10 } else { 30 };
            assert!(frames >= min, "{track}: {frames} frames");
            let bytes = std::fs::read(&path).unwrap();
            match track {
                Track::Video => {
                    assert_eq!(&bytes[0..4], b"DKIF");
                    assert_eq!(&bytes[8..12], b"VP80");
                    assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), 320);
                    // Duration in 1/90,000 s: at least the frames' span at 15 fps.
                    let duration = u64::from(u32::from_le_bytes(bytes[24..28].try_into().unwrap()));
                    assert!(duration >= frames * 6_000, "{duration} for {frames} frames");
                }
                Track::Audio => assert_eq!(&bytes[0..4], b"OggS"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_media_file_is_an_error_before_connecting() {
    let config = PeerConfig {
        media: MediaConfig {
            video: Some(VideoSource::Ivf("/nonexistent/clip.ivf".into())),
            ..MediaConfig::default()
        },
        ..PeerConfig::new("ws://127.0.0.1:9/WebRTCAppEE/websocket", "r")
    };
    let err = Peer::connect(config).await.unwrap_err().to_string();
    assert!(err.starts_with("media: /nonexistent/clip.ivf"), "{err}");
}

/// The server goes away while this peer waits alone: it retries for the reconnect budget,
/// then the session ends with an error naming the URL (it does not retry forever).
#[tokio::test]
async fn an_unreachable_server_ends_the_session_after_the_reconnect_budget() {
    let (port, stop) = server().await;
    let url = format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket");
    let (mut peer, driver) = Peer::connect(PeerConfig {
        ice: IcePolicy::HostOnly,
        reconnect_budget: Duration::from_secs(2),
        ..PeerConfig::new(url.clone(), "alone")
    })
    .await
    .unwrap();
    let driver = tokio::spawn(driver);
    until(&mut peer, |e| *e == PeerEvent::Joined, "joined").await;
    let _ = stop.send(());
    until(&mut peer, |e| *e == PeerEvent::Reconnecting, "reconnecting").await;
    let err = timeout(Duration::from_secs(30), driver)
        .await
        .expect("the session ends")
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gave up reconnecting") && err.contains(&url),
        "{err}"
    );
}
