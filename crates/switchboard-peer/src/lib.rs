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
//! Mesh rooms (group calls): [`MeshPeer`] keeps one such session per member under one
//! signaling socket (see its module's docs).
//!
//! Nothing a remote peer or the server sends can panic the driver: malformed signaling is
//! logged and ignored, and str0m errors end the session with [`PeerError::Rtc`].

mod media;
mod mesh;
mod session;

pub use media::{
    AudioSource, MediaConfig, PATTERN_FPS, PATTERN_HEIGHT, PATTERN_WIDTH, Track, VideoSource,
};
pub use mesh::{MAX_MEMBERS, MeshEvent, MeshPeer};

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
use switchboard_proto::IceServer;
use switchboard_proto::antmedia::SdpType;
use switchboard_proto::antmedia::client::{Event as Signal, Request};
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
        let media = OpenMedia::open(&config.media)?;
        let ws = open_signaling(&config.url).await?;
        Self::start(config, media, Some(ws), None).await
    }

    /// The session of one member of a mesh room, signaling through the mesh driver.
    pub(crate) async fn member(
        config: PeerConfig,
        link: session::MemberLink,
    ) -> Result<(Peer, Driver), PeerError> {
        let media = OpenMedia::open(&config.media)?;
        Self::start(config, media, None, Some(link)).await
    }

    async fn start(
        config: PeerConfig,
        media: OpenMedia,
        ws: Option<session::Ws>,
        member: Option<session::MemberLink>,
    ) -> Result<(Peer, Driver), PeerError> {
        let OpenMedia {
            sources,
            src_rx,
            rec_video,
            rec_audio,
        } = media;
        let sockets = bind_host_sockets().await?;

        let addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let session = Session {
            room: config.room,
            events: ev_tx,
            commands: cmd_rx,
            rtc: None,
            pending: None,
            channel: None,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            hanging_up: None,
            ice: config.ice,
            base: Instant::now(),
            stats: Stats::default(),
            stats_interval: config.stats_interval,
            signaling: session::SignalingState {
                ws,
                url: config.url,
                backoff: RECONNECT_MIN,
                reconnect_at: None,
                lost_at: None,
                reconnect_budget: config.reconnect_budget,
                joined_sent: false,
                member,
            },
            net: session::NetState {
                addrs,
                sockets,
                udp_tx: None,
                readers: Vec::new(),
            },
            files: session::FilesState {
                replied: Vec::new(),
                receive_dir: config.receive_dir,
                max_file_size: config.max_file_size,
                sends: Vec::new(),
                recvs: Vec::new(),
            },
            gather: session::GatherState {
                turn: None,
                stun: None,
                srflx: Vec::new(),
                first_mid: None,
                trickle: Vec::new(),
            },
            av: session::AvState {
                media: config.media,
                sources,
                media_rx: src_rx,
                mids: Vec::new(),
                connected: false,
                rec_video,
                rec_audio,
                media_seen: [false; 2],
                keyframe_asked: None,
            },
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

/// A session's media, opened before anything touches the network: sources and recordings.
struct OpenMedia {
    sources: Sources,
    src_rx: mpsc::Receiver<SourceMsg>,
    rec_video: Option<(IvfWriter, PathBuf)>,
    rec_audio: Option<(OggWriter, PathBuf)>,
}

impl OpenMedia {
    fn open(config: &MediaConfig) -> Result<OpenMedia, PeerError> {
        let (src_tx, src_rx) = mpsc::channel(media::SOURCE_QUEUE);
        let sources = Sources::open(config, &src_tx).map_err(PeerError::Media)?;
        drop(src_tx);
        let create = |path: &Path, what: &str| {
            PeerError::Media(format!("cannot create {what} {}", path.display()))
        };
        let rec_video = match &config.record_video {
            Some(p) => Some((
                IvfWriter::create(p).map_err(|_| create(p, "IVF file"))?,
                p.clone(),
            )),
            None => None,
        };
        let rec_audio = match &config.record_audio {
            Some(p) => Some((
                OggWriter::create(p).map_err(|_| create(p, "Ogg file"))?,
                p.clone(),
            )),
            None => None,
        };
        Ok(OpenMedia {
            sources,
            src_rx,
            rec_video,
            rec_audio,
        })
    }
}

/// Space kept free on the receiving disk: a file that would leave less is refused.
pub const DISK_RESERVE: u64 = 64 << 20;

use session::{Session, bind_host_sockets, open_signaling, sha256_file};
