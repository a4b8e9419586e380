//! `GET /metrics`: the counters of the edge, the hub, socket.io, cluster mode, TURN and the
//! process in the Prometheus text format, made with the `prometheus` crate.
//!
//! Nothing on the message path touches a metric: the hub and the hub task count in plain
//! integers they own ([`HubMeter`], [`switchboard_core::Stats`]), connection tasks add the
//! bytes they write to a counter of their own connection, and a scrape asks the hub task for
//! a snapshot. A scrape costs one hub input and the encoding; scrapes closer together than
//! [`MIN_INTERVAL`] get the previous text, so a client scraping in a loop cannot make the
//! hub do more. Labels whose values come from clients (the Ant Media app) are bounded:
//! [`MetricsConfig::max_apps`] apps get their own label value, the rest count as `_other`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use switchboard_core::{Change, Dialect, LeaveReason, PeerEvent, PerDialect};

use crate::outbound::ConnShared;

/// Let-go connections are checked for ended tasks when this many wait (and at each scrape).
const CLOSING_SWEEP: usize = 1024;

/// Scrapes closer together than this get the text made for the previous one.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The label value of the apps past [`MetricsConfig::max_apps`].
pub const OTHER_APP: &str = "_other";

/// Settings of `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all. Default true.
    pub enabled: bool,
    /// When set, a scrape must send `Authorization: Bearer <key>` (else 401).
    pub key: Option<Arc<str>>,
    /// Apps (Ant Media) that get a label value of their own in the per-app metrics; the
    /// others are counted under [`OTHER_APP`]. Default 64.
    pub max_apps: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: None,
            max_apps: 64,
        }
    }
}

/// Metrics another part of the process adds to each scrape (the built-in TURN server): it
/// registers its families in the registry it is given. The server knows nothing of them.
#[derive(Clone)]
pub struct MetricsSource(pub Arc<AddMetrics>);

/// What a [`MetricsSource`] calls on each scrape.
pub type AddMetrics = dyn Fn(&Registry) -> prometheus::Result<()> + Send + Sync;

impl MetricsSource {
    /// A source that registers its metrics with `add` on each scrape.
    pub fn new(add: impl Fn(&Registry) -> prometheus::Result<()> + Send + Sync + 'static) -> Self {
        Self(Arc::new(add))
    }
}

impl std::fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSource")
    }
}

/// What the hub task counts for metrics, in plain integers it owns.
#[derive(Debug)]
pub(crate) struct HubMeter {
    /// Messages received from clients.
    pub(crate) received: PerDialect<u64>,
    /// Joins and leaves (by reason) since start.
    joins: PerDialect<u64>,
    leaves: Vec<(Dialect, LeaveReason, u64)>,
    /// Peers in a room now, by dialect and app (bounded per dialect, see
    /// [`MetricsConfig::max_apps`]).
    joined: HashMap<(Dialect, Box<str>), i64>,
    max_apps: usize,
    /// Bytes of the socket.io events emitted (event name and payload).
    sio_sent_bytes: u64,
    /// Connections the hub task let go of whose tasks may still write, and the text bytes
    /// of those that ended: a counter never goes back when a connection closes.
    closing: Vec<Arc<ConnShared>>,
    closed_sent_bytes: PerDialect<u64>,
    /// Time the hub task spends on one batch of inputs (handling and carrying out).
    pub(crate) busy: Histogram,
}

/// A copy of [`HubMeter`]'s counts, plus what is read from the connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeterSnapshot {
    pub(crate) received: PerDialect<u64>,
    pub(crate) joins: PerDialect<u64>,
    pub(crate) leaves: Vec<(Dialect, LeaveReason, u64)>,
    pub(crate) joined: Vec<(Dialect, Box<str>, i64)>,
    pub(crate) sent_bytes: PerDialect<u64>,
    pub(crate) errors: Vec<(Dialect, &'static str, u64)>,
    /// The hub task's batch times (shared, not copied).
    pub(crate) busy: Option<Histogram>,
}

fn bump<T: Copy + std::ops::AddAssign>(p: &mut PerDialect<T>, d: Dialect, by: T) {
    match d {
        Dialect::AntMedia => p.antmedia += by,
        Dialect::SocketIo => p.socketio += by,
        Dialect::PeerJs => p.peerjs += by,
    }
}

impl HubMeter {
    pub(crate) fn new(config: &MetricsConfig) -> Self {
        let busy = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_hub_batch_seconds",
                "Time the hub task spends on one batch of inputs (at most 256), handling them \
                 and queueing what they produce",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
        )
        .unwrap_or_else(|_| unreachable!("valid histogram options"));
        Self {
            received: PerDialect::default(),
            joins: PerDialect::default(),
            leaves: Vec::new(),
            joined: HashMap::new(),
            max_apps: config.max_apps,
            sio_sent_bytes: 0,
            closing: Vec::new(),
            closed_sent_bytes: PerDialect::default(),
            busy,
        }
    }

    /// Counts a message from a client.
    pub(crate) fn received(&mut self, dialect: Dialect) {
        bump(&mut self.received, dialect, 1);
    }

    /// A connection the hub task let go of: counted until its task drops its share.
    pub(crate) fn closing(&mut self, shared: &Arc<ConnShared>) {
        self.closing.push(Arc::clone(shared));
        if self.closing.len() >= CLOSING_SWEEP {
            self.sweep();
        }
    }

    /// Moves the connections whose tasks ended into `closed_sent_bytes`.
    fn sweep(&mut self) {
        let closed = &mut self.closed_sent_bytes;
        self.closing.retain(|s| {
            if Arc::strong_count(s) > 1 {
                return true;
            }
            let (d, n) = s.sent_bytes();
            bump(closed, d, n);
            false
        });
    }

    /// Counts the bytes of a socket.io event emitted.
    pub(crate) fn sio_sent(&mut self, n: usize) {
        self.sio_sent_bytes += n as u64;
    }

    /// Counts a join or a leave.
    pub(crate) fn event(&mut self, e: &PeerEvent) {
        // The bound is per dialect: only Ant Media's apps come from clients (socket.io has
        // one namespace, PeerJS one key), and they must not push the others out.
        let known = self.joined.contains_key(&(e.dialect, e.app.clone()));
        let app = if known
            || self.joined.keys().filter(|(d, _)| *d == e.dialect).count() < self.max_apps
        {
            e.app.clone()
        } else {
            OTHER_APP.into()
        };
        let now = self.joined.entry((e.dialect, app)).or_insert(0);
        match e.change {
            Change::Joined => {
                *now += 1;
                bump(&mut self.joins, e.dialect, 1);
            }
            Change::Left(reason) => {
                *now -= 1;
                match self
                    .leaves
                    .iter_mut()
                    .find(|(d, r, _)| *d == e.dialect && *r == reason)
                {
                    Some(l) => l.2 += 1,
                    None => self.leaves.push((e.dialect, reason, 1)),
                }
            }
        }
    }

    /// The counts, with the hub's error counts and the bytes written to the `open`
    /// connections.
    pub(crate) fn snapshot<'a>(
        &mut self,
        errors: &switchboard_core::ErrorCounts,
        open: impl Iterator<Item = &'a ConnShared>,
    ) -> MeterSnapshot {
        self.sweep();
        let mut sent_bytes = self.closed_sent_bytes;
        sent_bytes.socketio += self.sio_sent_bytes;
        for s in open {
            let (d, n) = s.sent_bytes();
            bump(&mut sent_bytes, d, n);
        }
        for s in &self.closing {
            let (d, n) = s.sent_bytes();
            bump(&mut sent_bytes, d, n);
        }
        MeterSnapshot {
            received: self.received,
            joins: self.joins,
            leaves: self.leaves.clone(),
            joined: self
                .joined
                .iter()
                .map(|((d, app), n)| (*d, app.clone(), *n))
                .collect(),
            sent_bytes,
            errors: errors.iter().collect(),
            busy: Some(self.busy.clone()),
        }
    }
}

/// The last text made, for scrapes within [`MIN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct Cache(tokio::sync::Mutex<Option<(Instant, Arc<str>)>>);

impl Cache {
    /// The text of a scrape now: made by `make` unless the last one is recent enough.
    pub(crate) async fn get<F: Future<Output = String>>(
        &self,
        make: impl FnOnce() -> F,
    ) -> Arc<str> {
        let mut last = self.0.lock().await;
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < MIN_INTERVAL
        {
            return Arc::clone(text);
        }
        let text: Arc<str> = make().await.into();
        *last = Some((Instant::now(), Arc::clone(&text)));
        text
    }
}

/// One scrape's families, put together from snapshots.
pub(crate) struct Families {
    registry: Registry,
}

impl Families {
    pub(crate) fn new() -> Self {
        Self {
            registry: Registry::new(),
        }
    }

    /// The registry a [`MetricsSource`] adds its families to.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    fn register(&self, c: impl Collector + 'static) {
        // Names are fixed and distinct: registering never fails.
        let _ = self.registry.register(Box::new(c));
    }

    /// A counter family with `labels`, one sample per row.
    pub(crate) fn counter<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        let Ok(c) = IntCounterVec::new(Opts::new(name, help), labels) else {
            return;
        };
        for (values, n) in rows {
            c.with_label_values(&values).inc_by(n);
        }
        self.register(c);
    }

    /// A gauge family with `labels`, one sample per row.
    pub(crate) fn gauge<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, i64)>,
    ) {
        let Ok(g) = IntGaugeVec::new(Opts::new(name, help), labels) else {
            return;
        };
        for (values, n) in rows {
            g.with_label_values(&values).set(n);
        }
        self.register(g);
    }

    /// A counter without labels.
    pub(crate) fn counter1(&self, name: &str, help: &str, n: u64) {
        self.counter(name, help, &[], [(vec![], n)]);
    }

    /// A gauge without labels.
    pub(crate) fn gauge1(&self, name: &str, help: &str, n: i64) {
        self.gauge(name, help, &[], [(vec![], n)]);
    }

    /// A counter family by dialect.
    pub(crate) fn by_dialect(&self, name: &str, help: &str, p: PerDialect<u64>) {
        self.counter(
            name,
            help,
            &["dialect"],
            p.iter().map(|(d, n)| (vec![d.as_str()], n)),
        );
    }

    /// A gauge family by dialect.
    pub(crate) fn gauge_by_dialect(&self, name: &str, help: &str, p: PerDialect<usize>) {
        self.gauge(
            name,
            help,
            &["dialect"],
            p.iter()
                .map(|(d, n)| (vec![d.as_str()], i64::try_from(n).unwrap_or(i64::MAX))),
        );
    }

    /// The text of these families and of `more` (the long-lived ones), sorted by name.
    pub(crate) fn encode(self, more: &Registry) -> String {
        let mut families = self.registry.gather();
        families.extend(more.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid families, which gather() never returns.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The meter's families and the hub's.
pub(crate) fn add_hub(f: &Families, hub: &switchboard_core::Stats, m: &MeterSnapshot) {
    if let Some(busy) = &m.busy {
        f.register(busy.clone());
    }
    f.gauge_by_dialect(
        "switchboard_connections",
        "Signaling connections open now",
        hub.connections_by_dialect,
    );
    f.gauge_by_dialect(
        "switchboard_rooms",
        "Rooms with at least one peer now (PeerJS has no rooms)",
        hub.rooms_by_dialect,
    );
    f.gauge(
        "switchboard_joined_peers",
        "Peers in a room now (PeerJS: sockets holding an id), by dialect and app; apps past \
         --metrics-max-apps count as _other",
        &["dialect", "app"],
        m.joined
            .iter()
            .map(|(d, app, n)| (vec![d.as_str(), &**app], *n)),
    );
    f.by_dialect(
        "switchboard_joins_total",
        "Joins of a room (PeerJS: ids opened)",
        m.joins,
    );
    f.counter(
        "switchboard_leaves_total",
        "Peers that left a room, by why",
        &["dialect", "reason"],
        m.leaves
            .iter()
            .map(|(d, r, n)| (vec![d.as_str(), r.as_str()], *n)),
    );
    f.by_dialect(
        "switchboard_received_messages_total",
        "Messages received from clients",
        m.received,
    );
    f.by_dialect(
        "switchboard_relayed_messages_total",
        "Messages relayed to another peer",
        hub.relayed_by_dialect,
    );
    f.by_dialect(
        "switchboard_sent_bytes_total",
        "Text bytes of the signaling messages written to clients (Ant Media and PeerJS \
         WebSockets; socket.io: the event payloads)",
        m.sent_bytes,
    );
    f.counter(
        "switchboard_errors_total",
        "Error replies sent to clients, by definition (the name on the wire)",
        &["dialect", "definition"],
        m.errors
            .iter()
            .map(|(d, def, n)| (vec![d.as_str(), *def], *n)),
    );
    f.counter1(
        "switchboard_idle_timeouts_total",
        "Connections closed for sending nothing for the idle timeout",
        hub.idle_closed,
    );
    f.counter1(
        "switchboard_rate_limited_total",
        "Messages and joins refused with rate_limited",
        hub.rate_limited,
    );
    f.counter1(
        "switchboard_rate_limit_closes_total",
        "Connections closed for going on after rate_limited refusals",
        hub.rate_limit_closed,
    );
    f.counter1(
        "switchboard_kicked_total",
        "Connections kicked by an operator",
        hub.kicked,
    );
    f.counter1(
        "switchboard_auth_refusals_total",
        "Joins and requests refused for their room token",
        hub.auth_refused,
    );
    f.gauge1(
        "switchboard_peerjs_queued_messages",
        "PeerJS messages waiting for an id that is not connected",
        i64::try_from(hub.queued).unwrap_or(i64::MAX),
    );
    f.gauge1(
        "switchboard_peerjs_queued_bytes",
        "Bytes of the PeerJS messages waiting for an id",
        i64::try_from(hub.queued_bytes).unwrap_or(i64::MAX),
    );
}

/// The registry of what lives as long as the server: the process's own metrics (CPU,
/// memory, file descriptors, start time).
pub(crate) fn long_lived() -> Registry {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    let _ = r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    r
}

/// Whether a scrape's key is the configured one (compared as digests, so the time taken
/// says nothing of how much of it matched).
pub(crate) fn key_matches(given: &str, key: &str) -> bool {
    use sha1::Digest as _;
    sha1::Sha1::digest(given.as_bytes()) == sha1::Sha1::digest(key.as_bytes())
}

/// Where one scrape's figures come from.
pub(crate) struct Sources<'a> {
    pub(crate) hub: &'a crate::hub_task::HubSender,
    pub(crate) edge: &'a crate::EdgeStats,
    pub(crate) eio: &'a crate::eio_guard::EioGuard,
    pub(crate) turn: Option<&'a MetricsSource>,
    pub(crate) nodes: Option<usize>,
    pub(crate) long_lived: &'a Registry,
    pub(crate) webhooks: Option<&'a crate::webhooks::WebhookStats>,
}

/// The text of one scrape.
pub(crate) async fn render(src: Sources<'_>) -> String {
    let f = Families::new();
    let e = src.edge;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    f.gauge1(
        "switchboard_http_connections",
        "TCP connections open now (WebSocket, socket.io, plain HTTP)",
        i64::try_from(load(&e.open)).unwrap_or(i64::MAX),
    );
    let mut rejected = vec![
        (vec!["open_limit"], load(&e.refused_open_limit)),
        (vec!["per_ip_limit"], load(&e.refused_per_ip)),
        (vec!["header_timeout"], load(&e.header_timeouts)),
        (vec!["origin"], load(&e.refused_origin)),
        (vec!["tls_handshake"], load(&e.tls_handshake_failures)),
        (vec!["socketio_sessions"], src.eio.refused()),
    ];
    let hub = src.hub.stats_with_meter().await;
    if let Some(h) = &hub {
        rejected.push((vec!["slow_consumer"], h.slow_consumers));
        add_hub(&f, &h.hub, &h.meter);
        f.gauge1(
            "switchboard_hub_queue_depth",
            "Inputs waiting in the hub task's queue",
            i64::try_from(h.queue_depth).unwrap_or(i64::MAX),
        );
        f.gauge1(
            "switchboard_outbound_queued_bytes",
            "Bytes waiting in the connections' outbound queues",
            i64::try_from(h.queued_bytes).unwrap_or(i64::MAX),
        );
        if let Some(nodes) = src.nodes {
            let c = &h.cluster;
            f.gauge1(
                "switchboard_cluster_nodes",
                "Live nodes of the cluster, as this node sees them",
                i64::try_from(nodes).unwrap_or(i64::MAX),
            );
            f.counter1(
                "switchboard_cluster_sent_messages_total",
                "Messages sent to peers on other nodes",
                c.sent,
            );
            f.counter1(
                "switchboard_cluster_received_messages_total",
                "Messages from other nodes delivered to a peer here",
                c.received,
            );
            f.counter1(
                "switchboard_cluster_unavailable_total",
                "Requests answered cluster_unavailable",
                c.unavailable,
            );
        }
    }
    f.counter(
        "switchboard_rejected_connections_total",
        "Connections refused or dropped by a limit, by which (slow_consumer: a client that \
         did not read)",
        &["reason"],
        rejected,
    );
    f.gauge1(
        "switchboard_up",
        "1 while the hub answers",
        i64::from(hub.is_some()),
    );
    if let Some(w) = src.webhooks {
        f.counter(
            "switchboard_webhook_events_total",
            "Webhook deliveries by outcome: delivered (2xx), retried (an attempt failed), \
             failed (given up after the retries), dropped (a URL's queue was full)",
            &["outcome"],
            crate::webhooks::WebhookStats::NAMES
                .iter()
                .zip(w.values())
                .map(|(k, v)| (vec![*k], v)),
        );
    }
    if let Some(turn) = src.turn {
        if let Err(e) = (turn.0)(f.registry()) {
            tracing::warn!("metrics: TURN metrics left out: {e}");
        }
    }
    f.encode(src.long_lived)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ConnId;

    fn event(app: &str, change: Change) -> PeerEvent {
        PeerEvent {
            conn: ConnId(1),
            dialect: Dialect::AntMedia,
            app: app.into(),
            room: "r".into(),
            change,
        }
    }

    #[test]
    fn apps_past_the_bound_count_as_other_and_never_grow_the_table() {
        let mut m = HubMeter::new(&MetricsConfig {
            max_apps: 2,
            ..MetricsConfig::default()
        });
        for i in 0..1000 {
            m.event(&event(&format!("app{i}"), Change::Joined));
        }
        m.event(&event("app0", Change::Left(LeaveReason::Leave)));
        m.event(&event("app999", Change::Left(LeaveReason::IdleTimeout)));
        let s = m.snapshot(
            &switchboard_core::ErrorCounts::default(),
            std::iter::empty(),
        );
        let mut joined: Vec<(String, i64)> = s
            .joined
            .iter()
            .map(|(d, app, n)| (format!("{}/{app}", d.as_str()), *n))
            .collect();
        joined.sort();
        assert_eq!(
            joined,
            vec![
                ("antmedia/_other".to_owned(), 997),
                ("antmedia/app0".to_owned(), 0),
                ("antmedia/app1".to_owned(), 1),
            ]
        );
        assert_eq!(s.joins.antmedia, 1000);
        assert_eq!(s.leaves.len(), 2);
    }
}
