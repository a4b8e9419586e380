//! `switchboard peer --chat`: two native peers (two processes of the real binary) chat
//! through `switchboard serve` on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Killed, start_switchboard};

struct ChatPeer {
    proc: Killed,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn chat_peer(port: u16, room: &str) -> ChatPeer {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "peer",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--room",
            room,
            "--chat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    ChatPeer {
        proc: Killed(child),
        stdin,
        stdout,
        stderr,
    }
}

fn wait_line(rx: &mpsc::Receiver<String>, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line containing {want:?}; saw {seen:#?}");
}

#[test]
fn two_cli_peers_chat_and_hang_up() {
    let sb = start_switchboard(&[], &[]);
    let mut a = chat_peer(sb.port, "cli-chat");
    wait_line(&a.stderr, "waiting for the other peer");
    let mut b = chat_peer(sb.port, "cli-chat");
    wait_line(&a.stderr, "connected");
    wait_line(&b.stderr, "connected");

    writeln!(a.stdin.as_mut().unwrap(), "hello from a").unwrap();
    assert_eq!(wait_line(&b.stdout, "hello"), "hello from a");
    writeln!(b.stdin.as_mut().unwrap(), "and back from b").unwrap();
    assert_eq!(wait_line(&a.stdout, "back"), "and back from b");

    // End of A's input hangs up: B is told, A exits cleanly.
    drop(a.stdin.take());
    wait_line(&b.stderr, "the other peer left");
    let status = a.proc.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn send_and_receive_a_file_between_cli_peers() {
    let sb = start_switchboard(&[], &[]);
    let dir = std::env::temp_dir().join(format!("sb-cli-files-{}", std::process::id()));
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = (0..2_000_001u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let src = dir.join("report.pdf");
    std::fs::write(&src, &data).unwrap();

    let run = |args: &[&str]| {
        let mut child: Child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "peer",
                "--server",
                &format!("127.0.0.1:{}", sb.port),
                "--room",
                "cli-file",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        (Killed(child), stderr)
    };
    let (mut receiver, receiver_err) = run(&["--receive", inbox.to_str().unwrap()]);
    wait_line(&receiver_err, "waiting for the other peer");
    let (mut sender, sender_err) = run(&["--send", src.to_str().unwrap()]);
    wait_line(
        &sender_err,
        "sent report.pdf: 2000001 bytes, confirmed by the receiver",
    );
    let got = wait_line(&receiver_err, "received report.pdf");
    assert!(got.contains("matches the sender's"), "{got}");
    assert!(sender.0.wait().unwrap().success());
    // The sender hung up; the receiver exits on its own.
    assert!(receiver.0.wait().unwrap().success());
    assert_eq!(std::fs::read(inbox.join("report.pdf")).unwrap(), data);
    let _ = std::fs::remove_dir_all(&dir);
}
