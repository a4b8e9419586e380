//! `switchboard peer`: join a room as a native WebRTC peer (the `switchboard-peer` crate).

mod mesh;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use switchboard_peer::{
    AudioSource, IcePolicy, MediaConfig, Peer, PeerConfig, PeerEvent, Stats, VideoSource,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// How long a sender stays after its last media frame before hanging up (see `linger_until`).
const SOURCE_LINGER: std::time::Duration = std::time::Duration::from_millis(500);
/// "waiting for the other peer" is printed when it has not shown up this long after the join.
const WAITING_NOTICE: std::time::Duration = std::time::Duration::from_millis(1500);

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
    /// A room token, for servers that require one (sent as `?token=` on the WebSocket URL).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// Refuse a received file announced larger than this many bytes [default: 4 GiB], or
    /// one that would leave less than 64 MiB free on the receiving disk.
    /// Received files never overwrite anything (`name (1)`, ... when taken) and get a plain,
    /// printable name.
    #[arg(long, value_name = "BYTES", default_value_t = switchboard_peer::MAX_FILE_SIZE)]
    max_file_size: u64,
    /// Send media: a VP8 `.ivf` file (video), an Ogg Opus `.ogg`/`.opus` file (audio),
    /// `testsrc` (a generated colour-bar test pattern), `tone` (a 440 Hz tone) or `test`
    /// (both). Repeat for video and audio.
    #[arg(long, value_name = "FILE|test|testsrc|tone")]
    play: Vec<String>,
    /// Play files in a loop (otherwise each plays once).
    #[arg(long = "loop")]
    repeat: bool,
    /// Record the other peer's media: VP8 video to an `.ivf` file, Opus audio to an
    /// `.ogg`/`.opus` file. Repeat for both.
    #[arg(long, value_name = "FILE")]
    record: Vec<PathBuf>,
    /// Hang up after this many seconds of connection (recordings are then closed).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Print connection statistics (path, RTT, bytes, frames) to stderr every second.
    #[arg(long)]
    stats: bool,
    /// Join a mesh room (a group call, docs/PROTOCOLS.md "Mesh rooms"): one connection per
    /// member. Chat lines go to every member and arrive as `<member>: <text>`; --send goes
    /// to each member once its connection opens; --record writes one file per member
    /// (`call.ivf` → `call-<member>.ivf`). Runs until the end of stdin (--chat), --duration
    /// or Ctrl-C.
    #[arg(long)]
    mesh: bool,
}

/// The media configuration of `--play`, `--record` and `--loop`.
fn media_config(args: &PeerArgs) -> anyhow::Result<MediaConfig> {
    let mut m = MediaConfig {
        repeat: args.repeat,
        ..MediaConfig::default()
    };
    let ext = |p: &std::path::Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    };
    for play in &args.play {
        let (video, audio) = match play.as_str() {
            "test" => (Some(VideoSource::TestPattern), Some(AudioSource::Tone)),
            "testsrc" => (Some(VideoSource::TestPattern), None),
            "tone" => (None, Some(AudioSource::Tone)),
            file => {
                let path = PathBuf::from(file);
                match ext(&path).as_str() {
                    "ivf" => (Some(VideoSource::Ivf(path)), None),
                    "ogg" | "opus" => (None, Some(AudioSource::Ogg(path))),
                    _ => bail!(
                        "--play {file}: expected a .ivf (VP8) or .ogg/.opus (Opus) file, or test, testsrc, tone"
                    ),
                }
            }
        };
        if video.is_some() {
            if m.video.is_some() {
                bail!("--play: more than one video source");
            }
            m.video = video;
        }
        if audio.is_some() {
            if m.audio.is_some() {
                bail!("--play: more than one audio source");
            }
            m.audio = audio;
        }
    }
    for path in &args.record {
        match ext(path).as_str() {
            "ivf" if m.record_video.is_none() => m.record_video = Some(path.clone()),
            "ogg" | "opus" if m.record_audio.is_none() => m.record_audio = Some(path.clone()),
            "ivf" | "ogg" | "opus" => bail!(
                "--record {}: one video and one audio recording at most",
                path.display()
            ),
            _ => bail!(
                "--record {}: expected a .ivf (video) or .ogg/.opus (audio) file",
                path.display()
            ),
        }
    }
    Ok(m)
}

/// One `--stats` line.
fn stats_line(s: &Stats) -> String {
    let ms = |d: Option<std::time::Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.2}ms", d.as_secs_f64() * 1e3)
        })
    };
    let addr = |a: Option<std::net::SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
    format!(
        "stats: path={} local={} remote={} rtt={} sent={}B received={}B video {} sent/{} received, audio {} sent/{} received, loss={}",
        s.path.unwrap_or("-"),
        addr(s.local),
        addr(s.remote),
        ms(s.rtt),
        s.bytes_sent,
        s.bytes_received,
        s.video_frames_sent,
        s.video_frames_received,
        s.audio_frames_sent,
        s.audio_frames_received,
        s.loss
            .map_or("-".to_owned(), |l| format!("{:.1}%", l * 100.0)),
    )
}

/// A progress line on stderr: rewritten in place on a terminal, every 25 % otherwise.
/// The rate counts from the transfer's first progress event.
struct Progress {
    /// The transfer shown (a new id restarts the clock and the quarters).
    id: Option<String>,
    tty: bool,
    started: std::time::Instant,
    last_quarter: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            id: None,
            tty: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            last_quarter: 0,
        }
    }
    fn show(&mut self, id: &str, verb: &str, name: &str, bytes: u64, size: u64) {
        if self.id.as_deref() != Some(id) {
            *self = Self::new();
            self.id = Some(id.to_owned());
        }
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
pub(crate) fn server_url(server: &str) -> String {
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
    let mut url = server_url(&args.server);
    if let Some(token) = &args.token {
        // A JWT is base64url and dots: nothing in it needs escaping in a query.
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("token=");
        url.push_str(token);
    }
    if let Some(dir) = &args.receive {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the receive directory {}", dir.display()))?;
    }
    if let Some(f) = &args.send {
        std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?;
    }
    let media = media_config(&args)?;
    let sources = usize::from(media.video.is_some()) + usize::from(media.audio.is_some());
    let config = PeerConfig {
        receive_dir: args.receive.clone(),
        max_file_size: args.max_file_size,
        ice: if args.relay_only {
            IcePolicy::RelayOnly
        } else if args.no_turn {
            IcePolicy::HostOnly
        } else {
            IcePolicy::WithTurn
        },
        media,
        stats_interval: args.stats.then_some(std::time::Duration::from_secs(1)),
        ..PeerConfig::new(url.clone(), args.room.clone())
    };
    if args.mesh {
        return mesh::run(&args, config).await;
    }
    let (mut peer, driver) = Peer::connect(config)
        .await
        .with_context(|| format!("joining {} at {url}", args.room))?;
    let mut driver = tokio::spawn(driver);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = args.chat;
    let mut stdout = tokio::io::stdout();
    let mut to_send = args.send.clone();
    let mut progress = Progress::new();
    let exit_when_alone =
        !args.chat && (args.send.is_some() || args.receive.is_some() || !args.record.is_empty());
    let mut sources_left = sources;
    let mut failure = None;
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    // Set when every source has ended: the last packets handed to the WebRTC stack still have
    // to leave (pacing) and arrive before the hang-up closes the other side's recording.
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut driver_result = None;
    // "waiting for the other peer" is shown only if it has not shown up shortly after the join.
    let mut peer_here = false;
    let mut waiting_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = async { tokio::time::sleep_until(hang_up_at.unwrap_or_else(tokio::time::Instant::now)).await }, if hang_up_at.is_some() => {
                hang_up_at = None;
                eprintln!("--duration reached; hanging up");
                peer.hangup().await;
            }
            () = async { tokio::time::sleep_until(waiting_at.unwrap_or_else(tokio::time::Instant::now)).await }, if waiting_at.is_some() => {
                waiting_at = None;
                eprintln!("waiting for the other peer to join room {:?}", args.room);
            }
            () = async { tokio::time::sleep_until(linger_until.unwrap_or_else(tokio::time::Instant::now)).await }, if linger_until.is_some() => {
                linger_until = None;
                peer.hangup().await;
            }
            _ = &mut ctrl_c => {
                eprintln!("interrupted; hanging up");
                peer.hangup().await;
            }
            event = peer.next_event() => match event {
                Some(PeerEvent::Joined) => {
                    eprintln!("joined room {:?}", args.room);
                    if !peer_here {
                        waiting_at = Some(tokio::time::Instant::now() + WAITING_NOTICE);
                    }
                }
                Some(PeerEvent::PeerJoined) => {
                    peer_here = true;
                    waiting_at = None;
                    eprintln!("the other peer is here; connecting");
                }
                Some(PeerEvent::Open) => {
                    eprintln!("connected");
                    if let Some(secs) = args.duration && hang_up_at.is_none() {
                        hang_up_at = Some(tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs.max(0.0)));
                    }
                    if let Some(f) = to_send.take() {
                        peer.send_file(&f).await?;
                    }
                }
                Some(PeerEvent::FileProgress { id, name, bytes, size, sending }) => {
                    progress.show(&id, if sending { "sending" } else { "receiving" }, &name, bytes, size);
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
                    peer_here = false;
                    eprintln!("the other peer left");
                    if exit_when_alone {
                        peer.hangup().await;
                    }
                }
                // A refusal (room full, bad name) ends the session with a sentence below.
                Some(PeerEvent::ServerError(e)) => tracing::debug!("server error: {e}"),
                Some(PeerEvent::MediaStarted { track, codec }) => {
                    eprintln!("receiving {track} ({codec})");
                }
                Some(PeerEvent::MediaEnded { track, frames, error }) => {
                    match error {
                        Some(e) => {
                            eprintln!("{track} source failed after {frames} frames: {e}");
                            failure = Some(format!("{track} source: {e}"));
                        }
                        None => eprintln!("{track} source ended: {frames} frames sent"),
                    }
                    sources_left = sources_left.saturating_sub(1);
                    if sources_left == 0 && !args.chat && args.duration.is_none() && args.record.is_empty() && args.send.is_none() {
                        linger_until = Some(tokio::time::Instant::now() + SOURCE_LINGER);
                    }
                }
                Some(PeerEvent::Recorded { track, path, frames: 0 }) => {
                    eprintln!("recorded {track}: nothing arrived from the other peer; {} not kept", path.display());
                }
                Some(PeerEvent::Recorded { track, path, frames }) => {
                    eprintln!("recorded {track}: {frames} frames -> {}", path.display());
                }
                Some(PeerEvent::Stats(s)) => eprintln!("{}", stats_line(&s)),
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
            res = &mut driver, if driver_result.is_none() => {
                // The session's last events (recordings closed) are still queued: keep
                // reading until the event stream ends.
                driver_result = Some(res);
            }
        }
    }
    // The event stream can end before the driver's result was picked up: wait for it, so an
    // error always makes a non-zero exit.
    let res = match driver_result {
        Some(res) => res,
        None => driver.await,
    };
    res.context("peer task")??;
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
