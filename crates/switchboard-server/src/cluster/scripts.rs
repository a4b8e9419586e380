//! The Lua scripts the cluster edge runs in Redis (`EVAL`), and the pieces they share.
//!
//! Each script is one atomic step of the registry: Redis runs it alone, so two nodes racing
//! for a seat, an id or a room place are serialized. Their keys and arguments are
//! documented on each; `registry.rs` calls them, `mod.rs` runs the renewal.

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
    elseif string.sub(key, 1, 12) == 'sb:sio:room:' or string.sub(key, 1, 8) == 'sb:mesh:' then
      local fields = redis.call('HGETALL', key)
      for i = 1, #fields, 2 do
        if mine(string.match(fields[i + 1], '^%d+|(.*)$')) then redis.call('HDEL', key, fields[i]) end
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
pub(crate) const LIVE_FN: &str = r"
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
pub(crate) const GROUP_FN: &str = r#"
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
pub(crate) const SETTLING_FN: &str = r"
local function settling()
  return redis.call('EXISTS', 'sb:epoch') == 0 or redis.call('EXISTS', 'sb:settling') == 1
end
";

/// socket.io: socket `id` is held here. KEYS = id hash, this node's key set; ARGV = node,
/// conn, the `SioReplaced` message for the node that held the id before, if it lives.
pub(crate) const SIO_REGISTER: &str = r"
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
pub(crate) const SIO_UNREGISTER: &str = r"
if redis.call('HGET', KEYS[1], 'at') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], KEYS[1])
return 1
";

/// socket.io: relays to socket ids, in order. KEYS = the targets' id hashes; ARGV = this
/// node's id, then per relay its scope (`any`, `exact`, `prefix`), the scope's room and the
/// message (a `NodeMessage`'s JSON). Relays for one node are published together, in order,
/// as one `Batch`. Returns per relay the holder's node (published), 0 (no live holder), -1
/// (outside the scope) or -2 (the holder's node is not listening).
pub(crate) const SIO_ROUTE: &str = r#"
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

/// The live members of a room hash (socket.io or mesh; field: member id, value:
/// `<seq>|<node>/<conn>`, for mesh followed by `|<may offer: 1/0>`), dropping those of dead
/// nodes (Lua, after [`LIVE_FN`]): `members(key, me, skip)` returns them but `skip`, in join
/// order, as `{seq, id, node, value}`, and the set of their nodes other than `me`.
pub(crate) const MEMBERS_FN: &str = r"
local function members(key, me, skip)
  local fields = redis.call('HGETALL', key)
  local list, nodes = {}, {}
  for i = 1, #fields, 2 do
    local m, v = fields[i], fields[i + 1]
    if m ~= skip then
      local seq, holder = string.match(v, '^(%d+)|([^|]*)')
      local node = string.match(holder, '^(.*)/')
      if node == me or live(node) then
        list[#list + 1] = {tonumber(seq), m, node, v}
        if node ~= me then nodes[node] = true end
      else
        redis.call('HDEL', key, m)
      end
    end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list, nodes
end
";

/// socket.io: a place in a room. KEYS = room hash (see [`MEMBERS_FN`]), id hash, this
/// node's key set; ARGV = node, conn, id, room size, roster envelope prefix, the
/// `SioPeerJoined` message, room name, announce (1/0), again (1/0). Members of dead nodes
/// are dropped on the way. With announce, publishes the roster (in join order) on this
/// node's channel and `SioPeerJoined` to the other members' nodes. Returns `queued`, `full`
/// or `unavailable` (this node is not listening: nothing is taken).
pub(crate) const SIO_JOIN: &str = r"
local me, id, max = ARGV[1], ARGV[3], tonumber(ARGV[4])
if ARGV[9] ~= '1' and settling() then
  return 'unavailable'
end
local at = me .. '/' .. ARGV[2]
local list, nodes = members(KEYS[1], me, id)
if #list >= max then return 'full' end
local seq = redis.call('INCR', 'sb:sio:seq')
redis.call('HSET', KEYS[1], id, seq .. '|' .. at)
redis.call('SADD', KEYS[3], KEYS[1])
if redis.call('HGET', KEYS[2], 'at') == at then redis.call('HSET', KEYS[2], 'room', ARGV[7]) end
if ARGV[8] == '1' then
  local parts = {}
  for _, p in ipairs(list) do parts[#parts + 1] = '[' .. cjson.encode(p[2]) .. ',' .. cjson.encode(p[3]) .. ']' end
  local roster = ARGV[5] .. '[' .. table.concat(parts, ',') .. ']}}}'
  if redis.call('PUBLISH', 'sb:node:' .. me .. ':in', roster) == 0 then
    redis.call('HDEL', KEYS[1], id)
    return 'unavailable'
  end
  for node, _ in pairs(nodes) do redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[6]) end
end
return 'queued'
";

/// Ant Media mesh rooms: a place in a mesh room. KEYS = room hash (see [`MEMBERS_FN`]),
/// this node's key set, the 1:1 room's seats (a new member of a room that live peers hold
/// as a 1:1 room: `other_mode`); ARGV = node, conn, member id (empty for a new member), room size,
/// may offer (1/0), roster envelope prefix, `MeshPeerJoined` envelope prefix. A new member
/// gets the next id of the registry's counter not used in the room (ids stay unique in a
/// room when the counter starts over with an emptied Redis), is refused while
/// [`SETTLING_FN`] says so or when the room is full, and the roster (in join order, with
/// each member's right to offer) is published on this node's channel and `MeshPeerJoined`
/// to the other members' nodes. A member id given is a place taken again (never refused,
/// nothing published). Returns `queued`, `full` or `unavailable` (this node is not
/// listening: nothing is taken).
pub(crate) const MESH_JOIN: &str = r#"
local me, id, max = ARGV[1], ARGV[3], tonumber(ARGV[4])
local again = id ~= ''
if not again and settling() then
  return 'unavailable'
end
if not again then
  for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
    local node = string.match(f, '^(.*)/')
    if node == me or live(node) then return 'other_mode' end
  end
end
local list, nodes = members(KEYS[1], me, id)
if not again and #list >= max then return 'full' end
local seq = redis.call('INCR', 'sb:sio:seq')
if not again then
  id = tostring(seq)
  while redis.call('HEXISTS', KEYS[1], id) == 1 do
    seq = redis.call('INCR', 'sb:sio:seq')
    id = tostring(seq)
  end
end
redis.call('HSET', KEYS[1], id, seq .. '|' .. me .. '/' .. ARGV[2] .. '|' .. ARGV[5])
redis.call('SADD', KEYS[2], KEYS[1])
if again then return 'queued' end
local parts = {}
for _, p in ipairs(list) do
  local offer = string.sub(p[4], -2) == '|1' and 'true' or 'false'
  parts[#parts + 1] = '[' .. p[2] .. ',' .. cjson.encode(p[3]) .. ',' .. offer .. ']'
end
local roster = ARGV[6] .. '[' .. table.concat(parts, ',') .. '],"me":' .. id .. '}}}'
if redis.call('PUBLISH', 'sb:node:' .. me .. ':in', roster) == 0 then
  redis.call('HDEL', KEYS[1], id)
  return 'unavailable'
end
for node, _ in pairs(nodes) do
  redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[7] .. id .. '}}}')
end
return 'queued'
"#;

/// PeerJS: claim an id. KEYS = id hash (`at`, `tok`: the token's digest), the id's queue,
/// the queue's byte count, this node's key set; ARGV = node, conn, token digest, the
/// `PjClaimed` envelope prefix, the `PjReplaced` message, again (1/0). A live holder on
/// another node with another token: `taken`; with the same token it is replaced. Publishes
/// `PjClaimed` with the queue (emptied) on this node's channel; again, only when something
/// waits (sent while Redis had forgotten the id: it is delivered, not left to expire).
/// Returns `done`, `taken` or `unavailable` (this node is not listening: nothing is taken).
pub(crate) const PJ_CLAIM: &str = r"
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
pub(crate) const PJ_SEND: &str = r#"
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
pub(crate) const DELIVERED: &str = "delivered:";

/// PeerJS: messages this node queued are due. KEYS = the id's queue, its byte count;
/// ARGV = node, then the tags. Takes out those still waiting; returns their tags.
pub(crate) const PJ_EXPIRE: &str = r"
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

/// Leaves a room (socket.io or mesh). KEYS = room hash, for socket.io the id's hash, this
/// node's key set (last); ARGV = node, conn, member id, the `SioPeerLeft` / `MeshPeerLeft`
/// message. Removes the member if this node's `conn` holds it and publishes the message to
/// the nodes of the other members.
pub(crate) const ROOM_LEAVE: &str = r"
local at = ARGV[1] .. '/' .. ARGV[2]
local v = redis.call('HGET', KEYS[1], ARGV[3])
if not v or string.match(v, '^%d+|([^|]*)') ~= at then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
if #KEYS == 3 and redis.call('HGET', KEYS[2], 'at') == at then redis.call('HSET', KEYS[2], 'room', '') end
local nodes, mine = {}, false
local fields = redis.call('HGETALL', KEYS[1])
for i = 2, #fields, 2 do
  local node = string.match(fields[i], '^%d+|([^|]*)/')
  if node == ARGV[1] then mine = true elseif live(node) then nodes[node] = true end
end
for node, _ in pairs(nodes) do redis.call('PUBLISH', 'sb:node:' .. node .. ':in', ARGV[4]) end
if not mine then redis.call('SREM', KEYS[#KEYS], KEYS[1]) end
return 1
";

/// Takes a seat: KEYS = room hash, this node's seat set, the node registry; ARGV = node,
/// conn, may offer (1/0), again (1/0). A new seat is refused (`unavailable`) while
/// [`SETTLING_FN`] says so. Seats of nodes whose lease ran out are dropped on the way.
/// KEYS[4] is the mesh room of the same name: a new seat in a room that live members hold as
/// a mesh room is `{'other_mode'}`. Returns `{'full'}`, `{'seated'}` or `{'seated',
/// other_field, other_offer}`.
pub(crate) const CLAIM: &str = r"
if ARGV[4] ~= '1' and settling() then
  return {'unavailable'}
end
if ARGV[4] ~= '1' and #(members(KEYS[4], ARGV[1], '')) > 0 then
  return {'other_mode'}
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
pub(crate) const RELEASE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1] .. '/' .. ARGV[2])
local prefix = ARGV[1] .. '/'
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then return 0 end
end
redis.call('SREM', KEYS[2], KEYS[1])
return 1
";

/// The scripts' bodies. They are sent with `EVAL` (Redis caches them by hash): unlike
/// `EVALSHA`, that never fails after Redis restarts with an empty script cache.
pub(crate) struct Scripts {
    pub(crate) purge: String,
    pub(crate) sio_register: String,
    pub(crate) sio_route: String,
    pub(crate) sio_join: String,
    pub(crate) room_leave: String,
    pub(crate) mesh_join: String,
    pub(crate) pj_claim: String,
    pub(crate) claim: String,
    pub(crate) pj_send: String,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            purge: format!(
                "{PURGE_FN}\nlocal n, left = purge(ARGV[1], tonumber(ARGV[2]))\nreturn left"
            ),
            sio_register: format!("{LIVE_FN}{SIO_REGISTER}"),
            sio_route: format!("{LIVE_FN}{GROUP_FN}{SIO_ROUTE}"),
            sio_join: format!("{LIVE_FN}{SETTLING_FN}{MEMBERS_FN}{SIO_JOIN}"),
            room_leave: format!("{LIVE_FN}{ROOM_LEAVE}"),
            mesh_join: format!("{LIVE_FN}{SETTLING_FN}{MEMBERS_FN}{MESH_JOIN}"),
            pj_claim: format!("{LIVE_FN}{SETTLING_FN}{PJ_CLAIM}"),
            claim: format!("{LIVE_FN}{SETTLING_FN}{MEMBERS_FN}{CLAIM}"),
            pj_send: format!("{LIVE_FN}{GROUP_FN}{PJ_SEND}"),
        }
    }
}
