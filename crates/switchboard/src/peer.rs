//! `switchboard peer`: join a room as a native WebRTC peer (the `switchboard-peer` crate).

use anyhow::Context;
use clap::Args;
use switchboard_peer::{Peer, PeerConfig, PeerEvent};
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
    let (mut peer, driver) = Peer::connect(PeerConfig {
        url: url.clone(),
        room: args.room.clone(),
    })
    .await
    .with_context(|| format!("joining {} at {url}", args.room))?;
    let mut driver = tokio::spawn(driver);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = args.chat;
    let mut stdout = tokio::io::stdout();
    loop {
        tokio::select! {
            event = peer.next_event() => match event {
                Some(PeerEvent::Joined) => {
                    eprintln!("joined room {:?}; waiting for the other peer", args.room);
                }
                Some(PeerEvent::Open) => eprintln!("connected"),
                Some(PeerEvent::Text(t)) => {
                    stdout.write_all(format!("{t}\n").as_bytes()).await?;
                    stdout.flush().await?;
                }
                Some(PeerEvent::Binary(b)) => eprintln!("<binary message, {} bytes>", b.len()),
                Some(PeerEvent::PeerLeft) => eprintln!("the other peer left"),
                Some(PeerEvent::ServerError(e)) => eprintln!("server: {e}"),
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
