//! The built-in STUN/TURN server, checked with coturn's own test clients
//! (`turnutils_stunclient`, `turnutils_uclient`, `turnutils_peer`) against the real binary on
//! loopback, with credentials minted by `GET /api/v1/ice-servers`.
//!
//! Needs Debian's `coturn` package for the clients; `scripts/test.sh` installs it and sets
//! `SWITCHBOARD_REQUIRE_COTURN=1`, which turns a missing coturn into a failure instead of a
//! skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Switchboard, coturn_tools_available, minted, start_echo_peer, start_switchboard, turn_stats,
    uclient,
};

fn counter(sb: &Switchboard, name: &str) -> u64 {
    turn_stats(sb.port)[name].as_u64().unwrap()
}

/// Allocates through the built-in server and relays `messages` per client (2 clients) to the
/// echo peer on 127.0.0.1:`peer` and back.
fn relay_to_peer(
    sb: &Switchboard,
    user: &str,
    pass: &str,
    peer: u16,
    extra: &[&str],
) -> (bool, String) {
    relay_to_peer_with(sb, user, pass, peer, extra, 20, 2)
}

/// [`relay_to_peer`] with `messages` per client and `clients` clients.
fn relay_to_peer_with(
    sb: &Switchboard,
    user: &str,
    pass: &str,
    peer: u16,
    extra: &[&str],
    messages: u32,
    clients: u32,
) -> (bool, String) {
    let port = sb.turn_port.unwrap().to_string();
    let peer = peer.to_string();
    let mut args = vec![
        "-u",
        user,
        "-w",
        pass,
        "-e",
        "127.0.0.1",
        "-r",
        &peer,
        "-p",
        &port,
    ];
    args.extend(extra);
    uclient(&args, messages, clients)
}

#[test]
fn stun_binding_reports_the_mapped_address() {
    if !coturn_tools_available() {
        return;
    }
    let sb = start_switchboard(&[], &[]);
    let out = Command::new("timeout")
        .args(["10", "turnutils_stunclient", "-p"])
        .arg(sb.turn_port.unwrap().to_string())
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("UDP reflexive addr: 127.0.0.1:"),
        "no STUN Binding answer:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn advertises_itself_with_minted_credentials() {
    let sb = start_switchboard(&[], &[]);
    let v: serde_json::Value =
        serde_json::from_str(&common::http_get(sb.port, "/api/v1/ice-servers")).unwrap();
    let port = sb.turn_port.unwrap();
    assert_eq!(
        v["iceServers"][0]["urls"][0],
        format!("stun:127.0.0.1:{port}"),
        "{v}"
    );
    assert_eq!(
        v["iceServers"][1]["urls"],
        serde_json::json!([
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp"),
        ]),
        "{v}"
    );
    let user = v["iceServers"][1]["username"].as_str().unwrap();
    let expiry: u64 = user.split(':').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 3590..=now + 3610).contains(&expiry), "{user}");

    // Behind 1:1 NAT the configured public address replaces the client's host.
    let sb = start_switchboard(&["--turn-external-ip", "198.51.100.7"], &[]);
    let (url, _, _) = minted(sb.port);
    let port = sb.turn_port.unwrap();
    assert_eq!(url, format!("turn:198.51.100.7:{port}?transport=udp"));
}

#[test]
fn relays_over_udp_tcp_and_tls_with_minted_credentials() {
    if !coturn_tools_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sb-turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let sb = start_switchboard(
        &[
            "--turn-allow-peers",
            "127.0.0.1/32",
            "--turn-tls-listen",
            "127.0.0.1:0",
            "--turn-tls-cert",
            cert_path.to_str().unwrap(),
            "--turn-tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    );
    let (_peer, peer_port) = start_echo_peer();
    let (_, user, pass) = minted(sb.port);

    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &[]);
    assert!(ok, "UDP relay failed:\n{out}");
    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &["-t"]);
    assert!(ok, "TCP relay failed:\n{out}");
    let tls_port = sb.turns_port.unwrap().to_string();
    let port = sb.turn_port.unwrap().to_string();
    let (ok, out) = uclient(
        &["-S", "-t", "-y", "-u", &user, "-w", &pass, "-p", &tls_port],
        20,
        2,
    );
    assert!(ok, "TLS relay (client to client) failed:\n{out}");
    // Both the UDP and TCP runs relayed 40 messages each way through the echo peer.
    assert!(counter(&sb, "relayed_to_peers") >= 80 + 80);
    assert!(counter(&sb, "allocations_total") >= 6);
    assert_eq!(counter(&sb, "refused_auth"), 0);
    // The TLS port is advertised as turns:.
    let v: serde_json::Value =
        serde_json::from_str(&common::http_get(sb.port, "/api/v1/ice-servers")).unwrap();
    assert_eq!(
        v["iceServers"][1]["urls"][2],
        format!("turns:127.0.0.1:{tls_port}?transport=tcp")
    );
    assert!(!port.is_empty());
}

#[test]
fn refuses_wrong_forged_and_expired_credentials() {
    if !coturn_tools_available() {
        return;
    }
    let ttl = 12; // one turnutils_uclient run takes a few seconds
    let sb = start_switchboard(
        &[
            "--turn-allow-peers",
            "127.0.0.1/32",
            "--turn-ttl-secs",
            "12",
        ],
        &[],
    );
    let (_peer, peer_port) = start_echo_peer();
    let minted_at = Instant::now();
    let (_, user, pass) = minted(sb.port);

    let (ok, out) = relay_to_peer(&sb, &user, "bm90LXRoZS1wYXNzd29yZA==", peer_port, &[]);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "a wrong password was accepted:\n{out}"
    );
    assert!(counter(&sb, "refused_auth") > 0);
    // A username whose expiry was pushed forward (forged) fails the HMAC.
    let forged = format!("{}:switchboard-http", u64::MAX / 2);
    let (ok, _) = relay_to_peer(&sb, &forged, &pass, peer_port, &[]);
    assert!(!ok, "a forged username was accepted");

    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &[]);
    assert!(ok, "fresh credentials were refused:\n{out}");
    assert!(
        minted_at.elapsed() < Duration::from_secs(ttl),
        "the runs took longer than the TTL; the test proves nothing"
    );
    std::thread::sleep(Duration::from_secs(ttl + 2).saturating_sub(minted_at.elapsed()));
    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &[]);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "expired credentials were accepted:\n{out}"
    );
    assert!(counter(&sb, "refused_expired") > 0);
}

#[test]
fn relay_policy_refuses_loopback_and_own_ports_but_allows_relay_to_relay() {
    if !coturn_tools_available() {
        return;
    }
    // Default policy: loopback peers are refused with 403...
    let sb = start_switchboard(&[], &[]);
    let (_peer, peer_port) = start_echo_peer();
    let (_, user, pass) = minted(sb.port);
    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &[]);
    assert!(
        !ok && out.contains("403"),
        "a loopback peer was relayed:\n{out}"
    );
    assert!(counter(&sb, "refused_peer_loopback") > 0);
    assert_eq!(counter(&sb, "relayed_to_peers"), 0);
    // ...but two allocations on this server reach each other (relay to relay).
    let port = sb.turn_port.unwrap().to_string();
    let (ok, out) = uclient(&["-y", "-u", &user, "-w", &pass, "-p", &port], 20, 2);
    assert!(ok, "relay to relay failed:\n{out}");
    assert!(counter(&sb, "relayed_to_peers") >= 80);

    // With loopback allow-listed, the server's own HTTP and STUN/TURN ports stay refused.
    let sb = start_switchboard(&["--turn-allow-peers", "127.0.0.0/8"], &[]);
    let (_, user, pass) = minted(sb.port);
    for own in [sb.port, sb.turn_port.unwrap()] {
        let (ok, out) = relay_to_peer(&sb, &user, &pass, own, &[]);
        assert!(
            !ok && out.contains("403"),
            "own port {own} was relayed:\n{out}"
        );
    }
    assert!(counter(&sb, "refused_peer_own_port") >= 2);
    let (ok, out) = relay_to_peer(&sb, &user, &pass, peer_port, &[]);
    assert!(ok, "an allow-listed peer was refused:\n{out}");
}

#[test]
fn allocation_quota_per_user() {
    if !coturn_tools_available() {
        return;
    }
    let sb = start_switchboard(
        &[
            "--turn-user-quota",
            "2",
            "--turn-allow-peers",
            "127.0.0.0/8",
        ],
        &[],
    );
    let (_peer, peer_port) = start_echo_peer();
    let (_, user, pass) = minted(sb.port);
    let client = |user: &str, pass: &str, clients: u32| {
        relay_to_peer_with(&sb, user, pass, peer_port, &["-c"], 5, clients)
    };
    // uclient holds two allocations per client (no RTCP: `-c`) for a moment. Two clients
    // with one credential: the second is refused.
    let (ok, out) = client(&user, &pass, 2);
    assert!(
        !ok && out.contains("486"),
        "a second allocation for the same user was granted:\n{out}"
    );
    assert!(counter(&sb, "refused_user_quota") > 0);
    let held = counter(&sb, "allocations_active");
    assert!(held > 0);
    // The quota is per minted credential, not per server: another client's fresh credential
    // has a user of its own and gets its allocation while the first one's is held (issue 15
    // finding 5: every credential used to share one user, so one client's allocations locked
    // everyone out with 486).
    let (_, other_user, other_pass) = minted(sb.port);
    let (ok, out) = client(&other_user, &other_pass, 1);
    assert!(ok, "a fresh credential was refused:\n{out}");
    assert!(counter(&sb, "allocations_active") > held);
    assert_ne!(
        user.split(':').nth(1),
        other_user.split(':').nth(1),
        "two credentials share a user part"
    );
}

#[test]
fn a_busy_configured_turn_port_is_a_clear_error() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--turn-listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("starting the STUN/TURN server") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn with_default_addresses_a_busy_port_3478_leaves_signaling_running() {
    // Hold UDP 3478 on every address (if something else already holds it, even better).
    let _busy = std::net::UdpSocket::bind("0.0.0.0:3478");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = common::Killed(child);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut warned = false;
    let port: u16 = loop {
        let line = lines.next().expect("exited before listening").unwrap();
        warned |= line.contains("STUN/TURN not started: port 3478 is in use");
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            break rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(warned, "no warning about the busy STUN/TURN port");
    let v: serde_json::Value =
        serde_json::from_str(&common::http_get(port, "/api/v1/ice-servers")).unwrap();
    assert_eq!(
        v["iceServers"],
        serde_json::json!([{"urls": ["stun:stun.l.google.com:19302"]}])
    );
    assert_eq!(turn_stats(port), serde_json::Value::Null);
    drop(proc);
}

#[test]
fn a_client_on_ipv4_gets_an_ipv6_relay_when_it_asks() {
    if !coturn_tools_available() {
        return;
    }
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    // RFC 6156: the relay's family is the one requested, not the one of the client's
    // connection. Two clients relay to each other through IPv6 relays on [::1].
    let sb = start_switchboard(&[], &[]);
    let (_, user, pass) = minted(sb.port);
    let port = sb.turn_port.unwrap().to_string();
    let out = Command::new("timeout")
        .args([
            "30",
            "turnutils_uclient",
            "-x",
            "-y",
            "-c",
            "-n",
            "10",
            "-m",
            "2",
        ])
        .args(["-u", &user, "-w", &pass, "-p", &port, "127.0.0.1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && text.contains("tot_send_msgs=20, tot_recv_msgs=20")
            && text.contains("Total lost packets 0"),
        "IPv6 relay failed:\n{text}"
    );
    assert!(counter(&sb, "relayed_to_peers") >= 20);
}

/// `switchboard token` with the server's secret: the token and the demo link it prints.
fn token_cli(secret: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("token")
        .args(args)
        .env("SWITCHBOARD_AUTH_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

/// `GET /api/v1/ice-servers?token=`: the status line and the body.
fn ice_with_token(port: u16, token: &str) -> (String, serde_json::Value) {
    let (status, body) =
        common::http_get_status(port, &format!("/api/v1/ice-servers?token={token}"));
    (status, serde_json::from_str(&body).unwrap())
}

/// The `turn:` entry of an `RTCConfiguration`: (username, credential).
fn turn_entry(v: &serde_json::Value) -> (String, String) {
    let turn = v["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["urls"][0].as_str().unwrap().starts_with("turn:"))
        .expect("a turn: entry");
    (
        turn["username"].as_str().unwrap().to_owned(),
        turn["credential"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn room_token_holders_get_turn_credentials_named_and_limited_per_identity() {
    if !coturn_tools_available() {
        return;
    }
    let secret = "turn-test-room-token-secret-32-bytes";
    let sb = start_switchboard(
        &[
            "--turn-user-quota",
            "2",
            "--turn-allow-peers",
            "127.0.0.0/8",
        ],
        &[("SWITCHBOARD_AUTH_SECRET", secret)],
    );
    // Said right after the listening line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sb
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("room tokens required"))
    {
        assert!(Instant::now() < deadline, "{:?}", sb.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without a token: 401, no credentials.
    let (status, body) = ice_with_token(sb.port, "");
    assert!(status.contains("401"), "{status}");
    assert_eq!(body["error"], "unauthorized_access");
    // With tokens minted by `switchboard token`: credentials of the identity's own user.
    let (alice, link) = token_cli(secret, &["--room", "r1", "--sub", "alice"]);
    assert_eq!(
        link,
        format!("http://localhost:5080/?room=r1&token={alice}")
    );
    let (bob, _) = token_cli(secret, &["--room", "r1", "--sub", "bob"]);
    let (_, first) = ice_with_token(sb.port, &alice);
    let (_, second) = ice_with_token(sb.port, &alice);
    let (alice_user, alice_pass) = turn_entry(&first);
    assert!(alice_user.ends_with(":u.alice"), "{alice_user}");
    assert_eq!(
        alice_user.split(':').nth(1),
        turn_entry(&second).0.split(':').nth(1),
        "two credentials of one identity are one TURN user"
    );
    // coturn's client relays with them; the per-user quota holds for the identity, and
    // another identity is not locked out by it.
    let (_peer, peer_port) = start_echo_peer();
    let (ok, out) = relay_to_peer_with(&sb, &alice_user, &alice_pass, peer_port, &["-c"], 5, 2);
    assert!(
        !ok && out.contains("486"),
        "a third allocation for alice was granted:\n{out}"
    );
    let (bob_user, bob_pass) = turn_entry(&ice_with_token(sb.port, &bob).1);
    let (ok, out) = relay_to_peer_with(&sb, &bob_user, &bob_pass, peer_port, &["-c"], 5, 1);
    assert!(ok, "bob was refused:\n{out}");
    // A token without the TURN grant gets STUN only.
    let (stun_only, _) = token_cli(secret, &["--room", "r1", "--no-turn"]);
    let (_, v) = ice_with_token(sb.port, &stun_only);
    assert!(
        v["iceServers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["urls"][0].as_str().unwrap().starts_with("stun:")),
        "{v}"
    );
}
