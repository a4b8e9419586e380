//! The `switchboard` command: `switchboard serve` (the default) runs the signaling server.
//!
//! Configuration comes from flags, `SWITCHBOARD_*` environment variables and an optional
//! TOML file (`--config`), in that order of precedence, over documented defaults. See
//! `switchboard serve --help` and the README's configuration reference.

mod bench;
mod config;
mod health;
mod load;
mod peer;
mod token;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use switchboard_core::ice::{HOST_PLACEHOLDER, IceConfig, TurnRest};
use switchboard_proto::IceServer;
use switchboard_server::ServerConfig;
use switchboard_turn::TurnHandle;

use crate::config::{BuiltinTurn, FALLBACK_STUN, LogFormat, Resolved, ServeArgs};

/// This build: the package version and the git revision (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SWITCHBOARD_GIT_REV"),
    ")"
);

/// Switchboard: self-hosted WebRTC peer-to-peer signaling.
#[derive(Debug, Parser)]
#[command(version = VERSION, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command, `serve` runs with these settings.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the signaling server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Join a room as a native WebRTC peer: chat, files, media (see `switchboard peer --help`).
    Peer(peer::PeerArgs),
    /// Benchmarks through a real server: signaling load (relay, rate, idle, churn) against
    /// Switchboard or a reference server, and native peers (setup, dc-rtt, dc-throughput).
    Bench(bench::BenchArgs),
    /// Mint a room token for development and scripts; prints it and a demo page link.
    Token(token::TokenArgs),
    /// Ask a running server's /healthz (a container HEALTHCHECK): exit 0 when it is healthy.
    /// Takes the settings of `serve`, so it finds the server's port and scheme.
    Health(Box<health::HealthArgs>),
}

/// Default log filter (`RUST_LOG` replaces it). The STUN/TURN protocol crates open an
/// info-level tracing span per packet; at `warn` they cost nothing on the relay path.
/// `stun_proto` logs every failed authentication at ERROR, including the 401 challenge that
/// starts every TURN allocation: it is off, and Switchboard logs refused credentials itself
/// (info, rate-limited, with the reason).
const DEFAULT_LOG: &str = "info,turn_server_proto=warn,turn_client_proto=error,stun_proto=off,stun_types=warn,turn_types=warn";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(Command::Bench(args)) = &cli.command {
        let threads = args
            .threads
            .or(args.load_scenario().map(|_| 1))
            .filter(|t| *t > 0);
        if let Some(t) = threads {
            builder.worker_threads(t);
        }
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Some(Command::Peer(args)) => {
            // stdout carries the chat; logs go to stderr.
            tracing_subscriber::fmt()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .init();
            let result = runtime.block_on(peer::run(args));
            // `--chat` reads stdin on a blocking thread that nothing can interrupt: dropping
            // the runtime would wait for that read (the next line, or the end of stdin)
            // before the exit and its message.
            runtime.shutdown_background();
            result
        }
        Some(Command::Token(args)) => token::run(args),
        Some(Command::Health(args)) => runtime.block_on(health::run(*args)),
        Some(Command::Bench(args)) => {
            // stdout carries the JSON summary; logs (warnings only by default) go to stderr.
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .init();
            runtime.block_on(bench::run(args))
        }
        command => {
            let args = match command {
                Some(Command::Serve(args)) => *args,
                _ => cli.serve,
            };
            // Settings first: they say how to log (a bad one is reported on stderr).
            let resolved = args.resolve()?;
            let logs = tracing_subscriber::fmt().with_env_filter(filter);
            if resolved.log_format == LogFormat::Json {
                logs.json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .init();
            } else {
                logs.with_ansi(std::io::stdout().is_terminal()).init();
            }
            runtime.block_on(serve(resolved))
        }
    }
}

async fn serve(resolved: Resolved) -> anyhow::Result<()> {
    let Resolved {
        listen,
        default_listen,
        server: mut config,
        mut turn,
        tls,
        webhook_turn_events,
        ..
    } = resolved;
    // One set of webhook senders for the hub and, when asked, the TURN server.
    if let Some(w) = &config.webhooks {
        let node = config.cluster.as_ref().map(|c| c.node_id.as_str());
        let sink = switchboard_server::WebhookSink::start(w, node);
        if let Some(t) = turn.as_mut().filter(|_| webhook_turn_events) {
            let s = sink.clone();
            t.config.allocation_events = Some(std::sync::Arc::new(move |e| match e {
                switchboard_turn::AllocationEvent::Created {
                    relay,
                    client,
                    user,
                } => s.allocation(true, relay, client, &user),
                switchboard_turn::AllocationEvent::Ended {
                    relay,
                    client,
                    user,
                } => s.allocation(false, relay, client, &user),
            }));
        }
        config.webhook_sink = Some(sink);
    }
    let shutdown = shutdown_signal()?;
    let hangups = Hangups::register()?;
    if let Some(tls) = tls {
        let reloader = switchboard_server::CertReloader::load(&tls.cert, &tls.key)
            .context("loading the TLS certificate (--tls-cert, --tls-key)")?;
        config.tls = Some(reloader.server_config()?);
        tokio::spawn(reload_tls(reloader, tls.reload_every, hangups));
    } else {
        tokio::spawn(ignore_hangups(hangups));
    }
    // Every connection is an open file: use the hard limit, not the (often 1024) soft one.
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    };
    fit_connections_to_files(&mut config, files);
    let listener = bind_http(listen, default_listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let turn = match turn {
        Some(builtin) => start_turn(builtin, local.port(), &mut config).await?,
        None => None,
    };
    config.turn_stats = turn.as_ref().map(turn_stats);
    config.turn_metrics = turn.as_ref().map(turn_metrics);
    announce(local, turn.as_ref(), &config);
    switchboard_server::run(config, listener, shutdown)
        .await
        .context("serving")?;
    if let Some(t) = turn {
        t.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the built-in STUN/TURN server and, unless the operator configured ICE servers
/// explicitly, tells clients about it: `stun:` and `turn:` URLs (UDP, TCP, and TLS when a
/// certificate is set) on the host the client used to reach Switchboard, or on the external
/// IP when one is configured, with minted short-lived credentials.
///
/// With the default listen addresses, a STUN/TURN port already in use (say, by a coturn on the
/// same host) is not fatal: Switchboard starts without its STUN/TURN server, says so, and
/// hands out the public fallback STUN server instead.
async fn start_turn(
    mut builtin: BuiltinTurn,
    http_port: u16,
    config: &mut ServerConfig,
) -> anyhow::Result<Option<TurnHandle>> {
    if let Some((cert, key)) = &builtin.tls_files {
        builtin.config.tls = Some(
            switchboard_turn::load_tls(cert, key).context("loading the TURN TLS certificate")?,
        );
    } else if builtin.share_http_tls {
        // The HTTPS certificate (same resolver: its reloads reach TURN over TLS too).
        builtin.config.tls.clone_from(&config.tls);
    }
    builtin.config.protected_ports = vec![http_port];
    let handle = match switchboard_turn::start(builtin.config.clone()).await {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !builtin.explicit_listen => {
            tracing::warn!(
                "STUN/TURN not started: port {} is in use ({e}); set --turn-listen to another \
                 port, or --builtin-turn false to silence this",
                builtin.config.listen.first().map_or(0, SocketAddr::port)
            );
            if builtin.advertise {
                config.hub.ice = IceConfig {
                    servers: vec![IceServer::stun(FALLBACK_STUN)],
                    turn: None,
                };
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "starting the STUN/TURN server (--turn-listen, or --builtin-turn false)",
            ));
        }
    };
    if builtin.advertise {
        let host = match builtin.config.external_ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => HOST_PLACEHOLDER.to_owned(),
        };
        let port = handle.port();
        let mut urls = vec![
            format!("turn:{host}:{port}?transport=udp"),
            format!("turn:{host}:{port}?transport=tcp"),
        ];
        if let Some(tls) = handle.tls_port() {
            urls.push(format!("turns:{host}:{tls}?transport=tcp"));
        }
        config.hub.ice = IceConfig {
            servers: vec![IceServer::stun(format!("stun:{host}:{port}"))],
            turn: Some(TurnRest {
                secret: builtin.config.secret.clone(),
                urls,
                ttl: builtin.ttl,
                user_prefix: switchboard_server::turn_user_prefix(),
            }),
        };
    }
    Ok(Some(handle))
}

/// The TURN server's counters, for `/api/v1/stats`.
fn turn_stats(turn: &TurnHandle) -> switchboard_server::StatsSource {
    let turn = turn.clone();
    switchboard_server::StatsSource::new(move || {
        serde_json::to_value(turn.stats()).unwrap_or(serde_json::Value::Null)
    })
}

/// A counter family: name, help, its label (empty: none) and a value per label value.
type TurnCounter<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, u64)>);

/// The TURN server's counters as Prometheus families, for `/metrics`.
fn turn_metrics(turn: &TurnHandle) -> switchboard_server::MetricsSource {
    use prometheus::{IntCounterVec, IntGauge, Opts};
    let turn = turn.clone();
    switchboard_server::MetricsSource::new(move |r| {
        let s = turn.stats();
        let active = IntGauge::new("switchboard_turn_allocations", "TURN allocations open now")?;
        active.set(i64::try_from(s.allocations_active).unwrap_or(i64::MAX));
        r.register(Box::new(active))?;
        // Counters: name, help, and the label with its values (none: one sample).
        let counters: [TurnCounter<'_>; 6] = [
            (
                "switchboard_turn_allocations_total",
                "TURN allocations opened",
                "",
                vec![("", s.allocations_total)],
            ),
            (
                "switchboard_stun_requests_total",
                "STUN requests received by the built-in STUN/TURN server",
                "",
                vec![("", s.stun_requests)],
            ),
            (
                "switchboard_turn_relayed_packets_total",
                "Packets relayed by TURN, by direction",
                "direction",
                vec![
                    ("to_peer", s.relayed_to_peers),
                    ("from_peer", s.relayed_from_peers),
                ],
            ),
            (
                "switchboard_turn_relayed_bytes_total",
                "Payload bytes relayed by TURN, both directions",
                "",
                vec![("", s.relayed_bytes)],
            ),
            (
                "switchboard_turn_dropped_packets_total",
                "TURN packets dropped because a socket or connection queue was full",
                "",
                vec![("", s.dropped_send)],
            ),
            (
                "switchboard_turn_refusals_total",
                "TURN requests, allocations, connections and peers refused, by reason",
                "reason",
                vec![
                    ("auth", s.refused_auth),
                    ("expired", s.refused_expired),
                    ("user_quota", s.refused_user_quota),
                    ("ip_quota", s.refused_ip_quota),
                    ("capacity", s.refused_capacity),
                    ("tcp_limit", s.refused_tcp_limit),
                    ("busy", s.refused_busy),
                    ("peer_loopback", s.refused_peer_loopback),
                    ("peer_private", s.refused_peer_private),
                    ("peer_link_local", s.refused_peer_link_local),
                    ("peer_multicast", s.refused_peer_multicast),
                    ("peer_unspecified", s.refused_peer_unspecified),
                    ("peer_own_port", s.refused_peer_own_port),
                    ("peer_own_address", s.refused_peer_own_address),
                    ("peer_denied", s.refused_peer_denied),
                ],
            ),
        ];
        for (name, help, label, rows) in counters {
            let labels: &[&str] = if label.is_empty() { &[] } else { &[label] };
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            for (value, n) in rows {
                let values: &[&str] = if label.is_empty() { &[] } else { &[value] };
                c.with_label_values(values).inc_by(n);
            }
            r.register(Box::new(c))?;
        }
        Ok(())
    })
}

fn announce(local: SocketAddr, turn: Option<&TurnHandle>, config: &ServerConfig) {
    let peerjs_path = &config.peerjs_path;
    let (http, ws, secure) = if config.tls.is_some() {
        ("https", "wss", ", secure: true")
    } else {
        ("http", "ws", "")
    };
    if let Some(t) = turn {
        tracing::info!(
            "STUN/TURN on port {} (UDP {:?}, TCP {:?}{})",
            t.port(),
            t.udp_addrs(),
            t.tcp_addrs(),
            t.tls_port()
                .map(|p| format!(", TLS port {p}"))
                .unwrap_or_default()
        );
    }
    let shown = health::reached_locally(local);
    tracing::info!(
        "switchboard {} listening on {local} — open {http}://{shown}/ ; Ant Media WebSocket: {ws}://{shown}/<app>/websocket (e.g. {ws}://{shown}/WebRTCAppEE/websocket) ; socket.io: {http}://{shown}/socket.io/ ; PeerJS: host {shown}, path {}{secure} ; health: {http}://{shown}/healthz",
        VERSION,
        peerjs_path.trim_end_matches('/'),
    );
    if let Some(c) = &config.cluster {
        tracing::info!(
            "cluster mode: node {}, Redis {} (lease {} s)",
            c.node_id,
            switchboard_server::redacted_url(&c.redis_url),
            c.lease.as_secs()
        );
    }
    match &config.hub.auth {
        Some(auth) => tracing::info!(
            "room tokens required for every join and TURN credential ({:?}, clock skew {} s)",
            auth.verifier,
            auth.skew.as_secs()
        ),
        None if !local.ip().is_loopback() => tracing::warn!(
            "rooms are open: anyone who can reach {local} can join any room and get TURN \
             relay credentials; set --auth-secret or --auth-public-key to require room tokens \
             (docs/OPERATIONS.md, \"Authentication\")"
        ),
        None => {}
    }
}

/// Descriptors kept for everything but client connections: listeners, TURN sockets and
/// relay sockets' headroom, files, the log.
const FILES_RESERVED: u64 = 1024;

/// Keeps the connection limits below the open-file limit `files`, so a flood of connections
/// meets Switchboard's own refusal (counted, logged) instead of `EMFILE`, which would starve
/// `/healthz` and the TURN server's relay sockets. Says what it decided.
fn fit_connections_to_files(config: &mut ServerConfig, files: Option<u64>) {
    let Some(files) = files else {
        return;
    };
    let room = usize::try_from(files.saturating_sub(FILES_RESERVED).max(64)).unwrap_or(usize::MAX);
    if config.max_open_connections > room {
        config.max_open_connections = room;
    }
    if config.hub.max_connections > room {
        config.hub.max_connections = room;
    }
    tracing::info!(
        "open-file limit {files}: at most {} TCP connections ({} signaling clients: Ant Media, socket.io and PeerJS), {} per IP address",
        config.max_open_connections,
        config.hub.max_connections,
        if config.max_connections_per_ip == 0 {
            "no limit".to_owned()
        } else {
            config.max_connections_per_ip.to_string()
        }
    );
}

/// Binds the HTTP/WebSocket listener. With no address configured it listens on every IPv6
/// and IPv4 address (`[::]`, dual-stack, like the STUN/TURN server), or on IPv4 alone where the
/// host has no IPv6.
async fn bind_http(listen: SocketAddr, default: bool) -> std::io::Result<tokio::net::TcpListener> {
    if default {
        let any6 = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), listen.port());
        match dual_stack(any6) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => tracing::debug!("no IPv6 listener ({e}); listening on IPv4 only"),
        }
    }
    tokio::net::TcpListener::bind(listen).await
}

/// A TCP listener on an IPv6 address that accepts IPv4 clients too (IPV6_V6ONLY off).
fn dual_stack(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // tokio's `TcpListener::bind` uses the same backlog.
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// SIGHUP, registered at startup: its default action ends the process, so a reload
/// (`systemctl reload`) sent right after the start must already find the handler.
struct Hangups(#[cfg(unix)] tokio::signal::unix::Signal);

impl Hangups {
    #[cfg(unix)]
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self(
            signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        ))
    }

    #[cfg(not(unix))]
    fn register() -> anyhow::Result<Self> {
        Ok(Self())
    }

    /// The next SIGHUP (never, where there are none).
    async fn next(&mut self) {
        #[cfg(unix)]
        if self.0.recv().await.is_some() {
            return;
        }
        std::future::pending().await
    }
}

/// Reloads the TLS certificate on SIGHUP and, every `every`, when its files changed; a
/// failed reload is logged and the certificate in use stays.
async fn reload_tls(
    reloader: std::sync::Arc<switchboard_server::CertReloader>,
    every: Option<std::time::Duration>,
    mut hangups: Hangups,
) {
    let path = reloader.cert_path().display().to_string();
    loop {
        let tick = async {
            match every {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            () = hangups.next() => {
                tracing::info!("received SIGHUP: reloading the TLS certificate");
                reloader.reload().map(|()| true)
            }
            () = tick => reloader.reload_if_changed(),
        };
        match result {
            Ok(true) => tracing::info!("TLS certificate reloaded from {path}"),
            Ok(false) => {}
            Err(e) => tracing::warn!("TLS certificate not reloaded, keeping the current one: {e}"),
        }
    }
}

/// Without TLS files there is nothing SIGHUP reloads: it is logged and otherwise ignored.
async fn ignore_hangups(mut hangups: Hangups) {
    loop {
        hangups.next().await;
        tracing::info!(
            "received SIGHUP: nothing to reload (no TLS certificate; other settings take a restart)"
        );
    }
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives right after startup
/// is not lost) and returns a future that resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::bind_http;

    #[tokio::test]
    async fn the_default_listener_takes_ipv4_and_ipv6_clients() {
        let l = bind_http("0.0.0.0:0".parse().unwrap(), true).await.unwrap();
        let port = l.local_addr().unwrap().port();
        // IPv6 may be off on a test host: then the listener is IPv4 only, as documented.
        let v6 = l.local_addr().unwrap().is_ipv6();
        let mut clients = vec![format!("127.0.0.1:{port}")];
        if v6 {
            clients.push(format!("[::1]:{port}"));
        }
        for c in clients {
            let connect = tokio::net::TcpStream::connect(&c);
            let (conn, accepted) = tokio::join!(connect, l.accept());
            assert!(conn.is_ok() && accepted.is_ok(), "{c}");
        }
    }
}
