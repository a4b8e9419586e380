//! `switchboard peer`: two native peers (two processes of the real binary) chat, send a
//! 50 MB file, and send and record media through `switchboard serve` on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Killed, decodes_cleanly, ffmpeg_available, probe, run_ok, start_switchboard};

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
    chat_peer_with(port, room, &[])
}

/// `switchboard peer` for `room` on the server at `port`.
fn peer_command(port: u16, room: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args([
        "peer",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--room",
        room,
    ]);
    cmd
}

/// `switchboard peer --chat` with `args` besides.
fn chat_peer_with(port: u16, room: &str, args: &[&str]) -> ChatPeer {
    let mut child: Child = peer_command(port, room)
        .arg("--chat")
        .args(args)
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

/// `switchboard peer` with `args`, its stderr lines collected.
fn cli_peer(port: u16, room: &str, args: &[&str]) -> (Killed, mpsc::Receiver<String>) {
    let mut child: Child = peer_command(port, room)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    (Killed(child), stderr)
}

/// A scratch directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `name` in it, as a command-line argument.
    fn arg(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Borrows owned arguments for [`cli_peer`].
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A server and a scratch directory for a media test; `None` (the test is skipped) without
/// ffmpeg, unless the suite requires it.
fn media_test(name: &str) -> Option<(common::Switchboard, Scratch)> {
    if !ffmpeg_available() {
        return None;
    }
    Some((start_switchboard(&[], &[]), Scratch::new(name)))
}

/// Waits until every one of `wants` has appeared (in any order).
fn wait_all(rx: &mpsc::Receiver<String>, wants: &[&str]) {
    let mut left: Vec<&str> = wants.to_vec();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while !left.is_empty() {
        let Some(wait) = deadline.checked_duration_since(std::time::Instant::now()) else {
            break;
        };
        match rx.recv_timeout(wait) {
            Ok(line) => {
                left.retain(|w| !line.contains(w));
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    assert!(left.is_empty(), "never saw {left:?}; saw {seen:#?}");
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
    let dir = Scratch::new("sb-cli-files");
    let inbox = dir.join("inbox");
    let data: Vec<u8> = (0..50_000_001u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let src = dir.join("report.pdf");
    std::fs::write(&src, &data).unwrap();

    let run = |args: &[&str]| cli_peer(sb.port, "cli-file", args);
    let (mut receiver, receiver_err) = run(&["--receive", inbox.to_str().unwrap()]);
    wait_line(&receiver_err, "waiting for the other peer");
    let (mut sender, sender_err) = run(&["--send", src.to_str().unwrap()]);
    wait_line(
        &sender_err,
        "sent report.pdf: 50000001 bytes, confirmed by the receiver",
    );
    let got = wait_line(&receiver_err, "received report.pdf");
    assert!(got.contains("matches the sender's"), "{got}");
    assert!(sender.0.wait().unwrap().success());
    // The sender hung up; the receiver exits on its own.
    assert!(receiver.0.wait().unwrap().success());
    assert_eq!(std::fs::read(inbox.join("report.pdf")).unwrap(), data);
}

#[test]
fn play_files_and_record_them_exactly() {
    let Some((sb, dir)) = media_test("sb-cli-media") else {
        return;
    };
    // 2 s of VP8 with inter frames (a key frame every 30) and 2 s of Opus.
    let lavfi = |source: &str, args: &[&str], out: &str| {
        let input = ["-v", "error", "-f", "lavfi", "-i", source];
        let out = dir.arg(out);
        run_ok("ffmpeg", &[&input[..], args, &["-y", &out]].concat());
    };
    lavfi(
        "testsrc=size=320x240:rate=30",
        &["-t", "2", "-c:v", "libvpx", "-g", "30"],
        "in.ivf",
    );
    lavfi(
        "sine=frequency=440:duration=2",
        &["-c:a", "libopus"],
        "in.ogg",
    );
    let (_, video_in, ..) = probe(&dir.join("in.ivf"));
    let (_, audio_in, ..) = probe(&dir.join("in.ogg"));
    assert_eq!(video_in, 60);
    assert!(audio_in >= 100, "{audio_in}");

    let (mut receiver, receiver_err) = cli_peer(
        sb.port,
        "cli-media",
        &[
            "--record",
            &dir.arg("out.ivf"),
            "--record",
            &dir.arg("out.ogg"),
            "--stats",
        ],
    );
    wait_line(&receiver_err, "waiting for the other peer");
    let (mut sender, sender_err) = cli_peer(
        sb.port,
        "cli-media",
        &["--play", &dir.arg("in.ivf"), "--play", &dir.arg("in.ogg")],
    );
    wait_line(
        &sender_err,
        &format!("video source ended: {video_in} frames sent"),
    );
    wait_line(
        &sender_err,
        &format!("audio source ended: {audio_in} frames sent"),
    );
    // Both sources done: the sender hangs up; the recorder closes its files and exits.
    assert!(sender.0.wait().unwrap().success());
    let stats = wait_line(&receiver_err, "stats: path=host");
    assert!(stats.contains("rtt="), "{stats}");
    wait_line(&receiver_err, &format!("recorded video: {video_in} frames"));
    wait_line(&receiver_err, &format!("recorded audio: {audio_in} frames"));
    assert!(receiver.0.wait().unwrap().success());

    assert_eq!(
        probe(&dir.join("out.ivf")),
        ("vp8".into(), video_in, 320, 240)
    );
    assert_eq!(probe(&dir.join("out.ogg")).0, "opus");
    assert_eq!(probe(&dir.join("out.ogg")).1, audio_in);
    decodes_cleanly(&dir.join("out.ivf"));
    decodes_cleanly(&dir.join("out.ogg"));
}

#[test]
fn test_pattern_and_tone_both_ways() {
    let Some((sb, dir)) = media_test("sb-cli-testsrc") else {
        return;
    };
    let args = |side: &str| {
        vec![
            "--play".to_owned(),
            "test".to_owned(),
            "--record".to_owned(),
            dir.arg(&format!("{side}.ivf")),
            "--record".to_owned(),
            dir.arg(&format!("{side}.ogg")),
            "--duration".to_owned(),
            "3".to_owned(),
        ]
    };
    let a_args = args("a");
    let b_args = args("b");
    let (mut a, a_err) = cli_peer(sb.port, "cli-testsrc", &strs(&a_args));
    wait_line(&a_err, "waiting for the other peer");
    let (mut b, b_err) = cli_peer(sb.port, "cli-testsrc", &strs(&b_args));
    for err in [&a_err, &b_err] {
        wait_all(err, &["receiving video (vp8)", "receiving audio (opus)"]);
    }
    assert!(a.0.wait().unwrap().success());
    assert!(b.0.wait().unwrap().success());
    for side in ["a", "b"] {
        let (codec, frames, w, h) = probe(&dir.join(format!("{side}.ivf")));
        assert_eq!((codec.as_str(), w, h), ("vp8", 320, 240));
        // 15 fps for about 3 s (the two sides hang up at slightly different times).
        assert!(frames >= 25, "{side}: {frames} video frames");
        let (codec, packets, ..) = probe(&dir.join(format!("{side}.ogg")));
        assert_eq!(codec, "opus");
        assert!(packets >= 100, "{side}: {packets} audio packets");
        decodes_cleanly(&dir.join(format!("{side}.ivf")));
        decodes_cleanly(&dir.join(format!("{side}.ogg")));
    }
}

/// The first-hour case: two peers started together, each playing video and audio but
/// recording only the other's video (so each offers to send audio the other will not record).
/// Both must connect, record the other's video for the whole `--duration`, and exit 0.
#[test]
fn both_send_and_record_video_only_started_together() {
    let Some((sb, dir)) = media_test("sb-cli-both") else {
        return;
    };
    let out = |side: &str| dir.arg(&format!("{side}.ivf"));
    let (a_out, b_out) = (out("a"), out("b"));
    let args = |rec: &str| {
        [
            "--play",
            "test",
            "--record",
            rec,
            "--duration",
            "3",
            "--stats",
        ]
        .map(str::to_owned)
    };
    let (a_args, b_args) = (args(&a_out), args(&b_out));
    let (mut a, a_err) = cli_peer(sb.port, "cli-both", &strs(&a_args));
    let (mut b, b_err) = cli_peer(sb.port, "cli-both", &strs(&b_args));
    for err in [&a_err, &b_err] {
        wait_all(
            err,
            &[
                "the other peer is here",
                "connected",
                "receiving video (vp8)",
                "receiving audio (opus)",
            ],
        );
        // Each side's own audio reaches the other: it is counted as sent.
        let line = wait_line(err, "audio 1");
        assert!(line.contains("path=host"), "{line}");
    }
    assert!(a.0.wait().unwrap().success());
    assert!(b.0.wait().unwrap().success());
    for path in [&a_out, &b_out] {
        let path = std::path::Path::new(path);
        let (codec, frames, w, h) = probe(path);
        assert_eq!((codec.as_str(), w, h), ("vp8", 320, 240));
        assert!(frames >= 25, "{}: {frames} video frames", path.display());
        decodes_cleanly(path);
        // The header carries the duration, so players and ffprobe see ~3 s, not 0.
        let duration: f64 = run_ok(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                path.to_str().unwrap(),
            ],
        )
        .trim()
        .parse()
        .unwrap();
        let expected = frames as f64 / 15.0;
        assert!(
            (duration - expected).abs() < 0.5,
            "{duration} s for {frames} frames"
        );
    }
}

/// A file announced larger than `--max-file-size` is refused before anything is written;
/// both sides say so and exit non-zero.
#[test]
fn a_file_over_max_file_size_is_refused_before_it_is_written() {
    let sb = start_switchboard(&[], &[]);
    let dir = Scratch::new("sb-cli-maxsize");
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![7u8; 2_000_000]).unwrap();
    let inbox_arg = inbox.to_str().unwrap().to_owned();
    let (mut receiver, receiver_err) = cli_peer(
        sb.port,
        "cli-maxsize",
        &["--receive", &inbox_arg, "--max-file-size", "1000000"],
    );
    wait_line(&receiver_err, "joined room");
    let (mut sender, sender_err) =
        cli_peer(sb.port, "cli-maxsize", &["--send", big.to_str().unwrap()]);
    wait_line(
        &receiver_err,
        "failed: 2000000 bytes is more than the 1000000 bytes accepted",
    );
    wait_line(&sender_err, "failed: the receiver answered \"reject\"");
    assert!(!sender.0.wait().unwrap().success());
    assert!(!receiver.0.wait().unwrap().success());
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "nothing written"
    );
}

/// Recording a kind of media the other side never sends leaves no unplayable file behind.
#[test]
fn a_recording_that_received_nothing_is_not_kept() {
    let Some((sb, dir)) = media_test("sb-cli-nothing") else {
        return;
    };
    let ogg = dir.join("none.ogg");
    let ogg_arg = ogg.to_str().unwrap().to_owned();
    let (mut recorder, recorder_err) = cli_peer(
        sb.port,
        "cli-nothing",
        &["--record", &ogg_arg, "--duration", "2"],
    );
    wait_line(&recorder_err, "joined room");
    let (mut sender, _sender_err) = cli_peer(
        sb.port,
        "cli-nothing",
        &["--play", "testsrc", "--duration", "2"],
    );
    wait_line(&recorder_err, "connected");
    wait_line(
        &recorder_err,
        "recorded audio: nothing arrived from the other peer",
    );
    assert!(recorder.0.wait().unwrap().success());
    assert!(sender.0.wait().unwrap().success());
    assert!(
        !ogg.exists(),
        "an empty recording was left at {}",
        ogg.display()
    );
}

/// A full room, an invalid room name, a port with nothing behind it and an HTTP server that is
/// not Switchboard: each ends `switchboard peer` with a sentence and a non-zero exit.
#[test]
fn refusals_and_unreachable_servers_exit_non_zero_with_a_sentence() {
    let sb = start_switchboard(&[], &[]);
    let a = chat_peer(sb.port, "cli-full");
    wait_line(&a.stderr, "joined room");
    let b = chat_peer(sb.port, "cli-full");
    wait_line(&b.stderr, "joined room");
    let server = format!("127.0.0.1:{}", sb.port);
    let closed = format!("127.0.0.1:{}", common::free_port());
    let not_switchboard = format!("ws://127.0.0.1:{}/not/a/websocket", sb.port);
    for (server, room, want) in [
        (
            server.as_str(),
            "cli-full",
            "room \"cli-full\" is full: it already has two peers",
        ),
        (
            server.as_str(),
            "no spaces",
            "\"no spaces\" is not a valid room name",
        ),
        (closed.as_str(), "r", "cannot reach ws://"),
        (
            not_switchboard.as_str(),
            "r",
            "is not a Switchboard WebSocket endpoint: the server answered HTTP 404",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["peer", "--server", server, "--room", room])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{server} {room}: {err}");
        assert!(err.contains(want), "{server} {room}: {err}");
    }
}

/// With the default log filter, an ordinary call through the built-in TURN server (one side
/// relay-only) logs one line per join and leave and no ERROR or WARN: the TURN 401
/// challenge and refused loopback relays are not alarms.
#[test]
fn an_ordinary_call_logs_joins_and_leaves_and_no_errors_or_warnings() {
    let sb = start_switchboard(&[], &[("RUST_LOG", "")]);
    let mut a = chat_peer(sb.port, "cli-logs");
    wait_line(&a.stderr, "joined room");
    let mut b = chat_peer_with(sb.port, "cli-logs", &["--relay-only"]);
    wait_line(&b.stderr, "connected");
    writeln!(a.stdin.as_mut().unwrap(), "over the relay").unwrap();
    wait_line(&b.stdout, "over the relay");
    drop(a.stdin.take());
    assert!(a.proc.0.wait().unwrap().success());
    drop(b.stdin.take());
    assert!(b.proc.0.wait().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = sb.log.lock().unwrap().clone();
        if log.iter().filter(|l| l.contains(" left ")).count() >= 2
            || std::time::Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let room = r#"dialect="antmedia" app="WebRTCAppEE" room="cli-logs""#;
    for (what, n) in [("joined", 2), ("left", 2)] {
        let found = log
            .iter()
            .filter(|l| {
                l.contains(" INFO ") && l.contains(&format!(" {what} conn=")) && l.contains(room)
            })
            .count();
        assert_eq!(found, n, "{what} lines: {log:#?}");
    }
    assert!(
        log.iter().any(|l| l.contains(r#"reason="leave""#)),
        "{log:#?}"
    );
    let alarms: Vec<_> = log
        .iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert!(alarms.is_empty(), "{alarms:#?}");
}

#[test]
fn bad_media_arguments_are_clear_errors() {
    let dir = Scratch::new("sb-cli-badmedia");
    std::fs::write(dir.join("junk.ivf"), b"this is not an ivf file at all....").unwrap();
    let junk = dir.join("junk.ivf");
    for (args, want) in [
        (
            vec!["--play", "movie.mp4"],
            "expected a .ivf (VP8) or .ogg/.opus (Opus) file",
        ),
        (vec!["--play", junk.to_str().unwrap()], "not an IVF file"),
        (vec!["--play", "/nonexistent/x.ogg"], "/nonexistent/x.ogg"),
        (
            vec!["--record", "/nonexistent/dir/out.ivf"],
            "cannot create IVF file",
        ),
        (
            vec!["--record", "out.mkv"],
            "expected a .ivf (video) or .ogg/.opus (audio) file",
        ),
    ] {
        let out = peer_command(9, "r").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn cli_peers_with_room_tokens_chat_and_a_bad_token_is_explained() {
    let secret = "peer-cli-room-token-secret-32-bytes";
    let sb = start_switchboard(&[], &[("SWITCHBOARD_AUTH_SECRET", secret)]);
    let mint = |sub: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["token", "--room", "cli-auth", "--sub", sub])
            .env("SWITCHBOARD_AUTH_SECRET", secret)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    let mut a = chat_peer_with(sb.port, "cli-auth", &["--token", &mint("alice")]);
    wait_line(&a.stderr, "waiting for the other peer");
    let b = chat_peer_with(sb.port, "cli-auth", &["--token", &mint("bob")]);
    wait_line(&a.stderr, "connected");
    wait_line(&b.stderr, "connected");
    writeln!(a.stdin.as_mut().unwrap(), "signed in").unwrap();
    assert_eq!(wait_line(&b.stdout, "signed"), "signed in");
    // No token: the peer stops with the server's reason.
    let mut c = chat_peer(sb.port, "cli-auth");
    let line = wait_line(&c.stderr, "room token");
    assert!(line.contains("a room token is required"), "{line}");
    let status = c.proc.0.wait().unwrap();
    assert!(!status.success());
}
