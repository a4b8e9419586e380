//! Server settings.

use std::net::SocketAddr;
use std::time::Duration;

/// Counters kept by another part of the process (the built-in TURN server), read when
/// `/api/v1/stats` is asked for. The server knows nothing of what they count.
#[derive(Clone)]
pub struct StatsSource(pub std::sync::Arc<dyn Fn() -> serde_json::Value + Send + Sync>);

impl StatsSource {
    /// A source that calls `read` for each request.
    pub fn new(read: impl Fn() -> serde_json::Value + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(read))
    }
}

impl std::fmt::Debug for StatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsSource")
    }
}

/// Settings of the IO edge, with the hub's own settings inside.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Rules and limits of the hub (idle timeout, connection limit, ICE servers).
    pub hub: switchboard_core::Config,
    /// Largest WebSocket message or frame accepted, in bytes; a larger one closes the
    /// socket with code 1009. Browser SDP with audio, video and data is 3–10 KiB.
    /// Default 64 KiB.
    pub max_message_size: usize,
    /// Messages that may wait for one connection; a client that stops reading is dropped
    /// when its queue is full. Default 1024: room for a burst (in cluster mode messages
    /// from another node arrive a Redis round trip's worth at a time); memory is bounded by
    /// `max_queued_bytes_per_connection`, and an idle queue holds nothing.
    pub outbound_queue: usize,
    /// Initial read buffer per socket; it grows for a larger frame. The usual default is
    /// 128 KiB, which dominates idle memory; most signaling frames are a few hundred bytes.
    /// Default 256 bytes: each byte here is a byte of every idle connection.
    pub read_buffer_size: usize,
    /// Bytes written per socket before a flush is forced. Default 16 KiB.
    pub write_buffer_size: usize,
    /// Bytes that may wait in one connection's outbound queue (estimated from the messages'
    /// contents); a client that lets more pile up is dropped as not reading. Default 1 MiB.
    pub max_queued_bytes_per_connection: usize,
    /// Bytes waiting in all connections' outbound queues together; a message that would go
    /// beyond drops its receiver as not reading. Default 256 MiB.
    pub max_queued_bytes: usize,
    /// Inputs that may wait for the hub before connection readers are paused. Default 8192.
    pub hub_queue: usize,
    /// How long shutdown waits for clients to receive `server_will_stop` and close.
    /// Default 5 s.
    pub shutdown_grace: Duration,
    /// Mount path of the PeerJS server (HTTP endpoints and the `peerjs` WebSocket), starting
    /// and ending with `/`. Default `/peerjs/` (PeerJS clients then use `path: "/peerjs"`).
    pub peerjs_path: String,
    /// The built-in STUN/TURN server's counters, if it runs: served under `"turn"` at
    /// `/api/v1/stats` (`null` when `None`).
    pub turn_stats: Option<StatsSource>,
    /// The built-in STUN/TURN server's metrics, if it runs: added to each `/metrics` scrape.
    pub turn_metrics: Option<crate::metrics::MetricsSource>,
    /// `/metrics`: on or off, its key, the bound on its per-app labels.
    pub metrics: crate::metrics::MetricsConfig,
    /// The admin API's key (`Authorization: Bearer <key>`); `None`: the admin API is off.
    pub admin_key: Option<std::sync::Arc<str>>,
    /// Webhooks: where events go and the signing secret; `None`: off.
    pub webhooks: Option<crate::webhooks::WebhookConfig>,
    /// Webhook senders already started (by the binary, to share them with the TURN server);
    /// `None`: the server starts its own from [`ServerConfig::webhooks`].
    pub webhook_sink: Option<crate::webhooks::WebhookSink>,
    /// A connection that has not sent a whole HTTP request head this long after it opened
    /// (or after its previous response) is closed: one that sends nothing, or a header byte
    /// by byte, cannot hold a file descriptor. Default 10 s.
    pub header_timeout: Duration,
    /// TCP connections at once from one IP address (IPv4-mapped addresses count as IPv4);
    /// more are closed at accept (but for `trusted_proxies`). 0: no limit. Default 512.
    pub max_connections_per_ip: usize,
    /// Reverse proxies and load balancers in front of the server: requests on their
    /// connections are from the client their `X-Forwarded-For` names, and their connections
    /// count against `max_open_connections` only. Default: none (the header is ignored).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// TCP connections at once in total (WebSocket, socket.io, plain HTTP); more are closed at
    /// accept. Keep it below the process's open-file limit (the binary derives it from that
    /// limit). Default 60,000.
    pub max_open_connections: usize,
    /// Engine.IO (socket.io) sessions at once, opened by a polling handshake and not yet
    /// silent for a minute; more handshakes get `503`. Each costs ~13 KB before its client
    /// connects a namespace. 0: no limit. Default 10,000.
    pub max_socketio_sessions: usize,
    /// Engine.IO sessions at once from one IP address (IPv6: one /64); more get `429`.
    /// 0: no limit. Default 100.
    pub max_socketio_sessions_per_ip: usize,
    /// Web origins allowed to use the server from a browser (WebSocket upgrades, socket.io,
    /// the PeerJS routes, `/api/`); others get 403 ([`crate::OriginRule`]). The server's own
    /// origin is always allowed. `None` (the default): any origin.
    pub allowed_origins: Option<std::sync::Arc<[crate::OriginRule]>>,
    /// Serve HTTPS and WSS with this TLS configuration (e.g. [`crate::CertReloader`]'s, whose
    /// certificate can be replaced while the server runs); `None` (the default): plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Cluster mode: this node's lease and view of the cluster in Redis ([`crate::ClusterConfig`]).
    /// `None` (the default): a single node, no Redis.
    pub cluster: Option<crate::ClusterConfig>,
}

impl ServerConfig {
    /// Checks every setting's range, the hub's included. [`crate::run`] refuses a
    /// configuration that fails this.
    ///
    /// # Errors
    /// The first setting out of its range.
    pub fn validate(&self) -> Result<(), switchboard_core::InvalidConfig> {
        let check = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(switchboard_core::InvalidConfig(msg.to_owned()))
            }
        };
        self.hub.validate()?;
        if let Some(c) = &self.cluster {
            c.validate().map_err(switchboard_core::InvalidConfig)?;
        }
        if let Some(w) = &self.webhooks {
            w.validate().map_err(switchboard_core::InvalidConfig)?;
        }
        check(
            self.max_message_size >= 1024,
            "max_message_size must be at least 1024 bytes",
        )?;
        check(
            self.outbound_queue >= 1,
            "outbound_queue must be at least 1",
        )?;
        check(
            self.max_queued_bytes_per_connection >= self.max_message_size,
            "max_queued_bytes_per_connection must be at least max_message_size",
        )?;
        check(
            self.max_queued_bytes >= self.max_message_size,
            "max_queued_bytes must be at least max_message_size",
        )?;
        check(
            (64..=1 << 20).contains(&self.read_buffer_size),
            "read_buffer_size must be between 64 bytes and 1 MiB",
        )?;
        check(
            self.header_timeout >= Duration::from_secs(1),
            "header_timeout must be at least 1 s",
        )?;
        let inner = self.peerjs_path.trim_matches('/');
        check(
            self.peerjs_path.starts_with('/')
                && self.peerjs_path.ends_with('/')
                && !inner.is_empty()
                && inner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)),
            "peerjs_path must be a path like /peerjs/ (letters, digits, - _ . /), not the site root",
        )
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hub: switchboard_core::Config::default(),
            max_message_size: 64 * 1024,
            outbound_queue: 1024,
            read_buffer_size: 256,
            write_buffer_size: 16 * 1024,
            max_queued_bytes_per_connection: 1 << 20,
            max_queued_bytes: 256 << 20,
            hub_queue: 8192,
            shutdown_grace: Duration::from_secs(5),
            peerjs_path: "/peerjs/".to_owned(),
            turn_stats: None,
            turn_metrics: None,
            metrics: crate::metrics::MetricsConfig::default(),
            admin_key: None,
            webhooks: None,
            webhook_sink: None,
            header_timeout: Duration::from_secs(10),
            max_connections_per_ip: 512,
            trusted_proxies: Vec::new(),
            max_open_connections: 60_000,
            max_socketio_sessions: 10_000,
            max_socketio_sessions_per_ip: 100,
            allowed_origins: None,
            tls: None,
            cluster: None,
        }
    }
}

/// The default listening address: every interface, Ant Media's port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 5080);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn validation_covers_the_edge_and_the_hub() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert!(bad(|c| c.peerjs_path = "//".into()).contains("not the site root"));
        assert!(bad(|c| c.max_queued_bytes = 10).contains("max_queued_bytes"));
        assert!(bad(|c| c.read_buffer_size = 1).contains("read_buffer_size"));
        assert!(bad(|c| c.hub.sio_max_room_peers = 0).contains("at least 2"));
    }
}
