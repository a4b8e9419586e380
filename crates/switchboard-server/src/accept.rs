//! The accept loop: TCP connections admitted under the connection limits, each served by
//! hyper's HTTP/1 connection with a header deadline (with upgrades, for WebSockets).
//!
//! Limits, all counted in [`EdgeStats`] (served at `/api/v1/stats` under `"http"`):
//! - [`crate::ServerConfig::max_open_connections`]: TCP connections at once, set below the
//!   process's open-file limit; beyond it a new connection is closed at once.
//! - [`crate::ServerConfig::max_connections_per_ip`]: TCP connections at once from one IP
//!   address (one attacker cannot take every descriptor).
//! - [`crate::ServerConfig::header_timeout`]: a connection that has not sent a whole request
//!   head this long after it opened (or after its previous response) is closed: a client that
//!   sends nothing, or a header byte by byte, cannot hold a descriptor.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use ipnet::IpNet;

use crate::ServerConfig;
use crate::forwarded::{client_addr, is_trusted};

/// Counters of the HTTP edge.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// TCP connections open now.
    pub open: AtomicU64,
    /// Connections closed at accept: `max_open_connections` reached.
    pub refused_open_limit: AtomicU64,
    /// Connections closed at accept: `max_connections_per_ip` reached for their address.
    pub refused_per_ip: AtomicU64,
    /// Connections closed because no whole request head arrived within `header_timeout`.
    pub header_timeouts: AtomicU64,
    /// `GET /api/v1/ice-servers` requests refused 401 for want of a valid room token.
    pub ice_unauthorized: AtomicU64,
    /// Browser requests refused 403: their `Origin` is not in `--allowed-origins`.
    pub refused_origin: AtomicU64,
    /// TLS handshakes that failed (a client that does not trust the certificate, plain HTTP
    /// sent to the TLS port, a scanner).
    pub tls_handshake_failures: AtomicU64,
}

impl EdgeStats {
    /// The counters as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "open": self.open.load(Relaxed),
            "refused_open_limit": self.refused_open_limit.load(Relaxed),
            "refused_per_ip": self.refused_per_ip.load(Relaxed),
            "header_timeouts": self.header_timeouts.load(Relaxed),
            "ice_unauthorized": self.ice_unauthorized.load(Relaxed),
            "refused_origin": self.refused_origin.load(Relaxed),
            "tls_handshake_failures": self.tls_handshake_failures.load(Relaxed),
        })
    }
}

/// Open connections per IP address, and the total.
#[derive(Debug)]
struct Admission {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<EdgeStats>,
    max_open: usize,
    max_per_ip: usize,
    /// Reverse proxies: their connections carry many clients, so only the total counts them.
    trusted: Arc<[IpNet]>,
}

/// Held by an admitted connection (inside its IO, so an upgraded WebSocket keeps it); gives
/// the place back when dropped.
#[derive(Debug)]
struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.stats.open.fetch_sub(1, Relaxed);
        if let Ok(mut m) = self.admission.per_ip.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a connection was not admitted.
enum Refusal {
    Open,
    PerIp,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let proxy = is_trusted(&self.trusted, ip);
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
        let ip = switchboard_core::source_key(ip);
        let mut m = self.per_ip.lock().map_err(|_| Refusal::Open)?;
        if self.stats.open.load(Relaxed) as usize >= self.max_open {
            self.stats.refused_open_limit.fetch_add(1, Relaxed);
            return Err(Refusal::Open);
        }
        let n = m.entry(ip).or_insert(0);
        if self.max_per_ip > 0 && *n >= self.max_per_ip && !proxy {
            self.stats.refused_per_ip.fetch_add(1, Relaxed);
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.stats.open.fetch_add(1, Relaxed);
        Ok(Admitted {
            admission: Arc::clone(self),
            ip,
        })
    }
}

/// A TCP stream with its place in the limits.
#[derive(Debug)]
pub(crate) struct Stream {
    tcp: TcpStream,
    _admitted: Admitted,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Accepts connections until `stop` resolves; then asks every HTTP connection to finish its
/// request and close, and returns the (closed) tracker of their tasks to wait on. Upgraded
/// WebSockets are not among them: the hub's shutdown closes those.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    stats: Arc<EdgeStats>,
    stop: impl std::future::Future<Output = ()>,
) -> TaskTracker {
    let trusted: Arc<[IpNet]> = config.trusted_proxies.clone().into();
    let admission = Arc::new(Admission {
        per_ip: Mutex::new(HashMap::new()),
        stats: Arc::clone(&stats),
        max_open: config.max_open_connections,
        max_per_ip: config.max_connections_per_ip,
        trusted: Arc::clone(&trusted),
    });
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let tasks = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let mut log = crate::RateLimited::default();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, remote): (TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: wait a little, as axum does.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let admitted = match admission.admit(remote.ip()) {
            Ok(a) => a,
            Err(why) => {
                if let Some(quiet) = log.due() {
                    let what = match why {
                        Refusal::Open => "max_open_connections reached",
                        Refusal::PerIp => "max_connections_per_ip reached for its address",
                    };
                    tracing::info!(
                        "refused a connection from {}: {what} ({quiet} more refused since the last line)",
                        remote.ip()
                    );
                }
                continue; // dropping the stream closes it
            }
        };
        // Signaling messages are small and latency-bound: without TCP_NODELAY, Nagle's
        // algorithm holds a reply back until the previous segment is acknowledged.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let stream = Stream {
            tcp,
            _admitted: admitted,
        };
        let service = TowerToHyperService::new(WithClient {
            app: app.clone(),
            peer: remote,
            trusted: Arc::clone(&trusted),
        });
        let stats = Arc::clone(&stats);
        let closing = closing.clone();
        let builder = builder.clone();
        match &tls {
            None => {
                tasks.spawn(serve_one(builder, stream, service, stats, closing, remote));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = config.header_timeout;
                tasks.spawn(async move {
                    // The handshake counts against the header timeout: a client that opens
                    // TLS and stalls holds nothing longer than one that stalls in HTTP.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_one(builder, tls, service, stats, closing, remote).await
                        }
                        Ok(Err(e)) => {
                            stats.tls_handshake_failures.fetch_add(1, Relaxed);
                            tracing::debug!("TLS handshake with {remote} failed: {e}");
                        }
                        Err(_) => {
                            stats.header_timeouts.fetch_add(1, Relaxed);
                            tracing::debug!("TLS handshake with {remote} timed out");
                        }
                    }
                });
            }
        }
    }
    closing.cancel();
    tasks.close();
    tasks
}

/// Serves one HTTP/1.1 connection (plain or TLS) with upgrades, until it ends or, after
/// `closing`, until its request in progress is answered.
async fn serve_one<I>(
    builder: hyper::server::conn::http1::Builder,
    io: I,
    service: TowerToHyperService<WithClient>,
    stats: Arc<EdgeStats>,
    closing: CancellationToken,
    remote: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            stats.header_timeouts.fetch_add(1, Relaxed);
        }
        tracing::debug!("connection from {remote}: {e}");
    }
}

/// The address a request came from, in its extensions: the hub's per-source limits use it.
/// From a trusted proxy, the client it names (see [`crate::forwarded`]; port 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// The router, with each request marked with its [`ClientAddr`].
#[derive(Clone)]
struct WithClient {
    app: Router,
    /// The connection's address.
    peer: SocketAddr,
    trusted: Arc<[IpNet]>,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithClient
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        let addr = client_addr(self.peer, req.headers(), &self.trusted);
        req.extensions_mut().insert(ClientAddr(addr));
        self.app.call(req)
    }
}
