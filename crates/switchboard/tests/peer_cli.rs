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
