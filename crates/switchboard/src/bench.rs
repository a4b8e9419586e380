//! `switchboard bench`: benchmarks measured end to end through a real server.
//!
//! Signaling load scenarios (`relay`, `rate`, `idle`, `churn`; see [`crate::load`]) measure
//! any server speaking Ant Media P2P, socket.io, PeerJS or matchbox: `--server host:port`
//! (default: a Switchboard started in this process, which then shares the CPU with the load).
//!
//! Native-peer scenarios (two `switchboard-peer` peers in this process, signaling through a
//! Switchboard server: `--server`, or one started in-process on loopback with its built-in
//! STUN/TURN):
//!
//! - `setup`: the second peer's join → data channel open on both sides, per run (a fresh
//!   room and fresh peers each run);
//! - `dc-rtt`: data-channel round trips (64-byte binary message, echoed), no media flowing;
//! - `dc-throughput`: one-way data-channel throughput (64 KiB binary messages);
//! - `mesh-setup`: a mesh room of N native members (`--members 2,4,8`): the last member's
//!   join → every pair's data channel open, and the signaling frames that took
//!   ([`mesh_setup`]).
//!
//! `--via-turn` makes both peers relay-only (every packet crosses the TURN server twice).
//! Output: a human-readable summary on stderr and one JSON line on stdout.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use switchboard_peer::{IcePolicy, Peer, PeerConfig, PeerEvent};
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod mesh_setup;

/// Flags of `switchboard bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// A running server (`host:port` or a WebSocket URL); default: start one in-process on
    /// loopback, with its built-in STUN/TURN server. Load scenarios take several,
    /// comma-separated (the nodes of a cluster): the two peers of each pair connect to two of
    /// them in turn, so every pair crosses nodes.
    #[arg(long)]
    server: Option<String>,
    /// Runs of a native-peer scenario (each reported separately; the summary is over runs).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Runtime worker threads of the tool (default: 1 for load scenarios, so the load
    /// generator uses one core; one per core otherwise).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Round trips per run (`dc-rtt`).
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Room sizes (`mesh-setup`), comma-separated.
    #[arg(long, default_value = "2,4,8", value_delimiter = ',')]
    members: Vec<usize>,
    /// MiB sent per run (`dc-throughput`).
    #[arg(long, default_value_t = 16)]
    mib: usize,
    /// Relay-only peers: all traffic through the TURN server.
    #[arg(long)]
    via_turn: bool,
    #[command(flatten)]
    load: crate::load::LoadArgs,
}

impl BenchArgs {
    /// The load scenario asked for, if it is one.
    pub(crate) fn load_scenario(&self) -> Option<crate::load::Scenario> {
        use crate::load::Scenario as L;
        match self.scenario {
            Scenario::Relay => Some(L::Relay),
            Scenario::Rate => Some(L::Rate),
            Scenario::Idle => Some(L::Idle),
            Scenario::Churn => Some(L::Churn),
            Scenario::Setup | Scenario::DcRtt | Scenario::DcThroughput | Scenario::MeshSetup => {
                None
            }
        }
    }
}

/// Benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Second peer's join → data channel open on both sides.
    Setup,
    /// Data-channel round-trip time.
    DcRtt,
    /// Data-channel throughput.
    DcThroughput,
    /// Mesh room of N members: last join → every pair open.
    MeshSetup,
    /// Signaling relay throughput: pairs with a window of messages in flight.
    Relay,
    /// Signaling latency at a fixed offered rate.
    Rate,
    /// Idle joined peers: join rate and server memory per peer.
    Idle,
    /// Join, exchange 10 messages, leave, repeat: pairs/s.
    Churn,
}

const STEP: Duration = Duration::from_secs(20);

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(scenario) = args.load_scenario() {
        let (addrs, _server) = match &args.server {
            Some(list) => {
                let mut addrs = Vec::new();
                for s in list.split(',').filter(|s| !s.trim().is_empty()) {
                    addrs.push(load_addr(s.trim()).await?);
                }
                (addrs, None)
            }
            None => {
                let (url, server) = in_process_server().await?;
                eprintln!("server: Switchboard in this process (it shares the CPU with the load)");
                (vec![load_addr(&url).await?], Some(server))
            }
        };
        if addrs.is_empty() {
            bail!("--server names no address");
        }
        return crate::load::run(scenario, args.load, addrs).await;
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (url, _server) = match &args.server {
        Some(s) => (crate::peer::server_url(s), None),
        None => {
            let (url, server) = in_process_server().await?;
            (url, Some(server))
        }
    };
    let ice = if args.via_turn {
        IcePolicy::RelayOnly
    } else {
        IcePolicy::HostOnly
    };
    let path = if args.via_turn { "via TURN" } else { "direct" };
    match args.scenario {
        // Load scenarios were run above.
        Scenario::Relay | Scenario::Rate | Scenario::Idle | Scenario::Churn => {}
        Scenario::MeshSetup => {
            let mut fields = serde_json::Map::new();
            let mut human = Vec::new();
            for &n in &args.members {
                let m = mesh_setup::measure(&url, ice, n, args.runs).await?;
                human.push(m.human(n, path));
                fields.insert(n.to_string(), m.json());
            }
            report(
                &args,
                "mesh-setup",
                human.join("\n"),
                serde_json::Value::Object(fields),
            );
        }
        Scenario::Setup => {
            let mut ms = Vec::new();
            for run in 0..args.runs {
                let room = format!("bench-setup-{}-{run}", std::process::id());
                let (mut a, a_task) = connect(&url, &room, ice).await?;
                wait(&mut a, |e| *e == PeerEvent::Joined, "A joined").await?;
                let t0 = Instant::now();
                let (mut b, b_task) = connect(&url, &room, ice).await?;
                wait(&mut b, |e| *e == PeerEvent::Open, "B open").await?;
                wait(&mut a, |e| *e == PeerEvent::Open, "A open").await?;
                let t = t0.elapsed().as_secs_f64() * 1e3;
                eprintln!("run {run:>2}: join → open {t:.1} ms");
                ms.push(t);
                close(a, a_task).await;
                close(b, b_task).await;
            }
            let s = Summary::of(&ms);
            report(
                &args,
                "setup",
                format!(
                    "setup ({path}), {} runs: median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
                    args.runs, s.median, s.p90, s.min, s.max
                ),
                serde_json::json!({
                    "median_ms": s.median,
                    "p90_ms": s.p90,
                    "min_ms": s.min,
                    "max_ms": s.max,
                }),
            );
        }
        Scenario::DcRtt => {
            let (mut a, a_task, b_task) = echo_pair(&url, ice).await?;
            let payload = vec![7u8; 64];
            let mut medians = Vec::new();
            let mut all = Vec::new();
            // Warm-up round trips, not counted.
            for _ in 0..50 {
                round_trip(&mut a, &payload).await?;
            }
            for run in 0..args.runs {
                let mut us = Vec::with_capacity(args.messages);
                for _ in 0..args.messages {
                    us.push(round_trip(&mut a, &payload).await?);
                }
                let s = Summary::of(&us);
                eprintln!(
                    "run {run:>2}: {} round trips, median {:.1} µs, p99 {:.1} µs",
                    args.messages, s.median, s.p99
                );
                medians.push(s.median);
                all.extend(us);
            }
            let m = Summary::of(&medians);
            let all = Summary::of(&all);
            report(
                &args,
                "dc-rtt",
                format!(
                    "dc-rtt ({path}), {} runs × {}: median of run medians {:.3} ms; over all: p99 {:.3} ms, max {:.3} ms",
                    args.runs,
                    args.messages,
                    m.median / 1e3,
                    all.p99 / 1e3,
                    all.max / 1e3
                ),
                serde_json::json!({
                    "messages": args.messages,
                    "median_ms": m.median / 1e3,
                    "p99_ms": all.p99 / 1e3,
                    "max_ms": all.max / 1e3,
                }),
            );
            close(a, a_task).await;
            b_task.abort();
        }
        Scenario::DcThroughput => {
            let (mut a, a_task, b_task) = echo_pair(&url, ice).await?;
            let chunk = vec![0x5au8; 64 * 1024];
            let total = args.mib * 1024 * 1024;
            let mut rates = Vec::new();
            for run in 0..args.runs {
                let t0 = Instant::now();
                a.send_text(&format!("expect {total}")).await?;
                let mut sent = 0;
                while sent < total {
                    let n = chunk.len().min(total - sent);
                    a.send_binary(&chunk[..n]).await?;
                    sent += n;
                }
                wait(
                    &mut a,
                    |e| matches!(e, PeerEvent::Text(t) if t == "got it"),
                    "receipt",
                )
                .await?;
                let secs = t0.elapsed().as_secs_f64();
                let mbs = total as f64 / 1e6 / secs;
                eprintln!(
                    "run {run:>2}: {} MiB in {:.2} s = {mbs:.1} MB/s",
                    args.mib, secs
                );
                rates.push(mbs);
            }
            let s = Summary::of(&rates);
            report(
                &args,
                "dc-throughput",
                format!(
                    "dc-throughput ({path}), {} runs × {} MiB: median {:.1} MB/s, min {:.1}, max {:.1}",
                    args.runs, args.mib, s.median, s.min, s.max
                ),
                serde_json::json!({
                    "mib": args.mib,
                    "median_mb_s": s.median,
                    "min_mb_s": s.min,
                    "max_mb_s": s.max,
                }),
            );
            close(a, a_task).await;
            b_task.abort();
        }
    }
    Ok(())
}

/// One result: `human` on stderr, and on stdout one JSON object: the scenario, `via_turn`,
/// `runs` and `fields`.
fn report(args: &BenchArgs, scenario: &str, human: String, fields: serde_json::Value) {
    eprintln!("{human}");
    let mut line = serde_json::json!({
        "scenario": scenario,
        "via_turn": args.via_turn,
        "runs": args.runs,
    });
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    println!("{line}");
}

/// Median, p90, p99, min and max of a sample.
struct Summary {
    median: f64,
    p90: f64,
    p99: f64,
    min: f64,
    max: f64,
}

impl Summary {
    fn of(xs: &[f64]) -> Summary {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v.get(i).copied().unwrap_or(f64::NAN)
        };
        Summary {
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            min: at(0.0),
            max: at(1.0),
        }
    }
}

async fn connect(
    url: &str,
    room: &str,
    ice: IcePolicy,
) -> anyhow::Result<(Peer, JoinHandle<Result<(), switchboard_peer::PeerError>>)> {
    let (peer, driver) = Peer::connect(PeerConfig {
        ice,
        ..PeerConfig::new(url, room)
    })
    .await
    .with_context(|| format!("joining {room} at {url}"))?;
    Ok((peer, tokio::spawn(driver)))
}

async fn wait(
    peer: &mut Peer,
    want: impl Fn(&PeerEvent) -> bool,
    what: &str,
) -> anyhow::Result<PeerEvent> {
    timeout(STEP, async {
        loop {
            match peer.next_event().await {
                Some(e) if want(&e) => return Ok(e),
                Some(PeerEvent::ServerError(e)) => {
                    bail!("server error while waiting for {what}: {e}")
                }
                Some(_) => {}
                None => bail!("session ended while waiting for {what}"),
            }
        }
    })
    .await
    .with_context(|| format!("timed out waiting for {what}"))?
}

async fn close(peer: Peer, task: JoinHandle<Result<(), switchboard_peer::PeerError>>) {
    peer.hangup().await;
    let _ = timeout(Duration::from_secs(5), task).await;
}

/// A connected pair: A (returned) and B, which echoes binary messages and confirms
/// `expect N` byte counts with `got it`.
async fn echo_pair(
    url: &str,
    ice: IcePolicy,
) -> anyhow::Result<(
    Peer,
    JoinHandle<Result<(), switchboard_peer::PeerError>>,
    JoinHandle<()>,
)> {
    let room = format!("bench-pair-{}", std::process::id());
    let (mut a, a_task) = connect(url, &room, ice).await?;
    wait(&mut a, |e| *e == PeerEvent::Joined, "A joined").await?;
    let (mut b, b_driver) = connect(url, &room, ice).await?;
    wait(&mut a, |e| *e == PeerEvent::Open, "A open").await?;
    wait(&mut b, |e| *e == PeerEvent::Open, "B open").await?;
    let b_task = tokio::spawn(async move {
        let mut expect = 0usize;
        let mut got = 0usize;
        while let Some(e) = b.next_event().await {
            match e {
                PeerEvent::Text(t) => {
                    if let Some(n) = t.strip_prefix("expect ").and_then(|n| n.parse().ok()) {
                        expect = n;
                        got = 0;
                    }
                }
                PeerEvent::Binary(data) if expect > 0 => {
                    got += data.len();
                    if got >= expect {
                        expect = 0;
                        if b.send_text("got it").await.is_err() {
                            break;
                        }
                    }
                }
                PeerEvent::Binary(data) if b.send_binary(&data).await.is_err() => break,
                _ => {}
            }
        }
        b_driver.abort();
    });
    Ok((a, a_task, b_task))
}

/// One echoed round trip, in microseconds.
async fn round_trip(a: &mut Peer, payload: &[u8]) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    a.send_binary(payload).await?;
    wait(a, |e| matches!(e, PeerEvent::Binary(_)), "echo").await?;
    Ok(t0.elapsed().as_secs_f64() * 1e6)
}

/// The address of a server given as `host:port` or a `ws://` / `http://` URL.
async fn load_addr(server: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    let hostport = rest.split('/').next().unwrap_or(rest);
    tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("resolving {hostport}"))?
        .find(std::net::SocketAddr::is_ipv4)
        .with_context(|| format!("{hostport} has no IPv4 address"))
}

/// A Switchboard server with its built-in STUN/TURN, on loopback ephemeral ports, in this
/// process. Returns its WebSocket URL and a guard that stops the TURN server.
async fn in_process_server() -> anyhow::Result<(String, TurnGuard)> {
    use rand::Rng as _;
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let turn = switchboard_turn::start(switchboard_turn::TurnConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        secret: secret.clone(),
        ..Default::default()
    })
    .await
    .context("starting the in-process TURN server")?;
    let mut config = switchboard_server::ServerConfig::default();
    config.hub.ice = switchboard_core::ice::IceConfig {
        servers: vec![],
        turn: Some(switchboard_core::ice::TurnRest {
            secret,
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port())],
            ttl: Duration::from_secs(3600),
            user_prefix: switchboard_server::turn_user_prefix(),
        }),
    };
    config.turn_stats = Some(crate::turn_stats(&turn));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(switchboard_server::run(
        config,
        listener,
        std::future::pending(),
    ));
    Ok((
        format!("ws://127.0.0.1:{port}/WebRTCAppEE/websocket"),
        TurnGuard(turn),
    ))
}

struct TurnGuard(switchboard_turn::TurnHandle);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}
