//! Sockets and addresses: host UDP sockets, STUN requests, ICE server lookup.

use super::*;

/// One UDP socket per IPv4 interface address (loopback included), so each candidate's
/// address is the socket's own.
/// A UDP socket: a tokio task reads it; sends go straight to the system call through a
/// clone of the same socket. (tokio's `try_send_to` does not even try until its reactor has
/// seen the socket writable, so the first datagrams of a new socket were silently dropped:
/// a 500 ms TURN retransmission, or an ICE check retried later.)
pub(crate) struct Sock {
    pub(crate) rx: Arc<UdpSocket>,
    pub(crate) tx: std::net::UdpSocket,
}

impl Sock {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Sock> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let tx = std.try_clone()?;
        Ok(Sock {
            rx: Arc::new(UdpSocket::from_std(std)?),
            tx,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tx.local_addr()
    }

    /// Sends a datagram now; a full socket buffer drops it, as the network would.
    pub(crate) fn send_to(&self, data: &[u8], to: SocketAddr) {
        if let Err(e) = self.tx.send_to(data, to) {
            tracing::trace!("UDP send to {to}: {e}");
        }
    }
}

pub(crate) async fn bind_host_sockets() -> Result<Vec<Sock>, PeerError> {
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

pub(crate) fn turn_now(base: Instant) -> turn_client_proto::types::Instant {
    turn_client_proto::types::Instant::from_std(base)
}

/// The first UDP `turn:` server with credentials, resolved, and its username and password.
pub(crate) async fn turn_server_of(servers: &[IceServer]) -> Option<(SocketAddr, String, String)> {
    for server in servers {
        let (Some(user), Some(pass)) = (&server.username, &server.credential) else {
            continue;
        };
        for url in &server.urls {
            let Some(rest) = url.strip_prefix("turn:") else {
                continue;
            };
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !(query.is_empty() || query == "transport=udp") {
                continue;
            }
            if let Some(addr) = resolve_ipv4(hostport).await {
                return Some((addr, user.clone(), pass.clone()));
            }
        }
    }
    None
}

/// A STUN Binding request: its transaction id and bytes.
pub(crate) fn binding_request() -> (
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

/// The first `stun:` server, resolved, else the UDP TURN server (which answers STUN too).
pub(crate) async fn stun_server_of(servers: &[IceServer]) -> Option<SocketAddr> {
    for url in servers.iter().flat_map(|s| &s.urls) {
        let Some(rest) = url.strip_prefix("stun:") else {
            continue;
        };
        if let Some(addr) = resolve_ipv4(rest.split_once('?').map_or(rest, |(h, _)| h)).await {
            return Some(addr);
        }
    }
    turn_server_of(servers).await.map(|(a, _, _)| a)
}

/// Resolves `host[:port]` (default port 3478) to its first IPv4 address.
pub(crate) async fn resolve_ipv4(hostport: &str) -> Option<SocketAddr> {
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
