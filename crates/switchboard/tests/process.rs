//! The real `switchboard` binary as a user runs it: startup line, idle memory per joined
//! peer, SIGTERM shutdown, JSON logs, the version.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

mod common;

use common::{Switchboard, rss_kib, start_switchboard};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

fn start(args: &[&str]) -> Switchboard {
    start_switchboard(args, &[])
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `url`, sends `text`, and returns the socket and the first reply.
async fn request(url: &str, text: &str) -> (Ws, String) {
    let (mut ws, _) = connect_async(url).await.unwrap();
    ws.send(Message::text(text)).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (ws, m.to_text().unwrap().to_owned())
}

/// This process's soft fd limit (the server inherits it).
fn soft_fd_limit() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_joined_peers_cost_a_few_kib_each() {
    // The server process inherits our soft limit; keep the count under it.
    let soft = soft_fd_limit();
    let n: usize = if soft >= 8192 { 2000 } else { 400 };
    let p = start(&[
        "--max-connections",
        "100000",
        "--max-connections-per-ip",
        "0",
        "--max-joins-per-ip-per-sec",
        "0",
    ]);
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", p.port);

    // Warm up allocator arenas and runtime threads with a first batch, then measure the
    // increase for the next batch so one-off costs are not counted per peer.
    let mut clients = Vec::new();
    let connect = async |count: usize, offset: usize, clients: &mut Vec<_>| {
        for i in 0..count {
            let room = format!("r{}", (offset + i) / 2);
            let (ws, reply) = request(
                &url,
                &format!(r#"{{"command":"join","streamId":"{room}"}}"#),
            )
            .await;
            assert!(reply.contains("joined"), "{reply}");
            clients.push(ws);
        }
    };
    connect(n / 2, 0, &mut clients).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(p.pid());
    connect(n, n / 2, &mut clients).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(p.pid());
    let per_peer = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "server RSS {before} KiB -> {after} KiB for {n} more joined peers: {per_peer:.2} KiB per peer"
    );
    assert!(
        per_peer < 8.0,
        "idle joined peer costs {per_peer:.2} KiB (budget: a few KiB)"
    );
    drop(clients);
}

#[test]
fn sighup_without_tls_is_logged_and_sigterm_stops_cleanly() {
    let mut p = start(&[]);
    let pid = p.pid();
    // `systemctl reload` sends SIGHUP: with no TLS files to reload it must not end the server.
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    while !p
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("received SIGHUP: nothing to reload"))
    {
        assert!(waited < 200, "no SIGHUP line within 10 s");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert!(
        p.proc.0.try_wait().unwrap().is_none(),
        "SIGHUP ended the server"
    );
    assert!(common::http_get(p.port, "/healthz").contains("ok"));
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    let code = loop {
        if let Some(s) = p.proc.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            waited < 200,
            "switchboard did not exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    };
    assert_eq!(code, Some(0));
}

#[test]
fn bad_config_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ice-servers",
            "http://x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must start with stun:"), "{err}");
}

#[tokio::test]
async fn environment_variables_configure_the_server() {
    let p = start_switchboard(
        &[],
        &[
            (
                "SWITCHBOARD_ICE_SERVERS",
                "stun:stun.example.test:3478,turn:turn.example.test:3478",
            ),
            ("SWITCHBOARD_TURN_USERNAME", "alice"),
            ("SWITCHBOARD_TURN_CREDENTIAL", "s3cret"),
        ],
    );
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", p.port);
    let (_ws, reply) = request(&url, r#"{"command":"getIceServerConfig"}"#).await;
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "command": "iceServerConfig",
            "stunServerUri": "turn:turn.example.test:3478",
            "turnServerUsername": "alice",
            "turnServerCredential": "s3cret",
            "iceServers": [
                {"urls": ["stun:stun.example.test:3478"]},
                {"urls": ["turn:turn.example.test:3478"], "username": "alice", "credential": "s3cret"}
            ]
        })
    );
}

/// Join, exchange, leave, over and over: server memory must not grow with the number of
/// calls served (no leaked rooms, connections or timer entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_does_not_grow_memory() {
    // 9,000 joins from one address in a few seconds: past the per-address join limit, which
    // is not what this test is about.
    let p = start(&["--max-joins-per-ip-per-sec", "0"]);
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", p.port);
    let round = async |rounds: usize| {
        for i in 0..rounds {
            let room = format!(r#"{{"command":"join","streamId":"churn{i}"}}"#);
            let (mut a, _) = request(&url, &room).await;
            let (mut b, reply) = request(&url, &room).await;
            assert!(reply.contains("joined"), "{reply}");
            let offer = format!(
                r#"{{"command":"takeConfiguration","streamId":"churn{i}","type":"offer","sdp":"{}"}}"#,
                "v".repeat(3000)
            );
            a.send(Message::text(offer)).await.unwrap();
            // a: start; b: the offer.
            for ws in [&mut a, &mut b] {
                tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
            }
            b.close(None).await.unwrap();
            a.close(None).await.unwrap();
        }
    };
    round(1500).await; // warm-up: allocator arenas, buffers, runtime
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(p.pid());
    round(3000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(p.pid());
    println!("RSS after warm-up {before} KiB, after 3000 more calls {after} KiB");
    assert!(
        after <= before + 2048,
        "memory grew by {} KiB over 3000 calls",
        after.saturating_sub(before)
    );
}

/// The log lines of `switchboard serve <args>` up to the first that contains `want`, or all
/// it printed before exiting or `wait` passed.
fn startup_until(args: &[&str], env: &[(&str, &str)], want: &str, wait: Duration) -> String {
    use std::io::BufRead;
    let mut child = common::Killed(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--turn-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + wait;
    let mut log = String::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains(want) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    log
}

#[test]
fn listening_beyond_loopback_without_room_tokens_warns() {
    let long = Duration::from_secs(15);
    let open = startup_until(&["--listen", "0.0.0.0:0"], &[], "rooms are open", long);
    assert!(open.contains("rooms are open"), "{open}");
    assert!(open.contains("--auth-secret"), "{open}");
    let secret = [(
        "SWITCHBOARD_AUTH_SECRET",
        "0123456789abcdef0123456789abcdef",
    )];
    let closed = startup_until(
        &["--listen", "0.0.0.0:0"],
        &secret,
        "room tokens required",
        long,
    );
    assert!(closed.contains("room tokens required"), "{closed}");
    assert!(!closed.contains("rooms are open"), "{closed}");
    // On loopback alone there is nothing to warn about (the warning would follow the
    // listening line at once; 2 s is plenty).
    let local = startup_until(
        &["--listen", "127.0.0.1:0"],
        &[],
        "rooms are open",
        Duration::from_secs(2),
    );
    assert!(local.contains("listening on 127.0.0.1:"), "{local}");
    assert!(!local.contains("rooms are open"), "{local}");
}

#[test]
fn a_short_auth_secret_or_a_bad_key_file_is_a_clear_error() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--turn-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&["--auth-secret", "short"]);
    assert!(err.contains("at least 32 bytes"), "{err}");
    let err = run(&["--auth-public-key", "k1=/nonexistent/key.pem"]);
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
    let junk = std::env::temp_dir().join(format!("sb-not-a-key-{}.pem", std::process::id()));
    std::fs::write(&junk, "not a key").unwrap();
    let err = run(&["--auth-public-key", junk.to_str().unwrap()]);
    assert!(err.contains("not an RSA, EC"), "{err}");
    let _ = std::fs::remove_file(junk);
}

/// `--log-format json`: every line is one JSON object (timestamp, level, message), and a
/// join's and a leave's lines carry the connection, dialect, app and room as fields.
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_peer_fields() {
    let p = start_switchboard(&[], &[("SWITCHBOARD_LOG_FORMAT", "json")]);
    let url = format!("ws://127.0.0.1:{}/LogApp/websocket", p.port);
    let (mut ws, joined) = request(&url, r#"{"command":"join","streamId":"log-room"}"#).await;
    assert!(joined.contains("joined"), "{joined}");
    ws.send(Message::text(
        r#"{"command":"leave","streamId":"log-room"}"#,
    ))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = p.log.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains(r#""message":"left""#))
            || std::time::Instant::now() > deadline
        {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for o in &objects {
        for key in ["timestamp", "level", "message"] {
            assert!(o.get(key).is_some(), "no {key}: {o}");
        }
    }
    for (message, reason) in [("joined", None), ("left", Some("leave"))] {
        let line = objects
            .iter()
            .find(|o| o["message"] == message)
            .unwrap_or_else(|| panic!("no {message} line: {lines:#?}"));
        assert_eq!(line["dialect"], "antmedia", "{line}");
        assert_eq!(line["app"], "LogApp", "{line}");
        assert_eq!(line["room"], "log-room", "{line}");
        assert!(line["conn"].as_u64().is_some(), "{line}");
        assert_eq!(line["reason"].as_str(), reason, "{line}");
    }
}

#[test]
fn the_version_names_the_git_revision_it_was_built_from() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    // Built from this checkout: its HEAD (where git cannot read the checkout, the build
    // script could not either: `unknown`).
    let head = if head.status.success() {
        String::from_utf8(head.stdout).unwrap().trim().to_owned()
    } else {
        "unknown".to_owned()
    };
    let head = head.as_str();
    assert_eq!(
        version.trim(),
        format!("switchboard {} ({head})", env!("CARGO_PKG_VERSION"))
    );
    // The startup line carries it too.
    let line = startup_until(
        &["--listen", "127.0.0.1:0"],
        &[],
        "listening on",
        Duration::from_secs(5),
    );
    assert!(line.contains(&format!("({head})")), "{line}");
}

/// `switchboard health <args>` with extra environment: (success, stdout, stderr).
fn health(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("health")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// A loopback listener that answers every connection with `answer` (none: holds it open and
/// says nothing), on a thread.
fn fake_server(answer: Option<&'static str>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in listener.incoming().flatten() {
            let _ = s.read(&mut [0; 1024]);
            match answer {
                Some(a) => drop(s.write_all(a.as_bytes())),
                None => held.push(s),
            }
        }
    });
    port
}

#[test]
fn health_asks_the_servers_own_port_and_fails_clearly_otherwise() {
    let sb = start(&[]);
    let listen = format!("127.0.0.1:{}", sb.port);
    // The same settings as `serve`, here from the environment, as in a container.
    let (ok, out, err) = health(&[], &[("SWITCHBOARD_LISTEN", &listen)]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), format!("ok: http://{listen}/healthz"));
    let (ok, out, _) = health(&["--listen", &listen], &[]);
    assert!(ok, "{out}");
    drop(sb);
    let (ok, _, err) = health(&["--listen", &listen], &[]);
    assert!(!ok);
    assert!(err.contains(&format!("connecting to {listen}")), "{err}");
    // Something else on the port.
    let other = fake_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ));
    let (ok, _, err) = health(&["--addr", &format!("127.0.0.1:{other}")], &[]);
    assert!(!ok);
    assert!(
        err.contains("answered /healthz with `HTTP/1.1 503 Service Unavailable`"),
        "{err}"
    );
    // A server that never answers: given up on after --timeout-secs.
    let silent = fake_server(None);
    let (ok, _, err) = health(
        &[
            "--addr",
            &format!("127.0.0.1:{silent}"),
            "--timeout-secs",
            "1",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("no answer from") && err.contains("within 1s"),
        "{err}"
    );
}
