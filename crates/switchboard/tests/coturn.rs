//! Short-lived TURN credentials minted by Switchboard, checked by the industry-standard TURN
//! server: coturn (`turnserver --use-auth-secret`) and its own test clients
//! (`turnutils_uclient`, `turnutils_peer`), all on loopback.
//!
//! Needs Debian's `coturn` package; `scripts/test.sh` installs it and sets
//! `SWITCHBOARD_REQUIRE_COTURN=1`, which turns a missing coturn into a failure instead of a
//! skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Killed, Switchboard, coturn_tools_available, free_port, minted, start_echo_peer,
    start_switchboard,
};

const SECRET: &str = "test-shared-secret";

struct Coturn {
    _server: Killed,
    _peer: Killed,
    port: u16,
    peer_port: u16,
}

fn start_coturn() -> Coturn {
    let port = free_port();
    let relay_min = 49_152 + (port % 1000) * 10;
    let dir = std::env::temp_dir().join(format!("sb-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--simple-log",
            "--log-file=stdout",
        ])
        .arg("--listening-ip=127.0.0.1")
        .arg(format!("--listening-port={port}"))
        .arg("--relay-ip=127.0.0.1")
        .arg(format!("--min-port={relay_min}"))
        .arg(format!("--max-port={}", relay_min + 9))
        .arg("--use-auth-secret")
        .arg(format!("--static-auth-secret={SECRET}"))
        .arg("--realm=switchboard.test")
        .arg("--allow-loopback-peers")
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Killed(server);
    // Wait until coturn says it listens on our port.
    let stdout = server.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "coturn did not start");
        let line = lines.next().expect("coturn exited").unwrap();
        if line.contains("Total General servers") || line.contains(&format!("127.0.0.1:{port}")) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (peer, peer_port) = start_echo_peer();
    Coturn {
        _server: server,
        _peer: peer,
        port,
        peer_port,
    }
}

/// Starts switchboard minting credentials for `turn:{host}:<port>`.
fn start_minting(turn_port: u16, ttl_secs: u64) -> Switchboard {
    let urls = format!("turn:{{host}}:{turn_port}");
    let ttl = ttl_secs.to_string();
    start_switchboard(
        &[
            "--turn-secret",
            SECRET,
            "--turn-urls",
            &urls,
            "--turn-ttl-secs",
            &ttl,
        ],
        &[],
    )
}

/// coturn's own TURN client through coturn: allocate, permission/channel, 20 messages per
/// client (2 clients) to the echo peer and back.
fn relay(c: &Coturn, user: &str, pass: &str, tcp: bool) -> (bool, String) {
    let (peer_port, port) = (c.peer_port.to_string(), c.port.to_string());
    let mut args = vec!["-u", user, "-w", pass, "-e", "127.0.0.1", "-r", &peer_port];
    args.extend(["-p", &port]);
    if tcp {
        args.push("-t");
    }
    common::uclient(&args, 20, 2)
}

#[test]
fn coturn_accepts_minted_credentials_and_refuses_bad_ones() {
    if !coturn_tools_available() {
        return;
    }
    let c = start_coturn();
    let sb = start_minting(c.port, 600);
    let sb_port = sb.port;
    let (url, user, pass) = minted(sb_port);
    assert_eq!(
        url,
        format!("turn:127.0.0.1:{}", c.port),
        "{{host}} is the client's host"
    );
    // `<expiry>:<8 hex digits>-h<serial>`: a user of its own per credential.
    let part = user.split_once(':').unwrap().1;
    assert!(
        part.len() > 10 && part.as_bytes()[8] == b'-' && part[9..].starts_with('h'),
        "{user}"
    );

    let (ok, out) = relay(&c, &user, &pass, false);
    assert!(
        ok,
        "UDP relay through coturn with minted credentials failed:\n{out}"
    );
    let (ok, out) = relay(&c, &user, &pass, true);
    assert!(
        ok,
        "TCP relay through coturn with minted credentials failed:\n{out}"
    );

    let (ok, out) = relay(&c, &user, "bm90LXRoZS1wYXNzd29yZA==", false);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "a wrong password was accepted:\n{out}"
    );
    // A username whose expiry was changed (forged) is refused too.
    let forged = format!("{}:switchboard-http", u64::MAX / 2);
    let (ok, _) = relay(&c, &forged, &pass, false);
    assert!(!ok, "a forged username was accepted");
}

#[test]
fn coturn_refuses_expired_credentials() {
    if !coturn_tools_available() {
        return;
    }
    let c = start_coturn();
    let ttl = 12; // one turnutils_uclient run takes ~5 s
    let sb = start_minting(c.port, ttl);
    let sb_port = sb.port;
    let minted_at = Instant::now();
    let (_, user, pass) = minted(sb_port);
    let (ok, out) = relay(&c, &user, &pass, false);
    assert!(ok, "fresh credentials were refused:\n{out}");
    assert!(
        minted_at.elapsed() < Duration::from_secs(ttl),
        "the first relay took longer than the TTL; the test proves nothing"
    );
    // The same credentials after their expiry (coturn compares with its own clock).
    std::thread::sleep(Duration::from_secs(ttl + 1).saturating_sub(minted_at.elapsed()));
    let (ok, out) = relay(&c, &user, &pass, false);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "expired credentials were accepted:\n{out}"
    );
}
