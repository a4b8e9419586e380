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
}

/// Renews this node's lease and returns the live nodes with their counts:
/// KEYS[1] = the registry (sorted set); ARGV = node id, lease ms, this node's counts (JSON),
/// key prefix of the per-node counts.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[3], 'PX', lease)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[4] .. id) or ''
end
return out
";

/// The registry's key and the prefix of the per-node keys.
const NODES: &str = "sb:nodes";
const NODE_PREFIX: &str = "sb:node:";

/// Runs the membership loop until `stop` is cancelled; then leaves the cluster (removes
/// this node's lease) if Redis answers.
pub(crate) async fn run(
    config: ClusterConfig,
    view: Arc<Mutex<ClusterView>>,
    hub: crate::hub_task::HubSender,
    stop: tokio_util::sync::CancellationToken,
) {
    let Ok(client) = redis::Client::open(config.redis_url.as_str()) else {
        return; // validated at start
    };
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let script = redis::Script::new(RENEW);
    let lease_ms = u64::try_from(config.lease.as_millis()).unwrap_or(u64::MAX);
    let mut con: Option<ConnectionManager> = None;
    let mut was_up = None;
    loop {
        if con.is_none() {
            let connect = client.get_connection_manager_with_config(manager_config.clone());
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(c)) => con = Some(c),
                Ok(Err(e)) => note_failure(&view, &mut was_up, &e.to_string()),
                Err(_) => note_failure(&view, &mut was_up, "connection timed out"),
            }
        }
        if let Some(c) = con.as_mut() {
            let counts = hub.stats().await.map_or_else(
                || serde_json::json!({}),
                |s| serde_json::json!({"connections": s.hub.connections, "rooms": s.hub.rooms}),
            );
            let mut invocation = script.key(NODES);
            invocation
                .arg(&config.node_id)
                .arg(lease_ms)
                .arg(counts.to_string())
                .arg(NODE_PREFIX);
            let renewal = invocation.invoke_async::<Vec<String>>(c);
            match tokio::time::timeout(Duration::from_secs(2), renewal).await {
                Ok(Ok(flat)) => note_view(&view, &mut was_up, &flat),
                Ok(Err(e)) => note_failure(&view, &mut was_up, &e.to_string()),
                Err(_) => note_failure(&view, &mut was_up, "renewal timed out"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.renew_every) => {}
            () = stop.cancelled() => break,
        }
    }
    if let Some(c) = con.as_mut() {
        let mut pipe = redis::pipe();
        pipe.zrem(NODES, &config.node_id)
            .del(format!("{NODE_PREFIX}{}", config.node_id));
        let leave = pipe.query_async::<()>(c);
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), leave).await {
            tracing::info!("left the cluster (node {})", config.node_id);
        }
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
