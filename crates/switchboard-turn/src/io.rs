//! The IO edge: sockets, tasks, the clock, and carrying out the machine's commands.
//!
//! ```text
//!  UDP listener task ─┐  read clock      ┌──────── lock ────────┐
//!  TCP/TLS conn tasks ─┼─▶ (Now) ───────▶│ Turn::handle_* (pure) │─▶ commands ─▶ execute:
//!  relay socket tasks ─┤                 │ poll_command → Vec    │     Send → try_send
//!  1 s tick task ──────┘                 └───────────────────────┘     OpenRelay → bind, spawn reader,
//!                                                                        answer (one more lock)
//!                                                                      CloseRelay → stop reader
//! ```
//! The machine ([`crate::machine`]) sits behind a `std::sync::Mutex` held only for its pure
//! work: the clock is read before taking the lock, and binding, spawning and sending happen
//! after releasing it. The lock stays on the datagram path because every packet, relayed
//! ones included, is looked up in `turn-server-proto`'s allocation tables, which only exist
//! behind `&mut`; the alternative, one task owning the machine and a channel hop per
//! datagram, costs more than an uncontended lock taken once per batch of up to 64 datagrams.
//! Sends are non-blocking: a full socket buffer or TCP queue drops the packet (counted in
//! `dropped_send`), as a router would.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use turn_server_proto::types::{Instant, TransportType};

use crate::machine::{Command, ListenerKey, Now, Turn, Via};
use crate::{ConfigError, Shared, Stats, TurnConfig, TurnStats};

/// Packets queued towards one TCP/TLS client before further ones are dropped.
const TCP_QUEUE: usize = 256;
/// Largest TCP frame: a ChannelData header, 65,535 bytes and padding.
const MAX_FRAME: usize = 4 + 65_535 + 3;
/// Datagrams handled per lock: one awaited, then what is already queued.
const BATCH: usize = 64;
/// Kernel buffers asked for on the STUN/TURN UDP listeners (capped by net.core.rmem_max /
/// wmem_max): a burst from many clients waits here instead of being dropped.
const LISTENER_SOCKET_BUFFER: usize = 4 << 20;
/// A TCP/TLS client must complete its handshake and first message within this time.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running STUN/TURN server. Dropping it does not stop it; call [`TurnHandle::shutdown`].
#[derive(Clone)]
pub struct TurnHandle {
    shared: Arc<Shared>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for TurnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnHandle")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl TurnHandle {
    /// Bound UDP addresses.
    #[must_use]
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }
    /// Bound TCP addresses.
    #[must_use]
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }
    /// Bound TLS addresses (empty without a certificate).
    #[must_use]
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }
    /// The STUN/TURN port (UDP and TCP).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.udp.first().map_or(0, SocketAddr::port)
    }
    /// The TURN-over-TLS port, if TLS is on.
    #[must_use]
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.first().map(SocketAddr::port)
    }
    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> TurnStats {
        self.shared.stats.snapshot()
    }
    /// The realm clients see.
    #[must_use]
    pub fn realm(&self) -> &str {
        &self.shared.config.realm
    }
    /// Stops every listener, connection and relay.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// Loads a PEM certificate chain and private key into a TLS server configuration (ring
/// crypto, TLS 1.2 and 1.3).
///
/// # Errors
/// Unreadable files, no certificate, no key, or a key that does not match.
pub fn load_tls(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&format!("reading {}", cert.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&format!("parsing {}", cert.display()), &e))?;
    if certs.is_empty() {
        return Err(bad(&cert.display().to_string(), &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(&format!("reading key {}", key.display()), &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("TLS", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad("certificate/key", &e))?;
    Ok(Arc::new(config))
}

fn config_error(e: &ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Binds every listener and starts the server.
///
/// # Errors
/// An invalid configuration, or a listen address that cannot be bound (an address that came
/// from expanding `0.0.0.0` / `[::]` and cannot be bound is skipped with a warning).
pub async fn start(config: TurnConfig) -> io::Result<TurnHandle> {
    config.validate().map_err(|e| config_error(&e))?;
    let interfaces = interface_ips();
    let plain = bind_group(&config.listen, &interfaces, true)?;
    let tls = match &config.tls {
        Some(_) => bind_group(&config.tls_listen, &interfaces, false)?,
        None => Bound::default(),
    };
    let mut protected: HashSet<u16> = config.protected_ports.iter().copied().collect();
    protected.extend(
        plain
            .tcp
            .iter()
            .chain(&tls.tcp)
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.port()),
    );
    let mut local_ips: HashSet<IpAddr> = interfaces.iter().copied().collect();
    local_ips.extend(config.external_ip);
    let tls_acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let shared = Arc::new(Shared {
        config,
        stats: Stats::default(),
    });
    let cancel = CancellationToken::new();
    let edge = Arc::new(Edge {
        state: Mutex::new(Turn::new(
            Arc::clone(&shared),
            local_ips,
            protected,
            rand::random(),
        )),
        shared: Arc::clone(&shared),
        base: std::time::Instant::now(),
        cancel: cancel.clone(),
    });

    let mut handle = TurnHandle {
        shared: Arc::clone(&shared),
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        cancel: cancel.clone(),
    };
    for udp in plain.udp {
        let addr = udp.local_addr()?;
        let socket = Arc::new(Socket {
            udp,
            stop: cancel.clone(),
        });
        let key = (TransportType::Udp, addr);
        edge.lock().add_listener(key, Some(Arc::clone(&socket)));
        handle.udp.push(addr);
        tokio::spawn(udp_task(Arc::clone(&edge), key, socket));
    }
    for (listeners, acceptor, out) in [
        (plain.tcp, None, &mut handle.tcp),
        (tls.tcp, tls_acceptor, &mut handle.tls),
    ] {
        for listener in listeners {
            let addr = listener.local_addr()?;
            let key = (TransportType::Tcp, addr);
            edge.lock().add_listener(key, None);
            out.push(addr);
            tokio::spawn(accept_task(
                Arc::clone(&edge),
                key,
                listener,
                acceptor.clone(),
            ));
        }
    }
    tokio::spawn(tick_task(edge));
    tracing::debug!(
        "STUN/TURN listening on UDP {:?}, TCP {:?}{}",
        handle.udp,
        handle.tcp,
        if handle.tls.is_empty() {
            String::new()
        } else {
            format!(", TLS {:?}", handle.tls)
        }
    );
    Ok(handle)
}

/// A UDP socket of the server (a listener's or a relay's) and what stops its reader.
#[derive(Debug)]
struct Socket {
    udp: UdpSocket,
    stop: CancellationToken,
}

type Conn = mpsc::Sender<Vec<u8>>;
type Core = Turn<Arc<Socket>, Conn>;
type Cmd = Command<Arc<Socket>, Conn>;

/// What every task of one server shares.
struct Edge {
    state: Mutex<Core>,
    shared: Arc<Shared>,
    /// The machine's monotonic time is the time since this instant.
    base: std::time::Instant,
    cancel: CancellationToken,
}

impl Edge {
    /// The clock, read outside the lock.
    fn now(&self) -> Now {
        Now {
            mono: Instant::from_std(self.base),
            unix: crate::unix_now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave the protocol state half-written in a
        // way that matters more than stopping TURN altogether; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one input on the machine, then carries out what it asked for after releasing
    /// the lock.
    fn input<R>(self: &Arc<Self>, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let now = self.now();
        let mut cmds = Vec::new();
        let r = {
            let mut st = self.lock();
            let r = f(&mut st, now);
            drain(&mut st, &mut cmds);
            r
        };
        self.execute(cmds);
        r
    }

    /// Carries out commands, outside the lock. Opened relay sockets are reported back to the
    /// machine (one more lock), which may queue more commands (the Allocate response).
    fn execute(self: &Arc<Self>, mut cmds: Vec<Cmd>) {
        let stats = &self.shared.stats;
        while !cmds.is_empty() {
            let mut opened = Vec::new();
            for c in cmds.drain(..) {
                match c {
                    Command::Send {
                        via: Via::Udp(socket),
                        to,
                        data,
                    } => match socket.udp.try_send_to(&data, to) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            stats.dropped_send.fetch_add(1, Relaxed);
                        }
                        Err(e) => tracing::debug!("TURN: send to {to} failed: {e}"),
                    },
                    Command::Send {
                        via: Via::Tcp(tx),
                        data,
                        ..
                    } => {
                        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(data) {
                            stats.dropped_send.fetch_add(1, Relaxed);
                        }
                    }
                    Command::OpenRelay { request, ip } => opened.push((request, self.bind(ip))),
                    Command::CloseRelay { relay, socket } => {
                        tracing::trace!("TURN: closing relay {relay}");
                        socket.stop.cancel();
                    }
                    Command::Event(e) => {
                        if let Some(sink) = &self.shared.config.allocation_events {
                            sink(e);
                        }
                    }
                }
            }
            if opened.is_empty() {
                break;
            }
            let now = self.now();
            let mut readers = Vec::new();
            {
                let mut st = self.lock();
                for (request, socket) in opened {
                    let handle = socket.as_ref().map(|(_, s)| Arc::clone(s));
                    if let (Some(relay), Some(socket)) =
                        (st.handle_relay_opened(now, request, socket), handle)
                    {
                        readers.push((relay, socket));
                    }
                }
                drain(&mut st, &mut cmds);
            }
            for (relay, socket) in readers {
                tokio::spawn(relay_task(Arc::clone(self), relay, socket));
            }
        }
    }

    /// Binds a relay socket for [`Command::OpenRelay`].
    fn bind(&self, ip: IpAddr) -> Option<(SocketAddr, Arc<Socket>)> {
        let (lo, hi) = self.shared.config.relay_ports;
        let udp = bind_relay(ip, lo, hi)?;
        let addr = udp.local_addr().ok()?;
        let stop = self.cancel.child_token();
        Some((addr, Arc::new(Socket { udp, stop })))
    }
}

fn drain(st: &mut Core, into: &mut Vec<Cmd>) {
    while let Some(c) = st.poll_command() {
        into.push(c);
    }
}

/// Binds a UDP socket on `ip` at a random free port in `lo..=hi`.
fn bind_relay(ip: IpAddr, lo: u16, hi: u16) -> Option<UdpSocket> {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let span = u32::from(hi - lo) + 1;
    let tries = span.min(64);
    for i in 0..tries + span.min(4096) {
        // Random probes first, then a linear scan from a random start, so a nearly full
        // range still finds its free ports.
        let port = if i < tries {
            lo + rng.random_range(0..span) as u16
        } else {
            lo + ((i - tries) % span) as u16
        };
        let Ok(std) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
            continue;
        };
        if std.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok(s) = UdpSocket::from_std(std) {
            return Some(s);
        }
    }
    None
}

fn interface_ips() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs
            .into_iter()
            .map(|i| i.ip())
            // Link-local IPv6 needs a scope id to be usable; browsers do not use it for TURN.
            .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    }
}

#[derive(Default)]
struct Bound {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

/// Binds `addrs` (expanded) on TCP, and on UDP when `udp`. Port 0 picks one free port used
/// for every address and both transports.
fn bind_group(addrs: &[SocketAddr], interfaces: &[IpAddr], udp: bool) -> io::Result<Bound> {
    let mut expanded: Vec<(SocketAddr, bool)> = Vec::new();
    for a in addrs {
        if a.ip().is_unspecified() {
            for ip in interfaces.iter().filter(|ip| ip.is_ipv4() == a.is_ipv4()) {
                expanded.push((SocketAddr::new(*ip, a.port()), false));
            }
        } else {
            expanded.push((*a, true));
        }
    }
    expanded.dedup();
    let mut last_err = None;
    for _attempt in 0..20 {
        match try_bind(&expanded, udp) {
            Ok(b) if !b.tcp.is_empty() => return Ok(b),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("no STUN/TURN listen address could be bound from {addrs:?}"),
                ));
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && addrs.iter().all(|a| a.port() == 0) =>
            {
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("cannot bind STUN/TURN")))
}

fn try_bind(addrs: &[(SocketAddr, bool)], udp: bool) -> io::Result<Bound> {
    let mut out = Bound::default();
    let mut port = 0;
    for &(addr, explicit) in addrs {
        let addr = if addr.port() == 0 {
            SocketAddr::new(addr.ip(), port)
        } else {
            addr
        };
        let res = (|| -> io::Result<(Option<UdpSocket>, TcpListener)> {
            let u = if udp {
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                let sock = socket2::SockRef::from(&s);
                // Best effort: the kernel caps the sizes, which is fine.
                let _ = sock.set_recv_buffer_size(LISTENER_SOCKET_BUFFER);
                let _ = sock.set_send_buffer_size(LISTENER_SOCKET_BUFFER);
                Some(s)
            } else {
                None
            };
            let tcp_addr = match &u {
                Some(u) => u.local_addr()?,
                None => addr,
            };
            let t = std::net::TcpListener::bind(tcp_addr)?;
            t.set_nonblocking(true)?;
            Ok((
                u.map(UdpSocket::from_std).transpose()?,
                TcpListener::from_std(t)?,
            ))
        })();
        match res {
            Ok((u, t)) => {
                if port == 0 {
                    port = t.local_addr()?.port();
                }
                out.udp.extend(u);
                out.tcp.push(t);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(e) if explicit => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("STUN/TURN listen {addr}: {e}"),
                ));
            }
            Err(e) => tracing::warn!("STUN/TURN: skipping interface address {addr}: {e}"),
        }
    }
    Ok(out)
}

thread_local! {
    /// The receive buffer of every datagram socket handled on this worker thread: one per
    /// thread, not one per socket, so a relay socket costs no 64 KiB of its own (each used to
    /// hold one, ~60 KiB resident per allocation). It is only borrowed between a readiness
    /// and the end of the batch, with no `.await` in between.
    static RECV_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 65_536].into_boxed_slice());
}

/// Receives datagrams on `socket` until it is stopped: on each readiness, up to `BATCH`
/// queued datagrams are handed to the machine by `handle` under one lock, and the commands
/// are carried out after the lock is released.
async fn datagram_loop(
    socket: &Socket,
    edge: &Arc<Edge>,
    what: &str,
    mut handle: impl FnMut(&mut Core, Now, SocketAddr, &[u8]),
) {
    loop {
        tokio::select! {
            // Readiness fails only when the IO driver is gone (the runtime shuts down).
            r = socket.udp.readable() => if let Err(e) = r {
                tracing::debug!("TURN {what}: {e}");
                return;
            },
            () = socket.stop.cancelled() => return,
        }
        let now = edge.now();
        // A fresh vector per batch: one kept per task would hold its largest batch for the
        // life of every relay socket.
        let mut cmds = Vec::new();
        RECV_BUF.with_borrow_mut(|buf| {
            let mut st = None;
            for _ in 0..BATCH {
                match socket.udp.try_recv_from(buf) {
                    Ok((n, from)) => {
                        let st = st.get_or_insert_with(|| edge.lock());
                        handle(st, now, from, &buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An error for one datagram (an ICMP report of an earlier send): the
                    // next one may be fine; the batch bounds the loop.
                    Err(e) => tracing::debug!("TURN {what}: {e}"),
                }
            }
            if let Some(mut st) = st {
                drain(&mut st, &mut cmds);
            }
        });
        edge.execute(cmds);
    }
}

async fn udp_task(edge: Arc<Edge>, key: ListenerKey, socket: Arc<Socket>) {
    let what = format!("UDP {}", key.1);
    datagram_loop(&socket, &edge, &what, |st, now, from, data| {
        st.handle_client(now, key, from, data);
    })
    .await;
}

async fn relay_task(edge: Arc<Edge>, relay: SocketAddr, socket: Arc<Socket>) {
    let what = format!("relay {relay}");
    datagram_loop(&socket, &edge, &what, |st, now, from, data| {
        st.handle_peer(now, relay, from, data);
    })
    .await;
}

async fn tick_task(edge: Arc<Edge>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = edge.cancel.cancelled() => return,
        }
        edge.input(Core::handle_tick);
    }
}

async fn accept_task(
    edge: Arc<Edge>,
    key: ListenerKey,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("TURN TCP accept on {}: {e}", key.1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = edge.cancel.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let (edge, tls) = (Arc::clone(&edge), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => tcp_conn(stream, edge, key, client).await,
                Some(acceptor) => {
                    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => tcp_conn(s, edge, key, client).await,
                        Ok(Err(e)) => tracing::debug!("TURN TLS handshake with {client}: {e}"),
                        Err(_) => tracing::debug!("TURN TLS handshake with {client}: timed out"),
                    }
                }
            }
        });
    }
}

/// Length of the complete frame at the start of `buf` (STUN message or ChannelData), and its
/// length on the wire (ChannelData is padded to 4 bytes over TCP, RFC 8656 §12.5).
/// `Err` for bytes that are neither.
fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let [b0, _, l0, l1, ..] = *buf else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let (msg, wire) = match b0 >> 6 {
        0 => (20 + len, 20 + len),
        1 => (4 + len, (4 + len + 3) & !3),
        _ => return Err(()),
    };
    Ok((buf.len() >= wire).then_some((msg, wire)))
}

async fn tcp_conn<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    edge: Arc<Edge>,
    key: ListenerKey,
    client: SocketAddr,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    if !edge.input(|st, now| st.handle_tcp_open(now, key, client, tx)) {
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let deadline = tokio::time::sleep(FIRST_MESSAGE_TIMEOUT);
    tokio::pin!(deadline);
    let mut got_message = false;
    'conn: loop {
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                loop {
                    match frame(&buf) {
                        Ok(Some((len, wire))) => {
                            got_message = true;
                            edge.input(|st, now| st.handle_client(now, key, client, &buf[..len]));
                            buf.drain(..wire);
                        }
                        Ok(None) => break,
                        Err(()) => {
                            tracing::debug!("TURN TCP {client}: not STUN or ChannelData, closing");
                            break 'conn;
                        }
                    }
                }
                if buf.capacity() > 2 * MAX_FRAME {
                    buf.shrink_to(MAX_FRAME);
                }
            }
            Some(mut data) = rx.recv() => {
                if data.first().is_some_and(|b| b >> 6 == 1) {
                    let padded = (data.len() + 3) & !3;
                    data.resize(padded, 0);
                }
                if wr.write_all(&data).await.is_err() {
                    break 'conn;
                }
            }
            () = &mut deadline, if !got_message => {
                tracing::debug!("TURN TCP {client}: no message in {FIRST_MESSAGE_TIMEOUT:?}, closing");
                break 'conn;
            }
            () = edge.cancel.cancelled() => break 'conn,
        }
    }
    let _ = wr.shutdown().await;
    edge.input(|st, now| st.handle_tcp_closed(now, key, client));
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_stun_and_padded_channel_data() {
        assert_eq!(frame(&[0, 1, 0]), Ok(None));
        let mut stun = vec![0u8, 1, 0, 4];
        stun.extend([0; 20]);
        assert_eq!(frame(&stun), Ok(Some((24, 24))));
        assert_eq!(frame(&stun[..23]), Ok(None));
        // ChannelData with 5 bytes of data: 9 on the wire plus 3 of padding.
        let mut cd = vec![0x40u8, 0, 0, 5, 1, 2, 3, 4, 5];
        assert_eq!(frame(&cd), Ok(None));
        cd.extend([0, 0, 0]);
        assert_eq!(frame(&cd), Ok(Some((9, 12))));
        assert_eq!(frame(&[0x80, 0, 0, 0]), Err(()));
        assert_eq!(frame(&[0xff, 0, 0, 0]), Err(()));
    }
}
