//! Protocol drivers: how a load peer connects, pairs up, sends a relayed message and reads
//! one, for each signaling protocol measured.
//!
//! Every protocol carries the same payload: an ICE candidate (the most frequent signaling
//! message) whose candidate string ends in `sbseq=<n> sbts=<ns>`, the sender's sequence number
//! and send time. Servers relay it untouched, so the receiver finds both by a text search;
//! the load tool never parses a whole message on the hot path.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A load peer's WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// How long one set-up step may take before the run fails.
const STEP: Duration = Duration::from_secs(15);

/// The candidate text before the sequence number: a realistic server-reflexive candidate.
const CANDIDATE: &str = "candidate:842163049 1 udp 1677729535 198.51.100.23 54400 typ srflx \
                         raddr 10.0.0.2 rport 54400 generation 0 ufrag 7sFv network-cost 999";

/// A signaling protocol the load tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// Ant Media P2P (`/<app>/websocket`): join a room of two, relay `takeCandidate`.
    Antmedia,
    /// socket.io v5 over the websocket transport (`/socket.io/`): relay `ice-candidate` to a
    /// `target` socket id (the seed relay's contract).
    Socketio,
    /// The PeerJS server protocol (`<path>peerjs`): relay `CANDIDATE` to a `dst` id.
    Peerjs,
    /// matchbox_server (`/<room>`): relay `Signal` to a `receiver` peer id.
    Matchbox,
}

impl Protocol {
    /// Name used in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Antmedia => "antmedia",
            Self::Socketio => "socketio",
            Self::Peerjs => "peerjs",
            Self::Matchbox => "matchbox",
        }
    }
}

/// Where and how to reach the server under load.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The protocol spoken.
    pub(crate) protocol: Protocol,
    /// The servers' addresses: connection `n` goes to `addrs[n % len]`, so the two peers of
    /// a pair (connections `2i` and `2i + 1`) are on two servers (nodes of a cluster) when
    /// there are several.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Ant Media application name (the first path segment).
    pub(crate) app: String,
    /// PeerJS mount path, starting and ending with `/`.
    pub(crate) peerjs_path: String,
    /// Unique per run, so room names and ids never collide with an earlier run's.
    pub(crate) tag: String,
    /// Local addresses to connect from, in turn (loopback has ~28k ephemeral ports each).
    pub(crate) sources: Vec<IpAddr>,
}

/// One side of a connected pair.
pub(crate) struct Peer {
    /// The socket.
    pub(crate) ws: Ws,
    /// Ant Media room (stream id).
    pub(crate) room: String,
    /// The partner's id (socket.io socket id, PeerJS id, matchbox peer id).
    pub(crate) to: String,
}

/// What a received text frame is.
pub(crate) enum Frame<'a> {
    /// A relayed load message.
    Data {
        /// Sender's sequence number.
        seq: u64,
        /// Sender's send time, ns since the tool's epoch.
        ts: u64,
    },
    /// socket.io ping: answer `3`.
    Ping,
    /// Anything else (errors, notifications).
    Other(&'a str),
}

/// Reads the load marker of a relayed message, if it is one.
pub(crate) fn classify(protocol: Protocol, text: &str) -> Frame<'_> {
    if let Some(at) = text.find("sbseq=") {
        let rest = &text[at + 6..];
        let seq_end = rest.find(' ').unwrap_or(rest.len());
        let seq = rest[..seq_end].parse().ok();
        let ts = rest[seq_end..]
            .strip_prefix(" sbts=")
            .map(|r| {
                let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                &r[..end]
            })
            .and_then(|t| t.parse().ok());
        if let (Some(seq), Some(ts)) = (seq, ts) {
            return Frame::Data { seq, ts };
        }
    }
    if protocol == Protocol::Socketio && text == "2" {
        return Frame::Ping;
    }
    Frame::Other(text)
}

/// Appends one relayed load message from `peer` to its partner.
pub(crate) fn data(protocol: Protocol, out: &mut String, room: &str, to: &str, seq: u64, ts: u64) {
    // `write!` to a String cannot fail.
    let _ = match protocol {
        Protocol::Antmedia => write!(
            out,
            r#"{{"command":"takeCandidate","streamId":"{room}","label":0,"id":"0","candidate":"{CANDIDATE} sbseq={seq} sbts={ts}"}}"#
        ),
        Protocol::Socketio => write!(
            out,
            r#"42["ice-candidate",{{"target":"{to}","candidate":{{"candidate":"{CANDIDATE} sbseq={seq} sbts={ts}","sdpMid":"0","sdpMLineIndex":0}}}}]"#
        ),
        Protocol::Peerjs => write!(
            out,
            r#"{{"type":"CANDIDATE","dst":"{to}","payload":{{"candidate":{{"candidate":"{CANDIDATE} sbseq={seq} sbts={ts}","sdpMid":"0","sdpMLineIndex":0}},"type":"data","connectionId":"dc_load"}}}}"#
        ),
        Protocol::Matchbox => write!(
            out,
            r#"{{"Signal":{{"receiver":"{to}","data":{{"candidate":"{CANDIDATE} sbseq={seq} sbts={ts}","sdpMid":"0","sdpMLineIndex":0}}}}}}"#
        ),
    };
}

/// Socket settings of load peers: small buffers, so tens of thousands of idle peers fit.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(1 << 20))
}

/// Opens a WebSocket to `path` (with query), from the `n`th source address.
pub(crate) async fn connect(target: &Target, path: &str, n: usize) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4().context("creating a TCP socket")?;
    if !target.sources.is_empty() {
        let ip = target.sources[n % target.sources.len()];
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding {ip}"))?;
    }
    let Some(&addr) = target.addrs.get(n % target.addrs.len().max(1)) else {
        bail!("no server address");
    };
    let stream = timeout(STEP, socket.connect(addr))
        .await
        .context("TCP connect timed out")?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) = timeout(
        STEP,
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config())),
    )
    .await
    .context("WebSocket handshake timed out")?
    .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(ws)
}

/// Sends one text frame.
pub(crate) async fn send(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await.context("sending")
}

/// Reads text frames until one satisfies `want`; answers socket.io pings on the way.
pub(crate) async fn wait_for(
    ws: &mut Ws,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    loop {
        let msg = timeout(STEP, ws.next())
            .await
            .with_context(|| format!("timed out waiting for {what}"))?;
        match msg {
            Some(Ok(Message::Text(t))) if want(&t) => return Ok(t.to_string()),
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => send(ws, "3".into()).await?,
            Some(Ok(Message::Text(t))) if t.contains("\"error\"") || t.contains("ERROR") => {
                bail!("server error while waiting for {what}: {t}")
            }
            Some(Ok(Message::Close(c))) => bail!("closed while waiting for {what}: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).with_context(|| format!("waiting for {what}")),
            None => bail!("connection ended while waiting for {what}"),
        }
    }
}

/// Connects pair number `pair` (two peers that relay to each other); `n` picks the source
/// addresses. Returns when both can send.
pub(crate) async fn pair(target: &Target, pair: u64, n: usize) -> anyhow::Result<(Peer, Peer)> {
    let tag = &target.tag;
    match target.protocol {
        Protocol::Antmedia => {
            let room = format!("{tag}-{pair}");
            let path = format!("/{}/websocket", target.app);
            let join = format!(r#"{{"command":"join","streamId":"{room}"}}"#);
            let joined = |t: &str| t.contains(r#""definition":"joined""#);
            let mut a = connect(target, &path, n).await?;
            send(&mut a, join.clone()).await?;
            wait_for(&mut a, "joined", joined).await?;
            let mut b = connect(target, &path, n + 1).await?;
            send(&mut b, join).await?;
            wait_for(&mut b, "joined", joined).await?;
            wait_for(&mut a, "start", |t| t.contains(r#""command":"start""#)).await?;
            Ok((
                Peer {
                    ws: a,
                    room: room.clone(),
                    to: String::new(),
                },
                Peer {
                    ws: b,
                    room,
                    to: String::new(),
                },
            ))
        }
        Protocol::Socketio => {
            let path = "/socket.io/?EIO=4&transport=websocket";
            let mut ids = Vec::with_capacity(2);
            let mut socks = Vec::with_capacity(2);
            for side in 0..2 {
                let mut ws = connect(target, path, n + side).await?;
                wait_for(&mut ws, "Engine.IO open", |t| t.starts_with('0')).await?;
                send(&mut ws, "40".into()).await?;
                let ok = wait_for(&mut ws, "socket.io connect", |t| t.starts_with("40")).await?;
                let v: serde_json::Value =
                    serde_json::from_str(&ok[2..]).context("socket.io CONNECT payload")?;
                let sid = v["sid"].as_str().context("socket.io CONNECT without sid")?;
                ids.push(sid.to_owned());
                socks.push(ws);
            }
            two(socks, ids, String::new())
        }
        Protocol::Peerjs => {
            let mut ids = Vec::with_capacity(2);
            let mut socks = Vec::with_capacity(2);
            for side in 0..2u64 {
                let id = format!("{tag}-{pair}-{side}");
                let path = format!(
                    "{}peerjs?key=peerjs&id={id}&token=t{pair}&version=1.5.5",
                    target.peerjs_path
                );
                let mut ws = connect(target, &path, n + side as usize).await?;
                wait_for(&mut ws, "OPEN", |t| t.contains(r#""OPEN""#)).await?;
                ids.push(id);
                socks.push(ws);
            }
            two(socks, ids, String::new())
        }
        Protocol::Matchbox => {
            let path = format!("/{tag}-{pair}");
            let assigned = |t: &str| t.contains("IdAssigned");
            let mut ids = Vec::with_capacity(2);
            let mut socks = Vec::with_capacity(2);
            for side in 0..2 {
                let mut ws = connect(target, &path, n + side).await?;
                let t = wait_for(&mut ws, "IdAssigned", assigned).await?;
                let v: serde_json::Value = serde_json::from_str(&t).context("IdAssigned")?;
                let id = v["IdAssigned"].as_str().context("IdAssigned without id")?;
                ids.push(id.to_owned());
                socks.push(ws);
            }
            wait_for(&mut socks[0], "NewPeer", |t| t.contains("NewPeer")).await?;
            two(socks, ids, String::new())
        }
    }
}

fn two(mut socks: Vec<Ws>, mut ids: Vec<String>, room: String) -> anyhow::Result<(Peer, Peer)> {
    let (Some(b), Some(a), Some(id_b), Some(id_a)) =
        (socks.pop(), socks.pop(), ids.pop(), ids.pop())
    else {
        bail!("pair set-up lost a socket");
    };
    Ok((
        Peer {
            ws: a,
            room: room.clone(),
            to: id_b,
        },
        Peer {
            ws: b,
            room,
            to: id_a,
        },
    ))
}

/// Leaves the room (where the protocol has a leave) and closes the socket, waiting briefly
/// for the server's close.
pub(crate) async fn leave(protocol: Protocol, mut peer: Peer) {
    if protocol == Protocol::Antmedia {
        let leave = format!(r#"{{"command":"leave","streamId":"{}"}}"#, peer.room);
        let _ = peer.ws.feed(Message::text(leave)).await;
    }
    let _ = peer.ws.close(None).await;
    let _ = timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = peer.ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_envelope_is_json_and_carries_the_marker() {
        for protocol in [
            Protocol::Antmedia,
            Protocol::Socketio,
            Protocol::Peerjs,
            Protocol::Matchbox,
        ] {
            let mut out = String::new();
            data(protocol, &mut out, "room-1", "peer-2", 42, 123_456);
            let json = out.strip_prefix("42").unwrap_or(&out);
            assert!(
                serde_json::from_str::<serde_json::Value>(json).is_ok(),
                "{protocol:?}: {out}"
            );
            match classify(protocol, &out) {
                Frame::Data { seq, ts } => assert_eq!((seq, ts), (42, 123_456)),
                _ => panic!("{protocol:?}: marker not found in {out}"),
            }
        }
        assert!(matches!(classify(Protocol::Socketio, "2"), Frame::Ping));
        assert!(matches!(
            classify(Protocol::Antmedia, "2"),
            Frame::Other("2")
        ));
        assert!(matches!(
            classify(Protocol::Antmedia, r#"{"candidate":"sbseq=x sbts=1"}"#),
            Frame::Other(_)
        ));
    }
}
