//! `switchboard serve` settings: flags, environment and TOML file, merged over defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use switchboard_core::RateLimit;
use switchboard_core::ice::{DEFAULT_TURN_TTL, TurnRest};
use switchboard_proto::{IceServer, is_turn_url};
use switchboard_server::{DEFAULT_LISTEN, ServerConfig};
use switchboard_turn::{IpNet, TurnConfig};

/// Flags of `switchboard serve`: the configuration file and every setting.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. `idle_timeout_secs`).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

/// Every setting of `switchboard serve`, declared once: a flag with its environment variable
/// (clap) and a key of the `--config` TOML file (serde: the field's name). Flags win over
/// the environment, which wins over the file, which wins over the defaults.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// Address and port to listen on, e.g. `0.0.0.0:7087` (every IPv4 address),
    /// `127.0.0.1:7087` (this machine only), `[::]:7087` [default: every IPv6 and IPv4
    /// address, port 5080].
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// Close a connection that sent nothing for this many seconds [default: 20].
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Most simultaneous signaling connections, Ant Media, socket.io and PeerJS together
    /// [default: 50000].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most sockets in one socket.io room (`join` beyond it: `room_full`) [default: 64].
    #[arg(long, env = "SWITCHBOARD_SOCKETIO_MAX_ROOM_PEERS")]
    socketio_max_room_peers: Option<usize>,
    /// Most members of an Ant Media mesh room (a `join` with `"mesh": true`; beyond it:
    /// `NoSpaceForNewPeer`), 2 to 32 [default: 8].
    #[arg(long, env = "SWITCHBOARD_MAX_MESH_PEERS")]
    max_mesh_peers: Option<usize>,
    /// PeerJS mount path; clients use it as their `path` [default: /peerjs/].
    #[arg(long, env = "SWITCHBOARD_PEERJS_PATH")]
    peerjs_path: Option<String>,
    /// PeerJS API key clients must present [default: peerjs].
    #[arg(long, env = "SWITCHBOARD_PEERJS_KEY")]
    peerjs_key: Option<String>,
    /// PeerJS: life of a message queued for an id not connected yet, ms [default: 5000].
    #[arg(long, env = "SWITCHBOARD_PEERJS_EXPIRE_TIMEOUT")]
    peerjs_expire_timeout: Option<u64>,
    /// PeerJS: close a socket with no HEARTBEAT for this long, ms [default: 60000].
    #[arg(long, env = "SWITCHBOARD_PEERJS_ALIVE_TIMEOUT")]
    peerjs_alive_timeout: Option<u64>,
    /// PeerJS: most ids at once [default: 5000].
    #[arg(long, env = "SWITCHBOARD_PEERJS_CONCURRENT_LIMIT")]
    peerjs_concurrent_limit: Option<usize>,
    /// PeerJS: list connected ids at `{path}{key}/peers` [default: false].
    #[arg(long, env = "SWITCHBOARD_PEERJS_ALLOW_DISCOVERY", value_name = "BOOL")]
    peerjs_allow_discovery: Option<bool>,
    /// PeerJS: most bytes queued for one absent id, and most bytes one sender may have
    /// queued; more is answered EXPIRE at once [default: 262144].
    #[arg(long, env = "SWITCHBOARD_PEERJS_QUEUE_BYTES_PER_ID")]
    peerjs_queue_bytes_per_id: Option<usize>,
    /// PeerJS: most bytes queued for absent ids in total [default: 16777216].
    #[arg(long, env = "SWITCHBOARD_PEERJS_QUEUE_BYTES")]
    peerjs_queue_bytes: Option<usize>,
    /// Largest WebSocket message accepted, in bytes; larger closes with 1009 [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE")]
    max_message_size: Option<usize>,
    /// Messages queued per connection before a non-reading client is dropped [default: 1024].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE")]
    outbound_queue: Option<usize>,
    /// Bytes that may wait for one connection before a non-reading client is dropped
    /// [default: 1048576].
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_BYTES_PER_CONNECTION")]
    max_queued_bytes_per_connection: Option<usize>,
    /// Bytes that may wait for all connections together; a message beyond drops its
    /// receiver as not reading [default: 268435456].
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_BYTES")]
    max_queued_bytes: Option<usize>,
    /// Read buffer per WebSocket, in bytes: the most one read takes from a socket. Idle memory
    /// per connection grows with it; larger frames are still read whole [default: 256].
    #[arg(long, env = "SWITCHBOARD_READ_BUFFER_SIZE")]
    read_buffer_size: Option<usize>,
    /// Seconds to wait for clients to close on shutdown [default: 5].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Close a connection that has not sent a whole HTTP request head this many seconds after
    /// it opened (a client that sends nothing or a header byte by byte) [default: 10].
    #[arg(long, env = "SWITCHBOARD_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// TCP connections at once from one IP address; more are closed at accept; 0 = no limit
    /// [default: 512].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Reverse proxies or load balancers in front of the server (addresses or networks,
    /// comma-separated, e.g. 127.0.0.1/32,10.0.0.0/8): a request on their connections is from
    /// the client their `X-Forwarded-For` names, for the per-address limits and the logs, and
    /// their connections are not held to --max-connections-per-ip (limit clients at the
    /// proxy) [default: none: X-Forwarded-For is ignored].
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<IpNet>>,
    /// Messages a second per connection (any dialect; bursts of twice as many); more get
    /// `rate_limited`, and 100 refusals within 10 s close the connection; 0 = no limit
    /// [default: 5000].
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGES_PER_SEC")]
    max_messages_per_sec: Option<u32>,
    /// Joins a second per connection (Ant Media and socket.io `join`; bursts of twice as
    /// many); 0 = no limit [default: 10].
    #[arg(long, env = "SWITCHBOARD_MAX_JOINS_PER_SEC")]
    max_joins_per_sec: Option<u32>,
    /// Joins a second per source address (IPv4 address or IPv6 /64, over all its connections;
    /// a PeerJS connection is a join; bursts of ten times as many); 0 = no limit
    /// [default: 100].
    #[arg(long, env = "SWITCHBOARD_MAX_JOINS_PER_IP_PER_SEC")]
    max_joins_per_ip_per_sec: Option<u32>,
    /// Engine.IO (socket.io) sessions opened by polling handshakes at once; more handshakes
    /// get 503; 0 = no limit [default: 10000].
    #[arg(long, env = "SWITCHBOARD_MAX_SOCKETIO_SESSIONS")]
    max_socketio_sessions: Option<usize>,
    /// Engine.IO sessions at once from one IP address (IPv6: one /64); more handshakes get
    /// 429; 0 = no limit [default: 100].
    #[arg(long, env = "SWITCHBOARD_MAX_SOCKETIO_SESSIONS_PER_IP")]
    max_socketio_sessions_per_ip: Option<usize>,
    /// ICE server URLs sent to clients, comma-separated (stun:, turn:, turns:); in the file
    /// also whole `RTCIceServer` tables (`[[ice_servers]]` with `urls`, `username`,
    /// `credential`) [default: the built-in STUN server; stun:stun.l.google.com:19302 when
    /// it is off].
    #[arg(long, env = "SWITCHBOARD_ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Option<Vec<IceServerSetting>>,
    /// Username for the turn:/turns: URLs of --ice-servers.
    #[arg(long, env = "SWITCHBOARD_TURN_USERNAME")]
    turn_username: Option<String>,
    /// Credential for the turn:/turns: URLs of --ice-servers.
    #[arg(long, env = "SWITCHBOARD_TURN_CREDENTIAL", hide_env_values = true)]
    turn_credential: Option<String>,
    /// Shared secret of TURN servers using coturn's REST-API auth (`use-auth-secret`,
    /// `static-auth-secret`): clients get short-lived credentials minted with it.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// TURN URLs the minted credentials are for, comma-separated; `{host}` becomes the host
    /// the client used to reach Switchboard (e.g. `turn:{host}:3478`).
    #[arg(long, env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',')]
    turn_urls: Option<Vec<String>>,
    /// Lifetime of minted TURN credentials, in seconds [default: 3600].
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS")]
    turn_ttl_secs: Option<u64>,
    /// Run the built-in STUN/TURN server [default: true, false when --turn-urls points at
    /// an external TURN server].
    #[arg(long, env = "SWITCHBOARD_BUILTIN_TURN", value_name = "BOOL")]
    builtin_turn: Option<bool>,
    /// STUN/TURN UDP+TCP listen addresses, comma-separated; 0.0.0.0 / [::] mean every
    /// interface address, port 0 a free port [default: 0.0.0.0:3478,[::]:3478].
    #[arg(long, env = "SWITCHBOARD_TURN_LISTEN", value_delimiter = ',')]
    turn_listen: Option<Vec<SocketAddr>>,
    /// TURN-over-TLS listen addresses, used with --turn-tls-cert
    /// [default: 0.0.0.0:5349,[::]:5349].
    #[arg(long, env = "SWITCHBOARD_TURN_TLS_LISTEN", value_delimiter = ',')]
    turn_tls_listen: Option<Vec<SocketAddr>>,
    /// PEM certificate chain for TURN over TLS (turns:).
    #[arg(long, env = "SWITCHBOARD_TURN_TLS_CERT")]
    turn_tls_cert: Option<PathBuf>,
    /// PEM private key for TURN over TLS.
    #[arg(long, env = "SWITCHBOARD_TURN_TLS_KEY")]
    turn_tls_key: Option<PathBuf>,
    /// Relay port range, inclusive [default: 49152-65535].
    #[arg(long, env = "SWITCHBOARD_TURN_RELAY_PORTS")]
    turn_relay_ports: Option<String>,
    /// Public IP of a server behind 1:1 NAT: advertised as the relay address and used in
    /// the STUN/TURN URLs instead of the host the client used.
    #[arg(long, env = "SWITCHBOARD_TURN_EXTERNAL_IP")]
    turn_external_ip: Option<IpAddr>,
    /// Peer networks the relay may reach although loopback/private/link-local
    /// (e.g. 10.0.0.0/8), comma-separated [default: none].
    #[arg(long, env = "SWITCHBOARD_TURN_ALLOW_PEERS", value_delimiter = ',')]
    turn_allow_peers: Option<Vec<IpNet>>,
    /// Peer networks the relay must never reach, comma-separated [default: none].
    #[arg(long, env = "SWITCHBOARD_TURN_DENY_PEERS", value_delimiter = ',')]
    turn_deny_peers: Option<Vec<IpNet>>,
    /// Most allocations per TURN user [default: 16].
    #[arg(long, env = "SWITCHBOARD_TURN_USER_QUOTA")]
    turn_user_quota: Option<usize>,
    /// Most allocations per client IP address [default: 64].
    #[arg(long, env = "SWITCHBOARD_TURN_IP_QUOTA")]
    turn_ip_quota: Option<usize>,
    /// Most allocations in total [default: 10000].
    #[arg(long, env = "SWITCHBOARD_TURN_MAX_ALLOCATIONS")]
    turn_max_allocations: Option<usize>,
    /// TURN realm [default: switchboard].
    #[arg(long, env = "SWITCHBOARD_TURN_REALM")]
    turn_realm: Option<String>,
    /// Shared secret (at least 32 bytes) for HS256 room tokens. With it, or with
    /// --auth-public-key, every join and every TURN credential needs a valid token; prefer
    /// the environment variable or the file to the flag, which other users can see in the
    /// process list [default: none: rooms are open to anyone].
    #[arg(long, env = "SWITCHBOARD_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// Public key of RS256, ES256, ES384 or EdDSA room tokens: a PEM file, or `KID=FILE` to
    /// pick it by the tokens' `kid` (several, for key rotation: repeat the flag;
    /// comma-separated in the environment; a list in the file) [default: none].
    #[arg(long, env = "SWITCHBOARD_AUTH_PUBLIC_KEY", value_delimiter = ',')]
    auth_public_key: Option<Vec<String>>,
    /// Clock tolerance for room tokens' exp and nbf, in seconds [default: 30].
    #[arg(long, env = "SWITCHBOARD_AUTH_SKEW_SECS")]
    auth_skew_secs: Option<u64>,
    /// PEM certificate chain (leaf first) for HTTPS and WSS on the listening port, e.g. an
    /// ACME client's `fullchain.pem`; replaced files are picked up on SIGHUP and within
    /// --tls-reload-secs. Also the TURN-over-TLS certificate unless --turn-tls-cert is set.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (e.g. `privkey.pem`).
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the TLS files are checked for a change, in seconds; 0 = only on SIGHUP
    /// [default: 10].
    #[arg(long, env = "SWITCHBOARD_TLS_RELOAD_SECS")]
    tls_reload_secs: Option<u64>,
    /// Cluster mode: the Redis server the nodes share, `redis://[:password@]host:port[/db]`
    /// (prefer the environment or the file for a password) [default: none: a single node].
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// This node's id in the cluster, 1-64 characters of A-Z a-z 0-9 - _ . [default: random].
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    node_id: Option<String>,
    /// Cluster mode: most socket.io and PeerJS ids on other nodes (each dialect) whose node
    /// is remembered, so relays to them are published straight there instead of asking
    /// Redis each time; when full it is emptied and learnt again; 0 = always ask Redis
    /// [default: 100000].
    #[arg(long, env = "SWITCHBOARD_CLUSTER_ROUTE_CACHE")]
    cluster_route_cache: Option<usize>,
    /// Web origins whose pages may use the server from a browser, comma-separated: exact
    /// (`https://app.example.com`) or patterns (`https://*.example.com`); others get 403.
    /// The server's own origin (the demo page) is always allowed [default: any origin].
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Log lines as `text` (for people) or `json` (one object a line, for log pipelines:
    /// timestamp, level, message and the fields, e.g. conn, dialect, app, room)
    /// [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Turns on the admin API (/api/v1/peers, rooms, apps, node; kick, close a room): requests
    /// must send `Authorization: Bearer <key>`, at least 16 characters (prefer the
    /// environment or the file) [default: none: the admin API is off].
    #[arg(long, env = "SWITCHBOARD_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Where webhook events (room_started, peer_joined, peer_left, room_finished) are POSTed;
    /// repeat the flag (or comma-separate) for several [default: none: webhooks off].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_URL", value_delimiter = ',')]
    webhook_url: Option<Vec<String>>,
    /// The webhooks' signing secret in the Standard Webhooks form, `whsec_<base64>` of at
    /// least 24 bytes; required with --webhook-url [default: none].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Webhook events that may wait for one URL (its receiver down or slow); more are
    /// dropped and counted [default: 10000].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_QUEUE")]
    webhook_queue: Option<usize>,
    /// Also send the built-in TURN server's allocation_created and allocation_ended
    /// [default: false].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_TURN_EVENTS")]
    webhook_turn_events: Option<bool>,
    /// Serve Prometheus metrics at GET /metrics [default: true].
    #[arg(long, env = "SWITCHBOARD_METRICS")]
    metrics: Option<bool>,
    /// A key scrapers must send as `Authorization: Bearer <key>` to read /metrics (prefer the
    /// environment or the file) [default: none: anyone who reaches the port may read them].
    #[arg(long, env = "SWITCHBOARD_METRICS_KEY", hide_env_values = true)]
    metrics_key: Option<String>,
    /// Apps (Ant Media) that get their own `app` label in /metrics; the others count as
    /// `_other`, so clients inventing app names cannot grow the metrics [default: 64].
    #[arg(long, env = "SWITCHBOARD_METRICS_MAX_APPS")]
    metrics_max_apps: Option<usize>,
}

/// One entry of `ice_servers`: a URL (flags, environment, or a string in the file), or a
/// whole `RTCIceServer` table (file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum IceServerSetting {
    Url(String),
    Server(IceServer),
}

impl std::str::FromStr for IceServerSetting {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::Url(s.to_owned()))
    }
}

impl Settings {
    /// These settings where they are set, `under`'s elsewhere.
    fn over(self, under: Self) -> anyhow::Result<Self> {
        let mut merged = serde_json::to_value(under)?;
        if let (Some(m), serde_json::Value::Object(top)) =
            (merged.as_object_mut(), serde_json::to_value(self)?)
        {
            m.extend(top.into_iter().filter(|(_, v)| !v.is_null()));
        }
        Ok(serde_json::from_value(merged)?)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `serve` needs: where to listen, the server settings, and the built-in
/// STUN/TURN settings when it runs.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// How to write log lines.
    pub(crate) log_format: LogFormat,
    /// Webhooks for the TURN server's allocations too.
    pub(crate) webhook_turn_events: bool,
    pub(crate) listen: SocketAddr,
    /// No listen address was configured: listen on IPv6 and IPv4 (see `bind_http`).
    pub(crate) default_listen: bool,
    pub(crate) server: ServerConfig,
    pub(crate) turn: Option<BuiltinTurn>,
    /// HTTPS/WSS certificate and key files, and how often to look for new ones.
    pub(crate) tls: Option<HttpTls>,
}

/// The listening port's TLS files.
#[derive(Debug)]
pub(crate) struct HttpTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Check the files for a change this often (`None`: on SIGHUP only).
    pub(crate) reload_every: Option<Duration>,
}

/// The built-in STUN/TURN server's settings and what to tell clients about it.
#[derive(Debug)]
pub(crate) struct BuiltinTurn {
    pub(crate) config: TurnConfig,
    /// TURN credential lifetime.
    pub(crate) ttl: Duration,
    /// Whether clients are told about it (`stun:` and `turn:` URLs with minted credentials):
    /// yes unless `ice_servers` or `turn_urls` take over what clients are told.
    pub(crate) advertise: bool,
    /// TLS certificate and key paths, loaded at start.
    pub(crate) tls_files: Option<(PathBuf, PathBuf)>,
    /// No TURN certificate of its own: TURN over TLS uses the HTTPS certificate (and its
    /// reloads), when there is one.
    pub(crate) share_http_tls: bool,
    /// Whether the listen addresses were configured (then a busy port is an error; with the
    /// defaults, Switchboard starts without STUN/TURN and says so).
    pub(crate) explicit_listen: bool,
}

impl ServeArgs {
    /// Merges flags, environment, file and defaults into the listen address and settings.
    pub(crate) fn resolve(self) -> anyhow::Result<Resolved> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Settings::default(),
        };
        let s = self.settings.over(file)?;
        let mut cfg = ServerConfig::default();
        let configured = s.listen;
        let default_listen = configured.is_none();
        let listen = configured.unwrap_or(DEFAULT_LISTEN);
        set(
            &mut cfg.hub.idle_timeout,
            s.idle_timeout_secs.map(Duration::from_secs),
        );
        set(&mut cfg.hub.max_connections, s.max_connections);
        set(&mut cfg.hub.sio_max_room_peers, s.socketio_max_room_peers);
        set(&mut cfg.hub.max_mesh_peers, s.max_mesh_peers);
        set(&mut cfg.hub.route_cache, s.cluster_route_cache);
        if let Some(p) = s.peerjs_path {
            cfg.peerjs_path = format!("/{}/", p.trim_matches('/'));
        }
        let pj = &mut cfg.hub.peerjs;
        set(&mut pj.key, s.peerjs_key.map(Into::into));
        if let Some(ms) = s.peerjs_expire_timeout {
            pj.expire_timeout = Duration::from_millis(ms.max(1));
        }
        set(
            &mut pj.alive_timeout,
            s.peerjs_alive_timeout.map(Duration::from_millis),
        );
        set(&mut pj.concurrent_limit, s.peerjs_concurrent_limit);
        set(&mut pj.allow_discovery, s.peerjs_allow_discovery);
        if let Some(n) = s.peerjs_queue_bytes_per_id {
            pj.queue_bytes_per_peer = n;
            pj.queue_bytes_per_sender = n;
        }
        set(&mut pj.queue_bytes_total, s.peerjs_queue_bytes);
        set(&mut cfg.max_message_size, s.max_message_size);
        set(&mut cfg.outbound_queue, s.outbound_queue);
        set(
            &mut cfg.max_queued_bytes_per_connection,
            s.max_queued_bytes_per_connection,
        );
        set(&mut cfg.max_queued_bytes, s.max_queued_bytes);
        set(&mut cfg.read_buffer_size, s.read_buffer_size);
        set(
            &mut cfg.shutdown_grace,
            s.shutdown_grace_secs.map(Duration::from_secs),
        );
        set(
            &mut cfg.header_timeout,
            s.header_timeout_secs.map(Duration::from_secs),
        );
        let limits = &mut cfg.hub.limits;
        // Bursts of twice the rate per connection, ten times per address.
        let rate = |burst: u32| move |n: u32| RateLimit::new(n, n.saturating_mul(burst));
        set(&mut limits.messages, s.max_messages_per_sec.map(rate(2)));
        set(&mut limits.joins, s.max_joins_per_sec.map(rate(2)));
        set(
            &mut limits.joins_per_source,
            s.max_joins_per_ip_per_sec.map(rate(10)),
        );
        set(&mut cfg.max_socketio_sessions, s.max_socketio_sessions);
        set(
            &mut cfg.max_socketio_sessions_per_ip,
            s.max_socketio_sessions_per_ip,
        );
        set(&mut cfg.max_connections_per_ip, s.max_connections_per_ip);
        set(&mut cfg.trusted_proxies, s.trusted_proxies);
        // Decided here: the built-in STUN server, explicit servers, or a public fallback.
        cfg.hub.ice.servers = Vec::new();
        let explicit_ice = s.ice_servers.is_some();
        if let Some(list) = s.ice_servers {
            cfg.hub.ice.servers = ice_servers(list, s.turn_username, s.turn_credential)?;
        }
        let secret = s.turn_secret;
        let turn_urls = s.turn_urls;
        let ttl_d = s
            .turn_ttl_secs
            .map_or(DEFAULT_TURN_TTL, Duration::from_secs);
        let builtin = s.builtin_turn.unwrap_or(turn_urls.is_none());
        if ttl_d.is_zero() {
            bail!("turn_ttl_secs must be at least 1");
        }
        let cluster_mode = s.redis_url.as_deref().is_some_and(|u| !u.trim().is_empty());
        if builtin && cluster_mode && secret.is_none() {
            bail!(
                "cluster mode (redis_url) needs turn_secret: the same secret on every node, so \
                 TURN credentials minted by one node work on every node's TURN server"
            );
        }
        let turn = if builtin {
            let mut t = TurnConfig {
                secret: secret.clone().unwrap_or_else(random_secret),
                ..TurnConfig::default()
            };
            let explicit_listen = match s.turn_listen {
                Some(l) if l.is_empty() => bail!("turn_listen must name at least one address"),
                Some(l) => {
                    t.listen = l;
                    true
                }
                None => false,
            };
            set(&mut t.tls_listen, s.turn_tls_listen);
            let tls_files = match (s.turn_tls_cert, s.turn_tls_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => bail!("turn_tls_cert and turn_tls_key go together"),
            };
            if let Some(r) = s.turn_relay_ports {
                t.relay_ports = parse_port_range(&r)?;
            }
            t.external_ip = s.turn_external_ip;
            t.policy.allow = s.turn_allow_peers.unwrap_or_default();
            t.policy.deny = s.turn_deny_peers.unwrap_or_default();
            set(&mut t.user_quota, s.turn_user_quota);
            set(&mut t.ip_quota, s.turn_ip_quota);
            set(&mut t.max_allocations, s.turn_max_allocations);
            set(&mut t.realm, s.turn_realm);
            t.protected_ports = vec![listen.port()];
            t.validate()?;
            Some(BuiltinTurn {
                config: t,
                ttl: ttl_d,
                advertise: !explicit_ice && turn_urls.is_none(),
                share_http_tls: tls_files.is_none(),
                tls_files,
                explicit_listen,
            })
        } else {
            None
        };
        if turn.is_none() && !explicit_ice && turn_urls.is_none() {
            cfg.hub.ice.servers = vec![IceServer::stun(FALLBACK_STUN)];
        }
        // turn_urls may point at the built-in server: its secret then signs them.
        let secret = secret.or_else(|| turn.as_ref().map(|t| t.config.secret.clone()));
        match (secret, turn_urls) {
            (Some(secret), Some(urls)) => {
                let urls: Vec<String> = urls.into_iter().map(|u| u.trim().to_owned()).collect();
                cfg.hub.ice.turn = Some(TurnRest {
                    secret,
                    urls,
                    ttl: ttl_d,
                    user_prefix: switchboard_server::turn_user_prefix(),
                });
            }
            (Some(_), None) if turn.is_some() => {}
            (Some(_), None) => bail!("turn_secret needs turn_urls (e.g. turn:{{host}}:3478)"),
            (None, Some(_)) => bail!("turn_urls need turn_secret"),
            (None, None) => {}
        }
        cfg.hub.auth = auth(s.auth_secret, s.auth_public_key, s.auth_skew_secs)?;
        if let Some(url) = s.redis_url.filter(|u| !u.trim().is_empty()) {
            let node = s
                .node_id
                .unwrap_or_else(|| random_secret()[..12].to_owned());
            cfg.cluster = Some(switchboard_server::ClusterConfig::new(url, node));
        } else if s.node_id.is_some() {
            bail!("node_id needs redis_url (cluster mode)");
        }
        if let Some(key) = s.admin_key.filter(|k| !k.is_empty()) {
            if key.len() < 16 {
                bail!("admin_key must be at least 16 characters");
            }
            cfg.admin_key = Some(key.into());
        }
        let urls: Vec<String> = s
            .webhook_url
            .unwrap_or_default()
            .into_iter()
            .filter(|u| !u.trim().is_empty())
            .collect();
        match (urls.is_empty(), s.webhook_secret) {
            (true, _) => {}
            (false, None) => bail!("webhook_url needs webhook_secret (whsec_<base64>)"),
            (false, Some(secret)) => {
                cfg.webhooks = Some(switchboard_server::WebhookConfig {
                    urls,
                    secret,
                    queue: s.webhook_queue.unwrap_or(10_000),
                });
            }
        }
        set(&mut cfg.metrics.enabled, s.metrics);
        set(&mut cfg.metrics.max_apps, s.metrics_max_apps);
        if let Some(key) = s.metrics_key.filter(|k| !k.is_empty()) {
            if key.len() < 16 {
                bail!("metrics_key must be at least 16 characters");
            }
            cfg.metrics.key = Some(key.into());
        }
        if let Some(list) = s.allowed_origins {
            let rules = list
                .iter()
                .filter(|o| !o.trim().is_empty())
                .map(|o| switchboard_server::OriginRule::parse(o))
                .collect::<Result<Vec<_>, _>>()?;
            cfg.allowed_origins = Some(rules.into());
        }
        cfg.validate()?;
        let tls = match (s.tls_cert, s.tls_key) {
            (Some(cert), Some(key)) => Some(HttpTls {
                cert,
                key,
                reload_every: match s.tls_reload_secs.unwrap_or(10) {
                    0 => None,
                    n => Some(Duration::from_secs(n)),
                },
            }),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together"),
        };
        Ok(Resolved {
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            webhook_turn_events: s.webhook_turn_events.unwrap_or(false),
            listen,
            default_listen,
            server: cfg,
            turn,
            tls,
        })
    }
}

/// Room tokens: on when a secret or a public key is configured.
fn auth(
    secret: Option<String>,
    public_keys: Option<Vec<String>>,
    skew_secs: Option<u64>,
) -> anyhow::Result<Option<switchboard_core::auth::AuthConfig>> {
    let mut verifier = switchboard_auth::JwtVerifier::new();
    if let Some(secret) = secret {
        verifier
            .add_secret(None, secret.as_bytes())
            .context("auth_secret")?;
    }
    for entry in public_keys.unwrap_or_default() {
        let entry = entry.trim();
        let (kid, path) = match entry.split_once('=') {
            Some((kid, path)) if !kid.is_empty() => (Some(kid), path),
            _ => (None, entry),
        };
        let pem = std::fs::read(path).with_context(|| format!("reading auth public key {path}"))?;
        verifier
            .add_public_key_pem(kid, &pem)
            .with_context(|| format!("auth public key {path}"))?;
    }
    if verifier.is_empty() {
        if skew_secs.is_some() {
            bail!("auth_skew_secs needs auth_secret or auth_public_key");
        }
        return Ok(None);
    }
    let mut auth = switchboard_core::auth::AuthConfig::new(std::sync::Arc::new(verifier));
    set(&mut auth.skew, skew_secs.map(Duration::from_secs));
    Ok(Some(auth))
}

/// Sets `dst` to `value` when the setting was given.
fn set<T>(dst: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *dst = v;
    }
}

/// STUN server handed out when the built-in one is off and nothing else is configured.
pub(crate) const FALLBACK_STUN: &str = "stun:stun.l.google.com:19302";

/// A per-process TURN secret when none is configured (fine for one node; a cluster or an
/// external TURN server needs the same configured secret everywhere).
fn random_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `--listen`: an address and a port. A bare port, or an address without one, is refused
/// with an example of the right form.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let example = |port: &str| {
        format!(
            "expected ADDRESS:PORT, e.g. 0.0.0.0:{port} (every IPv4 address), 127.0.0.1:{port} \
             (this machine only) or [::]:{port} (IPv6 and IPv4)"
        )
    };
    if let Ok(port) = s.parse::<u16>() {
        return Err(example(&port.to_string()));
    }
    Err(example("5080"))
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("turn_relay_ports {s:?} must look like 49152-65535"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .with_context(|| format!("bad port in {s:?}"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .with_context(|| format!("bad port in {s:?}"))?;
    if lo == 0 || lo > hi {
        bail!("turn_relay_ports {s:?} is empty");
    }
    Ok((lo, hi))
}

/// The `ice_servers` setting: tables as they are; URLs one server each for STUN, one
/// server with `turn_username` and `turn_credential` for all the TURN ones.
fn ice_servers(
    list: Vec<IceServerSetting>,
    username: Option<String>,
    credential: Option<String>,
) -> anyhow::Result<Vec<IceServer>> {
    let mut out = Vec::new();
    let mut urls = Vec::new();
    for entry in list {
        match entry {
            IceServerSetting::Server(server) => out.push(server),
            IceServerSetting::Url(u) => urls.push(u),
        }
    }
    let (turn, stun): (Vec<_>, Vec<_>) = urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .partition(|u| is_turn_url(u));
    out.extend(stun.into_iter().map(IceServer::stun));
    if !turn.is_empty() {
        if username.is_none() || credential.is_none() {
            bail!("turn: URLs need --turn-username and --turn-credential");
        }
        out.push(IceServer {
            urls: turn,
            username,
            credential,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
