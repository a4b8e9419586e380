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
use switchboard_core::auth::RoomRule;
use switchboard_core::{
    ClusterOutput, JoinOutcome, PjClaimOutcome, PjSendOutcome, RouteOutcome, RouteScope, Seat,
    SeatReply,
};
use switchboard_proto::cluster::{Batch, Envelope, NodeId, NodeMessage};
use tokio::sync::mpsc;

use crate::hub_task::HubSender;

/// Most cluster outputs waiting for this task; beyond it the hub fails them at once.
pub(crate) const QUEUE: usize = 16_384;

/// What this task is given: a cluster output, and (for the socket.io connect middleware)
/// whom to tell once it reached Redis.
pub(crate) type Command = (ClusterOutput, Option<tokio::sync::oneshot::Sender<bool>>);

/// The queue in front of this task.
pub(crate) type Commands = mpsc::Sender<Command>;

/// Most commands in one pipelined round trip.
const BATCH: usize = 512;

/// Most messages published together. The receiving node hands them to its hub as one
/// input, so this is also the most it queues at once for one client from one publication:
/// well under a client's outbound queue (128), which a burst must not overflow.
const COALESCE: usize = 32;

/// Most seats of a dead node freed per renewal, so one script never holds Redis long.
pub(crate) const PURGE_BUDGET: usize = 2_000;

/// A purge budget that frees all of a node's seats (`SPOP` takes at most this many).
pub(crate) const PURGE_ALL: u64 = 100_000_000;

/// Frees up to `budget` seats of `node`: returns how many rooms it looked at and how many
/// are left. Shared by the purge and renewal scripts.
pub(crate) const PURGE_FN: &str = r"
local function purge(node, budget)
  local set = 'sb:node:' .. node .. ':seats'
  local keys = redis.call('SPOP', set, budget)
  local prefix = node .. '/'
  local function mine(s) return s ~= nil and string.sub(s, 1, #prefix) == prefix end
  for _, key in ipairs(keys) do
    if string.sub(key, 1, 10) == 'sb:sio:id:' then
      if mine(redis.call('HGET', key, 'at')) then redis.call('DEL', key) end
    elseif string.sub(key, 1, 12) == 'sb:sio:room:' then
      local fields = redis.call('HGETALL', key)
      for i = 1, #fields, 2 do
        if mine(string.match(fields[i + 1], '|(.*)$')) then redis.call('HDEL', key, fields[i]) end
      end
    else
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if mine(f) then redis.call('HDEL', key, f) end
      end
    end
  end
  return #keys, redis.call('SCARD', set)
end
";

/// Whether a node's lease runs (Lua, shared by the socket.io scripts): `live(node, now)`.
const LIVE_FN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(node)
  local exp = redis.call('ZSCORE', 'sb:nodes', node)
  return exp and tonumber(exp) > now
end
";

/// Messages routed by one script call, grouped by receiving node (Lua, shared by the
/// route and send scripts): `group(node, msg, i)` adds message `i`; `publish_groups(out,
/// unheard)` publishes each node's messages, in order, as one `Batch` from `ARGV[1]`, and
/// sets `out[i]` to `unheard` for the messages of a node that is not listening.
const GROUP_FN: &str = r#"
local groups, order = {}, {}
local function group(node, msg, i)
  if not groups[node] then
    groups[node] = {msgs = {}, at = {}}
    order[#order + 1] = node
  end
  table.insert(groups[node].msgs, msg)
  table.insert(groups[node].at, i)
end
local function publish_groups(out, unheard)
  for _, node in ipairs(order) do
    local g = groups[node]
    local batch = '{"msgs":[' .. table.concat(g.msgs, ',') .. '],"node":' .. cjson.encode(ARGV[1]) .. '}'
    if redis.call('PUBLISH', 'sb:node:' .. node .. ':in', batch) == 0 then
      for _, i in ipairs(g.at) do out[i] = unheard end
    end
  end
end
"#;

/// Whether new seats, ids and room places are refused (Lua, shared by the claim scripts):
/// `settling()` while Redis has no epoch (no node registered since it started) or is
/// settling after it lost its data (`sb:settling`: the nodes are taking back what they hold;
/// a newcomer could otherwise take one of their places).
const SETTLING_FN: &str = r"
local function settling()
  return redis.call('EXISTS', 'sb:epoch') == 0 or redis.call('EXISTS', 'sb:settling') == 1
end
";

/// socket.io: socket `id` is held here. KEYS = id hash, this node's key set; ARGV = node,
/// conn, the `SioReplaced` message for the node that held the id before, if it lives.
const SIO_REGISTER: &str = r"
local at = ARGV[1] .. '/' .. ARGV[2]
local old = redis.call('HGET', KEYS[1], 'at')
redis.call('HSET', KEYS[1], 'at', at, 'room', '')
redis.call('SADD', KEYS[2], KEYS[1])
if old and old ~= at then
  local node = string.match(old, '^(.*)/')
  if node ~= ARGV[1] and live(node) then
    redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[3])
  end
end
return 1
";

/// socket.io: socket `id` is gone. KEYS = id hash, this node's key set; ARGV = `node/conn`.
const SIO_UNREGISTER: &str = r"
if redis.call('HGET', KEYS[1], 'at') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], KEYS[1])
return 1
";

/// socket.io: relays to socket ids, in order. KEYS = the targets' id hashes; ARGV = this
/// node's id, then per relay its scope (`any`, `exact`, `prefix`), the scope's room and the
/// message (a `NodeMessage`'s JSON). Relays for one node are published together, in order,
/// as one `Batch`. Returns per relay the holder's node (published), 0 (no live holder), -1
/// (outside the scope) or -2 (the holder's node is not listening).
const SIO_ROUTE: &str = r#"
local out = {}
for i = 1, #KEYS do
  local mode, scope, msg = ARGV[i * 3 - 1], ARGV[i * 3], ARGV[i * 3 + 1]
  local at = redis.call('HGET', KEYS[i], 'at')
  local node = at and string.match(at, '^(.*)/')
  local r = node
  if not node or not live(node) then
    r = 0
  elseif mode ~= 'any' then
    local room = redis.call('HGET', KEYS[i], 'room')
    if not room or room == '' then r = -1
    elseif mode == 'exact' and room ~= scope then r = -1
    elseif mode == 'prefix' and string.sub(room, 1, #scope) ~= scope then r = -1 end
  end
  out[i] = r
  if r == node then group(node, msg, i) end
end
publish_groups(out, -2)
return out
"#;

/// socket.io: a place in a room. KEYS = room hash (field: socket id, value:
/// `<seq>|<node>/<conn>`), id hash, this node's key set; ARGV = node, conn, id, room size,
/// roster envelope prefix, the `SioPeerJoined` message, room name, announce (1/0). Members of
/// dead nodes are dropped on the way. With announce, publishes the roster (in join order) on
/// this node's channel and `SioPeerJoined` to the other members' nodes. Returns `queued`,
/// `full` or `unavailable` (this node is not listening: nothing is taken).
const SIO_JOIN: &str = r"
local me, id, max = ARGV[1], ARGV[3], tonumber(ARGV[4])
if ARGV[9] ~= '1' and settling() then
  return 'unavailable'
end
local at = me .. '/' .. ARGV[2]
local fields = redis.call('HGETALL', KEYS[1])
local peers, nodes, count = {}, {}, 0
for i = 1, #fields, 2 do
  local m, v = fields[i], fields[i + 1]
  if m ~= id then
    local seq, holder = string.match(v, '^(%d+)|(.*)$')
    local node = string.match(holder, '^(.*)/')
    if node == me or live(node) then
      count = count + 1
      peers[#peers + 1] = {tonumber(seq), '[' .. cjson.encode(m) .. ',' .. cjson.encode(node) .. ']'}
      if node ~= me then nodes[node] = true end
    else
      redis.call('HDEL', KEYS[1], m)
    end
  end
end
if count >= max then return 'full' end
local seq = redis.call('INCR', 'sb:sio:seq')
redis.call('HSET', KEYS[1], id, seq .. '|' .. at)
redis.call('SADD', KEYS[3], KEYS[1])
if redis.call('HGET', KEYS[2], 'at') == at then redis.call('HSET', KEYS[2], 'room', ARGV[7]) end
if ARGV[8] == '1' then
  table.sort(peers, function(a, b) return a[1] < b[1] end)
  local parts = {}
  for _, p in ipairs(peers) do parts[#parts + 1] = p[2] end
  local roster = ARGV[5] .. '[' .. table.concat(parts, ',') .. ']}}}'
  if redis.call('PUBLISH', 'sb:node:' .. me .. ':in', roster) == 0 then
    redis.call('HDEL', KEYS[1], id)
    return 'unavailable'
  end
  for node, _ in pairs(nodes) do redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[6]) end
end
return 'queued'
";

/// PeerJS: claim an id. KEYS = id hash (`at`, `tok`: the token's digest), the id's queue,
/// the queue's byte count, this node's key set; ARGV = node, conn, token digest, the
/// `PjClaimed` envelope prefix, the `PjReplaced` message, again (1/0). A live holder on
/// another node with another token: `taken`; with the same token it is replaced. Publishes
/// `PjClaimed` with the queue (emptied) on this node's channel; again, only when something
/// waits (sent while Redis had forgotten the id: it is delivered, not left to expire).
/// Returns `done`, `taken` or `unavailable` (this node is not listening: nothing is taken).
const PJ_CLAIM: &str = r"
if ARGV[6] ~= '1' and settling() then
  return 'unavailable'
end
local at = ARGV[1] .. '/' .. ARGV[2]
local old = redis.call('HGET', KEYS[1], 'at')
if old and old ~= at then
  local node = string.match(old, '^(.*)/')
  if node ~= ARGV[1] and live(node) then
    if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[3] then return 'taken' end
    redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[5])
  end
end
redis.call('HSET', KEYS[1], 'at', at, 'tok', ARGV[3])
redis.call('SADD', KEYS[4], KEYS[1])
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
if ARGV[6] == '1' and #entries == 0 then return 'done' end
local parts = {}
for i, e in ipairs(entries) do parts[i] = string.match(e, '^[^|]*|(.*)$') end
if redis.call('PUBLISH', 'sb:node:' .. ARGV[1] .. ':in', ARGV[4] .. '[' .. table.concat(parts, ',') .. ']}}}') == 0 then
  if ARGV[6] == '1' then return 'done' end
  redis.call('DEL', KEYS[1])
  return 'unavailable'
end
redis.call('DEL', KEYS[2], KEYS[3])
return 'done'
";

/// PeerJS: messages for ids, in order. KEYS = per message the id hash, the id's queue and
/// its byte count; ARGV = this node's id, then per message the message (a `NodeMessage`'s
/// JSON, `{"pj_relay":...}`), its tag (`<node>/<n>`: a queue entry is the tag, `|` and the
/// message without its wrapper), queue (1/0), most messages, most bytes and how long it may
/// wait (ms). Messages for one node are published together, in
/// order, as one `Batch`. Returns per message `delivered:<node>` ([`DELIVERED`] and the
/// holder's node), `queued`, `full`, `absent` (not queued) or `unheard` (the holder's node
/// is not listening).
const PJ_SEND: &str = r#"
local out = {}
for i = 1, #KEYS / 3 do
  local id, q, qb = KEYS[i * 3 - 2], KEYS[i * 3 - 1], KEYS[i * 3]
  local a = (i - 1) * 6 + 1
  local msg, tag, queue, max, maxb, keep = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local at = redis.call('HGET', id, 'at')
  local node = at and string.match(at, '^(.*)/')
  if node and live(node) then
    out[i] = 'delivered:' .. node
    group(node, msg, i)
  elseif queue ~= '1' then
    out[i] = 'absent'
  else
    -- The entry: the tag and the message without its `{"pj_relay":...}` wrapper.
    local entry = tag .. '|' .. string.sub(msg, 13, -2)
    local bytes = tonumber(redis.call('GET', qb) or '0')
    if redis.call('LLEN', q) >= tonumber(max) or bytes + #entry > tonumber(maxb) then
      out[i] = 'full'
    else
      redis.call('RPUSH', q, entry)
      redis.call('INCRBY', qb, #entry)
      redis.call('PEXPIRE', q, tonumber(keep) + 10000)
      redis.call('PEXPIRE', qb, tonumber(keep) + 10000)
      out[i] = 'queued'
    end
  end
end
publish_groups(out, 'unheard')
return out
"#;

/// How [`PJ_SEND`] answers a message handed to its receiver's node (the node follows).
const DELIVERED: &str = "delivered:";

/// PeerJS: messages this node queued are due. KEYS = the id's queue, its byte count;
/// ARGV = node, then the tags. Takes out those still waiting; returns their tags.
const PJ_EXPIRE: &str = r"
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[1] .. '/' .. ARGV[i]] = ARGV[i] end
local kept, removed, freed = {}, {}, 0
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local tag = string.match(e, '^([^|]*)|')
  if wanted[tag] then
    removed[#removed + 1] = wanted[tag]
    freed = freed + #e
  else
    kept[#kept + 1] = e
  end
end
if #removed > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  if #kept > 0 then
    redis.call('RPUSH', KEYS[1], unpack(kept))
    if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
    redis.call('DECRBY', KEYS[2], freed)
  else
    redis.call('DEL', KEYS[2])
  end
end
return removed
";

/// The Redis keys of a PeerJS id, its queue and the queue's byte count.
pub(crate) fn pj_keys(id: &str) -> [String; 3] {
    [
        format!("sb:pj:id:{id}"),
        format!("sb:pj:q:{id}"),
        format!("sb:pj:qb:{id}"),
    ]
}

/// How a PeerJS token is kept in Redis: its SHA-1 digest, hex.
fn token_digest(token: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// socket.io: leave a room. KEYS = room hash, id hash, this node's key set; ARGV = node,
/// conn, id, the `SioPeerLeft` message for the other members' nodes.
const SIO_LEAVE: &str = r"
local at = ARGV[1] .. '/' .. ARGV[2]
local v = redis.call('HGET', KEYS[1], ARGV[3])
if not v or string.match(v, '|(.*)$') ~= at then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
if redis.call('HGET', KEYS[2], 'at') == at then redis.call('HSET', KEYS[2], 'room', '') end
local nodes, mine = {}, false
local fields = redis.call('HGETALL', KEYS[1])
for i = 2, #fields, 2 do
  local node = string.match(fields[i], '|(.*)/')
  if node == ARGV[1] then mine = true elseif live(node) then nodes[node] = true end
end
for node, _ in pairs(nodes) do redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[4]) end
if not mine then redis.call('SREM', KEYS[3], KEYS[1]) end
return 1
";

/// Takes a seat: KEYS = room hash, this node's seat set, the node registry; ARGV = node,
/// conn, may offer (1/0), again (1/0). A new seat is refused (`unavailable`) while
/// [`SETTLING_FN`] says so. Seats of nodes whose lease ran out are dropped on the way.
/// Returns `{'full'}`, `{'seated'}` or `{'seated', other_field, other_offer}`.
const CLAIM: &str = r"
if ARGV[4] ~= '1' and settling() then
  return {'unavailable'}
end
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
    sio_register: String,
    sio_route: String,
    sio_join: String,
    sio_leave: String,
    pj_claim: String,
    claim: String,
    pj_send: String,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            purge: format!(
                "{PURGE_FN}\nlocal n, left = purge(ARGV[1], tonumber(ARGV[2]))\nreturn left"
            ),
            sio_register: format!("{LIVE_FN}{SIO_REGISTER}"),
            sio_route: format!("{LIVE_FN}{GROUP_FN}{SIO_ROUTE}"),
            sio_join: format!("{LIVE_FN}{SETTLING_FN}{SIO_JOIN}"),
            sio_leave: format!("{LIVE_FN}{SIO_LEAVE}"),
            pj_claim: format!("{LIVE_FN}{SETTLING_FN}{PJ_CLAIM}"),
            claim: format!("{SETTLING_FN}{CLAIM}"),
            pj_send: format!("{LIVE_FN}{GROUP_FN}{PJ_SEND}"),
        }
    }
}

/// Which outputs one pipelined command carries.
#[derive(Debug, Clone, Copy)]
enum Carries {
    /// One output.
    One,
    /// `n` outputs that share the command's answer (a coalesced publication).
    Same(usize),
    /// `n` outputs, the answer an array with one element each (batched routes).
    Each(usize),
}

/// Spreads the commands' answers over the outputs they carried; `None` if an answer does
/// not have the shape its command promised.
fn spread(
    answers: Vec<redis::RedisResult<redis::Value>>,
    carries: Vec<Carries>,
) -> Option<Vec<redis::RedisResult<redis::Value>>> {
    let mut out = Vec::new();
    for (answer, carries) in answers.into_iter().zip(carries) {
        match carries {
            Carries::One => out.push(answer),
            Carries::Same(n) => out.extend(std::iter::repeat_n(answer, n)),
            Carries::Each(n) => match answer {
                Ok(redis::Value::Array(each)) if each.len() == n => {
                    out.extend(each.into_iter().map(Ok));
                }
                Ok(_) => return None,
                Err(e) => out.extend(std::iter::repeat_n(Err(e), n)),
            },
        }
    }
    Some(out)
}

/// The Redis key of a socket.io socket id.
pub(crate) fn sio_id_key(id: &str) -> String {
    format!("sb:sio:id:{id}")
}

/// The Redis key of a socket.io room.
pub(crate) fn sio_room_key(room: &str) -> String {
    format!("sb:sio:room:{room}")
}

/// Carries out the hub's cluster outputs until the hub lets go of the queue.
pub(crate) async fn run(
    client: redis::Client,
    node: NodeId,
    mut rx: mpsc::Receiver<Command>,
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
                let outs: Vec<&ClusterOutput> = batch.iter().map(|(o, _)| o).collect();
                let (pipe, sizes) = pipeline(&scripts, &node, &outs);
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(c),
                )
                .await
                {
                    // One answer per command; a coalesced publication answers for each of
                    // the messages it carried.
                    Ok(Ok(answers)) if answers.len() == sizes.len() => {
                        spread(answers, sizes).filter(|a| a.len() == batch.len())
                    }
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
                for ((out, done), answer) in batch.drain(..).zip(answers) {
                    if let Some(done) = done {
                        let _ = done.send(answer.is_ok());
                    }
                    answered(&hub, &health, &node, out, answer).await;
                }
            }
            None => {
                for (out, done) in batch.drain(..) {
                    if let Some(done) = done {
                        let _ = done.send(false);
                    }
                    failed(&hub, &health, out).await;
                }
            }
        }
    }
}

/// One pipelined round trip for `batch`, in order, each command's error its own. Messages
/// for one node that follow each other are published together ([`Batch`]): one command
/// for them all, so under load a round trip carries a few publications instead of hundreds.
/// Routes of socket.io relays that follow each other go in one script call too. Returns the
/// pipeline and which of `batch`'s outputs each command carries.
fn pipeline(
    scripts: &Scripts,
    me: &NodeId,
    batch: &[&ClusterOutput],
) -> (redis::Pipeline, Vec<Carries>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let node = me.as_str();
    let seats = seats_key(node);
    let mut sizes = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let out = batch[i];
        if let ClusterOutput::Send { node: to, .. } = out {
            let run = batch[i..]
                .iter()
                .take(COALESCE)
                .take_while(|o| matches!(o, ClusterOutput::Send { node: n, .. } if n == to))
                .count();
            let payload = Batch::encode(
                me,
                batch[i..i + run].iter().filter_map(|o| match o {
                    ClusterOutput::Send { msg, .. } => Some(msg),
                    _ => None,
                }),
            );
            pipe.cmd("PUBLISH").arg(channel(to.as_str())).arg(payload);
            sizes.push(Carries::Same(run));
            i += run;
            continue;
        }
        if let ClusterOutput::SioRoute(_) = out {
            let run = batch[i..]
                .iter()
                .take(COALESCE)
                .take_while(|o| matches!(o, ClusterOutput::SioRoute(_)))
                .count();
            pipe.cmd("EVAL").arg(&scripts.sio_route).arg(run);
            for o in &batch[i..i + run] {
                if let ClusterOutput::SioRoute(route) = o {
                    pipe.arg(sio_id_key(&route.target));
                }
            }
            pipe.arg(node);
            for o in &batch[i..i + run] {
                if let ClusterOutput::SioRoute(route) = o {
                    let (mode, value) = match &route.scope {
                        RouteScope::Any => ("any", ""),
                        RouteScope::Room(RoomRule::Exact(r)) => ("exact", &**r),
                        RouteScope::Room(RoomRule::Prefix(p)) => ("prefix", &**p),
                    };
                    let msg = NodeMessage::SioRelay {
                        to: route.target.clone(),
                        event: route.event,
                        payload: route.payload.clone(),
                        back: None,
                    };
                    pipe.arg(mode)
                        .arg(value)
                        .arg(serde_json::to_string(&msg).unwrap_or_default());
                }
            }
            sizes.push(Carries::Each(run));
            i += run;
            continue;
        }
        if let ClusterOutput::PjSend { .. } = out {
            let run = batch[i..]
                .iter()
                .take(COALESCE)
                .take_while(|o| matches!(o, ClusterOutput::PjSend { .. }))
                .count();
            pipe.cmd("EVAL").arg(&scripts.pj_send).arg(run * 3);
            for o in &batch[i..i + run] {
                if let ClusterOutput::PjSend { sent, .. } = o {
                    for key in pj_keys(&sent.dst) {
                        pipe.arg(key);
                    }
                }
            }
            pipe.arg(node);
            for o in &batch[i..i + run] {
                if let ClusterOutput::PjSend {
                    sent,
                    msg,
                    queue,
                    max_msgs,
                    max_bytes,
                    expire,
                } = o
                {
                    let relay = NodeMessage::PjRelay(msg.clone());
                    let json = serde_json::to_string(&relay).unwrap_or_default();
                    debug_assert!(json.starts_with(r#"{"pj_relay":"#));
                    pipe.arg(json)
                        .arg(format!("{node}/{}", sent.tag))
                        .arg(u8::from(*queue))
                        .arg(u64::try_from(*max_msgs).unwrap_or(u64::MAX))
                        .arg(u64::try_from(*max_bytes).unwrap_or(u64::MAX))
                        .arg(u64::try_from(expire.as_millis()).unwrap_or(u64::MAX));
                }
            }
            sizes.push(Carries::Each(run));
            i += run;
            continue;
        }
        sizes.push(Carries::One);
        i += 1;
        match out {
            ClusterOutput::Claim(claim) => {
                let room = room_key(claim.app.as_str(), claim.room.as_str());
                pipe.cmd("EVAL")
                    .arg(&scripts.claim)
                    .arg(3)
                    .arg(room)
                    .arg(&seats)
                    .arg(super::NODES)
                    .arg(node)
                    .arg(claim.conn.0)
                    .arg(u8::from(claim.offer))
                    .arg(u8::from(claim.again));
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
            ClusterOutput::Send { .. } => {} // published above
            ClusterOutput::PurgeOwn => {
                pipe.cmd("EVAL")
                    .arg(&scripts.purge)
                    .arg(0)
                    .arg(node)
                    .arg(PURGE_ALL);
            }
            ClusterOutput::SioRegister { conn, id } => {
                let replaced = NodeMessage::SioReplaced { id: id.clone() };
                pipe.cmd("EVAL")
                    .arg(&scripts.sio_register)
                    .arg(2)
                    .arg(sio_id_key(id))
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0)
                    .arg(Envelope::encode(me, &replaced));
            }
            ClusterOutput::SioUnregister { conn, id } => {
                pipe.cmd("EVAL")
                    .arg(SIO_UNREGISTER)
                    .arg(2)
                    .arg(sio_id_key(id))
                    .arg(&seats)
                    .arg(format!("{node}/{}", conn.0));
            }
            ClusterOutput::SioRoute(_) => {} // routed above
            ClusterOutput::SioJoin {
                conn,
                id,
                room,
                max,
                announce,
            } => {
                let joined = NodeMessage::SioPeerJoined {
                    room: room.clone(),
                    id: id.clone(),
                };
                pipe.cmd("EVAL")
                    .arg(&scripts.sio_join)
                    .arg(3)
                    .arg(sio_room_key(room))
                    .arg(sio_id_key(id))
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0)
                    .arg(&**id)
                    .arg(u64::try_from(*max).unwrap_or(u64::MAX))
                    .arg(Envelope::roster_prefix(me, room, conn.0))
                    .arg(Envelope::encode(me, &joined))
                    .arg(&**room)
                    .arg(u8::from(*announce))
                    // A place taken again after Redis forgot it (never refused).
                    .arg(u8::from(*max == usize::MAX));
            }
            ClusterOutput::PjClaim {
                conn,
                id,
                token,
                again,
            } => {
                let [id_key, queue, bytes] = pj_keys(id);
                let replaced = NodeMessage::PjReplaced { id: id.clone() };
                pipe.cmd("EVAL")
                    .arg(&scripts.pj_claim)
                    .arg(4)
                    .arg(id_key)
                    .arg(queue)
                    .arg(bytes)
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0)
                    .arg(token_digest(token))
                    .arg(Envelope::claimed_prefix(me, id, conn.0))
                    .arg(Envelope::encode(me, &replaced))
                    .arg(u8::from(*again));
            }
            ClusterOutput::PjUnregister { conn, id } => {
                let [id_key, ..] = pj_keys(id);
                pipe.cmd("EVAL")
                    .arg(SIO_UNREGISTER)
                    .arg(2)
                    .arg(id_key)
                    .arg(&seats)
                    .arg(format!("{node}/{}", conn.0));
            }
            ClusterOutput::PjSend { .. } => {} // sent above
            ClusterOutput::PjExpire { dst, entries } => {
                let [_, queue_key, bytes] = pj_keys(dst);
                pipe.cmd("EVAL")
                    .arg(PJ_EXPIRE)
                    .arg(2)
                    .arg(queue_key)
                    .arg(bytes)
                    .arg(node);
                for (tag, _) in entries {
                    pipe.arg(*tag);
                }
            }
            ClusterOutput::SioLeave { conn, id, room } => {
                let left = NodeMessage::SioPeerLeft {
                    room: room.clone(),
                    id: id.clone(),
                };
                pipe.cmd("EVAL")
                    .arg(&scripts.sio_leave)
                    .arg(3)
                    .arg(sio_room_key(room))
                    .arg(sio_id_key(id))
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0)
                    .arg(&**id)
                    .arg(Envelope::encode(me, &left));
            }
        }
    }
    (pipe, sizes)
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
                Ok(v) if v.first().is_some_and(|s| s == "unavailable") => SeatReply::Unavailable,
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
        ClusterOutput::SioRoute(route) => {
            let outcome = match value {
                redis::Value::BulkString(node) => String::from_utf8(node)
                    .ok()
                    .and_then(|n| NodeId::new(&n).ok())
                    .map_or(RouteOutcome::Unavailable, RouteOutcome::Delivered),
                redis::Value::Int(0) => RouteOutcome::Unknown,
                redis::Value::Int(-1) => RouteOutcome::WrongRoom,
                _ => {
                    health.unheard.fetch_add(1, Relaxed);
                    RouteOutcome::Unavailable
                }
            };
            let _ = hub.sio_routed(route, outcome).await;
        }
        ClusterOutput::SioJoin { conn, room, .. } => {
            let outcome = match redis::from_redis_value::<String>(value).as_deref() {
                Ok("queued") => JoinOutcome::Queued,
                Ok("full") => JoinOutcome::Full,
                _ => JoinOutcome::Unavailable,
            };
            let _ = hub.sio_join_reply(conn, room, outcome).await;
        }
        ClusterOutput::PjClaim {
            conn, id, again, ..
        } => {
            let outcome = match redis::from_redis_value::<String>(value).as_deref() {
                Ok("done") => PjClaimOutcome::Done,
                Ok("taken") => PjClaimOutcome::Taken,
                _ => PjClaimOutcome::Unavailable,
            };
            let _ = hub.pj_claim_reply(conn, id, again, outcome).await;
        }
        ClusterOutput::PjSend { sent, .. } => {
            let answer = redis::from_redis_value::<String>(value);
            let outcome = match answer.as_deref() {
                Ok(a) if a.starts_with(DELIVERED) => NodeId::new(&a[DELIVERED.len()..])
                    .map_or(PjSendOutcome::Unavailable, PjSendOutcome::Delivered),
                Ok("queued") => PjSendOutcome::Queued,
                Ok("full") => PjSendOutcome::Full,
                Ok("absent") => PjSendOutcome::Absent,
                _ => {
                    health.unheard.fetch_add(1, Relaxed);
                    PjSendOutcome::Unavailable
                }
            };
            let _ = hub.pj_sent(sent, outcome).await;
        }
        ClusterOutput::PjExpire { dst, entries } => {
            let removed: Vec<u64> = redis::from_redis_value(value).unwrap_or_default();
            let expired = entries
                .into_iter()
                .filter(|(tag, _)| removed.contains(tag))
                .collect();
            let _ = hub.pj_expired(dst, expired).await;
        }
        ClusterOutput::Release { .. }
        | ClusterOutput::PurgeOwn
        | ClusterOutput::SioRegister { .. }
        | ClusterOutput::SioUnregister { .. }
        | ClusterOutput::SioLeave { .. }
        | ClusterOutput::PjUnregister { .. } => {}
    }
}

async fn failed(hub: &HubSender, health: &Health, out: ClusterOutput) {
    health.failed.fetch_add(1, Relaxed);
    let _ = hub.cluster_failed(out).await;
}
