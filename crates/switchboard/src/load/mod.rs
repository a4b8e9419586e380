//! `switchboard bench relay|rate|idle|churn`: a signaling load generator that measures any
//! server speaking one of the supported protocols (Switchboard's three dialects and
//! matchbox_server), so the same tool measures everyone.
//!
//! - `relay`: `--pairs` pairs, each peer keeps `--window` messages in flight to its partner
//!   (a peer sends a new message for every one it receives). Reports delivered msgs/s,
//!   one-way latency percentiles and the loss/reorder check (every sequence number must
//!   arrive once, in order: after the run, senders stop and receivers drain).
//! - `rate`: the same pairs, open loop at a fixed total `--rate`; latency is measured from
//!   each message's *scheduled* send time, so a stalled server cannot hide its backlog.
//! - `idle`: `--peers` joined peers held open; reports the connect+join rate and, given
//!   `--server-pid`, the server's RSS per peer. Sockets are spread over `--sources` loopback
//!   addresses (127.0.0.1, .2, ...: ~28k ephemeral ports each) and the tool raises its own
//!   open-file limit to the hard limit.
//! - `churn`: `--concurrency` workers each repeat: connect a pair, join, 10 messages (5 each
//!   way), leave. Reports pairs/s and the cycle time.
//!
//! With `--server-pid`, the server's CPU use over the measured window is read from
//! `/proc/<pid>/stat`; the tool's own CPU use is always reported beside it, so a saturated
//! load tool is visible. Output: a human-readable report on stderr, one JSON line on stdout.

pub(crate) mod driver;
mod meter;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{FutureExt, SinkExt, StreamExt, stream};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::{sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use driver::{Frame, Peer, Protocol, Target};
use meter::{CpuMeter, pct, raise_nofile, rss_all};

/// Flags of the load scenarios (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Protocol of the server under load.
    #[arg(long, value_enum, default_value_t = Protocol::Antmedia)]
    pub(crate) protocol: Protocol,
    /// Pairs of peers (`relay`, `rate`).
    #[arg(long, default_value_t = 100)]
    pub(crate) pairs: u64,
    /// Messages each peer keeps in flight (`relay`).
    #[arg(long, default_value_t = 16)]
    pub(crate) window: u64,
    /// Total offered messages per second (`rate`).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) rate: u64,
    /// Joined peers to hold open (`idle`).
    #[arg(long, default_value_t = 1000)]
    pub(crate) peers: u64,
    /// Concurrent pair set-ups (`idle`) or churn workers (`churn`).
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// The server's pid: report its CPU use (and RSS for `idle`). Several, comma-separated
    /// (the nodes of a cluster, a redis-server): their sum, and each one's RSS for `idle`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Loopback source addresses to spread sockets over (127.0.0.1 ... 127.0.0.N).
    #[arg(long, default_value_t = 4)]
    pub(crate) sources: u8,
    /// Ant Media application name.
    #[arg(long, default_value = "WebRTCAppEE")]
    pub(crate) app: String,
    /// PeerJS mount path.
    #[arg(long, default_value = "/peerjs/")]
    pub(crate) peerjs_path: String,
    /// Seconds to hold idle peers after the RSS reading (`idle`).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) hold: f64,
    /// A label for the report (e.g. the server's name).
    #[arg(long, default_value = "")]
    pub(crate) label: String,
}

/// Load scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Closed-loop relay throughput.
    Relay,
    /// Fixed offered rate.
    Rate,
    /// Idle joined peers.
    Idle,
    /// Join, exchange, leave.
    Churn,
}

/// Nanoseconds since the tool's epoch (the same clock on both sides of a pair).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs one load scenario against `addr`.
pub(crate) async fn run(
    scenario: Scenario,
    args: LoadArgs,
    addrs: Vec<SocketAddr>,
) -> anyhow::Result<()> {
    let nofile = raise_nofile();
    let sources = (1..=args.sources.max(1))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect::<Vec<_>>();
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    let target = Target {
        protocol: args.protocol,
        addrs: addrs.clone(),
        app: args.app.clone(),
        peerjs_path: args.peerjs_path.clone(),
        tag: format!("sb{}x{}", std::process::id(), now_ns() % 1_000_000_007),
        // Loopback only: other servers are reached from the default address.
        sources: if loopback { sources } else { vec![] },
    };
    let mut report = match scenario {
        Scenario::Relay | Scenario::Rate => relay(scenario, &args, &target).await?,
        Scenario::Idle => idle(&args, &target, nofile).await?,
        Scenario::Churn => churn(&args, &target).await?,
    };
    let name = match scenario {
        Scenario::Relay => "relay",
        Scenario::Rate => "rate",
        Scenario::Idle => "idle",
        Scenario::Churn => "churn",
    };
    report["scenario"] = json!(name);
    report["protocol"] = json!(args.protocol.name());
    report["label"] = json!(args.label);
    report["server"] = match addrs.as_slice() {
        [one] => json!(one.to_string()),
        many => json!(many.iter().map(ToString::to_string).collect::<Vec<_>>()),
    };
    println!("{report}");
    Ok(())
}

/// Phases of a relay run, shared by all peers.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const DRAIN: u8 = 2;

/// Bit set in a peer's `sent` counter once it has sent its last message.
const STOPPED: u64 = 1 << 63;

/// What one peer measured.
struct PeerResult {
    /// Load messages received during the measured window.
    measured: u64,
    /// One-way latency of those, in ns.
    hist: Histogram<u64>,
    /// How late the tool sent scheduled messages (`rate`), in ns.
    lag: Histogram<u64>,
    /// Messages received in total.
    received: u64,
    /// Messages whose sequence number was not the next expected one.
    out_of_order: u64,
    /// Of those, the ones that came after a later one (reordered, not a gap left by a
    /// message that was refused or lost).
    reordered: u64,
    /// Sequence numbers skipped (messages that never arrived before a later one did).
    skipped: u64,
    /// Frames that were not load messages (errors, notifications).
    others: u64,
    /// The first such frame, for the report.
    first_other: Option<String>,
    /// A socket error, if the peer ended on one.
    error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits. The bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// `relay` and `rate`.
async fn relay(
    scenario: Scenario,
    args: &LoadArgs,
    target: &Target,
) -> anyhow::Result<serde_json::Value> {
    if args.pairs == 0 || (scenario == Scenario::Relay && args.window == 0) {
        bail!("--pairs and --window must be at least 1");
    }
    if scenario == Scenario::Rate && args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let t0 = Instant::now();
    let pairs = connect_pairs(target, args.pairs, args.concurrency).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} pairs connected over {} in {connect_s:.2} s",
        args.pairs,
        args.protocol.name()
    );
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let period = Duration::from_secs_f64(2.0 * args.pairs as f64 / args.rate as f64);
    let npeers = 2 * args.pairs;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(npeers as usize);
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        let sent = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        for (side, peer) in [(0, a), (1, b)] {
            let mine = Arc::clone(&sent[side]);
            let theirs = Arc::clone(&sent[1 - side]);
            let phase = Arc::clone(&phase);
            let protocol = args.protocol;
            let window = args.window;
            // Rate: peers' send times are spread evenly over one period.
            let n = (2 * i + side) as u32;
            let first = start + period.mul_f64(f64::from(n) / npeers as f64);
            tasks.push(tokio::spawn(async move {
                let mode = match scenario {
                    Scenario::Rate => Mode::Rate { first, period },
                    _ => Mode::Window(window),
                };
                relay_peer(protocol, peer, mode, &phase, &mine, &theirs).await
            }));
        }
    }
    sleep(Duration::from_secs_f64(args.warmup)).await;
    let cpu = CpuMeter::start(&args.server_pid);
    phase.store(MEASURE, Ordering::Relaxed);
    let measure_start = Instant::now();
    sleep(Duration::from_secs_f64(args.duration)).await;
    phase.store(DRAIN, Ordering::Relaxed);
    let measured_s = measure_start.elapsed().as_secs_f64();
    let (server_cpu, tool_cpu) = cpu.stop();

    let mut hist = histogram();
    let mut lag = histogram();
    let (mut measured, mut received, mut ooo, mut others) = (0, 0, 0, 0);
    let (mut reordered, mut skipped) = (0, 0);
    let mut first_other = None;
    let mut errors = Vec::new();
    let mut sent_total = 0;
    for t in tasks {
        let (r, sent) = t.await.context("a load peer panicked")?;
        sent_total += sent;
        measured += r.measured;
        received += r.received;
        ooo += r.out_of_order;
        reordered += r.reordered;
        skipped += r.skipped;
        others += r.others;
        if first_other.is_none() {
            first_other = r.first_other;
        }
        if let Some(e) = r.error {
            errors.push(e);
        }
        hist.add(&r.hist).ok();
        lag.add(&r.lag).ok();
    }
    let lost = sent_total.saturating_sub(received);
    let rate = measured as f64 / measured_s;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let what = match scenario {
        Scenario::Rate => format!("offered {} msgs/s", args.rate),
        _ => format!("window {}", args.window),
    };
    eprintln!(
        "{} {}: {} pairs, {what}: delivered {rate:.0} msgs/s over {measured_s:.1} s",
        args.label,
        args.protocol.name(),
        args.pairs
    );
    eprintln!(
        "one-way latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
    eprintln!(
        "CPU: server {} of a core, load tool {}; lost {lost} of {sent_total}, out of order {ooo}, other frames {others}",
        pct(server_cpu),
        pct(Some(tool_cpu))
    );
    let lag_p99_us = lag.value_at_quantile(0.99) as f64 / 1000.0;
    if scenario == Scenario::Rate {
        eprintln!("tool send lag behind schedule: p99 {lag_p99_us:.0} µs");
    }
    if let Some(o) = &first_other {
        eprintln!("first other frame: {o}");
    }
    for e in errors.iter().take(3) {
        eprintln!("peer error: {e}");
    }
    Ok(json!({
        "pairs": args.pairs,
        "window": if scenario == Scenario::Relay { Some(args.window) } else { None },
        "offered_rate": if scenario == Scenario::Rate { Some(args.rate) } else { None },
        "seconds": measured_s,
        "msgs_per_s": rate,
        "p50_us": us(0.5),
        "p90_us": us(0.9),
        "p99_us": us(0.99),
        "p999_us": us(0.999),
        "max_us": hist.max() as f64 / 1000.0,
        "sent": sent_total,
        "lost": lost,
        "out_of_order": ooo,
        "reordered": reordered,
        "skipped": skipped,
        "other_frames": others,
        "errors": errors.len(),
        "first_error": errors.first(),
        "first_other_frame": first_other,
        "server_cpu_pct": server_cpu,
        "tool_cpu_pct": tool_cpu,
        "connect_s": connect_s,
        "tool_lag_p99_us": if scenario == Scenario::Rate { Some(lag_p99_us) } else { None },
    }))
}

/// Connects `n` pairs, `concurrency` at a time.
async fn connect_pairs(
    target: &Target,
    n: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<(Peer, Peer)>> {
    stream::iter(0..n)
        .map(|i| driver::pair(target, i, 2 * i as usize))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// How a relay peer sends.
enum Mode {
    /// Closed loop: this many in flight; one new message per message received.
    Window(u64),
    /// Open loop: one message per `period`, the first at `first`.
    Rate {
        first: tokio::time::Instant,
        period: Duration,
    },
}

/// One relay peer: sends per `mode` until the drain phase, then reads until it has
/// everything its partner sent (or 3 s pass). Returns its result and the count it sent.
async fn relay_peer(
    protocol: Protocol,
    mut peer: Peer,
    mode: Mode,
    phase: &AtomicU8,
    mine: &AtomicU64,
    theirs: &AtomicU64,
) -> (PeerResult, u64) {
    let mut r = PeerResult {
        measured: 0,
        hist: histogram(),
        lag: histogram(),
        received: 0,
        out_of_order: 0,
        reordered: 0,
        skipped: 0,
        others: 0,
        first_other: None,
        error: None,
    };
    let mut sent = 0u64;
    let mut expect = 0u64;
    let mut sending = true;
    let (room, to) = (peer.room.clone(), peer.to.clone());
    let send_one = |sent: &mut u64, ts: u64| {
        let mut text = String::with_capacity(320);
        driver::data(protocol, &mut text, &room, &to, *sent, ts);
        *sent += 1;
        mine.store(*sent, Ordering::Relaxed);
        Message::text(text)
    };
    let (window, mut next_send, period) = match mode {
        Mode::Window(w) => (w, None, Duration::ZERO),
        Mode::Rate { first, period } => (0, Some(first), period),
    };
    let mut failed = false;
    for _ in 0..window {
        let m = send_one(&mut sent, now_ns());
        failed |= peer.ws.feed(m).await.is_err();
    }
    failed |= peer.ws.flush().await.is_err();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut timer = pin!(sleep_until(next_send.unwrap_or(far)));
    let mut drain_deadline = None;
    while !failed {
        if sending && phase.load(Ordering::Relaxed) == DRAIN {
            sending = false;
            mine.store(sent | STOPPED, Ordering::Relaxed);
            drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3));
        }
        if !sending {
            let t = theirs.load(Ordering::Relaxed);
            if t & STOPPED != 0 && r.received >= t & !STOPPED {
                break;
            }
        }
        let first = if let Some(deadline) = drain_deadline {
            // Draining: poll now and then so the partner's STOPPED bit is seen.
            match timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(20)),
                peer.ws.next(),
            )
            .await
            {
                Ok(m) => Some(m),
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => continue,
            }
        } else if next_send.is_some() {
            tokio::select! {
                biased;
                () = &mut timer => None,
                m = peer.ws.next() => Some(m),
            }
        } else {
            tokio::select! {
                biased;
                m = peer.ws.next() => Some(m),
                () = sleep(Duration::from_millis(50)) => continue,
            }
        };
        let mut reply = 0u64;
        let mut batch = first;
        loop {
            match batch {
                None => {}
                Some(Some(Ok(Message::Text(t)))) => match driver::classify(protocol, &t) {
                    Frame::Data { seq, ts } => {
                        if seq != expect {
                            r.out_of_order += 1;
                        }
                        if seq < expect {
                            r.reordered += 1;
                        } else {
                            r.skipped += seq - expect;
                        }
                        expect = seq + 1;
                        r.received += 1;
                        if phase.load(Ordering::Relaxed) == MEASURE {
                            r.measured += 1;
                            r.hist
                                .saturating_record(now_ns().saturating_sub(ts).max(1_000));
                        }
                        if sending && window > 0 {
                            reply += 1;
                        }
                    }
                    Frame::Ping => failed |= peer.ws.feed(Message::text("3")).await.is_err(),
                    Frame::Other(_) if !sending => {}
                    Frame::Other(o) => {
                        r.others += 1;
                        if r.first_other.is_none() {
                            r.first_other = Some(o.chars().take(200).collect());
                        }
                    }
                },
                Some(Some(Ok(Message::Close(c)))) => {
                    r.error = Some(format!("closed by the server: {c:?}"));
                    failed = true;
                }
                Some(Some(Ok(_))) => {}
                Some(Some(Err(e))) => {
                    r.error = Some(e.to_string());
                    failed = true;
                }
                Some(None) => {
                    r.error = Some("connection ended".into());
                    failed = true;
                }
            }
            if failed {
                break;
            }
            // Take whatever else is already readable before writing.
            match peer.ws.next().now_or_never() {
                Some(m) => batch = Some(m),
                None => break,
            }
        }
        for _ in 0..reply {
            let m = send_one(&mut sent, now_ns());
            failed |= peer.ws.feed(m).await.is_err();
        }
        if let Some(at) = next_send.as_mut()
            && sending
        {
            // Open loop: send everything due. Messages are stamped with their actual send
            // time (tokio's timers fire up to 1 ms late; that lateness is the tool's, not the
            // server's); how far the tool fell behind its schedule is reported as lag.
            let now = tokio::time::Instant::now();
            while *at <= now {
                r.lag.saturating_record(
                    u64::try_from((now - *at).as_nanos())
                        .unwrap_or(u64::MAX)
                        .max(1_000),
                );
                let m = send_one(&mut sent, now_ns());
                failed |= peer.ws.feed(m).await.is_err();
                *at += period;
            }
            timer.as_mut().reset(*at);
        }
        failed |= peer.ws.flush().await.is_err();
    }
    if sending {
        mine.store(sent | STOPPED, Ordering::Relaxed);
    }
    let _ = peer.ws.close(None).await;
    (r, sent)
}

/// `idle`.
async fn idle(args: &LoadArgs, target: &Target, nofile: u64) -> anyhow::Result<serde_json::Value> {
    let pairs = args.peers.div_ceil(2);
    let peers = pairs * 2;
    if peers + 64 > nofile {
        bail!("{peers} peers need {peers} open files; this process may open {nofile} (ulimit -n)");
    }
    let rss0 = rss_all(&args.server_pid);
    let cpu = CpuMeter::start(&args.server_pid);
    let t0 = Instant::now();
    let held = connect_pairs(target, pairs, args.concurrency).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (server_cpu, tool_cpu) = cpu.stop();
    let rate = peers as f64 / secs;
    // Keep answering pings (socket.io) while held.
    let protocol = args.protocol;
    let holders: Vec<_> = held
        .into_iter()
        .flat_map(|(a, b)| [a, b])
        .map(|mut p| {
            tokio::spawn(async move {
                while let Some(Ok(m)) = p.ws.next().await {
                    if protocol == Protocol::Socketio
                        && matches!(&m, Message::Text(t) if t.as_str() == "2")
                        && p.ws.send(Message::text("3")).await.is_err()
                    {
                        break;
                    }
                }
            })
        })
        .collect();
    // Let the server settle (buffers of the join burst freed) before reading its RSS.
    sleep(Duration::from_secs(2)).await;
    let rss1 = rss_all(&args.server_pid);
    let per_peer = match (&rss0, &rss1) {
        (Some(a), Some(b)) => Some(b.0.saturating_sub(a.0) as f64 * 1024.0 / peers as f64),
        _ => None,
    };
    // Per process: what each holds more, per peer of the whole run (a node holds about
    // peers / nodes of them; a redis-server holds every one's registry entries).
    let each_per_peer: Vec<f64> = match (&rss0, &rss1) {
        (Some(a), Some(b)) => {
            a.1.iter()
                .zip(&b.1)
                .map(|(x, y)| y.saturating_sub(*x) as f64 * 1024.0 / peers as f64)
                .collect()
        }
        _ => Vec::new(),
    };
    eprintln!(
        "{} {}: {peers} joined peers in {secs:.2} s ({rate:.0} peers/s; server CPU {}, load tool {})",
        args.label,
        protocol.name(),
        pct(server_cpu),
        pct(Some(tool_cpu))
    );
    match (&rss0, &rss1, per_peer) {
        (Some(a), Some(b), Some(p)) => eprintln!(
            "server RSS {} KiB → {} KiB: {p:.0} bytes ({:.2} KiB) per joined peer",
            a.0,
            b.0,
            p / 1024.0
        ),
        _ => eprintln!("server RSS: n/a (give --server-pid)"),
    }
    if each_per_peer.len() > 1 {
        for ((pid, a), (b, p)) in args
            .server_pid
            .iter()
            .zip(rss0.iter().flat_map(|r| r.1.iter()))
            .zip(rss1.iter().flat_map(|r| r.1.iter()).zip(&each_per_peer))
        {
            eprintln!("  pid {pid}: RSS {a} KiB → {b} KiB ({p:.0} bytes per peer of the run)");
        }
    }
    sleep(Duration::from_secs_f64(args.hold)).await;
    for h in &holders {
        h.abort();
    }
    for h in holders {
        let _ = h.await;
    }
    Ok(json!({
        "peers": peers,
        "connect_s": secs,
        "peers_per_s": rate,
        "server_rss_before_kib": rss0.as_ref().map(|r| r.0),
        "server_rss_after_kib": rss1.as_ref().map(|r| r.0),
        "rss_bytes_per_peer": per_peer,
        "each_rss_after_kib": rss1.map(|r| r.1),
        "each_rss_bytes_per_peer": each_per_peer,
        "server_cpu_pct": server_cpu,
        "tool_cpu_pct": tool_cpu,
    }))
}

/// `churn`.
async fn churn(args: &LoadArgs, target: &Target) -> anyhow::Result<serde_json::Value> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let next_pair = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let target = target.clone();
        let phase = Arc::clone(&phase);
        let next_pair = Arc::clone(&next_pair);
        workers.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut done = 0u64;
            let mut error = None;
            while phase.load(Ordering::Relaxed) != DRAIN {
                let i = next_pair.fetch_add(1, Ordering::Relaxed);
                let t0 = now_ns();
                match cycle(&target, i).await {
                    Ok(()) if phase.load(Ordering::Relaxed) == MEASURE => {
                        done += 1;
                        hist.saturating_record(now_ns().saturating_sub(t0).max(1_000));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            (done, hist, error)
        }));
    }
    sleep(Duration::from_secs_f64(args.warmup)).await;
    let cpu = CpuMeter::start(&args.server_pid);
    phase.store(MEASURE, Ordering::Relaxed);
    let t0 = Instant::now();
    sleep(Duration::from_secs_f64(args.duration)).await;
    phase.store(DRAIN, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (server_cpu, tool_cpu) = cpu.stop();
    let mut hist = histogram();
    let mut done = 0;
    let mut errors = Vec::new();
    for w in workers {
        let (d, h, e) = w.await.context("a churn worker panicked")?;
        done += d;
        hist.add(&h).ok();
        errors.extend(e);
    }
    let rate = done as f64 / secs;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
    eprintln!(
        "{} {}: {rate:.0} pairs/s (join, 10 msgs, leave; {} workers); cycle ms p50 {:.2} p99 {:.2}; server CPU {}, load tool {}",
        args.label,
        args.protocol.name(),
        args.concurrency,
        ms(0.5),
        ms(0.99),
        pct(server_cpu),
        pct(Some(tool_cpu))
    );
    for e in errors.iter().take(3) {
        eprintln!("worker error: {e}");
    }
    if done == 0 && !errors.is_empty() {
        bail!("churn failed: {}", errors[0]);
    }
    Ok(json!({
        "concurrency": args.concurrency,
        "seconds": secs,
        "pairs_per_s": rate,
        "cycle_p50_ms": ms(0.5),
        "cycle_p99_ms": ms(0.99),
        "errors": errors.len(),
        "first_error": errors.first(),
        "server_cpu_pct": server_cpu,
        "tool_cpu_pct": tool_cpu,
    }))
}

/// One churn cycle: connect and join a pair, 5 messages each way, leave.
async fn cycle(target: &Target, i: u64) -> anyhow::Result<()> {
    let (mut a, mut b) = driver::pair(target, i, 2 * i as usize).await?;
    exchange(target.protocol, &mut a, &mut b).await?;
    exchange(target.protocol, &mut b, &mut a).await?;
    tokio::join!(
        driver::leave(target.protocol, a),
        driver::leave(target.protocol, b)
    );
    Ok(())
}

/// Five load messages from `from`, all received by `to`.
async fn exchange(protocol: Protocol, from: &mut Peer, to: &mut Peer) -> anyhow::Result<()> {
    for seq in 0..5 {
        let mut text = String::with_capacity(320);
        driver::data(protocol, &mut text, &from.room, &from.to, seq, now_ns());
        from.ws.feed(Message::text(text)).await?;
    }
    from.ws.flush().await?;
    for _ in 0..5 {
        driver::wait_for(&mut to.ws, "a relayed message", |t| {
            matches!(driver::classify(protocol, t), Frame::Data { .. })
        })
        .await?;
    }
    Ok(())
}
