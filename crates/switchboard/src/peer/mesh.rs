//! `switchboard peer --mesh`: a native member of a mesh room (a group call).

use anyhow::{Context, bail};
use switchboard_peer::{MeshEvent, MeshPeer, PeerConfig, PeerEvent};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::{PeerArgs, Progress, stats_line};

pub(crate) async fn run(args: &PeerArgs, config: PeerConfig) -> anyhow::Result<()> {
    let url = config.url.clone();
    let (mut mesh, driver) = MeshPeer::connect(config)
        .await
        .with_context(|| format!("joining mesh room {} at {url}", args.room))?;
    let mut driver = tokio::spawn(driver);
    let mut driver_result = None;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = args.chat;
    let mut stdout = tokio::io::stdout();
    let mut progress = Progress::new();
    let mut failure = None;
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            () = async { tokio::time::sleep_until(hang_up_at.unwrap_or_else(tokio::time::Instant::now)).await }, if hang_up_at.is_some() => {
                hang_up_at = None;
                eprintln!("--duration reached; hanging up");
                mesh.hangup().await;
            }
            _ = &mut ctrl_c => {
                eprintln!("interrupted; hanging up");
                mesh.hangup().await;
            }
            event = mesh.next_event() => match event {
                Some(MeshEvent::Joined { me, members }) => {
                    eprintln!("joined mesh room {:?} as {me}; {} other member(s) here", args.room, members.len());
                }
                Some(MeshEvent::MemberJoined(peer)) => eprintln!("{peer} joined; connecting"),
                Some(MeshEvent::MemberLeft(peer)) => eprintln!("{peer} left"),
                Some(MeshEvent::ServerError(e)) => tracing::debug!("server error: {e}"),
                Some(MeshEvent::Member { peer, event }) => match event {
                    PeerEvent::Open => {
                        eprintln!("connected to {peer}");
                        if let Some(secs) = args.duration && hang_up_at.is_none() {
                            hang_up_at = Some(tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs.max(0.0)));
                        }
                        if let Some(f) = &args.send {
                            mesh.send_file(Some(&peer), f).await?;
                        }
                    }
                    PeerEvent::Text(t) => {
                        stdout.write_all(format!("{peer}: {t}\n").as_bytes()).await?;
                        stdout.flush().await?;
                    }
                    PeerEvent::Binary(b) => eprintln!("<binary message from {peer}, {} bytes>", b.len()),
                    PeerEvent::FileProgress { id, name, bytes, size, sending } => {
                        progress.show(&id, if sending { "sending" } else { "receiving" }, &name, bytes, size);
                    }
                    PeerEvent::FileSent { name, size, .. } => {
                        progress.done();
                        eprintln!("sent {name} to {peer}: {size} bytes, confirmed");
                    }
                    PeerEvent::FileReceived { name, path, size, sha256, .. } => {
                        progress.done();
                        eprintln!("received {name} from {peer} -> {}: {size} bytes, sha256 {sha256}", path.display());
                    }
                    PeerEvent::FileFailed { name, reason, .. } => {
                        progress.done();
                        eprintln!("file {name} ({peer}) failed: {reason}");
                        failure = Some(format!("file {name}: {reason}"));
                    }
                    PeerEvent::MediaStarted { track, codec } => eprintln!("receiving {track} ({codec}) from {peer}"),
                    PeerEvent::MediaEnded { track, frames, error: Some(e) } => {
                        eprintln!("{track} source to {peer} failed after {frames} frames: {e}");
                        failure = Some(format!("{track} source: {e}"));
                    }
                    PeerEvent::Recorded { track, path, frames: 0 } => {
                        eprintln!("recorded {track} from {peer}: nothing arrived; {} not kept", path.display());
                    }
                    PeerEvent::Recorded { track, path, frames } => {
                        eprintln!("recorded {track} from {peer}: {frames} frames -> {}", path.display());
                    }
                    PeerEvent::Stats(s) => eprintln!("{peer} {}", stats_line(&s)),
                    _ => {}
                },
                None => break,
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => mesh.send_text(None, &line).await?,
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    mesh.hangup().await;
                }
            },
            res = &mut driver, if driver_result.is_none() => driver_result = Some(res),
        }
    }
    let res = match driver_result {
        Some(res) => res,
        None => driver.await,
    };
    res.context("mesh peer task")??;
    if let Some(f) = failure {
        bail!(f);
    }
    Ok(())
}
