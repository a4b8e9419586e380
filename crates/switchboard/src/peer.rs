//! `switchboard peer`: join a room as a native WebRTC peer (the `switchboard-peer` crate).

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use switchboard_peer::{IcePolicy, Peer, PeerConfig, PeerEvent};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// Flags of `switchboard peer`.
#[derive(Debug, Args)]
pub(crate) struct PeerArgs {
    /// The server: a WebSocket URL (`ws://host:5080/WebRTCAppEE/websocket`) or just
    /// `host:port` (then the `WebRTCAppEE` app is used).
    #[arg(long, env = "SWITCHBOARD_SERVER", default_value = "127.0.0.1:5080")]
    server: String,
    /// The room to join (the other peer uses the same name, e.g. the demo page's `?room=`).
    #[arg(long)]
    room: String,
    /// Chat: each line of stdin is sent as a text message; received text is printed on
    /// stdout. The call ends at the end of stdin.
    #[arg(long)]
    chat: bool,
    /// Send this file once connected (progress on stderr, SHA-256 announced so a native
    /// receiver verifies it), then hang up (unless --chat).
    #[arg(long, value_name = "FILE")]
    send: Option<PathBuf>,
    /// Send everything through the TURN relay the server offers (the other peer never
    /// learns this host's addresses); fails if the server offers none.
    #[arg(long)]
    relay_only: bool,
    /// Offer host candidates only (no TURN allocation).
    #[arg(long, conflicts_with = "relay_only")]
    no_turn: bool,
    /// Accept files into this directory (from the demo page, the browser SDK or another
    /// native peer); exits when the other peer leaves (unless --chat).
    #[arg(long, value_name = "DIR")]
    receive: Option<PathBuf>,
}

/// A progress line on stderr: rewritten in place on a terminal, every 25 % otherwise.
struct Progress {
    tty: bool,
    started: std::time::Instant,
    last_quarter: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            last_quarter: 0,
        }
    }
    fn show(&mut self, verb: &str, name: &str, bytes: u64, size: u64) {
        let pct = (bytes * 100).checked_div(size).unwrap_or(100);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "{verb} {name}: {pct:>3}% {:.1}/{:.1} MB, {:.1} MB/s",
            bytes as f64 / 1e6,
            size as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        );
        if self.tty {
            eprint!("\r{line}");
        } else if pct / 25 > self.last_quarter {
            self.last_quarter = pct / 25;
            eprintln!("{line}");
        }
    }
    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// The WebSocket URL for `--server`.
fn server_url(server: &str) -> String {
    if server.starts_with("ws://") || server.starts_with("wss://") {
        server.to_owned()
    } else {
        let host = server
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        format!("ws://{host}/WebRTCAppEE/websocket")
    }
}

pub(crate) async fn run(args: PeerArgs) -> anyhow::Result<()> {
    let url = server_url(&args.server);
    if let Some(dir) = &args.receive {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the receive directory {}", dir.display()))?;
    }
    if let Some(f) = &args.send {
        std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?;
    }
    let (mut peer, driver) = Peer::connect(PeerConfig {
        url: url.clone(),
        room: args.room.clone(),
        receive_dir: args.receive.clone(),
        ice: if args.relay_only {
            IcePolicy::RelayOnly
        } else if args.no_turn {
            IcePolicy::HostOnly
        } else {
            IcePolicy::WithTurn
        },
    })
    .await
    .with_context(|| format!("joining {} at {url}", args.room))?;
    let mut driver = tokio::spawn(driver);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = args.chat;
    let mut stdout = tokio::io::stdout();
    let mut to_send = args.send.clone();
    let mut progress = Progress::new();
    let exit_when_alone = !args.chat && (args.send.is_some() || args.receive.is_some());
    let mut failure = None;
    loop {
        tokio::select! {
            event = peer.next_event() => match event {
                Some(PeerEvent::Joined) => {
                    eprintln!("joined room {:?}; waiting for the other peer", args.room);
                }
                Some(PeerEvent::Open) => {
                    eprintln!("connected");
                    if let Some(f) = to_send.take() {
                        progress = Progress::new();
                        peer.send_file(&f).await?;
                    }
                }
                Some(PeerEvent::FileProgress { name, bytes, size, sending, .. }) => {
                    progress.show(if sending { "sending" } else { "receiving" }, &name, bytes, size);
                }
                Some(PeerEvent::FileSent { name, size, .. }) => {
                    progress.done();
                    eprintln!("sent {name}: {size} bytes, confirmed by the receiver");
                    if !args.chat {
                        peer.hangup().await;
                    }
                }
                Some(PeerEvent::FileReceived { name, path, size, sha256, verified, .. }) => {
                    progress.done();
                    let check = match verified {
                        Some(true) => "matches the sender's",
                        Some(false) => "DOES NOT match the sender's",
                        None => "not announced by the sender",
                    };
                    eprintln!("received {name} -> {}: {size} bytes, sha256 {sha256} ({check})", path.display());
                }
                Some(PeerEvent::FileFailed { name, reason, .. }) => {
                    progress.done();
                    eprintln!("file {name} failed: {reason}");
                    failure = Some(format!("file {name}: {reason}"));
                    if !args.chat {
                        peer.hangup().await;
                    }
                }
                Some(PeerEvent::Text(t)) => {
                    stdout.write_all(format!("{t}\n").as_bytes()).await?;
                    stdout.flush().await?;
                }
                Some(PeerEvent::Binary(b)) => eprintln!("<binary message, {} bytes>", b.len()),
                Some(PeerEvent::PeerLeft) => {
                    eprintln!("the other peer left");
                    if exit_when_alone {
                        peer.hangup().await;
                    }
                }
                Some(PeerEvent::ServerError(e)) => eprintln!("server: {e}"),
                Some(PeerEvent::Reconnecting) => {
                    eprintln!("signaling connection lost; reconnecting (the call carries on)");
                }
                None => break,
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => peer.send_text(&line).await?,
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    peer.hangup().await;
                }
            },
            res = &mut driver => {
                res.context("peer task")??;
                break;
            }
        }
    }
    if let Some(f) = failure {
        bail!(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn server_urls() {
        assert_eq!(
            server_url("127.0.0.1:5080"),
            "ws://127.0.0.1:5080/WebRTCAppEE/websocket"
        );
        assert_eq!(server_url("http://h:1/"), "ws://h:1/WebRTCAppEE/websocket");
        assert_eq!(
            server_url("wss://h/LiveApp/websocket"),
            "wss://h/LiveApp/websocket"
        );
    }
}
