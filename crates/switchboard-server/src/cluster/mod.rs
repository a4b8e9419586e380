//! Cluster mode on Redis, first slice: membership. Each node holds a lease in Redis and
//! sees which nodes are alive; `/api/v1/stats` shows this node and the cluster.
//!
//! The registry is one sorted set, `sb:nodes` (member: node id, score: lease expiry in Redis
//! milliseconds), and one key per node, `sb:node:<id>` (its counts as JSON, expiring with the
//! lease). Every renewal is one Lua script, run atomically by Redis with Redis's own clock
//! (`TIME`), so nodes whose clocks disagree still agree on who is alive: it renews this
//! node's lease, drops every lease that has run out, and returns the live nodes and their
//! counts. A node killed without a goodbye is gone from every view one lease plus one renewal
//! period later (5 s + 1 s by default); a node that stops cleanly removes itself at once.
//!
//! While Redis is unreachable the node runs on as a single node (its own clients are not
//! affected), says so in its stats and log, and registers again as soon as Redis answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

/// Cluster mode's settings.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS).
    pub redis_url: String,
    /// This node's id, unique in the cluster (the binary draws one at random by default).
    pub node_id: String,
    /// How long a node counts as alive after its last renewal. Default 5 s.
    pub lease: Duration,
    /// How often the lease is renewed (and the cluster view refreshed). Default 1 s.
    pub renew_every: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &redacted_url(&self.redis_url))
            .field("node_id", &self.node_id)
            .field("lease", &self.lease)
            .field("renew_every", &self.renew_every)
            .finish()
    }
}

impl ClusterConfig {
    /// Defaults for `redis_url` and `node_id`.
    #[must_use]
    pub fn new(redis_url: String, node_id: String) -> Self {
        Self {
            redis_url,
            node_id,
            lease: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
        }
    }

    /// Checks the URL's form and the timings.
    ///
    /// # Errors
    /// A URL the Redis client cannot use, an empty or odd node id, or a lease that a renewal
    /// period cannot keep alive.
    pub fn validate(&self) -> Result<(), String> {
        redis::Client::open(self.redis_url.as_str())
            .map_err(|e| format!("redis_url {}: {e}", redacted_url(&self.redis_url)))?;
        if self.node_id.is_empty()
            || self.node_id.len() > 64
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err("node_id must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
        }
        if self.renew_every.is_zero() || self.lease < self.renew_every * 2 {
            return Err("the cluster lease must be at least twice the renewal period".into());
        }
        Ok(())
    }
}

/// A Redis URL without its password, for logs.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let host = &url[at + 1..];
            let user = rest.split_once('@').map_or("", |(u, _)| u);
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// What this node knows of the cluster, for `/api/v1/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ClusterView {
    pub(crate) node: String,
    /// Whether the last renewal reached Redis.
    pub(crate) redis_up: bool,
    /// The live nodes (this one included while Redis is up), sorted.
    pub(crate) nodes: Vec<String>,
    /// Connections and rooms over the live nodes (each node's counts as of its last renewal).
    pub(crate) connections: u64,
    pub(crate) rooms: u64,
    /// Renewals that failed since start (Redis unreachable or erroring).
    pub(crate) redis_errors: u64,
    /// The last Redis error, if the last renewal failed.
    pub(crate) last_error: Option<String>,
    /// The command task's and subscriber's counters.
    #[serde(skip)]
    pub(crate) health: Arc<Health>,
}

impl ClusterView {
    /// The view and the edge's counters, for `/api/v1/stats`; `hub`: the hub's cluster
    /// counters.
    pub(crate) fn json(&self, hub: Option<switchboard_core::ClusterStats>) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let h = &self.health;
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["subscribed"] = h.subscribed.load(Relaxed).into();
        v["redis_commands"] = h.commands.load(Relaxed).into();
        v["redis_commands_failed"] = h.failed.load(Relaxed).into();
        v["messages_unheard"] = h.unheard.load(Relaxed).into();
        v["messages_in"] = h.received.load(Relaxed).into();
        v["messages_malformed"] = h.malformed.load(Relaxed).into();
        if let Some(c) = hub {
            v["relayed_out"] = c.sent.into();
            v["relayed_in"] = c.received.into();
            v["stale"] = c.stale.into();
            v["unavailable"] = c.unavailable.into();
            v["partner_node_down"] = c.partner_node_down.into();
            v["routed_direct"] = c.routed_direct.into();
            v["route_misses"] = c.route_misses.into();
            v["route_resets"] = c.route_resets.into();
            v["routes"] = c.routes.into();
        }
        v
    }
}

pub(crate) mod admin;
mod bus;
pub(crate) mod registry;
mod scripts;

pub(crate) use registry::Health;

/// Renews this node's lease: KEYS[1] = the registry (sorted set); ARGV = node id, lease ms,
/// this node's counts (JSON), key prefix of the per-node counts, an epoch to set if Redis
/// has none, the purge budget, the epoch this node saw last (empty at its first
/// registration). A node that sees the epoch change (Redis lost its data under it) starts one
/// lease of settling (`sb:settling`): no new seat, id or room place is taken while every
/// node takes back what it holds, so a newcomer cannot take one of them. Leases that ran out mark their
/// nodes dead (`sb:dead`); the
/// seats of dead nodes are freed a budget at a time. Returns the epoch, whether this node's
/// lease was still running before this renewal (1/0), then the live nodes and their counts.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local epoch = redis.call('GET', 'sb:epoch')
if not epoch then
  redis.call('SET', 'sb:epoch', ARGV[5])
  epoch = ARGV[5]
end
if ARGV[7] ~= '' and epoch ~= ARGV[7] then
  redis.call('SET', 'sb:settling', '1', 'PX', lease)
end
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
local was_live = 0
if mine and tonumber(mine) > now then was_live = 1 end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  if id ~= ARGV[1] then redis.call('SADD', 'sb:dead', id) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[3], 'PX', lease)
redis.call('SREM', 'sb:dead', ARGV[1])
local budget = tonumber(ARGV[6])
for _, id in ipairs(redis.call('SMEMBERS', 'sb:dead')) do
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('SREM', 'sb:dead', id)
  elseif budget > 0 then
    local n, left = purge(id, budget)
    budget = budget - n
    if left == 0 then redis.call('SREM', 'sb:dead', id) end
  end
end
local out = {epoch, tostring(was_live)}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[4] .. id) or ''
end
return out
";

/// The registry's key and the prefix of the per-node keys.
pub(crate) const NODES: &str = "sb:nodes";
const NODE_PREFIX: &str = "sb:node:";

/// A connection manager that gives up quickly: an outage costs a renewal or a batch of
/// commands, never a stuck task.
/// A Redis client for `url` whose connections send each command at once (`TCP_NODELAY`;
/// redis-rs leaves Nagle's algorithm on, which holds a command back while the one before is
/// unanswered: a round trip added to a message between nodes under load).
fn client(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    redis::Client::open(url.into_connection_info()?.set_tcp_settings(tcp))
}

pub(crate) async fn connect(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_connection_manager_with_config(config),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection timed out",
        ))),
    }
}

/// The cluster edge's parts, started by [`start`].
pub(crate) struct Cluster {
    pub(crate) view: Arc<Mutex<ClusterView>>,
    /// The admin API across the cluster.
    pub(crate) admin: Option<Arc<admin::ClusterAdmin>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Starts cluster mode: membership, the command task and the subscriber. `commands` is the
/// queue the hub task fills with its cluster outputs.
pub(crate) fn start(
    config: ClusterConfig,
    hub: crate::hub_task::HubSender,
    commands: tokio::sync::mpsc::Receiver<registry::Command>,
    health: Arc<Health>,
    stop: tokio_util::sync::CancellationToken,
) -> Cluster {
    let view = Arc::new(Mutex::new(ClusterView {
        node: config.node_id.clone(),
        nodes: vec![config.node_id.clone()],
        health: Arc::clone(&health),
        ..ClusterView::default()
    }));
    let admin = client(&config.redis_url).ok().map(|c| {
        Arc::new(admin::ClusterAdmin::new(
            config.node_id.clone(),
            c,
            Arc::clone(&view),
            hub.clone(),
        ))
    });
    let task = tokio::spawn(run(
        config,
        Arc::clone(&view),
        hub,
        commands,
        health,
        admin.clone(),
        stop,
    ));
    Cluster { view, admin, task }
}

/// Runs the membership loop until `stop` is cancelled; then leaves the cluster (removes
/// this node's lease and frees its seats) if Redis answers.
async fn run(
    config: ClusterConfig,
    view: Arc<Mutex<ClusterView>>,
    hub: crate::hub_task::HubSender,
    commands: tokio::sync::mpsc::Receiver<registry::Command>,
    health: Arc<Health>,
    admin: Option<Arc<admin::ClusterAdmin>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let (Ok(client), Some(admin)) = (client(&config.redis_url), admin) else {
        return; // validated at start
    };
    let Ok(node) = switchboard_proto::cluster::NodeId::new(&config.node_id) else {
        return; // validated at start
    };
    let registry = tokio::spawn(registry::run(
        client.clone(),
        node.clone(),
        commands,
        hub.clone(),
        Arc::clone(&health),
    ));
    let bus = tokio::spawn(bus::run(
        client.clone(),
        node.clone(),
        hub.clone(),
        Arc::clone(&health),
        admin,
        stop.clone(),
    ));
    let script = format!("{}\n{RENEW}", registry::PURGE_FN);
    let lease_ms = u64::try_from(config.lease.as_millis()).unwrap_or(u64::MAX);
    let mut con: Option<ConnectionManager> = None;
    let mut was_up = None;
    let mut watch = Watch::new(
        config.node_id.clone(),
        config.lease,
        config.lease + config.renew_every * 2,
    );
    loop {
        if con.is_none() {
            match connect(&client).await {
                Ok(c) => con = Some(c),
                Err(e) => note_failure(&view, &mut was_up, &e.to_string()),
            }
        }
        if let Some(c) = con.as_mut() {
            let counts = hub.stats().await.map_or_else(
                || serde_json::json!({}),
                |s| serde_json::json!({"connections": s.hub.connections, "rooms": s.hub.rooms}),
            );
            // The epoch Redis takes if it has none: new at every renewal, so an epoch that
            // Redis lost is never set again (a node would take its data loss for a lapse
            // of its own lease, and end its pairs across nodes).
            let epoch_candidate = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
            let mut renew = redis::cmd("EVAL");
            renew
                .arg(&script)
                .arg(1)
                .arg(NODES)
                .arg(&config.node_id)
                .arg(lease_ms)
                .arg(counts.to_string())
                .arg(NODE_PREFIX)
                .arg(&epoch_candidate)
                .arg(registry::PURGE_BUDGET)
                .arg(watch.epoch.as_deref().unwrap_or(""));
            let sent = std::time::Instant::now();
            let renewal = renew.query_async::<Vec<String>>(c);
            match tokio::time::timeout(Duration::from_secs(2), renewal).await {
                Ok(Ok(flat)) if flat.len() >= 2 => {
                    let now = sent;
                    let live: Vec<&str> = flat[2..].chunks(2).map(|p| p[0].as_str()).collect();
                    let dirty = health
                        .dirty
                        .swap(false, std::sync::atomic::Ordering::Relaxed);
                    let verdict = watch.renewed(now, &flat[0], flat[1] == "1", &live, dirty);
                    for down in verdict.down {
                        tracing::warn!("cluster: node {down} is gone; ending its pairs");
                        if let Ok(id) = switchboard_proto::cluster::NodeId::new(&down) {
                            let _ = hub.node_down(id).await;
                        }
                    }
                    if let Some(isolated) = verdict.reregister {
                        if isolated {
                            tracing::warn!(
                                "cluster: this node's lease ran out while Redis was \
                                 unreachable; ending pairs across nodes and registering again"
                            );
                        }
                        let _ = hub.cluster_reregister(isolated).await;
                    }
                    note_view(&view, &mut was_up, &flat[2..]);
                }
                Ok(Ok(_)) => note_failure(&view, &mut was_up, "unexpected renewal reply"),
                Ok(Err(e)) => {
                    watch.failed();
                    note_failure(&view, &mut was_up, &e.to_string());
                }
                Err(_) => {
                    watch.failed();
                    note_failure(&view, &mut was_up, "renewal timed out");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.renew_every) => {}
            () = stop.cancelled() => break,
        }
    }
    bus.abort();
    registry.abort();
    if let Some(c) = con.as_mut() {
        let mut pipe = redis::pipe();
        pipe.zrem(NODES, &config.node_id)
            .del(format!("{NODE_PREFIX}{}", config.node_id))
            .cmd("EVAL")
            .arg(format!(
                "{}\nlocal n, left = purge(ARGV[1], tonumber(ARGV[2]))\nreturn left",
                registry::PURGE_FN
            ))
            .arg(0)
            .arg(&config.node_id)
            .arg(registry::PURGE_ALL)
            .ignore();
        let leave = pipe.query_async::<()>(c);
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), leave).await {
            tracing::info!("left the cluster (node {})", config.node_id);
        }
    }
}

/// Decides, from the renewals, which nodes are gone and when this node must claim its
/// seats again. Pure (the clock is passed in), so its rules are unit-tested.
#[derive(Debug)]
struct Watch {
    me: String,
    /// A node not seen in a renewal for this long, while renewals succeed, is gone (the
    /// rule for nodes that vanished while this node could not see the registry).
    grace: Duration,
    /// Redis's epoch at the last renewal (changes when Redis lost its data).
    epoch: Option<String>,
    /// The nodes of the last renewal, if it directly followed a successful one.
    last: Option<Vec<String>>,
    /// When each known node was last seen.
    seen: std::collections::HashMap<String, std::time::Instant>,
    /// When renewals started succeeding again.
    up_since: Option<std::time::Instant>,
    /// This node's lease.
    lease: Duration,
    /// When the last successful renewal was sent.
    last_ok: Option<std::time::Instant>,
}

/// What a renewal means.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// Nodes gone since the last renewal.
    down: Vec<String>,
    /// `Some(isolated)`: claim every seat again; `isolated` when this node's own lease had
    /// run out (the others took it for dead).
    reregister: Option<bool>,
}

impl Watch {
    fn new(me: String, lease: Duration, grace: Duration) -> Self {
        Self {
            me,
            grace,
            epoch: None,
            last: None,
            seen: std::collections::HashMap::new(),
            up_since: None,
            lease,
            last_ok: None,
        }
    }

    /// A renewal failed: the next success does not compare with the one before.
    fn failed(&mut self) {
        self.last = None;
        self.up_since = None;
    }

    /// A renewal sent at `now` succeeded: Redis's `epoch`, whether this node's lease was
    /// still running (`was_live`), the `live` nodes, and whether something may not have
    /// reached Redis since the last one (`dirty`).
    fn renewed(
        &mut self,
        now: std::time::Instant,
        epoch: &str,
        was_live: bool,
        live: &[&str],
        dirty: bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let same_epoch = self.epoch.as_deref() == Some(epoch);
        let first = self.epoch.is_none();
        let continuous = self.last.is_some();
        // No renewal got through for a lease: the others may have taken this node for
        // dead even if Redis now says its lease runs (a renewal held up by a network cut
        // can reach Redis when the cut heals, after its sender gave up on it).
        let lapsed = !was_live || self.last_ok.is_some_and(|t| now - t >= self.lease);
        self.last_ok = Some(now);
        if first || !same_epoch || lapsed || !continuous || dirty {
            // First registration (purge what an earlier process with this id left), Redis
            // lost its data, this node's lease ran out, or something may not have reached
            // Redis: claim everything again.
            verdict.reregister = Some(!first && same_epoch && lapsed);
        }
        if !same_epoch {
            self.up_since = Some(now); // everybody registers again: give them a lease
        }
        let up_since = *self.up_since.get_or_insert(now);
        if let (Some(last), true) = (&self.last, same_epoch) {
            for id in last {
                if !live.contains(&id.as_str()) && *id != self.me {
                    verdict.down.push(id.clone());
                }
            }
        }
        for id in live {
            self.seen.insert((*id).to_owned(), now);
        }
        let grace = self.grace;
        let me = self.me.clone();
        let mut stale: Vec<String> = self
            .seen
            .iter()
            .filter(|(id, at)| **id != me && now.duration_since((**at).max(up_since)) > grace)
            .map(|(id, _)| id.clone())
            .collect();
        stale.sort();
        for id in stale {
            self.seen.remove(&id);
            if !verdict.down.contains(&id) {
                verdict.down.push(id);
            }
        }
        for id in &verdict.down {
            self.seen.remove(id);
        }
        self.epoch = Some(epoch.to_owned());
        self.last = Some(live.iter().map(|s| (*s).to_owned()).collect());
        verdict
    }
}

fn note_view(view: &Mutex<ClusterView>, was_up: &mut Option<bool>, flat: &[String]) {
    let mut nodes = Vec::new();
    let (mut connections, mut rooms) = (0, 0);
    for pair in flat.chunks(2) {
        let [id, counts] = pair else { continue };
        nodes.push(id.clone());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(counts) {
            connections += v["connections"].as_u64().unwrap_or(0);
            rooms += v["rooms"].as_u64().unwrap_or(0);
        }
    }
    nodes.sort();
    if *was_up != Some(true) {
        tracing::info!(
            "cluster: registered with Redis; {} node(s) alive: {}",
            nodes.len(),
            nodes.join(", ")
        );
    }
    *was_up = Some(true);
    if let Ok(mut v) = view.lock() {
        v.redis_up = true;
        v.nodes = nodes;
        v.connections = connections;
        v.rooms = rooms;
        v.last_error = None;
    }
}

fn note_failure(view: &Mutex<ClusterView>, was_up: &mut Option<bool>, why: &str) {
    if *was_up != Some(false) {
        tracing::warn!(
            "cluster: Redis unreachable ({why}); running as a single node until it answers"
        );
    }
    *was_up = Some(false);
    if let Ok(mut v) = view.lock() {
        v.redis_up = false;
        v.redis_errors += 1;
        v.last_error = Some(why.to_owned());
        // Without Redis this node knows only itself.
        v.nodes = vec![v.node.clone()];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redacted_url("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted_url("redis://app:s3cret@redis.internal:6379"),
            "redis://app:***@redis.internal:6379"
        );
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn a_node_missing_from_a_renewal_that_follows_one_with_it_is_down() {
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watch::new("a".into(), Duration::from_secs(5), Duration::from_secs(7));
        // First registration: purge leftovers, claim (nothing) again; nobody is down.
        let v = w.renewed(t0, "e1", false, &["a", "b", "c"], false);
        assert_eq!(v.reregister, Some(false));
        assert!(v.down.is_empty());
        let v = w.renewed(t0 + s, "e1", true, &["a", "b", "c"], false);
        assert_eq!(v, Verdict::default());
        // b's lease ran out (or it left): down at once.
        let v = w.renewed(t0 + 2 * s, "e1", true, &["a", "c"], false);
        assert_eq!(v.down, ["b"]);
        assert_eq!(v.reregister, None);
        // Something did not reach Redis: claim again.
        let v = w.renewed(t0 + 3 * s, "e1", true, &["a", "c"], true);
        assert_eq!(v.reregister, Some(false));
    }

    #[test]
    fn after_redis_lost_its_data_nodes_get_a_lease_to_register_again() {
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watch::new("a".into(), Duration::from_secs(5), Duration::from_secs(7));
        w.renewed(t0, "e1", false, &["a", "b", "c"], false);
        w.renewed(t0 + s, "e1", true, &["a", "b", "c"], false);
        w.failed();
        // Redis restarted: only this node so far. Nobody is down yet; claim again.
        let v = w.renewed(t0 + 5 * s, "e2", false, &["a"], false);
        assert!(v.down.is_empty());
        assert_eq!(
            v.reregister,
            Some(false),
            "not isolated: Redis forgot everyone"
        );
        let v = w.renewed(t0 + 6 * s, "e2", true, &["a", "b"], false);
        assert!(v.down.is_empty());
        // c never comes back: down once the grace after the restart has passed.
        let v = w.renewed(t0 + 12 * s, "e2", true, &["a", "b"], false);
        assert!(v.down.is_empty(), "{v:?}");
        let v = w.renewed(t0 + 13 * s, "e2", true, &["a", "b"], false);
        assert_eq!(v.down, ["c"]);
    }

    #[test]
    fn a_node_whose_own_lease_ran_out_knows_it_was_taken_for_dead() {
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watch::new("a".into(), Duration::from_secs(5), Duration::from_secs(7));
        w.renewed(t0, "e1", false, &["a", "b"], false);
        w.failed();
        let v = w.renewed(t0 + 8 * s, "e1", false, &["a", "b"], false);
        assert_eq!(v.reregister, Some(true));
        assert!(v.down.is_empty());
    }

    #[test]
    fn a_node_that_renewed_nothing_for_a_lease_takes_itself_for_dead_whatever_redis_says() {
        // A renewal held up by a network cut reached Redis when the cut healed, after this
        // node had given up on it: Redis says the lease runs, but it had run out meanwhile
        // and the others took this node for dead.
        let t0 = std::time::Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watch::new("a".into(), Duration::from_secs(5), Duration::from_secs(7));
        w.renewed(t0, "e1", false, &["a", "b"], false);
        w.renewed(t0 + s, "e1", true, &["a", "b"], false);
        w.failed();
        let v = w.renewed(t0 + 6 * s, "e1", true, &["a", "b"], false);
        assert_eq!(v.reregister, Some(true));
        // Less than a lease without a renewal: nothing lapsed.
        w.failed();
        let v = w.renewed(t0 + 10 * s, "e1", true, &["a", "b"], false);
        assert_eq!(v.reregister, Some(false));
    }

    #[test]
    fn settings_are_checked() {
        let ok = ClusterConfig::new("redis://127.0.0.1:6379".into(), "node-1".into());
        assert!(ok.validate().is_ok());
        let bad_url = ClusterConfig::new("http://x".into(), "n".into());
        assert!(bad_url.validate().is_err());
        let bad_id = ClusterConfig::new("redis://127.0.0.1".into(), "a b".into());
        assert!(bad_id.validate().is_err());
        let short = ClusterConfig {
            lease: Duration::from_secs(1),
            ..ok
        };
        assert!(short.validate().is_err());
    }
}
