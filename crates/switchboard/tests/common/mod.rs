//! Running the real `switchboard` binary in tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};

/// A child process, killed (by pid) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `switchboard serve` on an ephemeral loopback port.
pub struct Switchboard {
    pub proc: Killed,
    pub port: u16,
    /// The built-in STUN/TURN port (UDP and TCP), if it runs.
    pub turn_port: Option<u16>,
    /// The TURN-over-TLS port, if TLS is on.
    pub turns_port: Option<u16>,
    /// Every line the server printed (its log) so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Switchboard {
    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// Starts `switchboard serve --listen 127.0.0.1:0 <args>` with extra environment `env`, and
/// waits for its startup line (which must name the WebSocket URL) to learn the port.
/// The built-in STUN/TURN server listens on a free loopback port unless `args` say where.
/// `RUST_LOG` is `info` unless `env` sets it; `("RUST_LOG", "")` leaves the binary's default
/// filter.
pub fn start_switchboard(args: &[&str], env: &[(&str, &str)]) -> Switchboard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    if !args.contains(&"--turn-listen") {
        cmd.args(["--turn-listen", "127.0.0.1:0"]);
    }
    cmd.env("RUST_LOG", "info").envs(env.iter().copied());
    if env.contains(&("RUST_LOG", "")) {
        cmd.env_remove("RUST_LOG");
    }
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut turn_port, mut turns_port) = (None, None);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = loop {
        let line = lines
            .next()
            .expect("switchboard exited before listening")
            .unwrap();
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("STUN/TURN on port ").nth(1) {
            turn_port = Some(leading_number(rest));
            turns_port = line.split("TLS port ").nth(1).map(leading_number);
        }
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            assert!(
                line.contains("/<app>/websocket"),
                "startup line names the URLs: {line}"
            );
            break leading_number(rest);
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    let kept = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Switchboard {
        proc: Killed(child),
        port,
        turn_port,
        turns_port,
        log,
    }
}

fn leading_number(s: &str) -> u16 {
    s.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether every one of `tools` is installed. If not: a failure when `require_env` is set
/// (`scripts/test.sh` installs the Debian `package` and sets it), else a said skip.
fn tools_available(tools: &[&str], package: &str, require_env: &str) -> bool {
    if tools.iter().all(|c| have(c)) {
        return true;
    }
    assert!(
        std::env::var_os(require_env).is_none(),
        "{package} is required ({require_env} is set) but not installed"
    );
    eprintln!("SKIPPED: {package} is not installed (apt-get install {package})");
    false
}

/// coturn's test clients (`SWITCHBOARD_REQUIRE_COTURN=1` makes a missing coturn a failure).
pub fn coturn_tools_available() -> bool {
    tools_available(
        &[
            "turnserver",
            "turnutils_uclient",
            "turnutils_peer",
            "turnutils_stunclient",
        ],
        "coturn",
        "SWITCHBOARD_REQUIRE_COTURN",
    )
}

/// ffmpeg and ffprobe (`SWITCHBOARD_REQUIRE_FFMPEG=1` makes them required).
pub fn ffmpeg_available() -> bool {
    tools_available(
        &["ffmpeg", "ffprobe"],
        "ffmpeg",
        "SWITCHBOARD_REQUIRE_FFMPEG",
    )
}

/// Runs a command to completion; panics with its stderr unless it succeeds.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ffprobe`: (codec, frames counted by decoding, width, height) of a file's first stream.
pub fn probe(path: &std::path::Path) -> (String, u64, u64, u64) {
    let out = run_ok(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames,width,height",
            "-of",
            "default=noprint_wrappers=1",
            path.to_str().unwrap(),
        ],
    );
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_owned()
    };
    let num = |k: &str| field(k).parse().unwrap_or(0);
    (
        field("codec_name"),
        num("nb_read_frames"),
        num("width"),
        num("height"),
    )
}

/// Decodes a whole media file with ffmpeg; panics on any decoding error.
pub fn decodes_cleanly(path: &std::path::Path) {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-xerror",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{}: {err}",
        path.display()
    );
}

/// A port that was free a moment ago, for both UDP and TCP.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Plain HTTP/1.1 GET on the server; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    http_get_status(port, path).1
}

/// A plain HTTP GET to 127.0.0.1:`port`: the status line and the body.
pub fn http_get_status(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// `GET /api/v1/ice-servers`: the first `turn:` URL of the entry with credentials, its
/// username and credential.
pub fn minted(port: u16) -> (String, String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&http_get(port, "/api/v1/ice-servers")).unwrap();
    let turn = v["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["urls"][0].as_str().unwrap().starts_with("turn:"))
        .expect("a turn: entry")
        .clone();
    (
        turn["urls"][0].as_str().unwrap().to_owned(),
        turn["username"].as_str().unwrap().to_owned(),
        turn["credential"].as_str().unwrap().to_owned(),
    )
}

/// `GET /api/v1/stats` → the `turn` counters.
pub fn turn_stats(port: u16) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&http_get(port, "/api/v1/stats")).unwrap();
    v["turn"].clone()
}

/// A `turnutils_peer` UDP echo peer on 127.0.0.1.
pub fn start_echo_peer() -> (Killed, u16) {
    let port = free_port();
    let peer = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(peer), port)
}

/// Runs coturn's TURN test client (`turnutils_uclient <args> -X -n N -m CLIENTS`, 127.0.0.1)
/// and returns (whether every message came back, the output).
pub fn uclient(args: &[&str], messages: u32, clients: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["30", "turnutils_uclient"])
        .args(args)
        .args([
            "-n",
            &messages.to_string(),
            "-m",
            &clients.to_string(),
            "-X",
        ])
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let total = messages * clients;
    // With -y (client to client) every client sends to the others: twice the messages.
    let totals = [total, 2 * total];
    let ok = out.status.success()
        && totals
            .iter()
            .any(|t| text.contains(&format!("tot_send_msgs={t}, tot_recv_msgs={t}")))
        && text.contains("Total lost packets 0");
    (ok, text)
}

/// Resident memory of process `pid`, in KiB.
#[allow(dead_code)]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Runs `switchboard bench <args>` and returns the JSON summary it prints last.
pub fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout:?} / {stderr}"))
}
