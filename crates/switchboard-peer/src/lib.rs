//! A native WebRTC peer for Switchboard (and Ant Media Server) rooms.
//!
//! **Status: first slice of issue 5.** Joins a room over the Ant Media P2P protocol, becomes
//! the offerer on `start` and the answerer on an offer, and opens an ordered, reliable data
//! channel (label = room name, as the Ant Media SDK does) carrying text and binary messages.
//! ICE uses host candidates on every IPv4 interface address (no STUN/TURN yet); media is not
//! sent or received yet.
//!
//! The WebRTC stack is [`str0m`] (sans-IO); this crate is its tokio driver. API shape: a
//! [`Peer`] handle plus a [`Driver`] future the caller spawns:
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_peer::PeerError> {
//! use switchboard_peer::{Peer, PeerConfig, PeerEvent};
//! let (mut peer, driver) = Peer::connect(PeerConfig {
//!     url: "ws://127.0.0.1:5080/WebRTCAppEE/websocket".into(),
//!     room: "room1".into(),
//! })
//! .await?;
//! tokio::spawn(driver);
//! while let Some(event) = peer.next_event().await {
//!     match event {
//!         PeerEvent::Open => peer.send_text("hello").await?,
//!         PeerEvent::Text(t) => println!("peer says {t}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Nothing a remote peer or the server sends can panic the driver: malformed signaling is
//! logged and ignored, and str0m errors end the session with [`PeerError::Rtc`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Where to meet the other peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The server's Ant Media WebSocket URL, e.g. `ws://host:5080/WebRTCAppEE/websocket`.
    pub url: String,
    /// The room (Ant Media `streamId`).
    pub room: String,
}

/// What happens in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The server confirmed the join; waiting for the other peer.
    Joined,
    /// The data channel is open: messages can flow.
    Open,
    /// A text message from the other peer.
    Text(String),
    /// A binary message from the other peer.
    Binary(Vec<u8>),
    /// The other peer left (or its connection dropped).
    PeerLeft,
    /// The server answered with an error (e.g. `NoSpaceForNewPeer` when the room is full).
    ServerError(String),
}

/// Errors of the peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The signaling WebSocket failed or closed.
    #[error("signaling: {0}")]
    Signaling(String),
    /// A local socket failed.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The WebRTC engine failed.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The session has ended.
    #[error("the session has ended")]
    Closed,
}

enum Command {
    Send { binary: bool, data: Vec<u8> },
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

/// Messages queued before the data channel opens, at most.
const OUTBOX_LIMIT: usize = 1024;
/// Events waiting for the application, at most (further data waits in the engine).
const EVENT_QUEUE: usize = 1024;
/// The Ant Media SDK pings every 3 s; the server closes silent sockets after 20 s.
const PING_EVERY: Duration = Duration::from_secs(3);

impl Peer {
    /// Connects to the server, joins the room and returns the handle and its driver.
    ///
    /// # Errors
    /// The WebSocket cannot be opened, or no local UDP socket can be bound.
    pub async fn connect(config: PeerConfig) -> Result<(Peer, Driver), PeerError> {
        let (ws, _) = tokio_tungstenite::connect_async(&config.url)
            .await
            .map_err(|e| PeerError::Signaling(format!("connecting to {}: {e}", config.url)))?;
        let sockets = bind_host_sockets().await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let session = Session {
            ws,
            room: config.room,
            events: ev_tx,
            commands: cmd_rx,
            sockets,
            rtc: None,
            pending: None,
            channel: None,
            outbox: VecDeque::new(),
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

    /// Leaves the room and ends the session.
    pub async fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup).await;
    }
}

/// One UDP socket per IPv4 interface address (loopback included), so each candidate's
/// address is the socket's own.
async fn bind_host_sockets() -> Result<Vec<Arc<UdpSocket>>, PeerError> {
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
        match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(s) => out.push(Arc::new(s)),
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

struct Session {
    ws: Ws,
    room: String,
    events: mpsc::Sender<PeerEvent>,
    commands: mpsc::Receiver<Command>,
    sockets: Vec<Arc<UdpSocket>>,
    rtc: Option<Rtc>,
    pending: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    outbox: VecDeque<(bool, Vec<u8>)>,
}

impl Session {
    async fn run(mut self) -> Result<(), PeerError> {
        self.signal(
            json!({"command": "join", "streamId": self.room, "multiPeer": false, "mode": "both"}),
        )
        .await?;
        let (udp_tx, mut udp_rx) = mpsc::channel::<(usize, SocketAddr, Vec<u8>)>(1024);
        let mut readers = Vec::new();
        for (i, s) in self.sockets.iter().enumerate() {
            let (s, tx) = (Arc::clone(s), udp_tx.clone());
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = s.recv_from(&mut buf).await {
                    // A full queue drops the datagram, as the network would.
                    let _ = tx.try_send((i, from, buf[..n].to_vec()));
                }
            }));
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        let result = loop {
            let deadline = match self.drain().await {
                Ok(d) => d,
                Err(e) => break Err(e),
            };
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_signal(&text).await {
                            break Err(e);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        break Err(PeerError::Signaling("the server closed the connection".into()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(PeerError::Signaling(e.to_string())),
                },
                Some((i, from, data)) = udp_rx.recv() => {
                    let destination = match self.sockets[i].local_addr() {
                        Ok(a) => a,
                        Err(e) => break Err(e.into()),
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
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Send { binary, data }) => {
                        if let Err(e) = self.write(binary, data) {
                            break Err(e);
                        }
                    }
                    Some(Command::Hangup) | None => {
                        let _ = self.signal(json!({"command": "leave", "streamId": self.room})).await;
                        let _ = self.ws.close(None).await;
                        break Ok(());
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
                        break Err(e);
                    }
                }
            }
        };
        for r in readers {
            r.abort();
        }
        result
    }

    async fn signal(&mut self, v: Value) -> Result<(), PeerError> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|e| PeerError::Signaling(e.to_string()))
    }

    async fn emit(&self, e: PeerEvent) {
        let _ = self.events.send(e).await;
    }

    fn new_rtc(&mut self) -> &mut Rtc {
        let mut rtc = Rtc::new(Instant::now());
        for s in &self.sockets {
            if let Ok(addr) = s.local_addr()
                && let Ok(c) = Candidate::host(addr, "udp")
            {
                rtc.add_local_candidate(c);
            }
        }
        self.pending = None;
        self.channel = None;
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
            "start" => {
                let room = self.room.clone();
                let rtc = self.new_rtc();
                let mut api = rtc.sdp_api();
                api.add_channel(room);
                let Some((offer, pending)) = api.apply() else {
                    return Err(PeerError::Rtc("no offer to make".into()));
                };
                self.pending = Some(pending);
                let sdp = offer.to_sdp_string();
                self.signal(json!({"command": "takeConfiguration", "streamId": self.room, "type": "offer", "sdp": sdp}))
                    .await?;
            }
            "takeConfiguration" => match field("type") {
                "offer" => {
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
                    self.signal(json!({"command": "takeConfiguration", "streamId": self.room, "type": "answer", "sdp": sdp}))
                        .await?;
                }
                "answer" => {
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
                self.emit(PeerEvent::ServerError(field("definition").to_owned()))
                    .await
            }
            _ => {}
        }
        Ok(())
    }

    fn write(&mut self, binary: bool, data: Vec<u8>) -> Result<(), PeerError> {
        if let (Some(rtc), Some(id)) = (self.rtc.as_mut(), self.channel)
            && let Some(mut ch) = rtc.channel(id)
        {
            ch.write(binary, &data)
                .map_err(|e| PeerError::Rtc(e.to_string()))?;
            return Ok(());
        }
        if self.outbox.len() >= OUTBOX_LIMIT {
            return Err(PeerError::Rtc(format!(
                "{OUTBOX_LIMIT} messages already wait for the channel to open"
            )));
        }
        self.outbox.push_back((binary, data));
        Ok(())
    }

    /// Drains the engine: sends its datagrams, delivers its events, returns its next
    /// deadline.
    async fn drain(&mut self) -> Result<Instant, PeerError> {
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
                    if let Some(s) = self
                        .sockets
                        .iter()
                        .find(|s| s.local_addr().is_ok_and(|a| a == t.source))
                    {
                        let _ = s.try_send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(id, _label) => {
                        self.channel = Some(id);
                        while let Some((binary, data)) = self.outbox.pop_front() {
                            if let Some(mut ch) = rtc.channel(id) {
                                ch.write(binary, &data)
                                    .map_err(|e| PeerError::Rtc(e.to_string()))?;
                            }
                        }
                        self.emit(PeerEvent::Open).await;
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
