//! The hub's cluster outputs carried out in Redis, in order: seat claims and releases (Lua
//! scripts, atomic), messages to other nodes (`PUBLISH` on their channel) and the purge of
//! this node's seats before it claims them again.
//!
//! One task, one Redis connection: what the hub emits in one order reaches Redis in that
//! order (commands are pipelined, up to [`BATCH`] per round trip), so a pair's messages keep
//! their order across nodes and a release never overtakes the claim it undoes. Answers go
//! back to the hub as inputs. When Redis cannot be reached, claims are answered
//! `Unavailable` and messages reported undelivered (their senders get
//! `cluster_unavailable`) at once; nothing waits in memory beyond the bounded queue in front
//! of this task ([`QUEUE`]), and the membership loop has every seat claimed again once Redis
//! answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchboard_core::{ClusterOutput, Seat, SeatReply};
use switchboard_proto::cluster::{Envelope, NodeId};
use tokio::sync::mpsc;

use crate::hub_task::HubSender;

/// Most cluster outputs waiting for this task; beyond it the hub fails them at once.
pub(crate) const QUEUE: usize = 16_384;

/// Most commands in one pipelined round trip.
const BATCH: usize = 512;

/// Most seats of a dead node freed per renewal, so one script never holds Redis long.
pub(crate) const PURGE_BUDGET: usize = 2_000;

/// A purge budget that frees all of a node's seats (`SPOP` takes at most this many).
pub(crate) const PURGE_ALL: u64 = 100_000_000;

/// Frees up to `budget` seats of `node`: returns how many rooms it looked at and how many
/// are left. Shared by the purge and renewal scripts.
pub(crate) const PURGE_FN: &str = r"
local function purge(node, budget)
  local set = 'sb:node:' .. node .. ':seats'
  local rooms = redis.call('SPOP', set, budget)
  local prefix = node .. '/'
  for _, room in ipairs(rooms) do
    for _, f in ipairs(redis.call('HKEYS', room)) do
      if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', room, f) end
    end
  end
  return #rooms, redis.call('SCARD', set)
end
";

/// Takes a seat: KEYS = room hash, this node's seat set, the node registry; ARGV = node,
/// conn, may offer (1/0). Seats of nodes whose lease ran out are dropped on the way.
/// Returns `{'full'}`, `{'seated'}` or `{'seated', other_field, other_offer}`.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1] .. '/' .. ARGV[2]
local fields = redis.call('HGETALL', KEYS[1])
local others = {}
for i = 1, #fields, 2 do
  local f = fields[i]
  if f ~= me then
    local node = string.match(f, '^(.*)/')
    local live = node == ARGV[1]
    if not live then
      local exp = redis.call('ZSCORE', KEYS[3], node)
      live = exp and tonumber(exp) > now
    end
    if live then
      others[#others + 1] = f
      others[#others + 1] = fields[i + 1]
    else
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
if #others >= 4 then return {'full'} end
redis.call('HSET', KEYS[1], me, ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
if #others == 2 then return {'seated', others[1], others[2]} end
return {'seated'}
";

/// Frees a seat: KEYS = room hash, this node's seat set; ARGV = node, conn.
const RELEASE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1] .. '/' .. ARGV[2])
local prefix = ARGV[1] .. '/'
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then return 0 end
end
redis.call('SREM', KEYS[2], KEYS[1])
return 1
";

/// The Redis key of an Ant Media room's seats.
pub(crate) fn room_key(app: &str, room: &str) -> String {
    format!("sb:am:{app}/{room}")
}

/// The Redis key of the set of rooms where `node` holds seats.
pub(crate) fn seats_key(node: &str) -> String {
    format!("sb:node:{node}:seats")
}

/// The channel a node listens on.
pub(crate) fn channel(node: &str) -> String {
    format!("sb:node:{node}:in")
}

/// Counters of the cluster edge, shown in `/api/v1/stats` (`cluster`).
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Set when a release or purge may not have reached Redis: the membership loop has
    /// every seat claimed again at its next successful renewal.
    pub(crate) dirty: AtomicBool,
    /// Whether this node's channel subscription is up.
    pub(crate) subscribed: AtomicBool,
    /// Commands sent to Redis (claims, releases, publishes, purges).
    pub(crate) commands: AtomicU64,
    /// Commands that failed (Redis unreachable, slow, or the queue in front full).
    pub(crate) failed: AtomicU64,
    /// Messages published to a node that was not listening.
    pub(crate) unheard: AtomicU64,
    /// Messages received on this node's channel.
    pub(crate) received: AtomicU64,
    /// Messages on this node's channel that did not parse (dropped).
    pub(crate) malformed: AtomicU64,
}

/// The scripts' bodies. They are sent with `EVAL` (Redis caches them by hash): unlike
/// `EVALSHA`, that never fails after Redis restarts with an empty script cache.
pub(crate) struct Scripts {
    purge: String,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            purge: format!(
                "{PURGE_FN}\nlocal n, left = purge(ARGV[1], tonumber(ARGV[2]))\nreturn left"
            ),
        }
    }
}

/// Carries out the hub's cluster outputs until the hub lets go of the queue.
pub(crate) async fn run(
    client: redis::Client,
    node: NodeId,
    mut rx: mpsc::Receiver<ClusterOutput>,
    hub: HubSender,
    health: Arc<Health>,
) {
    let scripts = Scripts::new();
    let mut con: Option<ConnectionManager> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        health.commands.fetch_add(batch.len() as u64, Relaxed);
        if con.is_none() {
            con = super::connect(&client).await.ok();
        }
        let answers = match con.as_mut() {
            Some(c) => {
                let pipe = pipeline(&scripts, &node, &batch);
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(c),
                )
                .await
                {
                    Ok(Ok(answers)) if answers.len() == batch.len() => Some(answers),
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => {
                        tracing::debug!("cluster: commands failed: {e}");
                        None
                    }
                    Err(_) => None,
                }
            }
            None => None,
        };
        match answers {
            Some(answers) => {
                for (out, answer) in batch.drain(..).zip(answers) {
                    answered(&hub, &health, &node, out, answer).await;
                }
            }
            None => {
                for out in batch.drain(..) {
                    failed(&hub, &health, out).await;
                }
            }
        }
    }
}

/// One pipelined round trip for `batch`, in order, each command's error its own.
fn pipeline(scripts: &Scripts, me: &NodeId, batch: &[ClusterOutput]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let node = me.as_str();
    let seats = seats_key(node);
    for out in batch {
        match out {
            ClusterOutput::Claim(claim) => {
                let room = room_key(claim.app.as_str(), claim.room.as_str());
                pipe.cmd("EVAL")
                    .arg(CLAIM)
                    .arg(3)
                    .arg(room)
                    .arg(&seats)
                    .arg(super::NODES)
                    .arg(node)
                    .arg(claim.conn.0)
                    .arg(u8::from(claim.offer));
            }
            ClusterOutput::Release { conn, app, room } => {
                pipe.cmd("EVAL")
                    .arg(RELEASE)
                    .arg(2)
                    .arg(room_key(app.as_str(), room.as_str()))
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0);
            }
            ClusterOutput::Send { node: to, msg, .. } => {
                pipe.cmd("PUBLISH")
                    .arg(channel(to.as_str()))
                    .arg(Envelope::encode(me, msg));
            }
            ClusterOutput::PurgeOwn => {
                pipe.cmd("EVAL")
                    .arg(&scripts.purge)
                    .arg(0)
                    .arg(node)
                    .arg(PURGE_ALL);
            }
        }
    }
    pipe
}

async fn answered(
    hub: &HubSender,
    health: &Health,
    node: &NodeId,
    out: ClusterOutput,
    answer: redis::RedisResult<redis::Value>,
) {
    let value = match answer {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("cluster: a command failed: {e}");
            return failed(hub, health, out).await;
        }
    };
    match out {
        ClusterOutput::Claim(claim) => {
            let reply = match redis::from_redis_value::<Vec<String>>(value) {
                Ok(v) if v.first().is_some_and(|s| s == "full") => SeatReply::Full,
                Ok(v) => SeatReply::Seated {
                    other: v.get(1).and_then(|field| {
                        let (n, c) = field.rsplit_once('/')?;
                        Some(Seat {
                            node: NodeId::new(n).ok()?,
                            conn: c.parse().ok()?,
                            offer: v.get(2).is_some_and(|o| o == "1"),
                        })
                    }),
                },
                Err(_) => SeatReply::Unavailable,
            };
            let _ = hub.cluster_seat(claim, reply).await;
        }
        ClusterOutput::Send {
            node: to,
            from,
            msg,
        } => {
            if redis::from_redis_value::<u64>(value).unwrap_or(0) == 0 {
                health.unheard.fetch_add(1, Relaxed);
                tracing::debug!(to = to.as_str(), from = node.as_str(), "node not listening");
                let _ = hub.node_unreachable(from, msg).await;
            }
        }
        ClusterOutput::Release { .. } | ClusterOutput::PurgeOwn => {}
    }
}

async fn failed(hub: &HubSender, health: &Health, out: ClusterOutput) {
    health.failed.fetch_add(1, Relaxed);
    match out {
        ClusterOutput::Claim(claim) => {
            health.dirty.store(true, Relaxed);
            let _ = hub.cluster_seat(claim, SeatReply::Unavailable).await;
        }
        ClusterOutput::Send { from, msg, .. } => {
            let _ = hub.node_unreachable(from, msg).await;
        }
        ClusterOutput::Release { .. } | ClusterOutput::PurgeOwn => {
            health.dirty.store(true, Relaxed);
        }
    }
}
