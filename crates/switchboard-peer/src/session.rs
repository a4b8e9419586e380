//! The driver's state: one [`Session`] per [`crate::Peer`], and the types it holds. Its
//! methods are grouped by concern in the child modules: signaling (the Ant Media socket),
//! gather (STUN and TURN candidates), files, recording (media in and out), net (sockets).

mod files;
mod gather;
mod net;
mod recording;
mod signaling;

pub(crate) use files::sha256_file;
use net::*;
pub(crate) use net::{Sock, bind_host_sockets};
use signaling::*;
pub(crate) use signaling::{Ws, open_signaling, refusal};

use super::*;

pub(crate) struct Session {
    pub(crate) room: String,
    pub(crate) events: mpsc::Sender<PeerEvent>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) rtc: Option<Rtc>,
    pub(crate) pending: Option<SdpPendingOffer>,
    pub(crate) channel: Option<ChannelId>,
    pub(crate) outbox: VecDeque<(bool, Vec<u8>)>,
    pub(crate) outbox_bytes: usize,
    /// Set by a hang-up: leave once the data channel is acknowledged, or at this time.
    pub(crate) hanging_up: Option<Instant>,
    pub(crate) ice: IcePolicy,
    /// Time base of the TURN client's clock.
    pub(crate) base: Instant,
    pub(crate) stats: Stats,
    pub(crate) stats_interval: Option<Duration>,
    /// The signaling socket and its reconnection.
    pub(crate) signaling: SignalingState,
    /// Host UDP sockets and their reader tasks.
    pub(crate) net: NetState,
    /// Files being sent and received.
    pub(crate) files: FilesState,
    /// STUN and TURN candidates.
    pub(crate) gather: GatherState,
    /// Media sources, negotiated tracks and recordings.
    pub(crate) av: AvState,
}

/// The signaling socket and its reconnection.
pub(crate) struct SignalingState {
    pub(crate) ws: Option<Ws>,
    pub(crate) url: String,
    pub(crate) backoff: Duration,
    pub(crate) reconnect_at: Option<Instant>,
    /// When the signaling socket dropped (for the reconnect budget).
    pub(crate) lost_at: Option<Instant>,
    /// [`PeerConfig::reconnect_budget`].
    pub(crate) reconnect_budget: Duration,
    /// Sent `join` (a member of a mesh room: ready for its member's frames).
    pub(crate) joined_sent: bool,
    /// In a mesh room, this session is the connection to one member: its frames come from
    /// and go to the mesh driver, which owns the socket ([`crate::mesh`]).
    pub(crate) member: Option<MemberLink>,
}

/// A mesh member's session's signaling: through the mesh driver, addressed to one member.
pub(crate) struct MemberLink {
    /// The member's id.
    pub(crate) peer_id: String,
    /// Frames for the signaling socket (the driver writes them).
    pub(crate) to_room: mpsc::Sender<String>,
    /// The member's frames (its relays and `start`); closed when it leaves.
    pub(crate) from_room: mpsc::Receiver<String>,
    /// The ICE servers the driver was given.
    pub(crate) servers: Vec<IceServer>,
}

/// Host UDP sockets and their reader tasks.
pub(crate) struct NetState {
    pub(crate) sockets: Vec<Sock>,
    /// `sockets[i].local_addr()`, read once (it is a system call, and the packet path needs it).
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) udp_tx: Option<mpsc::Sender<(usize, SocketAddr, Vec<u8>)>>,
    pub(crate) readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Files being sent and received.
pub(crate) struct FilesState {
    /// File channels this side wrote an answer on that may not be acknowledged yet.
    pub(crate) replied: Vec<ChannelId>,
    pub(crate) receive_dir: Option<PathBuf>,
    /// [`PeerConfig::max_file_size`].
    pub(crate) max_file_size: u64,
    pub(crate) sends: Vec<FileSend>,
    pub(crate) recvs: Vec<FileRecv>,
}

/// STUN and TURN candidates.
pub(crate) struct GatherState {
    pub(crate) turn: Option<Turn>,
    pub(crate) stun: Option<StunGather>,
    /// Server-reflexive candidates found: (host socket, mapped address).
    pub(crate) srflx: Vec<(usize, SocketAddr)>,
    /// `a=mid` of the first m-line of the current negotiation (for trickled candidates).
    pub(crate) first_mid: Option<String>,
    /// Local candidates to trickle (`candidate:...` lines).
    pub(crate) trickle: Vec<String>,
}

/// Media sources, negotiated tracks and recordings.
pub(crate) struct AvState {
    pub(crate) media: MediaConfig,
    pub(crate) sources: Sources,
    pub(crate) media_rx: mpsc::Receiver<SourceMsg>,
    /// Media sections of the current connection.
    pub(crate) mids: Vec<(Mid, Track)>,
    /// DTLS is up: media may be written.
    pub(crate) connected: bool,
    pub(crate) rec_video: Option<(IvfWriter, PathBuf)>,
    pub(crate) rec_audio: Option<(OggWriter, PathBuf)>,
    /// First frame of [video, audio] seen on this connection.
    pub(crate) media_seen: [bool; 2],
    /// When a key frame was last requested for the recording.
    pub(crate) keyframe_asked: Option<Instant>,
}

/// Binding requests to the STUN server, one per host socket, for server-reflexive candidates.
pub(crate) struct StunGather {
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
pub(crate) struct Turn {
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
pub(crate) const TURN_HELD: usize = 64;

/// A file being sent on its own channel.
pub(crate) struct FileSend {
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
pub(crate) struct FileRecv {
    id: String,
    channel: ChannelId,
    state: Option<RecvState>,
}

pub(crate) struct RecvState {
    name: String,
    size: u64,
    expect: Option<String>,
    path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    received: u64,
    reported: u64,
}

impl Session {
    pub(crate) async fn run(mut self) -> Result<(), PeerError> {
        if self.ice == IcePolicy::HostOnly {
            self.send_join().await?;
        } else if let Some(m) = &self.signaling.member {
            // A mesh member gathers with the ICE servers the driver was given, then takes
            // its member's frames.
            let servers = m.servers.clone();
            self.start_turn(&servers).await;
            self.start_stun(&servers).await;
            if self.gather.turn.is_none() {
                self.send_join().await?;
            }
        } else {
            self.signal(Request::GetIceServerConfig).await?;
        }
        let (udp_tx, mut udp_rx) = mpsc::channel::<(usize, SocketAddr, Vec<u8>)>(1024);
        self.net.udp_tx = Some(udp_tx);
        for i in 0..self.net.sockets.len() {
            self.spawn_reader(i);
        }
        // The first keep-alive one period after connecting (an interval's first tick is immediate).
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
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
            let reconnect_at = self.signaling.reconnect_at.unwrap_or(deadline);
            tokio::select! {
                msg = next_message(&mut self.signaling.ws) => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_signal(&text).await {
                            break Err(e);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => self.signaling_lost("closed by the server").await,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => self.signaling_lost(&e.to_string()).await,
                },
                frame = member_frame(&mut self.signaling.member, self.signaling.joined_sent) => match frame {
                    Some(text) => {
                        if let Err(e) = self.on_signal(&text).await {
                            break Err(e);
                        }
                    }
                    // The member left the room: this connection is over.
                    None => {
                        self.emit(PeerEvent::PeerLeft).await;
                        break Ok(());
                    }
                },
                () = tokio::time::sleep_until(reconnect_at.into()), if self.signaling.reconnect_at.is_some() => {
                    if let Err(e) = self.reconnect().await {
                        break Err(e);
                    }
                }
                Some(msg) = self.av.media_rx.recv() => {
                    if let Err(e) = self.on_source(msg).await {
                        break Err(e);
                    }
                }
                Some((i, from, data)) = udp_rx.recv() => {
                    if self.on_stun_response(i, from, &data) {
                        continue;
                    }
                    let destination = self.net.addrs[i];
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
                    if let Err(e) = self.signal(Request::Ping).await {
                        self.signaling_lost(&e.to_string()).await;
                    }
                }
            }
        };
        for r in self.net.readers.drain(..) {
            r.abort();
        }
        self.finish_recordings().await;
        result
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
            let turn_socket = self.gather.turn.as_ref().map(|t| t.socket);
            for (i, s) in self.net.sockets.iter().enumerate() {
                if Some(i) == turn_socket {
                    continue;
                }
                if let Ok(addr) = s.local_addr()
                    && let Ok(c) = Candidate::host(addr, "udp")
                {
                    rtc.add_local_candidate(c);
                }
            }
            for (i, mapped) in &self.gather.srflx {
                if let Ok(c) = Candidate::server_reflexive(*mapped, self.net.addrs[*i], "udp") {
                    rtc.add_local_candidate(c);
                }
            }
        }
        if let Some(t) = &self.gather.turn
            && let Some(relay) = t.relay
            && let Ok(local) = self.net.sockets[t.socket].local_addr()
            && let Ok(c) = Candidate::relayed(relay, local, "udp")
        {
            rtc.add_local_candidate(c);
        }
        self.pending = None;
        self.channel = None;
        self.av.mids.clear();
        self.av.connected = false;
        self.av.media_seen = [false; 2];
        self.gather.first_mid = None;
        self.gather.trickle.clear();
        self.rtc.insert(rtc)
    }

    /// Reads socket `i` into the driver's datagram queue.
    fn spawn_reader(&mut self, i: usize) {
        let Some(tx) = self.net.udp_tx.clone() else {
            return;
        };
        let s = Arc::clone(&self.net.sockets[i].rx);
        self.net.readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                // A full queue drops the datagram, as the network would.
                let _ = tx.try_send((i, from, buf[..n].to_vec()));
            }
        }));
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
        self.files.replied.retain(|&id| {
            let n = rtc.channel(id).map_or(0, |mut ch| ch.buffered_amount());
            replies += n;
            n > 0
        });
        queued + in_flight + replies
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
        for f in self
            .files
            .sends
            .iter_mut()
            .filter(|f| f.open && f.sent < f.size)
        {
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
            progress = files::progress((&f.id, &f.name), f.sent, f.size, &mut f.reported, true);
            break;
        }
        if let Some(e) = progress {
            self.emit(e).await;
        }
        Ok(wrote)
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
                    let turn_local = self
                        .gather
                        .turn
                        .as_ref()
                        .map(|turn| self.net.addrs[turn.socket]);
                    if let Some(turn) = self.gather.turn.as_mut()
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
                                    self.net.sockets[turn.socket].send_to(&tb.data, tb.to);
                                }
                                other => {
                                    tracing::trace!("TURN send_to {}: {other:?}", t.destination)
                                }
                            }
                        }
                        continue;
                    }
                    if let Some(i) = self.net.addrs.iter().position(|a| *a == t.source) {
                        self.net.sockets[i].send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(id, label) => {
                        if label.starts_with("sb-file:")
                            || self.files.sends.iter().any(|f| f.channel == id)
                        {
                            self.on_file_channel_open(id, &label).await?;
                        } else {
                            self.channel = Some(id);
                            self.emit(PeerEvent::Open).await;
                        }
                    }
                    Event::Connected => {
                        self.av.connected = true;
                        self.av.sources.start();
                    }
                    Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                        self.av.connected = false;
                    }
                    Event::MediaAdded(m) => {
                        let track = match m.kind {
                            MediaKind::Video => Track::Video,
                            MediaKind::Audio => Track::Audio,
                        };
                        tracing::debug!("{track} m-line {} ({:?})", m.mid, m.direction);
                        self.av.mids.push((m.mid, track));
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
                            let relayed = self.gather.turn.as_ref().is_some_and(|t| {
                                t.relay == Some(local) || self.net.addrs[t.socket] == local
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
