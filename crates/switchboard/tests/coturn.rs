//! Short-lived TURN credentials minted by Switchboard, checked by the industry-standard TURN
//! server: coturn (`turnserver --use-auth-secret`) and its own test clients
//! (`turnutils_uclient`, `turnutils_peer`), all on loopback.
//!
//! Needs Debian's `coturn` package; `scripts/test.sh` installs it and sets
//! `SWITCHBOARD_REQUIRE_COTURN=1`, which turns a missing coturn into a failure instead of a
//! skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, Switchboard, start_switchboard};

const SECRET: &str = "test-shared-secret";

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns false (after saying so) when coturn is not installed and not required.
fn coturn_available() -> bool {
    if have("turnserver") && have("turnutils_uclient") && have("turnutils_peer") {
        return true;
    }
    assert!(
        std::env::var_os("SWITCHBOARD_REQUIRE_COTURN").is_none(),
        "coturn is required (SWITCHBOARD_REQUIRE_COTURN is set) but not installed"
    );
    eprintln!("SKIPPED: coturn is not installed (apt-get install coturn)");
    false
}

/// A port that was free a moment ago, for both UDP and TCP.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Coturn {
    _server: Killed,
    _peer: Killed,
    port: u16,
    peer_port: u16,
}

fn start_coturn() -> Coturn {
    let port = free_port();
    let peer_port = free_port();
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
    let peer = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Coturn {
        _server: server,
        _peer: Killed(peer),
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

/// `GET /api/v1/ice-servers` over a plain TCP socket; returns the TURN entry's URL,
/// username and credential.
fn minted(port: u16) -> (String, String, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /api/v1/ice-servers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let turn = v["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["urls"][0].as_str().unwrap().starts_with("turn:"))
        .unwrap()
        .clone();
    (
        turn["urls"][0].as_str().unwrap().to_owned(),
        turn["username"].as_str().unwrap().to_owned(),
        turn["credential"].as_str().unwrap().to_owned(),
    )
}

/// Runs coturn's own TURN client: allocate, permission/channel, relay `n` messages to the
/// echo peer and back. Returns (success, output).
fn uclient(c: &Coturn, user: &str, pass: &str, tcp: bool) -> (bool, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "turnutils_uclient"]);
    if tcp {
        cmd.arg("-t");
    }
    let out = cmd
        .args(["-u", user, "-w", pass, "-e", "127.0.0.1"])
        .args(["-r", &c.peer_port.to_string(), "-p", &c.port.to_string()])
        .args(["-n", "20", "-m", "2", "-X", "127.0.0.1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success()
        && text.contains("tot_send_msgs=40, tot_recv_msgs=40")
        && text.contains("Total lost packets 0");
    (ok, text)
}

#[test]
fn coturn_accepts_minted_credentials_and_refuses_bad_ones() {
    if !coturn_available() {
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
    assert!(user.ends_with(":switchboard-http"), "{user}");

    let (ok, out) = uclient(&c, &user, &pass, false);
    assert!(
        ok,
        "UDP relay through coturn with minted credentials failed:\n{out}"
    );
    let (ok, out) = uclient(&c, &user, &pass, true);
    assert!(
        ok,
        "TCP relay through coturn with minted credentials failed:\n{out}"
    );

    let (ok, out) = uclient(&c, &user, "bm90LXRoZS1wYXNzd29yZA==", false);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "a wrong password was accepted:\n{out}"
    );
    // A username whose expiry was changed (forged) is refused too.
    let forged = format!("{}:switchboard-http", u64::MAX / 2);
    let (ok, _) = uclient(&c, &forged, &pass, false);
    assert!(!ok, "a forged username was accepted");
}

#[test]
fn coturn_refuses_expired_credentials() {
    if !coturn_available() {
        return;
    }
    let c = start_coturn();
    let ttl = 12; // one turnutils_uclient run takes ~5 s
    let sb = start_minting(c.port, ttl);
    let sb_port = sb.port;
    let minted_at = Instant::now();
    let (_, user, pass) = minted(sb_port);
    let (ok, out) = uclient(&c, &user, &pass, false);
    assert!(ok, "fresh credentials were refused:\n{out}");
    assert!(
        minted_at.elapsed() < Duration::from_secs(ttl),
        "the first relay took longer than the TTL; the test proves nothing"
    );
    // The same credentials after their expiry (coturn compares with its own clock).
    std::thread::sleep(Duration::from_secs(ttl + 1).saturating_sub(minted_at.elapsed()));
    let (ok, out) = uclient(&c, &user, &pass, false);
    assert!(
        !ok && out.contains("Cannot complete Allocation"),
        "expired credentials were accepted:\n{out}"
    );
}
