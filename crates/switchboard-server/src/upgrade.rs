//! The WebSocket upgrade, and the socket reader that keeps idle connections small.
//!
//! tungstenite reads at most `read_buffer_size` bytes per `read` call and keeps a buffer of
//! that size per socket. A small buffer makes idle connections cheap, but on a busy socket it
//! costs one `recv` syscall per few hundred bytes (measured: 40% less relay throughput at
//! 256 bytes than at 1 KiB). [`Coalesce`] removes the trade-off: each `recv` reads up to 16 KiB
//! into one buffer shared by every socket of a runtime thread, hands tungstenite what fits,
//! and keeps the rest in a per-socket spill that exists only while it holds bytes. An idle
//! socket holds a 256-byte tungstenite buffer and no spill; a busy one drains a burst of
//! messages per syscall.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// A server-side WebSocket over an upgraded HTTP connection.
pub(crate) type Socket = WebSocketStream<Coalesce<TokioIo<hyper::upgrade::Upgraded>>>;

/// Bytes one `recv` may take from a socket (the shared buffer's size).
const SCRATCH: usize = 16 * 1024;

thread_local! {
    /// One read buffer per runtime thread, shared by all its sockets.
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// A reader that takes big reads from the socket and hands them out in small pieces (see the
/// module docs). Writes pass straight through.
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    io: S,
    /// Bytes read but not yet handed out; empty (unallocated) when idle.
    spill: Vec<u8>,
    /// How much of `spill` was handed out.
    pos: usize,
    /// A read found the socket empty since [`Coalesce::ran_dry`] was last asked.
    dry: bool,
}

impl<S> Coalesce<S> {
    /// Wraps `io`.
    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            spill: Vec::new(),
            pos: 0,
            dry: false,
        }
    }

    /// Whether a read found the socket empty since the last call (the reader has caught up).
    pub(crate) fn ran_dry(&mut self) -> bool {
        std::mem::take(&mut self.dry)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.spill.len() {
            let n = buf.remaining().min(this.spill.len() - this.pos);
            buf.put_slice(&this.spill[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.spill.len() {
                // Keep the allocation while the socket is busy (the next burst reuses it);
                // it is freed when a read finds the socket empty.
                this.spill.clear();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH {
            let read = Pin::new(&mut this.io).poll_read(cx, buf);
            this.dry |= read.is_pending();
            return read;
        }
        SCRATCH_BUF.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Re-entered from inside a read (cannot happen with tokio's IO): read directly.
                let read = Pin::new(&mut this.io).poll_read(cx, buf);
                this.dry |= read.is_pending();
                return read;
            };
            let mut big = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut this.io).poll_read(cx, &mut big) {
                Poll::Ready(Ok(())) => {
                    let got = big.filled();
                    let n = buf.remaining().min(got.len());
                    buf.put_slice(&got[..n]);
                    if n < got.len() {
                        this.spill.extend_from_slice(&got[n..]);
                        this.pos = 0;
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => {
                    this.dry = true;
                    // Idle: give the spill's memory back.
                    if this.spill.capacity() > 0 {
                        this.spill = Vec::new();
                    }
                    Poll::Pending
                }
                other => other,
            }
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why a request was not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No `Connection: upgrade` / `Upgrade: websocket`.
    NotWebSocket,
    /// `Sec-WebSocket-Version` is not 13.
    Version,
    /// No `Sec-WebSocket-Key`.
    NoKey,
    /// A `Sec-WebSocket-Key` that is not the base64 of 16 bytes (RFC 6455 §4.1).
    BadKey,
    /// No `Host` header (required in HTTP/1.1).
    NoHost,
    /// The connection cannot be upgraded (not HTTP/1.1).
    NotUpgradable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::NotWebSocket => (
                StatusCode::UPGRADE_REQUIRED,
                "this is a WebSocket endpoint: send Connection: upgrade and Upgrade: websocket\n",
            ),
            Self::Version => (
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version (13 is supported)\n",
            ),
            Self::NoKey => (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"),
            Self::BadKey => (
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be the base64 of 16 bytes (24 characters ending in ==)\n",
            ),
            Self::NoHost => (StatusCode::BAD_REQUEST, "missing Host header\n"),
            Self::NotUpgradable => (
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (HTTP/1.1 is required)\n",
            ),
        };
        let mut res = (status, text).into_response();
        if self == Self::Version {
            res.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        res
    }
}

/// Checks a WebSocket handshake request (RFC 6455 §4.2.1) and takes its upgrade. Returns the
/// pending upgrade and the `101 Switching Protocols` response.
pub(crate) fn accept(req: &mut Request) -> Result<(OnUpgrade, Response), Refused> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(Refused::NotWebSocket);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refused::Version);
    }
    if !headers.contains_key(header::HOST) {
        return Err(Refused::NoHost);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refused::NoKey);
    };
    if !is_websocket_key(key.as_bytes()) {
        return Err(Refused::BadKey);
    }
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(Refused::NotUpgradable);
    };
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h: &mut HeaderMap = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok((on_upgrade, res))
}

/// Whether `key` is the base64 of 16 bytes: 22 base64 characters (the last one carrying only
/// two bits: `A`, `Q`, `g` or `w`) and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..22].iter().all(b64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

/// The WebSocket over a completed upgrade.
pub(crate) async fn socket(
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
) -> hyper::Result<Socket> {
    let upgraded = on_upgrade.await?;
    Ok(WebSocketStream::from_raw_socket(
        Coalesce::new(TokioIo::new(upgraded)),
        Role::Server,
        Some(config),
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn small_reads_of_a_big_read_keep_order_and_free_the_spill() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = Coalesce::new(&data[..]);
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let n = r.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            assert!(n <= 256);
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(out, data);
        assert!(r.spill.is_empty());
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_spill_is_freed_when_the_socket_goes_idle() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut r = Coalesce::new(rx);
        tx.write_all(&[7u8; 10_000]).await.expect("write");
        let mut chunk = [0u8; 256];
        let mut got = 0;
        while got < 10_000 {
            got += r.read(&mut chunk).await.expect("read");
        }
        assert!(r.spill.capacity() > 0, "kept while busy");
        // Nothing more to read: the next read is pending, and the spill is gone.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read(&mut chunk));
        assert!(pending.await.is_err());
        assert_eq!(r.spill.capacity(), 0, "an idle reader holds no spill");
    }
}
