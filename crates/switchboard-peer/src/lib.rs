//! A native WebRTC peer for Switchboard (and Ant Media Server) rooms.
//!
//! Joins a room over the Ant Media P2P protocol, becomes the offerer on `start` and the
//! answerer on an offer, and opens an ordered, reliable data channel (label = room name, as
//! the Ant Media SDK does) carrying text and binary messages, and sends and receives files
//! the way the browser SDK does ([`Peer::send_file`]).
//!
//! Media ([`MediaConfig`]): VP8 video and Opus audio sent from IVF / Ogg Opus files or
//! generated (test pattern, tone), and the other side's video and audio recorded to IVF /
//! Ogg Opus files. Only VP8 and Opus are negotiated. A side that sends a kind of media offers
//! to receive it too (`sendrecv`, as browsers do); frames are only written on m-lines the
//! negotiation made sending, so two native peers with any mix of `--play` and `--record`
//! connect.
//!
//! Failures end the session with a sentence: a full room or an invalid room name
//! ([`PeerError::Refused`]), a server that cannot be reached within [`CONNECT_TIMEOUT`] or is
//! not a Switchboard endpoint, and a signaling connection that cannot be re-established
//! within [`RECONNECT_BUDGET`] while no call is up ([`PeerError::Signaling`]).
//!
//! ICE: host candidates on every IPv4 interface address, server-reflexive candidates from the
//! STUN server the signaling server offers (trickled as they arrive), and by default a relayed
//! candidate from its TURN server ([`IcePolicy`]). Connection statistics arrive as
//! [`PeerEvent::Stats`] when [`PeerConfig::stats_interval`] is set.
//!
//! The WebRTC stack is [`str0m`] (sans-IO); this crate is its tokio driver. API shape: a
//! [`Peer`] handle plus a [`Driver`] future the caller spawns:
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_peer::PeerError> {
//! use switchboard_peer::{Peer, PeerConfig, PeerEvent};
//! let (mut peer, driver) = Peer::connect(PeerConfig {
//!     receive_dir: Some("./inbox".into()),
//!     ..PeerConfig::new("ws://127.0.0.1:5080/WebRTCAppEE/websocket", "room1")
//! })
//! .await?;
//! tokio::spawn(driver);
//! while let Some(event) = peer.next_event().await {
//!     match event {
//!         PeerEvent::Open => peer.send_text("hello").await?,
//!         PeerEvent::Text(t) => println!("peer says {t}"),
//!         PeerEvent::FileReceived { path, sha256, .. } => println!("{} {sha256}", path.display()),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Nothing a remote peer or the server sends can panic the driver: malformed signaling is
//! logged and ignored, and str0m errors end the session with [`PeerError::Rtc`].

mod media;

pub use media::{
    AudioSource, MediaConfig, PATTERN_FPS, PATTERN_HEIGHT, PATTERN_WIDTH, Track, VideoSource,
};

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use media::{IvfWriter, OggWriter, SourceMsg, Sources};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use turn_client_proto::api::{TurnClientApi as _, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::types::TransportType;
use turn_client_proto::udp::TurnClientUdp;

/// Where to meet the other peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The server's Ant Media WebSocket URL, e.g. `ws://host:5080/WebRTCAppEE/websocket`.
    pub url: String,
    /// The room (Ant Media `streamId`).
    pub room: String,
    /// Where received files are written; `None` refuses incoming files. Files are created
    /// new (never overwriting; `name (1)`, ... when taken) under a sanitized name.
    pub receive_dir: Option<PathBuf>,
    /// Largest file accepted, in bytes; a larger announced size is refused before anything is
    /// written, and so is one that would leave less than [`DISK_RESERVE`] free on the
    /// receiving disk. Default [`MAX_FILE_SIZE`] (4 GiB).
    pub max_file_size: u64,
    /// Which ICE candidates to offer.
    pub ice: IcePolicy,
    /// Media to send and record.
    pub media: MediaConfig,
    /// Emit [`PeerEvent::Stats`] this often (`None`: never).
    pub stats_interval: Option<Duration>,
    /// After the signaling socket drops, give up reconnecting (the session ends with
    /// [`PeerError::Signaling`]) once it has failed this long while no peer-to-peer connection
    /// is up. Default [`RECONNECT_BUDGET`].
    pub reconnect_budget: Duration,
}

impl PeerConfig {
    /// A data-only configuration: default ICE ([`IcePolicy::WithTurn`]), no media, files
    /// refused, no statistics.
    pub fn new(url: impl Into<String>, room: impl Into<String>) -> PeerConfig {
        PeerConfig {
            url: url.into(),
            room: room.into(),
            receive_dir: None,
            max_file_size: MAX_FILE_SIZE,
            ice: IcePolicy::default(),
            media: MediaConfig::default(),
            stats_interval: None,
            reconnect_budget: RECONNECT_BUDGET,
        }
    }
}

/// Connection statistics ([`PeerEvent::Stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Round-trip time of the last ICE consent check on the selected pair.
    pub rtt: Option<Duration>,
    /// Bytes sent and received on the peer-to-peer connection (all traffic).
    pub bytes_sent: u64,
    /// See `bytes_sent`.
    pub bytes_received: u64,
    /// The selected candidate pair: this side's address.
    pub local: Option<SocketAddr>,
    /// The selected candidate pair: the other side's address.
    pub remote: Option<SocketAddr>,
    /// How this side's packets travel: `"host"` (from a local socket, possibly translated
    /// by a NAT: ICE reports a server-reflexive candidate as its base) or `"relay"` (through
    /// TURN); `None` before a pair is selected.
    pub path: Option<&'static str>,
    /// Video frames sent / received since the session began.
    pub video_frames_sent: u64,
    /// See `video_frames_sent`.
    pub video_frames_received: u64,
    /// Audio frames sent / received since the session began.
    pub audio_frames_sent: u64,
    /// See `audio_frames_sent`.
    pub audio_frames_received: u64,
    /// Fraction of incoming media packets lost, as last reported.
    pub loss: Option<f32>,
}

/// Which ICE candidates the peer gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Host candidates only (loopback, LAN).
    HostOnly,
    /// Host candidates, plus a relayed candidate from the first UDP TURN server the
    /// signaling server hands out (`getIceServerConfig`), when it has one.
    #[default]
    WithTurn,
    /// Only the relayed candidate: all traffic goes through the TURN server, and the other
    /// peer never learns this host's addresses. The session fails if no relay is available.
    RelayOnly,
}

/// What happens in the call.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// The server confirmed the join; the other peer may or may not be there yet
    /// ([`PeerEvent::PeerJoined`] says when it is).
    Joined,
    /// The other peer is in the room: negotiation has started (the server told this side to
    /// make the offer, or the other side's offer arrived).
    PeerJoined,
    /// The data channel is open: messages can flow.
    Open,
    /// A text message from the other peer.
    Text(String),
    /// A binary message from the other peer.
    Binary(Vec<u8>),
    /// The other peer left (or its connection dropped).
    PeerLeft,
    /// The signaling connection dropped; the peer-to-peer connection carries on while the
    /// peer reconnects (backoff 0.5 s → 8 s) and re-joins the room (then [`PeerEvent::Joined`]).
    Reconnecting,
    /// The server answered with an error `definition`. The ones that make joining impossible
    /// (`NoSpaceForNewPeer`, `invalidStreamName`, `noStreamNameSpecified`) then end the session
    /// with [`PeerError::Refused`].
    ServerError(String),
    /// File transfer progress (sending or receiving), at most one event per 256 KiB.
    FileProgress {
        /// Transfer id (the `sb-file:<id>` channel).
        id: String,
        /// File name.
        name: String,
        /// Bytes done.
        bytes: u64,
        /// File size.
        size: u64,
        /// `true` when sending.
        sending: bool,
    },
    /// The other side confirmed every byte of a file this side sent.
    FileSent {
        /// Transfer id.
        id: String,
        /// File name.
        name: String,
        /// File size.
        size: u64,
    },
    /// A file arrived whole and was written to `path`.
    FileReceived {
        /// Transfer id.
        id: String,
        /// The name the sender gave.
        name: String,
        /// Where it was written.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// SHA-256 of what was written (hex).
        sha256: String,
        /// Whether the sender announced a SHA-256 and it matched (`None`: not announced,
        /// as by the browser SDK).
        verified: Option<bool>,
    },
    /// A transfer failed (refused, size or checksum mismatch, disk error).
    FileFailed {
        /// Transfer id.
        id: String,
        /// File name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The first frame of the other side's video or audio arrived (per connection).
    MediaStarted {
        /// Which track.
        track: Track,
        /// Its codec (`"vp8"`, `"opus"`, ...); only VP8 and Opus are negotiated.
        codec: String,
    },
    /// A media source came to its end (a file played once) or failed.
    MediaEnded {
        /// Which track.
        track: Track,
        /// Frames it produced.
        frames: u64,
        /// Why it stopped early, if it did.
        error: Option<String>,
    },
    /// A recording was finished (the session ended): `frames` frames written to `path`. With
    /// `frames == 0` nothing arrived and the file was removed (headers alone do not make a
    /// playable file).
    Recorded {
        /// Which track.
        track: Track,
        /// The file.
        path: PathBuf,
        /// Frames written.
        frames: u64,
    },
    /// Connection statistics, every [`PeerConfig::stats_interval`].
    Stats(Stats),
}

/// Errors of the peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The signaling WebSocket failed or closed, or the server could not be reached within
    /// [`CONNECT_TIMEOUT`] (first connection) or [`RECONNECT_BUDGET`] (after a drop, while no
    /// peer-to-peer connection is up).
    #[error("signaling: {0}")]
    Signaling(String),
    /// The server refused to put this peer in the room: it is full, or its name is invalid.
    /// The message says which, in words.
    #[error("{0}")]
    Refused(String),
    /// A local socket failed.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The WebRTC engine failed.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The session has ended.
    #[error("the session has ended")]
    Closed,
    /// A media file cannot be used (missing, not IVF/VP8 or Ogg Opus, not writable).
    #[error("media: {0}")]
    Media(String),
}

enum Command {
    Send {
        binary: bool,
        data: Vec<u8>,
    },
    SendFile {
        path: PathBuf,
        sha256: String,
        size: u64,
        id: String,
    },
    Hangup,
}

/// The application's side of a session.
#[derive(Debug)]
pub struct Peer {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<PeerEvent>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send { binary, data } => write!(f, "Send({binary}, {} bytes)", data.len()),
            Self::SendFile { path, .. } => write!(f, "SendFile({})", path.display()),
            Self::Hangup => f.write_str("Hangup"),
        }
    }
}

/// The session's IO loop; spawn it (`tokio::spawn(driver)`). It ends on hang-up, when the
/// signaling connection closes, or on an error.
pub struct Driver(Pin<Box<dyn Future<Output = Result<(), PeerError>> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = Result<(), PeerError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Longest a hang-up waits for the other side to acknowledge the data channel's last bytes.
const HANGUP_FLUSH: Duration = Duration::from_secs(2);

/// Bytes of messages waiting for the data channel (not open yet, or its buffer full) before
/// `send_*` waits.
const OUTBOX_HIGH_WATER: usize = 4 << 20;
/// File chunk size, as the browser SDK sends.
const FILE_CHUNK: usize = 16 * 1024;
/// A file channel is refilled while less than this is buffered.
const FILE_HIGH_WATER: usize = 1 << 20;
/// Progress events at most every this many bytes.
const PROGRESS_STEP: u64 = 256 * 1024;
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);
/// Events waiting for the application, at most (further data waits in the engine).
const EVENT_QUEUE: usize = 1024;
/// First and longest wait before reconnecting the signaling socket.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(8);
/// The default [`PeerConfig::max_file_size`]: 4 GiB.
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// How long one WebSocket connection attempt (TCP, TLS and the upgrade) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`PeerConfig::reconnect_budget`]: after the signaling socket dropped,
/// reconnection stops (and the session ends with [`PeerError::Signaling`]) once it has failed
/// for this long while no peer-to-peer connection is up. A live call keeps retrying: the
/// media does not need the server.
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(60);
/// The Ant Media SDK pings every 3 s; the server closes silent sockets after 20 s.
const PING_EVERY: Duration = Duration::from_secs(3);

impl Peer {
    /// Connects to the server, joins the room and returns the handle and its driver.
    ///
    /// # Errors
    /// The WebSocket cannot be opened, or no local UDP socket can be bound.
    pub async fn connect(config: PeerConfig) -> Result<(Peer, Driver), PeerError> {
        // Media files first: a bad file is an error before anything touches the network.
        let (src_tx, src_rx) = mpsc::channel(media::SOURCE_QUEUE);
        let sources = Sources::open(&config.media, &src_tx).map_err(PeerError::Media)?;
        drop(src_tx);
        let create = |path: &Path, what: &str| {
            PeerError::Media(format!("cannot create {what} {}", path.display()))
        };
        let rec_video = match &config.media.record_video {
            Some(p) => Some((
                IvfWriter::create(p).map_err(|_| create(p, "IVF file"))?,
                p.clone(),
            )),
            None => None,
        };
        let rec_audio = match &config.media.record_audio {
            Some(p) => Some((
                OggWriter::create(p).map_err(|_| create(p, "Ogg file"))?,
                p.clone(),
            )),
            None => None,
        };
        let (ws, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(&config.url),
        )
        .await
        .map_err(|_| {
            PeerError::Signaling(format!(
                "cannot reach {}: no answer within {} s",
                config.url,
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| PeerError::Signaling(connect_error(&config.url, &e)))?;
        let sockets = bind_host_sockets().await?;
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let session = Session {
            ws: Some(ws),
            url: config.url,
            backoff: RECONNECT_MIN,
            reconnect_at: None,
            lost_at: None,
            reconnect_budget: config.reconnect_budget,
            room: config.room,
            events: ev_tx,
            commands: cmd_rx,
            addrs,
            sockets,
            rtc: None,
            pending: None,
            channel: None,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            hanging_up: None,
            replied: Vec::new(),
            receive_dir: config.receive_dir,
            max_file_size: config.max_file_size,
            sends: Vec::new(),
            recvs: Vec::new(),
            ice: config.ice,
            turn: None,
            joined_sent: false,
            base: Instant::now(),
            udp_tx: None,
            readers: Vec::new(),
            media: config.media,
            sources,
            media_rx: src_rx,
            mids: Vec::new(),
            connected: false,
            rec_video,
            rec_audio,
            media_seen: [false; 2],
            keyframe_asked: None,
            stats: Stats::default(),
            stats_interval: config.stats_interval,
            stun: None,
            srflx: Vec::new(),
            first_mid: None,
            trickle: Vec::new(),
        };
        Ok((
            Peer {
                commands: cmd_tx,
                events: ev_rx,
            },
            Driver(Box::pin(session.run())),
        ))
    }

    /// The next event; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<PeerEvent> {
        self.events.recv().await
    }

    /// Sends a text message (queued until the channel is open).
    ///
    /// # Errors
    /// [`PeerError::Closed`] when the session has ended.
    pub async fn send_text(&self, text: &str) -> Result<(), PeerError> {
        self.send(false, text.as_bytes().to_vec()).await
    }

    /// Sends a binary message (queued until the channel is open).
    ///
    /// # Errors
    /// [`PeerError::Closed`] when the session has ended.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), PeerError> {
        self.send(true, data.to_vec()).await
    }

    async fn send(&self, binary: bool, data: Vec<u8>) -> Result<(), PeerError> {
        self.commands
            .send(Command::Send { binary, data })
            .await
            .map_err(|_| PeerError::Closed)
    }

    /// Sends a file on its own data channel (`sb-file:<id>`, the browser SDK's convention,
    /// plus a `sha256` field in the header that a native receiver verifies). Progress and
    /// completion arrive as [`PeerEvent::FileProgress`] and [`PeerEvent::FileSent`]. Returns the
    /// transfer id.
    ///
    /// # Errors
    /// The file cannot be read, or the session has ended.
    pub async fn send_file(&self, path: impl Into<PathBuf>) -> Result<String, PeerError> {
        let path = path.into();
        let p = path.clone();
        let (sha256, size) = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| PeerError::Io(io::Error::other(e)))??;
        let id = format!(
            "{:x}-{}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Relaxed)
        );
        self.commands
            .send(Command::SendFile {
                path,
                sha256,
                size,
                id: id.clone(),
            })
            .await
            .map_err(|_| PeerError::Closed)?;
        Ok(id)
    }

    /// Leaves the room and ends the session.
    pub async fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup).await;
    }
}

/// One UDP socket per IPv4 interface address (loopback included), so each candidate's
/// address is the socket's own.
/// A UDP socket: a tokio task reads it; sends go straight to the system call through a
/// clone of the same socket. (tokio's `try_send_to` does not even try until its reactor has
/// seen the socket writable, so the first datagrams of a new socket were silently dropped:
/// a 500 ms TURN retransmission, or an ICE check retried later.)
struct Sock {
    rx: Arc<UdpSocket>,
    tx: std::net::UdpSocket,
}

impl Sock {
    fn bind(addr: SocketAddr) -> io::Result<Sock> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let tx = std.try_clone()?;
        Ok(Sock {
            rx: Arc::new(UdpSocket::from_std(std)?),
            tx,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tx.local_addr()
    }

    /// Sends a datagram now; a full socket buffer drops it, as the network would.
    fn send_to(&self, data: &[u8], to: SocketAddr) {
        if let Err(e) = self.tx.send_to(data, to) {
            tracing::trace!("UDP send to {to}: {e}");
        }
    }
}

async fn bind_host_sockets() -> Result<Vec<Sock>, PeerError> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(IpAddr::is_ipv4)
                .collect()
        })
        .unwrap_or_default();
    if ips.is_empty() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let mut out = Vec::new();
    for ip in ips {
        match Sock::bind(SocketAddr::new(ip, 0)) {
            Ok(s) => out.push(s),
            Err(e) => tracing::debug!("not using {ip}: {e}"),
        }
    }
    if out.is_empty() {
        return Err(PeerError::Io(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no local address to bind",
        )));
    }
    Ok(out)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn turn_now(base: Instant) -> turn_client_proto::types::Instant {
    turn_client_proto::types::Instant::from_std(base)
}

/// The first `turn:` URL for UDP in an `iceServerConfig`, resolved, with its credentials.
async fn turn_server_of(msg: &Value) -> Option<(SocketAddr, String, String)> {
    for server in msg.get("iceServers")?.as_array()? {
        let (Some(user), Some(pass)) = (
            server.get("username").and_then(Value::as_str),
            server.get("credential").and_then(Value::as_str),
        ) else {
            continue;
        };
        let urls: Vec<&str> = match server.get("urls") {
            Some(Value::String(u)) => vec![u.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        for url in urls {
            let Some(rest) = url.strip_prefix("turn:") else {
                continue;
            };
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !(query.is_empty() || query == "transport=udp") {
                continue;
            }
            if let Some(addr) = resolve_ipv4(hostport).await {
                return Some((addr, user.to_owned(), pass.to_owned()));
            }
        }
    }
    None
}

/// The first `a=mid:` of an SDP.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

/// A STUN Binding request: its transaction id and bytes.
fn binding_request() -> (
    turn_client_proto::types::stun::message::TransactionId,
    Vec<u8>,
) {
    use turn_client_proto::types::stun::message::{
        BINDING, Message, MessageWrite as _, MessageWriteVec,
    };
    let bytes = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let id = Message::from_bytes(&bytes)
        .map(|m| m.transaction_id())
        .unwrap_or_else(|_| turn_client_proto::types::stun::message::TransactionId::generate());
    (id, bytes)
}

/// The first `stun:` server of an `iceServerConfig` (else its first UDP `turn:` server),
/// resolved to an IPv4 address.
async fn stun_server_of(msg: &Value) -> Option<SocketAddr> {
    for server in msg.get("iceServers")?.as_array()? {
        let urls: Vec<&str> = match server.get("urls") {
            Some(Value::String(u)) => vec![u.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        for url in urls {
            let Some(rest) = url.strip_prefix("stun:") else {
                continue;
            };
            if let Some(addr) = resolve_ipv4(rest.split_once('?').map_or(rest, |(h, _)| h)).await {
                return Some(addr);
            }
        }
    }
    turn_server_of(msg).await.map(|(a, _, _)| a)
}

/// Resolves `host[:port]` (default port 3478) to its first IPv4 address.
async fn resolve_ipv4(hostport: &str) -> Option<SocketAddr> {
    let hostport = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:3478")
    };
    tokio::net::lookup_host(hostport)
        .await
        .ok()?
        .find(SocketAddr::is_ipv4)
}

/// A failed WebSocket connection in words, naming the URL and telling a server that is not
/// Switchboard (an HTTP answer other than the upgrade) from one that cannot be reached.
fn connect_error(url: &str, e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(response) => format!(
            "{url} is not a Switchboard WebSocket endpoint: the server answered HTTP {} \
             (check the host, port and the /<app>/websocket path)",
            response.status()
        ),
        WsError::Io(io) => format!("cannot reach {url}: {io}"),
        other => format!("cannot connect to {url}: {other}"),
    }
}

/// The sentence for a server error that makes joining `room` impossible (the session ends).
fn refusal(definition: &str, room: &str) -> Option<String> {
    match definition {
        "NoSpaceForNewPeer" => Some(format!(
            "room {room:?} is full: it already has two peers (pick another room name, or wait \
             until one leaves)"
        )),
        "invalidStreamName" => Some(format!(
            "{room:?} is not a valid room name: use 1 to 128 letters, digits, '-', '_' or '.'"
        )),
        "noStreamNameSpecified" => Some("the room name is empty".to_owned()),
        _ => None,
    }
}

/// The next message of the signaling socket; never resolves while it is down.
async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

struct Session {
    ws: Option<Ws>,
    url: String,
    backoff: Duration,
    reconnect_at: Option<Instant>,
    /// When the signaling socket dropped (for the reconnect budget).
    lost_at: Option<Instant>,
    /// [`PeerConfig::reconnect_budget`].
    reconnect_budget: Duration,
    room: String,
    events: mpsc::Sender<PeerEvent>,
    commands: mpsc::Receiver<Command>,
    sockets: Vec<Sock>,
    /// `sockets[i].local_addr()`, read once (it is a system call, and the packet path needs it).
    addrs: Vec<SocketAddr>,
    rtc: Option<Rtc>,
    pending: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    outbox: VecDeque<(bool, Vec<u8>)>,
    outbox_bytes: usize,
    /// Set by a hang-up: leave once the data channel is acknowledged, or at this time.
    hanging_up: Option<Instant>,
    /// File channels this side wrote an answer on that may not be acknowledged yet.
    replied: Vec<ChannelId>,
    receive_dir: Option<PathBuf>,
    /// [`PeerConfig::max_file_size`].
    max_file_size: u64,
    sends: Vec<FileSend>,
    recvs: Vec<FileRecv>,
    ice: IcePolicy,
    turn: Option<Turn>,
    joined_sent: bool,
    /// Time base of the TURN client's clock.
    base: Instant,
    udp_tx: Option<mpsc::Sender<(usize, SocketAddr, Vec<u8>)>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    media: MediaConfig,
    sources: Sources,
    media_rx: mpsc::Receiver<SourceMsg>,
    /// Media sections of the current connection.
    mids: Vec<(Mid, Track)>,
    /// DTLS is up: media may be written.
    connected: bool,
    rec_video: Option<(IvfWriter, PathBuf)>,
    rec_audio: Option<(OggWriter, PathBuf)>,
    /// First frame of [video, audio] seen on this connection.
    media_seen: [bool; 2],
    /// When a key frame was last requested for the recording.
    keyframe_asked: Option<Instant>,
    stats: Stats,
    stats_interval: Option<Duration>,
    stun: Option<StunGather>,
    /// Server-reflexive candidates found: (host socket, mapped address).
    srflx: Vec<(usize, SocketAddr)>,
    /// `a=mid` of the first m-line of the current negotiation (for trickled candidates).
    first_mid: Option<String>,
    /// Local candidates to trickle (`candidate:...` lines).
    trickle: Vec<String>,
}

/// Binding requests to the STUN server, one per host socket, for server-reflexive candidates.
struct StunGather {
    server: SocketAddr,
    /// (transaction, socket, attempts so far).
    pending: Vec<(
        turn_client_proto::types::stun::message::TransactionId,
        usize,
        u32,
    )>,
    next_send: Instant,
}

/// A TURN allocation used for a relayed candidate.
struct Turn {
    client: TurnClientUdp,
    /// Index of the local socket that talks to the TURN server.
    socket: usize,
    server: SocketAddr,
    relay: Option<SocketAddr>,
    failed: bool,
    /// Give up waiting for the allocation (and join without it) at this time.
    give_up: Instant,
    next_poll: Instant,
    /// Peer addresses a permission was asked for (the client refuses a second request while
    /// the first is in flight).
    requested: std::collections::HashSet<IpAddr>,
    /// Packets for peers whose permission is being installed, sent once it is (at most
    /// [`TURN_HELD`]; older ones are dropped, as the network would).
    held: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Turn {
    /// Asks for a permission towards `ip` unless it exists or was asked for. Returns whether
    /// one exists or is coming: an address of the other IP family than the relay can never
    /// get one (the client would log an error for each request).
    fn request_permission(&mut self, ip: IpAddr, now: turn_client_proto::types::Instant) -> bool {
        let Some(relay) = self.relay else {
            return false;
        };
        if relay.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        if self.client.have_permission(TransportType::Udp, ip) || !self.requested.insert(ip) {
            return true;
        }
        let r = self.client.create_permission(TransportType::Udp, ip, now);
        tracing::trace!("TURN permission for {ip}: {r:?}");
        self.next_poll = Instant::now();
        true
    }
}

/// Packets held per TURN client while permissions are installed.
const TURN_HELD: usize = 64;

/// A file being sent on its own channel.
struct FileSend {
    id: String,
    channel: ChannelId,
    name: String,
    size: u64,
    sha256: String,
    file: std::fs::File,
    open: bool,
    sent: u64,
    reported: u64,
}

/// A file being received.
struct FileRecv {
    id: String,
    channel: ChannelId,
    state: Option<RecvState>,
}

struct RecvState {
    name: String,
    size: u64,
    expect: Option<String>,
    path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    received: u64,
    reported: u64,
}

fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&h.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name safe to create in the receive directory and to print: the last path
/// component, without control and bidirectional-override characters (terminal escapes,
/// "exe.txt" shown as "txt.exe") or characters some file system refuses (`<>:"|?*`), no
/// leading dots, no trailing dots or spaces, not a Windows device name (`CON`, `NUL`,
/// `COM1`, ...), at most 128 characters; "file" if nothing is left.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let clean: String = base
        .chars()
        .filter(|&c| {
            !c.is_control() && !bidi(c) && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
        })
        .collect::<String>()
        .trim_start_matches(['.', ' '])
        .chars()
        .take(128)
        .collect::<String>()
        .trim_end_matches(['.', ' '])
        .to_owned();
    if clean.is_empty() {
        return "file".to_owned();
    }
    let stem = clean.split('.').next().unwrap_or("").to_ascii_uppercase();
    let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if device { format!("_{clean}") } else { clean }
}

/// Creates `dir/name`, or `dir/name (1)`, ... up to `(9999)`, never opening a file that
/// exists (create-new): a peer cannot make this side overwrite anything, even by sending the
/// colliding names first.
/// Space kept free on the receiving disk: a file that would leave less is refused.
pub const DISK_RESERVE: u64 = 64 << 20;

/// Whether `size` bytes fit in `dir`'s file system with [`DISK_RESERVE`] left over. When the
/// free space cannot be read, the file is accepted (the size limit still holds).
fn fits_on_disk(dir: &Path, size: u64) -> bool {
    fs4::available_space(dir).map_or(true, |free| fits(size, free))
}

fn fits(size: u64, available: u64) -> bool {
    size.checked_add(DISK_RESERVE)
        .is_some_and(|n| n <= available)
}

fn create_unique(dir: &Path, name: &str) -> io::Result<(PathBuf, std::fs::File)> {
    let candidates =
        std::iter::once(name.to_owned()).chain((1..10_000).map(|i| format!("{name} ({i})")));
    for candidate in candidates {
        let path = dir.join(candidate);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{name} and 9,999 numbered variants exist already"),
    ))
}

impl Session {
    async fn run(mut self) -> Result<(), PeerError> {
        if self.ice == IcePolicy::HostOnly {
            self.send_join().await?;
        } else {
            self.signal(json!({"command": "getIceServerConfig"}))
                .await?;
        }
        let (udp_tx, mut udp_rx) = mpsc::channel::<(usize, SocketAddr, Vec<u8>)>(1024);
        self.udp_tx = Some(udp_tx);
        for i in 0..self.sockets.len() {
            self.spawn_reader(i);
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        let result = loop {
            let deadline = match self.drain().await {
                Ok(d) => d,
                Err(e) => break Err(e),
            };
            let deadline = match self.turn_progress().await {
                Ok(Some(t)) => deadline.min(t),
                Ok(None) => deadline,
                Err(e) => break Err(e),
            };
            let deadline = match self.stun_progress() {
                Some(t) => deadline.min(t),
                None => deadline,
            };
            // A hang-up waits until the other side has acknowledged what was written to the
            // data channel (a last message, a file's `reject`), so it is not overtaken by the
            // `leave` on the signaling path, which is faster than a relayed data path.
            if let Some(until) = self.hanging_up
                && (self.unacknowledged() == 0 || Instant::now() >= until)
            {
                self.leave().await;
                break Ok(());
            }
            let deadline = self.hanging_up.map_or(deadline, |t| deadline.min(t));
            if let Err(e) = self.flush_trickle().await {
                break Err(e);
            }
            let reconnect_at = self.reconnect_at.unwrap_or(deadline);
            tokio::select! {
                msg = next_message(&mut self.ws) => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_signal(&text).await {
                            break Err(e);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => self.signaling_lost("closed by the server").await,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => self.signaling_lost(&e.to_string()).await,
                },
                () = tokio::time::sleep_until(reconnect_at.into()), if self.reconnect_at.is_some() => {
                    if let Err(e) = self.reconnect().await {
                        break Err(e);
                    }
                }
                Some(msg) = self.media_rx.recv() => {
                    if let Err(e) = self.on_source(msg).await {
                        break Err(e);
                    }
                }
                Some((i, from, data)) = udp_rx.recv() => {
                    if self.on_stun_response(i, from, &data) {
                        continue;
                    }
                    let destination = self.addrs[i];
                    let (from, destination, data) = match self.unwrap_turn(i, from, destination, data) {
                        Some(unwrapped) => unwrapped,
                        None => continue,
                    };
                    let Some(rtc) = self.rtc.as_mut() else { continue };
                    let Ok(contents) = data.as_slice().try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination,
                        contents,
                    });
                    // One engine owns these sockets, so every datagram is its own: no
                    // `Rtc::accepts` filter (it drops a DTLS hello that arrives just before
                    // this side's ICE check succeeds, costing a 1 s retransmission).
                    if let Err(e) = rtc.handle_input(input) {
                        break Err(PeerError::Rtc(e.to_string()));
                    }
                }
                cmd = self.commands.recv(), if self.outbox_bytes < OUTBOX_HIGH_WATER && self.hanging_up.is_none() => match cmd {
                    Some(Command::Send { binary, data }) => {
                        self.outbox_bytes += data.len();
                        self.outbox.push_back((binary, data));
                    }
                    Some(Command::SendFile { path, sha256, size, id }) => {
                        if let Err(e) = self.start_file(path, sha256, size, id).await {
                            break Err(e);
                        }
                    }
                    Some(Command::Hangup) | None => {
                        self.hanging_up = Some(Instant::now() + HANGUP_FLUSH);
                    }
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    if let Some(rtc) = self.rtc.as_mut()
                        && let Err(e) = rtc.handle_input(Input::Timeout(Instant::now()))
                    {
                        break Err(PeerError::Rtc(e.to_string()));
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = self.signal(json!({"command": "ping"})).await {
                        self.signaling_lost(&e.to_string()).await;
                    }
                }
            }
        };
        for r in self.readers.drain(..) {
            r.abort();
        }
        self.finish_recordings().await;
        result
    }

    /// Closes the recordings (header frame counts) and reports them.
    async fn finish_recordings(&mut self) {
        let video = self.rec_video.take().map(|(mut w, path)| {
            let done = w.finish();
            (Track::Video, path, done, w.frames())
        });
        let audio = self.rec_audio.take().map(|(mut w, path)| {
            let done = w.finish();
            (Track::Audio, path, done, w.frames())
        });
        for (track, path, done, frames) in video.into_iter().chain(audio) {
            if let Err(e) = done {
                tracing::warn!("finishing {}: {e}", path.display());
            }
            if frames == 0 {
                // Headers alone are not a playable file (FFmpeg rejects an Ogg Opus stream
                // without packets): nothing arrived, so nothing is kept.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::debug!("removing the empty {}: {e}", path.display());
                }
            }
            let frames = u64::from(frames);
            self.emit(PeerEvent::Recorded {
                track,
                path,
                frames,
            })
            .await;
        }
    }

    /// A frame (or the end) from a media source: written to the connection's track.
    async fn on_source(&mut self, msg: SourceMsg) -> Result<(), PeerError> {
        let frame = match msg {
            SourceMsg::Frame(f) => f,
            SourceMsg::End {
                track,
                frames,
                error,
            } => {
                if let Some(e) = &error {
                    tracing::warn!("{track} source stopped: {e}");
                }
                self.emit(PeerEvent::MediaEnded {
                    track,
                    frames,
                    error,
                })
                .await;
                return Ok(());
            }
        };
        if !self.connected {
            return Ok(());
        }
        let Some(rtc) = self.rtc.as_mut() else {
            return Ok(());
        };
        let Some(&(mid, _)) = self.mids.iter().find(|(_, t)| *t == frame.track) else {
            return Ok(());
        };
        // Only on an m-line negotiated for sending: str0m accepts a frame for a receive-only
        // m-line and then fails the whole session when it packetizes it (`NoSenderSource`).
        if !rtc.media(mid).is_some_and(|m| m.direction().is_sending()) {
            return Ok(());
        }
        let Some(writer) = rtc.writer(mid) else {
            // The other side does not receive this track.
            return Ok(());
        };
        let (codec, freq) = match frame.track {
            Track::Video => (Codec::Vp8, Frequency::NINETY_KHZ),
            Track::Audio => (Codec::Opus, Frequency::FORTY_EIGHT_KHZ),
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return Ok(());
        };
        match writer.write(
            pt,
            Instant::now(),
            MediaTime::new(frame.ticks, freq),
            frame.data,
        ) {
            Ok(()) => match frame.track {
                Track::Video => self.stats.video_frames_sent += 1,
                Track::Audio => self.stats.audio_frames_sent += 1,
            },
            Err(e) => tracing::debug!("{} frame not sent: {e}", frame.track),
        }
        Ok(())
    }

    /// A whole frame of the other side's media.
    async fn on_media_data(&mut self, d: str0m::media::MediaData) {
        let Some(&(mid, track)) = self.mids.iter().find(|(m, _)| *m == d.mid) else {
            tracing::debug!("media for unknown m-line {}", d.mid);
            return;
        };
        let codec = d.params.spec().codec;
        let i = track as usize;
        if !self.media_seen[i] {
            self.media_seen[i] = true;
            self.emit(PeerEvent::MediaStarted {
                track,
                codec: codec.to_string().to_lowercase(),
            })
            .await;
        }
        match track {
            Track::Video => {
                self.stats.video_frames_received += 1;
                let Some((w, path)) = self.rec_video.as_mut() else {
                    return;
                };
                if codec != Codec::Vp8 {
                    return;
                }
                if w.frames() == 0 && !media::vp8_is_key_frame(&d.data) {
                    // A recording starts with a key frame: ask for one (at most once a second).
                    let now = Instant::now();
                    if self
                        .keyframe_asked
                        .is_none_or(|t| now - t > Duration::from_secs(1))
                    {
                        self.keyframe_asked = Some(now);
                        if let Some(rtc) = self.rtc.as_mut()
                            && let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, None)
                        {
                            rx.request_keyframe(KeyframeRequestKind::Pli);
                        }
                    }
                    return;
                }
                let ticks = d.time.rebase(Frequency::NINETY_KHZ).numer();
                if let Err(e) = w.write(ticks, &d.data) {
                    tracing::warn!("recording to {}: {e}", path.display());
                }
            }
            Track::Audio => {
                self.stats.audio_frames_received += 1;
                let Some((w, path)) = self.rec_audio.as_mut() else {
                    return;
                };
                if codec != Codec::Opus {
                    return;
                }
                if let Err(e) = w.write(&d.data) {
                    tracing::debug!("not recorded to {}: {e}", path.display());
                }
            }
        }
    }

    /// Starts STUN Binding requests from every host socket to the first `stun:` server of an
    /// `iceServerConfig` (or its UDP TURN server, which answers them too).
    async fn start_stun(&mut self, msg: &Value) {
        if self.ice == IcePolicy::RelayOnly {
            return;
        }
        let Some(server) = stun_server_of(msg).await else {
            return;
        };
        let pending = (0..self.sockets.len())
            .filter(|i| self.turn.as_ref().is_none_or(|t| t.socket != *i))
            .filter(|i| self.addrs[*i].ip().is_loopback() == server.ip().is_loopback())
            .map(|i| (binding_request().0, i, 0))
            .collect();
        self.stun = Some(StunGather {
            server,
            pending,
            next_send: Instant::now(),
        });
    }

    /// (Re)sends pending Binding requests: 3 attempts, 0.3 s apart. Returns the next time.
    fn stun_progress(&mut self) -> Option<Instant> {
        let stun = self.stun.as_mut()?;
        let now = Instant::now();
        if now < stun.next_send {
            return Some(stun.next_send);
        }
        stun.pending.retain(|(_, _, tries)| *tries < 3);
        if stun.pending.is_empty() {
            self.stun = None;
            return None;
        }
        for (id, i, tries) in &mut stun.pending {
            let (new_id, bytes) = binding_request();
            *id = new_id;
            *tries += 1;
            self.sockets[*i].send_to(&bytes, stun.server);
        }
        stun.next_send = now + Duration::from_millis(300);
        Some(stun.next_send)
    }

    /// A Binding response to one of this side's requests becomes a server-reflexive
    /// candidate (when it differs from the host address). `true`: the datagram was consumed.
    fn on_stun_response(&mut self, i: usize, from: SocketAddr, data: &[u8]) -> bool {
        use turn_client_proto::types::stun::attribute::XorMappedAddress;
        use turn_client_proto::types::stun::message::Message;
        let Some(stun) = self.stun.as_mut().filter(|s| s.server == from) else {
            return false;
        };
        let Ok(msg) = Message::from_bytes(data) else {
            return false;
        };
        let id = msg.transaction_id();
        let Some(pos) = stun
            .pending
            .iter()
            .position(|(t, s, _)| *t == id && *s == i)
        else {
            return false;
        };
        stun.pending.swap_remove(pos);
        if let Ok(x) = msg.attribute::<XorMappedAddress>() {
            let mapped = x.addr(id);
            let base = self.addrs[i];
            if mapped != base && !self.srflx.iter().any(|(_, m)| *m == mapped) {
                tracing::info!("server-reflexive address {mapped} (host {base})");
                self.srflx.push((i, mapped));
                self.add_srflx(mapped, base);
            }
        }
        true
    }

    /// Sends the local candidates found after the offer or answer went out.
    async fn flush_trickle(&mut self) -> Result<(), PeerError> {
        if self.trickle.is_empty() {
            return Ok(());
        }
        let Some(mid) = self.first_mid.clone() else {
            return Ok(());
        };
        for line in std::mem::take(&mut self.trickle) {
            self.signal(json!({"command": "takeCandidate", "streamId": self.room, "label": 0, "id": mid, "candidate": line}))
                .await?;
        }
        Ok(())
    }

    /// Adds a server-reflexive candidate to the current connection and trickles it.
    fn add_srflx(&mut self, mapped: SocketAddr, base: SocketAddr) {
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        let Ok(c) = Candidate::server_reflexive(mapped, base, "udp") else {
            return;
        };
        if let Some(c) = rtc.add_local_candidate(c) {
            let line = c.to_sdp_string();
            let line = line.strip_prefix("a=").unwrap_or(&line).to_owned();
            self.trickle.push(line);
        }
    }

    /// Sends a signaling message. While the socket is down, messages are dropped: the
    /// peer-to-peer connection does not need them, and the room is joined afresh.
    async fn signal(&mut self, v: Value) -> Result<(), PeerError> {
        let Some(ws) = self.ws.as_mut() else {
            tracing::debug!("signaling down; not sent: {v}");
            return Ok(());
        };
        ws.send(Message::Text(v.to_string().into()))
            .await
            .map_err(|e| PeerError::Signaling(e.to_string()))
    }

    async fn signaling_lost(&mut self, why: &str) {
        if self.ws.take().is_some() {
            tracing::info!("signaling connection lost ({why}); reconnecting");
            self.lost_at = Some(Instant::now());
            self.backoff = RECONNECT_MIN;
            self.reconnect_at = Some(Instant::now() + self.backoff);
            self.emit(PeerEvent::Reconnecting).await;
        }
    }

    /// One reconnection attempt; an error once [`RECONNECT_BUDGET`] is spent.
    async fn reconnect(&mut self) -> Result<(), PeerError> {
        let attempt = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(&self.url),
        )
        .await;
        match attempt {
            Ok(Ok((ws, _))) => {
                self.ws = Some(ws);
                self.reconnect_at = None;
                self.lost_at = None;
                self.joined_sent = false;
                if let Err(e) = self.send_join().await {
                    self.signaling_lost(&e.to_string()).await;
                }
                Ok(())
            }
            Ok(Err(e)) => self.retry_later(&connect_error(&self.url, &e)),
            Err(_) => self.retry_later(&format!("cannot reach {}: timed out", self.url)),
        }
    }

    fn retry_later(&mut self, why: &str) -> Result<(), PeerError> {
        let down_for = self.lost_at.map_or(Duration::ZERO, |t| t.elapsed());
        if down_for >= self.reconnect_budget && !self.connected {
            return Err(PeerError::Signaling(format!(
                "gave up reconnecting after {} s: {why}",
                down_for.as_secs()
            )));
        }
        self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
        tracing::info!("reconnect failed ({why}); next try in {:?}", self.backoff);
        self.reconnect_at = Some(Instant::now() + self.backoff);
        Ok(())
    }

    async fn emit(&self, e: PeerEvent) {
        let _ = self.events.send(e).await;
    }

    fn new_rtc(&mut self) -> &mut Rtc {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_vp8(true)
            .enable_opus(true, false)
            .set_stats_interval(self.stats_interval)
            .build(Instant::now());
        if self.ice != IcePolicy::RelayOnly {
            let turn_socket = self.turn.as_ref().map(|t| t.socket);
            for (i, s) in self.sockets.iter().enumerate() {
                if Some(i) == turn_socket {
                    continue;
                }
                if let Ok(addr) = s.local_addr()
                    && let Ok(c) = Candidate::host(addr, "udp")
                {
                    rtc.add_local_candidate(c);
                }
            }
            for (i, mapped) in &self.srflx {
                if let Ok(c) = Candidate::server_reflexive(*mapped, self.addrs[*i], "udp") {
                    rtc.add_local_candidate(c);
                }
            }
        }
        if let Some(t) = &self.turn
            && let Some(relay) = t.relay
            && let Ok(local) = self.sockets[t.socket].local_addr()
            && let Ok(c) = Candidate::relayed(relay, local, "udp")
        {
            rtc.add_local_candidate(c);
        }
        self.pending = None;
        self.channel = None;
        self.mids.clear();
        self.connected = false;
        self.media_seen = [false; 2];
        self.first_mid = None;
        self.trickle.clear();
        self.rtc.insert(rtc)
    }

    async fn on_signal(&mut self, text: &str) -> Result<(), PeerError> {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            tracing::debug!("ignoring non-JSON signaling message");
            return Ok(());
        };
        let field = |k: &str| msg.get(k).and_then(Value::as_str).unwrap_or("");
        match field("command") {
            "notification" if field("definition") == "joined" => self.emit(PeerEvent::Joined).await,
            "iceServerConfig" if self.turn.is_none() && !self.joined_sent => {
                self.start_turn(&msg).await;
                self.start_stun(&msg).await;
                if self.turn.is_none() {
                    self.send_join().await?;
                }
            }
            "start" if self.channel.is_some() => {
                // Re-joined after a signaling drop while the peer-to-peer connection is
                // still up: keep it (the other side may renegotiate; offers are answered).
                tracing::debug!("start with a live connection: keeping it");
            }
            "start" => {
                self.emit(PeerEvent::PeerJoined).await;
                let room = self.room.clone();
                let wants = [Track::Audio, Track::Video].map(|t| self.media.wants(t));
                let rtc = self.new_rtc();
                let mut api = rtc.sdp_api();
                let mut mids = Vec::new();
                for (want, track) in wants.into_iter().zip([Track::Audio, Track::Video]) {
                    // A side that sends offers to receive as well (as browsers do), so the
                    // other side may send on the same m-line whether or not this one records.
                    let dir = match want {
                        (true, _) => Direction::SendRecv,
                        (false, true) => Direction::RecvOnly,
                        (false, false) => continue,
                    };
                    let kind = match track {
                        Track::Audio => MediaKind::Audio,
                        Track::Video => MediaKind::Video,
                    };
                    // str0m reports `MediaAdded` only for m-lines the other side adds.
                    mids.push((
                        api.add_media(kind, dir, Some(room.clone()), None, None),
                        track,
                    ));
                }
                api.add_channel(room);
                let Some((offer, pending)) = api.apply() else {
                    return Err(PeerError::Rtc("no offer to make".into()));
                };
                self.mids = mids;
                self.pending = Some(pending);
                let sdp = offer.to_sdp_string();
                self.first_mid = first_mid(&sdp);
                self.signal(json!({"command": "takeConfiguration", "streamId": self.room, "type": "offer", "sdp": sdp}))
                    .await?;
            }
            "takeConfiguration" => match field("type") {
                "offer" => {
                    if self.rtc.is_none() {
                        self.emit(PeerEvent::PeerJoined).await;
                    }
                    self.permit_candidates(field("sdp"));
                    let Ok(offer) = SdpOffer::from_sdp_string(field("sdp")) else {
                        tracing::warn!("ignoring an unparsable offer");
                        return Ok(());
                    };
                    let rtc = match self.rtc.as_mut() {
                        Some(r) => r,
                        None => self.new_rtc(),
                    };
                    let answer = rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| PeerError::Rtc(e.to_string()))?;
                    let sdp = answer.to_sdp_string();
                    self.first_mid = first_mid(&sdp);
                    self.signal(json!({"command": "takeConfiguration", "streamId": self.room, "type": "answer", "sdp": sdp}))
                        .await?;
                }
                "answer" => {
                    self.permit_candidates(field("sdp"));
                    let (Some(rtc), Some(pending)) = (self.rtc.as_mut(), self.pending.take())
                    else {
                        tracing::warn!("ignoring an answer to no offer");
                        return Ok(());
                    };
                    let Ok(answer) = SdpAnswer::from_sdp_string(field("sdp")) else {
                        tracing::warn!("ignoring an unparsable answer");
                        return Ok(());
                    };
                    rtc.sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| PeerError::Rtc(e.to_string()))?;
                }
                _ => {}
            },
            "takeCandidate" => {
                let cand = field("candidate");
                let cand = cand.strip_prefix("a=").unwrap_or(cand);
                self.permit_candidates(cand);
                if let (Some(rtc), Ok(c)) = (self.rtc.as_mut(), Candidate::from_sdp_string(cand)) {
                    rtc.add_remote_candidate(c);
                }
            }
            "stop" => {
                self.rtc = None;
                self.pending = None;
                self.channel = None;
                self.emit(PeerEvent::PeerLeft).await;
            }
            "error" => {
                let definition = field("definition");
                self.emit(PeerEvent::ServerError(definition.to_owned()))
                    .await;
                if let Some(why) = refusal(definition, &self.room) {
                    if let Some(ws) = self.ws.as_mut() {
                        let _ = ws.close(None).await;
                    }
                    return Err(PeerError::Refused(why));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads socket `i` into the driver's datagram queue.
    fn spawn_reader(&mut self, i: usize) {
        let Some(tx) = self.udp_tx.clone() else {
            return;
        };
        let s = Arc::clone(&self.sockets[i].rx);
        self.readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                // A full queue drops the datagram, as the network would.
                let _ = tx.try_send((i, from, buf[..n].to_vec()));
            }
        }));
    }

    /// Installs TURN permissions for every candidate address in `sdp` (an SDP or one
    /// candidate line) before ICE checks start, so the other side's checks can reach this
    /// relay: permissions are per IP, and both sides must have one for a relay pair.
    fn permit_candidates(&mut self, sdp: &str) {
        let Some(turn) = self.turn.as_mut().filter(|t| t.relay.is_some()) else {
            return;
        };
        let now = turn_now(self.base);
        for line in sdp.lines() {
            let line = line.trim().strip_prefix("a=").unwrap_or(line.trim());
            if !line.starts_with("candidate:") {
                continue;
            }
            if let Ok(c) = Candidate::from_sdp_string(line) {
                turn.request_permission(c.addr().ip(), now);
            }
        }
    }

    async fn send_join(&mut self) -> Result<(), PeerError> {
        self.joined_sent = true;
        self.signal(
            json!({"command": "join", "streamId": self.room, "multiPeer": false, "mode": "both"}),
        )
        .await
    }

    /// Starts a TURN allocation on the first UDP `turn:` server of an `iceServerConfig`.
    async fn start_turn(&mut self, msg: &Value) {
        let Some((server, user, pass)) = turn_server_of(msg).await else {
            tracing::info!("the server offers no usable UDP TURN server: {msg}");
            return;
        };
        tracing::debug!("TURN server {server} as {user}");
        // A socket of its own (never a host candidate), on the address that reaches the
        // server: loopback for a loopback server, else the first other IPv4 address.
        let Some(ip) = self
            .sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.ip())
            .find(|ip| ip.is_loopback() == server.ip().is_loopback())
        else {
            return;
        };
        let Ok(sock) = Sock::bind(SocketAddr::new(ip, 0)) else {
            return;
        };
        let Ok(local) = sock.local_addr() else {
            return;
        };
        self.sockets.push(sock);
        self.addrs.push(local);
        let socket = self.sockets.len() - 1;
        self.spawn_reader(socket);
        let mut config = turn_client_proto::api::TurnConfig::new(
            turn_client_proto::types::TurnCredentials::new(&user, &pass),
        );
        // Send USERNAME, not an RFC 8489 USERHASH: REST-API servers (Switchboard's and
        // coturn's) read the expiry from the username itself.
        config.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        let now = Instant::now();
        self.turn = Some(Turn {
            client: TurnClientUdp::allocate(local, server, config),
            socket,
            server,
            relay: None,
            failed: false,
            give_up: now + Duration::from_secs(5),
            next_poll: now,
            requested: std::collections::HashSet::new(),
            held: VecDeque::new(),
        });
    }

    /// Drives the TURN client: sends what it wants sent, handles its events, and joins the
    /// room once the relay is known (or given up on). Returns its next deadline.
    async fn turn_progress(&mut self) -> Result<Option<Instant>, PeerError> {
        let Some(turn) = self.turn.as_mut() else {
            return Ok(None);
        };
        let now = turn_now(self.base);
        let mut wait = None;
        if Instant::now() >= turn.next_poll {
            let ret = turn.client.poll(now);
            tracing::trace!("TURN poll: {ret:?}");
            match ret {
                TurnPollRet::WaitUntil(t) => {
                    let at =
                        self.base + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0));
                    turn.next_poll = at;
                    wait = Some(at);
                }
                TurnPollRet::Closed => turn.failed = true,
                _ => {}
            }
        } else {
            wait = Some(turn.next_poll);
        }
        let mut sent = false;
        while let Some(t) = turn.client.poll_transmit(now) {
            tracing::trace!("TURN transmit {} bytes to {}", t.data.as_ref().len(), t.to);
            self.sockets[turn.socket].send_to(t.data.as_ref(), t.to);
            sent = true;
        }
        if sent {
            // The client only expects an answer to a request once `poll` has seen it sent;
            // without this, an answer arriving right away (loopback) is ignored and the
            // request waits for its 500 ms retransmission.
            if let TurnPollRet::WaitUntil(t) = turn.client.poll(now) {
                let at = self.base + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0));
                turn.next_poll = at;
                wait = Some(wait.map_or(at, |w: Instant| w.min(at)));
            }
        }
        while let Some(e) = turn.client.poll_event() {
            match e {
                TurnEvent::AllocationCreated(_, relay) => {
                    tracing::info!("TURN relay {relay} via {}", turn.server);
                    turn.relay = Some(relay);
                }
                TurnEvent::AllocationCreateFailed(_) => turn.failed = true,
                TurnEvent::PermissionCreated(_, ip) => {
                    let (ready, rest): (VecDeque<_>, VecDeque<_>) =
                        turn.held.drain(..).partition(|(to, _)| to.ip() == ip);
                    turn.held = rest;
                    for (to, data) in ready {
                        if let Ok(Some(tb)) =
                            turn.client.send_to(TransportType::Udp, to, &data[..], now)
                        {
                            let tb = tb.build();
                            self.sockets[turn.socket].send_to(&tb.data, tb.to);
                        }
                    }
                }
                e => tracing::trace!("TURN event {e:?}"),
            }
        }
        let ready = turn.relay.is_some() || turn.failed || Instant::now() >= turn.give_up;
        let relay_missing = turn.relay.is_none();
        let give_up = turn.give_up;
        if !self.joined_sent {
            if ready {
                if relay_missing && self.ice == IcePolicy::RelayOnly {
                    return Err(PeerError::Rtc("relay-only, but no TURN allocation".into()));
                }
                self.send_join().await?;
            } else {
                wait = Some(wait.map_or(give_up, |w| w.min(give_up)));
            }
        }
        Ok(wait)
    }

    /// A datagram from the TURN server is unwrapped into (peer, relay address, data);
    /// anything else passes unchanged. `None`: consumed (TURN control traffic).
    fn unwrap_turn(
        &mut self,
        socket: usize,
        from: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    ) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let Some(turn) = self
            .turn
            .as_mut()
            .filter(|t| t.socket == socket && t.server == from)
        else {
            return Some((from, destination, data));
        };
        let now = turn_now(self.base);
        let transmit = turn_client_proto::stun::agent::Transmit::new(
            &data[..],
            TransportType::Udp,
            from,
            destination,
        );
        // Whatever the datagram was, the client may have more to do now.
        turn.next_poll = Instant::now();
        match turn.client.recv(transmit, now) {
            TurnRecvRet::PeerData(p) => Some((p.peer, turn.relay?, p.data().to_vec())),
            TurnRecvRet::Ignored(_) => {
                tracing::trace!("TURN client ignored {} bytes from {from}", data.len());
                Some((from, destination, data.clone()))
            }
            other => {
                tracing::trace!("TURN recv {} bytes: {other:?}", data.len());
                None
            }
        }
    }

    async fn start_file(
        &mut self,
        path: PathBuf,
        sha256: String,
        size: u64,
        id: String,
    ) -> Result<(), PeerError> {
        let name = path
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let fail = |reason: String| PeerEvent::FileFailed {
            id: id.clone(),
            name: name.clone(),
            reason,
        };
        let Some(rtc) = self.rtc.as_mut().filter(|_| self.channel.is_some()) else {
            self.emit(fail("not connected".into())).await;
            return Ok(());
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.emit(fail(e.to_string())).await;
                return Ok(());
            }
        };
        let channel = rtc.direct_api().create_data_channel(ChannelConfig {
            label: format!("sb-file:{id}"),
            ..Default::default()
        });
        self.sends.push(FileSend {
            id,
            channel,
            name,
            size,
            sha256,
            file,
            open: false,
            sent: 0,
            reported: 0,
        });
        Ok(())
    }

    /// Bytes written to the data channel (or waiting to be) that the other side has not
    /// acknowledged yet.
    fn unacknowledged(&mut self) -> usize {
        let queued = self.outbox_bytes;
        let Some(rtc) = self.rtc.as_mut() else {
            return 0;
        };
        let in_flight = self
            .channel
            .and_then(|id| rtc.channel(id))
            .map_or(0, |mut ch| ch.buffered_amount());
        // File channels this side answered on (`accept`, `done`, `reject`).
        let mut replies = 0;
        self.replied.retain(|&id| {
            let n = rtc.channel(id).map_or(0, |mut ch| ch.buffered_amount());
            replies += n;
            n > 0
        });
        queued + in_flight + replies
    }

    /// Leaves the room and closes the signaling connection.
    async fn leave(&mut self) {
        let _ = self
            .signal(json!({"command": "leave", "streamId": self.room}))
            .await;
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.close(None).await;
        }
    }

    /// Writes one waiting item (a message, else a file chunk) if a channel accepts it, so
    /// every mutation of the engine is followed by a full drain (str0m's contract).
    /// Returns whether something was written.
    async fn flush_one(&mut self) -> Result<bool, PeerError> {
        let Some(rtc) = self.rtc.as_mut() else {
            return Ok(false);
        };
        if let Some(id) = self.channel
            && let Some((binary, data)) = self.outbox.front()
            && let Some(mut ch) = rtc.channel(id)
        {
            if ch
                .write(*binary, data)
                .map_err(|e| PeerError::Rtc(e.to_string()))?
            {
                self.outbox_bytes -= data.len();
                self.outbox.pop_front();
                return Ok(true);
            }
            if ch.buffered_amount() == 0 {
                return Err(PeerError::Rtc(format!(
                    "a {}-byte message is larger than the data channel accepts",
                    data.len()
                )));
            }
        }
        let mut progress = None;
        let mut wrote = false;
        for f in self.sends.iter_mut().filter(|f| f.open && f.sent < f.size) {
            let Some(mut ch) = rtc.channel(f.channel) else {
                continue;
            };
            if ch.buffered_amount() >= FILE_HIGH_WATER {
                continue;
            }
            let mut buf = vec![0u8; FILE_CHUNK.min((f.size - f.sent) as usize)];
            f.file.read_exact(&mut buf)?;
            if !ch
                .write(true, &buf)
                .map_err(|e| PeerError::Rtc(e.to_string()))?
            {
                // Not accepted: read it again next time.
                use std::io::Seek as _;
                f.file.seek(io::SeekFrom::Start(f.sent))?;
                continue;
            }
            f.sent += buf.len() as u64;
            wrote = true;
            if f.sent - f.reported >= PROGRESS_STEP || f.sent == f.size {
                f.reported = f.sent;
                progress = Some(PeerEvent::FileProgress {
                    id: f.id.clone(),
                    name: f.name.clone(),
                    bytes: f.sent,
                    size: f.size,
                    sending: true,
                });
            }
            break;
        }
        if let Some(e) = progress {
            self.emit(e).await;
        }
        Ok(wrote)
    }

    async fn on_file_channel_open(&mut self, id: ChannelId, label: &str) -> Result<(), PeerError> {
        if let Some(f) = self.sends.iter_mut().find(|f| f.channel == id) {
            f.open = true;
            let header = json!({"name": f.name, "size": f.size, "type": "application/octet-stream", "sha256": f.sha256});
            if let Some(mut ch) = self.rtc.as_mut().and_then(|r| r.channel(id)) {
                ch.set_buffered_amount_low_threshold(FILE_HIGH_WATER / 4);
                let _ = ch
                    .write(false, header.to_string().as_bytes())
                    .map_err(|e| PeerError::Rtc(e.to_string()))?;
            }
            return Ok(());
        }
        if let Some(tid) = label.strip_prefix("sb-file:") {
            self.recvs.push(FileRecv {
                id: tid.to_owned(),
                channel: id,
                state: None,
            });
        }
        Ok(())
    }

    /// Data on a file channel; `false` when `id` is not one.
    async fn on_file_data(
        &mut self,
        id: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<bool, PeerError> {
        if let Some(pos) = self.sends.iter().position(|f| f.channel == id) {
            let f = self.sends.remove(pos);
            let ev = if !binary && data == b"done" && f.sent == f.size {
                PeerEvent::FileSent {
                    id: f.id,
                    name: f.name,
                    size: f.size,
                }
            } else {
                PeerEvent::FileFailed {
                    id: f.id,
                    name: f.name,
                    reason: format!("the receiver answered {:?}", String::from_utf8_lossy(data)),
                }
            };
            self.close_channel(id);
            self.emit(ev).await;
            return Ok(true);
        }
        let Some(pos) = self.recvs.iter().position(|r| r.channel == id) else {
            return Ok(false);
        };
        let mut event = None;
        let mut reply: Option<&[u8]> = None;
        let mut done = false;
        {
            let r = &mut self.recvs[pos];
            match &mut r.state {
                None => {
                    let meta: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
                    let name =
                        safe_name(meta.get("name").and_then(Value::as_str).unwrap_or("file"));
                    let size = meta.get("size").and_then(Value::as_u64);
                    let fail = |reason: &str| PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: name.clone(),
                        reason: reason.to_owned(),
                    };
                    match (&self.receive_dir, size) {
                        (None, _) => {
                            event = Some(fail("incoming files are refused (no receive directory)"));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (_, None) => {
                            event = Some(fail("bad file header"));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(_), Some(size)) if size > self.max_file_size => {
                            event = Some(fail(&format!(
                                "{size} bytes is more than the {} bytes accepted (max_file_size)",
                                self.max_file_size
                            )));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(dir), Some(size)) if !fits_on_disk(dir, size) => {
                            event = Some(fail(&format!(
                                "{size} bytes is more than the free space in {}",
                                dir.display()
                            )));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(dir), Some(size)) => match create_unique(dir, &name) {
                            Ok((path, file)) => {
                                r.state = Some(RecvState {
                                    name,
                                    size,
                                    expect: meta
                                        .get("sha256")
                                        .and_then(Value::as_str)
                                        .map(str::to_owned),
                                    path,
                                    file,
                                    hasher: Sha256::new(),
                                    received: 0,
                                    reported: 0,
                                });
                            }
                            Err(e) => {
                                event = Some(fail(&format!(
                                    "cannot create {name} in {}: {e}",
                                    dir.display()
                                )));
                                reply = Some(b"reject");
                                done = true;
                            }
                        },
                    }
                }
                Some(st) if binary && st.received + data.len() as u64 > st.size => {
                    // More than announced: the transfer is refused, not the disk filled.
                    let _ = std::fs::remove_file(&st.path);
                    event = Some(PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        reason: format!(
                            "the sender sent more than the {} bytes announced",
                            st.size
                        ),
                    });
                    reply = Some(b"reject");
                    done = true;
                }
                Some(st) => {
                    if binary {
                        st.file.write_all(data)?;
                        st.hasher.update(data);
                        st.received += data.len() as u64;
                        if st.received - st.reported >= PROGRESS_STEP && st.received < st.size {
                            st.reported = st.received;
                            event = Some(PeerEvent::FileProgress {
                                id: r.id.clone(),
                                name: st.name.clone(),
                                bytes: st.received,
                                size: st.size,
                                sending: false,
                            });
                        }
                    }
                }
            }
            if let Some(st) = &mut r.state
                && st.received >= st.size
            {
                st.file.flush()?;
                let sha256 = hex(&std::mem::take(&mut st.hasher).finalize());
                let verified = st.expect.as_ref().map(|e| e.eq_ignore_ascii_case(&sha256));
                done = true;
                if st.received != st.size || verified == Some(false) {
                    reply = Some(b"reject");
                    event = Some(PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        reason: format!(
                            "got {} of {} bytes, sha256 {sha256}{}",
                            st.received,
                            st.size,
                            st.expect
                                .as_ref()
                                .map(|e| format!(", expected {e}"))
                                .unwrap_or_default()
                        ),
                    });
                } else {
                    reply = Some(b"done");
                    event = Some(PeerEvent::FileReceived {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        path: st.path.clone(),
                        size: st.size,
                        sha256,
                        verified,
                    });
                }
            }
        }
        if let Some(reply) = reply
            && let Some(mut ch) = self.rtc.as_mut().and_then(|rtc| rtc.channel(id))
        {
            let _ = ch
                .write(false, reply)
                .map_err(|e| PeerError::Rtc(e.to_string()))?;
            if !self.replied.contains(&id) {
                // Bounded: an answer older than the last 64 was acknowledged long ago.
                if self.replied.len() >= 64 {
                    self.replied.remove(0);
                }
                self.replied.push(id);
            }
        }
        if done {
            self.recvs.remove(pos);
        }
        if let Some(e) = event {
            self.emit(e).await;
        }
        Ok(true)
    }

    fn close_channel(&mut self, id: ChannelId) {
        if let Some(rtc) = self.rtc.as_mut() {
            rtc.direct_api().close_data_channel(id);
        }
    }

    /// Drains the engine: sends its datagrams, delivers its events, returns its next
    /// deadline.
    async fn drain(&mut self) -> Result<Instant, PeerError> {
        loop {
            let deadline = self.drain_once().await?;
            if !self.flush_one().await? {
                return Ok(deadline);
            }
        }
    }

    async fn drain_once(&mut self) -> Result<Instant, PeerError> {
        let far = Instant::now() + Duration::from_secs(3600);
        loop {
            let Some(rtc) = self.rtc.as_mut() else {
                return Ok(far);
            };
            let out = rtc
                .poll_output()
                .map_err(|e| PeerError::Rtc(e.to_string()))?;
            match out {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    tracing::trace!(
                        "rtc transmit {} -> {} ({} bytes)",
                        t.source,
                        t.destination,
                        t.contents.len()
                    );
                    let turn_local = self.turn.as_ref().map(|turn| self.addrs[turn.socket]);
                    if let Some(turn) = self.turn.as_mut()
                        && (turn.relay == Some(t.source) || turn_local == Some(t.source))
                    {
                        let now = turn_now(self.base);
                        let peer_ip = t.destination.ip();
                        if !turn.client.have_permission(TransportType::Udp, peer_ip) {
                            // Held until the permission is installed (dropped if it cannot be).
                            if turn.request_permission(peer_ip, now) {
                                if turn.held.len() >= TURN_HELD {
                                    turn.held.pop_front();
                                }
                                turn.held.push_back((t.destination, t.contents.to_vec()));
                            }
                        } else {
                            match turn.client.send_to(
                                TransportType::Udp,
                                t.destination,
                                &t.contents[..],
                                now,
                            ) {
                                Ok(Some(tb)) => {
                                    let tb = tb.build();
                                    self.sockets[turn.socket].send_to(&tb.data, tb.to);
                                }
                                other => {
                                    tracing::trace!("TURN send_to {}: {other:?}", t.destination)
                                }
                            }
                        }
                        continue;
                    }
                    if let Some(i) = self.addrs.iter().position(|a| *a == t.source) {
                        self.sockets[i].send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(id, label) => {
                        if label.starts_with("sb-file:")
                            || self.sends.iter().any(|f| f.channel == id)
                        {
                            self.on_file_channel_open(id, &label).await?;
                        } else {
                            self.channel = Some(id);
                            self.emit(PeerEvent::Open).await;
                        }
                    }
                    Event::Connected => {
                        self.connected = true;
                        self.sources.start();
                    }
                    Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                        self.connected = false;
                    }
                    Event::MediaAdded(m) => {
                        let track = match m.kind {
                            MediaKind::Video => Track::Video,
                            MediaKind::Audio => Track::Audio,
                        };
                        tracing::debug!("{track} m-line {} ({:?})", m.mid, m.direction);
                        self.mids.push((m.mid, track));
                    }
                    Event::MediaData(d) => self.on_media_data(d).await,
                    Event::MediaIngressStats(m) => {
                        if let Some(loss) = m.loss {
                            self.stats.loss = Some(loss);
                        }
                    }
                    Event::PeerStats(p) => {
                        self.stats.bytes_sent = p.peer_bytes_tx;
                        self.stats.bytes_received = p.peer_bytes_rx;
                        if let Some(pair) = &p.selected_candidate_pair {
                            self.stats.rtt = pair.current_round_trip_time.or(p.rtt);
                            self.stats.local = Some(pair.local.addr);
                            self.stats.remote = Some(pair.remote.addr);
                            let local = pair.local.addr;
                            let relayed = self.turn.as_ref().is_some_and(|t| {
                                t.relay == Some(local) || self.addrs[t.socket] == local
                            });
                            self.stats.path = Some(if relayed { "relay" } else { "host" });
                        } else {
                            self.stats.rtt = p.rtt;
                        }
                        self.emit(PeerEvent::Stats(self.stats.clone())).await;
                    }
                    Event::ChannelData(d) if Some(d.id) != self.channel => {
                        self.on_file_data(d.id, d.binary, &d.data).await?;
                    }
                    Event::ChannelData(d) => {
                        let ev = if d.binary {
                            PeerEvent::Binary(d.data)
                        } else {
                            match String::from_utf8(d.data) {
                                Ok(t) => PeerEvent::Text(t),
                                Err(e) => PeerEvent::Binary(e.into_bytes()),
                            }
                        };
                        self.emit(ev).await;
                    }
                    _ => {}
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{DISK_RESERVE, create_unique, fits, fits_on_disk, safe_name};

    #[test]
    fn a_file_must_fit_in_the_free_space_with_a_reserve() {
        assert!(fits(1000, DISK_RESERVE + 1000));
        assert!(!fits(1001, DISK_RESERVE + 1000));
        assert!(!fits(u64::MAX, u64::MAX));
        // The real file system: a small file fits, more than the disk can hold does not.
        let dir = std::env::temp_dir();
        assert!(fits_on_disk(&dir, 1));
        let total = fs4::total_space(&dir).unwrap();
        assert!(!fits_on_disk(&dir, total));
    }

    #[test]
    fn received_names_are_plain_file_names_on_every_system() {
        for (given, safe) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Windows\\win.ini", "win.ini"),
            ("\u{202e}fdp.exe", "fdp.exe"),
            ("bell\u{7}\u{1b}[31mred", "bell[31mred"),
            ("...hidden", "hidden"),
            ("trailing. . ", "trailing"),
            ("a<b>c:d\"e|f?g*h", "abcdefgh"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("com7.log", "_com7.log"),
            ("community.txt", "community.txt"),
            ("", "file"),
            ("/", "file"),
        ] {
            assert_eq!(safe_name(given), safe, "{given:?}");
        }
        assert_eq!(safe_name(&"x".repeat(500)).chars().count(), 128);
    }

    /// Before: with `name (1)` … `name (9999)` taken, the original name was opened with
    /// truncation. Now nothing that exists is ever opened.
    #[test]
    fn receiving_never_overwrites_a_file() {
        let dir = std::env::temp_dir().join(format!("sb-unique-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"keep me").unwrap();
        let (p1, _) = create_unique(&dir, "a.txt").unwrap();
        assert_eq!(p1, dir.join("a.txt (1)"));
        for i in 2..10_000 {
            std::fs::write(dir.join(format!("a.txt ({i})")), b"").unwrap();
        }
        assert!(create_unique(&dir, "a.txt").is_err());
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
