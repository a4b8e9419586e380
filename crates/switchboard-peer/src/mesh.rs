//! Mesh rooms (group calls, docs/PROTOCOLS.md "Mesh rooms"): [`MeshPeer`] joins with
//! `"mesh": true` and keeps one session per member — its own WebRTC engine, sockets, TURN
//! allocation, data channel, files, media and recordings, exactly as a 1:1 call — under one
//! signaling socket, which this driver owns. The server says who offers in each pair: a
//! member's session starts on `start` (this side offers) or on the member's offer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_peer::PeerError> {
//! use switchboard_peer::{MeshEvent, MeshPeer, PeerConfig, PeerEvent};
//! let (mut mesh, driver) =
//!     MeshPeer::connect(PeerConfig::new("ws://127.0.0.1:5080/WebRTCAppEE/websocket", "family"))
//!         .await?;
//! tokio::spawn(driver);
//! while let Some(event) = mesh.next_event().await {
//!     match event {
//!         MeshEvent::Member { peer, event: PeerEvent::Open } => {
//!             mesh.send_text(Some(&peer), "hello").await?
//!         }
//!         MeshEvent::Member { peer, event: PeerEvent::Text(t) } => println!("{peer}: {t}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use switchboard_proto::antmedia::client::{Event as Signal, Request};

use super::*;
use crate::session::{MemberLink, Ws, refusal};

/// Members a mesh peer keeps at most (the server's `--max-mesh-peers` is at most 32).
pub const MAX_MEMBERS: usize = 31;
/// Frames waiting for one member's session, at most; beyond that the member is dropped (its
/// session is stuck), never the driver.
const MEMBER_QUEUE: usize = 1024;
/// How long the driver waits for `iceServerConfig` before joining without it.
const ICE_CONFIG_WAIT: Duration = Duration::from_secs(3);

/// What happens in a mesh room.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshEvent {
    /// Joined: this side's id and the members already there (they will offer to it).
    Joined {
        /// This side's `peerId`.
        me: String,
        /// The members already in the room, in the order they joined.
        members: Vec<String>,
    },
    /// A member joined the room (this side will offer to it).
    MemberJoined(String),
    /// Something happened on the connection to one member (as in a 1:1 call:
    /// [`PeerEvent::Open`], [`PeerEvent::Text`], files, media, recordings, stats).
    Member {
        /// The member.
        peer: String,
        /// What happened.
        event: PeerEvent,
    },
    /// A member left the room; its connection is closed.
    MemberLeft(String),
    /// The server answered with an error `definition` (a refusal then ends the session).
    ServerError(String),
}

enum MeshCommand {
    Send {
        to: Option<String>,
        binary: bool,
        data: Vec<u8>,
    },
    SendFile {
        to: Option<String>,
        path: PathBuf,
    },
    Hangup,
}

/// The application's side of a mesh room.
#[derive(Debug)]
pub struct MeshPeer {
    commands: mpsc::Sender<MeshCommand>,
    events: mpsc::Receiver<MeshEvent>,
    frames: Arc<Frames>,
}

/// Signaling frames this peer sent and received (for benchmarks).
#[derive(Debug, Default)]
struct Frames {
    sent: AtomicU64,
    received: AtomicU64,
}

impl std::fmt::Debug for MeshCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send { to, data, .. } => write!(f, "Send({to:?}, {} bytes)", data.len()),
            Self::SendFile { to, path } => write!(f, "SendFile({to:?}, {})", path.display()),
            Self::Hangup => f.write_str("Hangup"),
        }
    }
}

impl MeshPeer {
    /// Connects to the server and joins `config.room` as a mesh room. `config` applies to
    /// every member's connection; recordings get the member's id before the extension
    /// (`call.ivf` → `call-<peerId>.ivf`).
    ///
    /// # Errors
    /// A media file cannot be used, or the WebSocket cannot be opened.
    pub async fn connect(config: PeerConfig) -> Result<(MeshPeer, Driver), PeerError> {
        // A bad media file is an error before anything touches the network.
        drop(OpenMedia::open(&MediaConfig {
            record_video: None,
            record_audio: None,
            ..config.media.clone()
        })?);
        let ws = open_signaling(&config.url).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (to_room_tx, to_room_rx) = mpsc::channel(MEMBER_QUEUE);
        let (member_ev_tx, member_ev_rx) = mpsc::channel(EVENT_QUEUE);
        let frames = Arc::new(Frames::default());
        let driver = MeshDriver {
            frames: Arc::clone(&frames),
            config,
            ws,
            events: ev_tx,
            commands: cmd_rx,
            to_room_tx,
            to_room_rx,
            member_ev_tx,
            member_ev_rx,
            members: HashMap::new(),
            servers: None,
            joined: false,
        };
        Ok((
            MeshPeer {
                commands: cmd_tx,
                events: ev_rx,
                frames,
            },
            Driver(Box::pin(driver.run())),
        ))
    }

    /// The next event; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<MeshEvent> {
        self.events.recv().await
    }

    /// Sends a text message to one member, or (`None`) to every member (queued until each
    /// one's channel is open).
    ///
    /// # Errors
    /// [`PeerError::Closed`] when the session has ended.
    pub async fn send_text(&self, to: Option<&str>, text: &str) -> Result<(), PeerError> {
        self.command(MeshCommand::Send {
            to: to.map(str::to_owned),
            binary: false,
            data: text.as_bytes().to_vec(),
        })
        .await
    }

    /// Sends a binary message to one member, or (`None`) to every member.
    ///
    /// # Errors
    /// [`PeerError::Closed`] when the session has ended.
    pub async fn send_binary(&self, to: Option<&str>, data: &[u8]) -> Result<(), PeerError> {
        self.command(MeshCommand::Send {
            to: to.map(str::to_owned),
            binary: true,
            data: data.to_vec(),
        })
        .await
    }

    /// Sends a file to one member, or (`None`) to every member in the room now, each on its
    /// own data channel (as [`Peer::send_file`]); progress and completion arrive per member.
    ///
    /// # Errors
    /// [`PeerError::Closed`] when the session has ended.
    pub async fn send_file(
        &self,
        to: Option<&str>,
        path: impl Into<PathBuf>,
    ) -> Result<(), PeerError> {
        self.command(MeshCommand::SendFile {
            to: to.map(str::to_owned),
            path: path.into(),
        })
        .await
    }

    /// Signaling frames sent and received so far: `(sent, received)`.
    #[must_use]
    pub fn signaling_frames(&self) -> (u64, u64) {
        (
            self.frames.sent.load(Relaxed),
            self.frames.received.load(Relaxed),
        )
    }

    /// Leaves the room and ends the session (every member's connection closes).
    pub async fn hangup(&self) {
        let _ = self.commands.send(MeshCommand::Hangup).await;
    }

    async fn command(&self, c: MeshCommand) -> Result<(), PeerError> {
        self.commands.send(c).await.map_err(|_| PeerError::Closed)
    }
}

/// One member's session, as the driver holds it.
struct Member {
    peer: Peer,
    frames: mpsc::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

struct MeshDriver {
    frames: Arc<Frames>,
    config: PeerConfig,
    ws: Ws,
    events: mpsc::Sender<MeshEvent>,
    commands: mpsc::Receiver<MeshCommand>,
    /// Frames the members' sessions send (each with its member's `peerId`).
    to_room_tx: mpsc::Sender<String>,
    to_room_rx: mpsc::Receiver<String>,
    /// Events of the members' sessions, tagged with the member.
    member_ev_tx: mpsc::Sender<(String, PeerEvent)>,
    member_ev_rx: mpsc::Receiver<(String, PeerEvent)>,
    members: HashMap<String, Member>,
    /// The ICE servers from `iceServerConfig` (`None` until it arrives).
    servers: Option<Vec<IceServer>>,
    joined: bool,
}

impl MeshDriver {
    async fn run(mut self) -> Result<(), PeerError> {
        let result = self.serve().await;
        // Every member's connection ends with the room.
        self.members.clear();
        let _ = self.ws.close(None).await;
        result
    }

    async fn serve(&mut self) -> Result<(), PeerError> {
        if self.config.ice == IcePolicy::HostOnly {
            self.servers = Some(Vec::new());
            self.join().await?;
        } else {
            self.send(&Request::GetIceServerConfig).await?;
        }
        let join_by = tokio::time::Instant::now() + ICE_CONFIG_WAIT;
        // The first keep-alive one period after connecting (an interval's first tick is immediate).
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut hanging_up: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        self.frames.received.fetch_add(1, Relaxed);
                        self.on_frame(&text).await?;
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return if hanging_up.is_some() {
                            Ok(())
                        } else {
                            Err(PeerError::Signaling("the server closed the connection".into()))
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(PeerError::Signaling(e.to_string())),
                },
                Some(frame) = self.to_room_rx.recv() => {
                    self.frames.sent.fetch_add(1, Relaxed);
                    self.ws
                        .send(Message::Text(frame.into()))
                        .await
                        .map_err(|e| PeerError::Signaling(e.to_string()))?;
                }
                Some((peer, event)) = self.member_ev_rx.recv() => {
                    let _ = self.events.send(MeshEvent::Member { peer, event }).await;
                }
                cmd = self.commands.recv(), if hanging_up.is_none() => match cmd {
                    Some(MeshCommand::Send { to, binary, data }) => {
                        for m in self.targets(to.as_deref()) {
                            let _ = m.peer.send(binary, data.clone()).await;
                        }
                    }
                    Some(MeshCommand::SendFile { to, path }) => {
                        for m in self.targets(to.as_deref()) {
                            if let Err(e) = m.peer.send_file(path.clone()).await {
                                tracing::warn!("cannot send {}: {e}", path.display());
                            }
                        }
                    }
                    Some(MeshCommand::Hangup) | None => {
                        for m in self.members.values() {
                            m.peer.hangup().await;
                        }
                        hanging_up = Some(tokio::time::Instant::now() + HANGUP_FLUSH);
                    }
                },
                () = tokio::time::sleep_until(join_by), if !self.joined => {
                    tracing::warn!("no iceServerConfig from the server; joining without STUN/TURN");
                    self.servers = Some(Vec::new());
                    self.join().await?;
                }
                () = async {
                    match hanging_up {
                        // Members flush their last bytes (up to HANGUP_FLUSH), then leave.
                        Some(t) => {
                            tokio::time::sleep_until(t).await;
                        }
                        None => std::future::pending().await,
                    }
                } => {
                    let room = self.config.room.clone();
                    let _ = self.send(&Request::Leave { stream_id: &room }).await;
                    return Ok(());
                }
                _ = ping.tick() => self.send(&Request::Ping).await?,
            }
            if hanging_up.is_some() && self.members.values().all(|m| m.task.is_finished()) {
                let room = self.config.room.clone();
                let _ = self.send(&Request::Leave { stream_id: &room }).await;
                return Ok(());
            }
        }
    }

    fn targets(&self, to: Option<&str>) -> Vec<&Member> {
        match to {
            Some(id) => self.members.get(id).into_iter().collect(),
            None => self.members.values().collect(),
        }
    }

    async fn send(&mut self, request: &Request<'_>) -> Result<(), PeerError> {
        self.frames.sent.fetch_add(1, Relaxed);
        self.ws
            .send(Message::Text(request.encode().into()))
            .await
            .map_err(|e| PeerError::Signaling(e.to_string()))
    }

    async fn join(&mut self) -> Result<(), PeerError> {
        self.joined = true;
        let room = self.config.room.clone();
        self.send(&Request::Join {
            stream_id: &room,
            multi_peer: false,
            mode: "both",
            token: None,
            mesh: true,
        })
        .await
    }

    async fn emit(&self, e: MeshEvent) {
        let _ = self.events.send(e).await;
    }

    async fn on_frame(&mut self, text: &str) -> Result<(), PeerError> {
        let Some(signal) = Signal::decode(text) else {
            tracing::debug!("ignoring a signaling message that is not the protocol's: {text}");
            return Ok(());
        };
        match signal {
            Signal::IceServerConfig(config) if !self.joined => {
                self.servers = Some(config.servers());
                self.join().await?;
            }
            Signal::Notification {
                definition,
                peer_id: Some(me),
                peers,
            } if definition == "joined" => {
                self.emit(MeshEvent::Joined { me, members: peers }).await;
            }
            Signal::Notification {
                definition,
                peer_id: Some(peer),
                ..
            } if definition == "peerJoined" => self.emit(MeshEvent::MemberJoined(peer)).await,
            Signal::Notification {
                definition,
                peer_id: Some(peer),
                ..
            } if definition == "peerLeft" => {
                // Closing its frames ends the member's session.
                self.members.remove(&peer);
                self.emit(MeshEvent::MemberLeft(peer)).await;
            }
            Signal::Start {
                peer_id: Some(peer),
            } => self.forward(peer, text, true).await?,
            Signal::TakeConfiguration {
                peer_id: Some(peer),
                kind,
                ..
            } => self.forward(peer, text, kind == "offer").await?,
            Signal::TakeCandidate {
                peer_id: Some(peer),
                ..
            } => self.forward(peer, text, false).await?,
            Signal::Error { definition, reason } => {
                let refused = if definition == "NoSpaceForNewPeer" {
                    Some(format!(
                        "mesh room {:?} is full (the server's --max-mesh-peers)",
                        self.config.room
                    ))
                } else if definition == "room_mode_mismatch" {
                    Some(format!(
                        "room {:?} cannot be joined as a mesh room: {}",
                        self.config.room,
                        reason.as_deref().unwrap_or("it is a 1:1 room")
                    ))
                } else {
                    refusal(&definition, reason.as_deref(), &self.config.room)
                };
                self.emit(MeshEvent::ServerError(definition)).await;
                if let Some(why) = refused {
                    return Err(PeerError::Refused(why));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Hands `text` to `peer`'s session, starting one when `create` (a `start` or an offer).
    async fn forward(&mut self, peer: String, text: &str, create: bool) -> Result<(), PeerError> {
        if !self.members.contains_key(&peer) {
            if !create {
                tracing::debug!("a frame for {peer}, who has no connection: dropped");
                return Ok(());
            }
            if self.members.len() >= MAX_MEMBERS {
                tracing::warn!("more than {MAX_MEMBERS} members; not connecting to {peer}");
                return Ok(());
            }
            self.start_member(&peer).await?;
        }
        let Some(m) = self.members.get(&peer) else {
            return Ok(());
        };
        if m.frames.try_send(text.to_owned()).is_err() {
            // Its session is not reading (stuck or ended): drop it rather than wait.
            tracing::warn!("the connection to {peer} is not keeping up; closing it");
            self.members.remove(&peer);
        }
        Ok(())
    }

    async fn start_member(&mut self, peer: &str) -> Result<(), PeerError> {
        let (frames_tx, frames_rx) = mpsc::channel(MEMBER_QUEUE);
        let mut config = self.config.clone();
        for path in [
            &mut config.media.record_video,
            &mut config.media.record_audio,
        ]
        .into_iter()
        .flatten()
        {
            *path = member_path(path, peer);
        }
        let link = MemberLink {
            peer_id: peer.to_owned(),
            to_room: self.to_room_tx.clone(),
            from_room: frames_rx,
            servers: self.servers.clone().unwrap_or_default(),
        };
        let (mut handle, driver) = Peer::member(config, link).await?;
        let events = std::mem::replace(&mut handle.events, mpsc::channel(1).1);
        let tx = self.member_ev_tx.clone();
        let id = peer.to_owned();
        let task = tokio::spawn(async move {
            let session = tokio::spawn(driver);
            let mut events = events;
            while let Some(e) = events.recv().await {
                if tx.send((id.clone(), e)).await.is_err() {
                    break;
                }
            }
            match session.await {
                Ok(Err(e)) => tracing::warn!("the connection to {id} ended: {e}"),
                Err(e) => tracing::warn!("the connection to {id} failed: {e}"),
                Ok(Ok(())) => {}
            }
        });
        self.members.insert(
            peer.to_owned(),
            Member {
                peer: handle,
                frames: frames_tx,
                task,
            },
        );
        Ok(())
    }
}

/// `dir/call.ivf` for member 12 → `dir/call-12.ivf`.
fn member_path(path: &Path, peer: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{peer}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{peer}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::member_path;
    use std::path::Path;

    #[test]
    fn recordings_are_named_per_member() {
        assert_eq!(
            member_path(Path::new("out/call.ivf"), "12"),
            Path::new("out/call-12.ivf")
        );
        assert_eq!(member_path(Path::new("a.opus"), "3"), Path::new("a-3.opus"));
        assert_eq!(member_path(Path::new("rec"), "3"), Path::new("rec-3"));
    }
}
