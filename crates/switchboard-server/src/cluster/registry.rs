//! The hub's cluster outputs carried out in Redis, in order: seat claims and releases (Lua
//! scripts, atomic), messages to other nodes (`PUBLISH` on their channel) and the purge of
//! this node's seats before it claims them again.
//!
//! One task, one Redis connection: what the hub emits in one order reaches Redis in that
//! order (commands are pipelined, up to [`BATCH`] per round trip, one round trip at a
//! time, [`IN_FLIGHT`]), so a pair's messages keep their order across nodes and a release never
//! overtakes the claim it undoes. Answers go
//! back to the hub as inputs. When Redis cannot be reached, claims are answered
//! `Unavailable` and messages reported undelivered (their senders get
//! `cluster_unavailable`) at once; nothing waits in memory beyond the bounded queue in front
//! of this task ([`QUEUE`]), and the membership loop has every seat claimed again once Redis
//! answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use redis::aio::ConnectionManager;
use switchboard_core::auth::RoomRule;
use switchboard_core::{
    ClusterOutput, ConnId, JoinOutcome, PjClaimOutcome, PjSendOutcome, RouteOutcome, RouteScope,
    Seat, SeatReply,
};
use switchboard_proto::cluster::{Batch, Envelope, NodeId, NodeMessage};
use tokio::sync::mpsc;

use crate::hub_task::HubSender;

use super::scripts::{DELIVERED, PJ_EXPIRE, RELEASE, SIO_UNREGISTER};
pub(crate) use super::scripts::{PURGE_FN, Scripts};

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

/// The Redis key of an Ant Media room's seats.
pub(crate) fn room_key(app: &str, room: &str) -> String {
    format!("sb:am:{app}/{room}")
}

/// The Redis key of an Ant Media mesh room's members.
pub(crate) fn mesh_key(app: &str, room: &str) -> String {
    format!("sb:mesh:{app}/{room}")
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

/// The start of a call to a socket.io room script (join or leave): KEYS = the room's hash,
/// the id's hash, this node's key set; ARGV = node, conn, id; the caller adds the rest.
fn sio_room_script<'p>(
    pipe: &'p mut redis::Pipeline,
    script: &str,
    room: &str,
    id: &str,
    seats: &str,
    node: &str,
    conn: ConnId,
) -> &'p mut redis::Pipeline {
    pipe.cmd("EVAL")
        .arg(script)
        .arg(3)
        .arg(sio_room_key(room))
        .arg(sio_id_key(id))
        .arg(seats)
        .arg(node)
        .arg(conn.0)
        .arg(id)
}

/// Carries out the hub's cluster outputs until the hub lets go of the queue.
///
/// At most [`IN_FLIGHT`] pipelines are out at once (one: the next batch goes out once the
/// answers to the one before were handed to the hub), and the answers are taken in order.
pub(crate) async fn run(
    client: redis::Client,
    node: NodeId,
    mut rx: mpsc::Receiver<Command>,
    hub: HubSender,
    health: Arc<Health>,
) {
    let scripts = Scripts::new();
    let mut con: Option<ConnectionManager> = None;
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some((batch, answers)) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&hub, &health, &node, batch, answers).await;
            }
            batch = next_batch(&mut rx), if open && in_flight.len() < IN_FLIGHT => {
                if batch.is_empty() {
                    open = false;
                    continue;
                }
                health.commands.fetch_add(batch.len() as u64, Relaxed);
                if con.is_none() {
                    con = super::connect(&client).await.ok();
                }
                let outs: Vec<&ClusterOutput> = batch.iter().map(|(o, _)| o).collect();
                let (pipe, sizes) = pipeline(&scripts, &node, &outs);
                let con = con.clone();
                in_flight.push_back(async move {
                    let answers = match con {
                        Some(mut c) => query(&mut c, &pipe, sizes, batch.len()).await,
                        None => None,
                    };
                    (batch, answers)
                });
            }
        }
    }
}

/// Most pipelines out at once (each at most [`BATCH`] commands). One: with more, a batch that
/// failed on a connection Redis dropped could be followed by one that succeeded on the
/// reconnected connection, and a pair's messages crossed nodes out of order (seen across a
/// Redis restart, `bench_traffic_across_a_redis_restart_arrives_in_order_or_is_refused`).
const IN_FLIGHT: usize = 1;

/// What the hub queued since the last call (at most [`BATCH`]); empty once the queue is
/// closed.
async fn next_batch(rx: &mut mpsc::Receiver<Command>) -> Vec<Command> {
    let mut batch = Vec::new();
    rx.recv_many(&mut batch, BATCH).await;
    batch
}

/// One round trip of `pipe`: an answer for each of the `n` outputs it carries, or `None`
/// when Redis could not be reached in time or answered out of shape.
async fn query(
    c: &mut ConnectionManager,
    pipe: &redis::Pipeline,
    sizes: Vec<Carries>,
    n: usize,
) -> Option<Vec<redis::RedisResult<redis::Value>>> {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(c),
    )
    .await;
    match answer {
        // One answer per command; a coalesced publication answers for each of the messages
        // it carried.
        Ok(Ok(answers)) if answers.len() == sizes.len() => {
            spread(answers, sizes).filter(|a| a.len() == n)
        }
        Ok(Ok(_)) | Err(_) => None,
        Ok(Err(e)) => {
            tracing::debug!("cluster: commands failed: {e}");
            None
        }
    }
}

/// Hands a batch's answers (`None`: it failed as a whole) to the hub, in order.
async fn settle(
    hub: &HubSender,
    health: &Health,
    node: &NodeId,
    batch: Vec<Command>,
    answers: Option<Vec<redis::RedisResult<redis::Value>>>,
) {
    match answers {
        Some(answers) => {
            for ((out, done), answer) in batch.into_iter().zip(answers) {
                if let Some(done) = done {
                    let _ = done.send(answer.is_ok());
                }
                answered(hub, health, node, out, answer).await;
            }
        }
        None => {
            for (out, done) in batch {
                if let Some(done) = done {
                    let _ = done.send(false);
                }
                failed(hub, health, out).await;
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
                    .arg(4)
                    .arg(room)
                    .arg(&seats)
                    .arg(super::NODES)
                    .arg(mesh_key(claim.app.as_str(), claim.room.as_str()))
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
            ClusterOutput::SioJoin(j) => {
                let joined = NodeMessage::SioPeerJoined {
                    room: j.room.clone(),
                    id: j.id.clone(),
                };
                sio_room_script(
                    &mut pipe,
                    &scripts.sio_join,
                    &j.room,
                    &j.id,
                    &seats,
                    node,
                    j.conn,
                )
                .arg(u64::try_from(j.max).unwrap_or(u64::MAX))
                .arg(Envelope::roster_prefix(me, &j.room, j.conn.0))
                .arg(Envelope::encode(me, &joined))
                .arg(&*j.room)
                .arg(u8::from(j.announce))
                // A place taken again after Redis forgot it (never refused).
                .arg(u8::from(j.max == usize::MAX));
            }
            ClusterOutput::PjClaim(c) => {
                let [id_key, queue, bytes] = pj_keys(&c.id);
                let replaced = NodeMessage::PjReplaced { id: c.id.clone() };
                pipe.cmd("EVAL")
                    .arg(&scripts.pj_claim)
                    .arg(4)
                    .arg(id_key)
                    .arg(queue)
                    .arg(bytes)
                    .arg(&seats)
                    .arg(node)
                    .arg(c.conn.0)
                    .arg(token_digest(&c.token))
                    .arg(Envelope::claimed_prefix(me, &c.id, c.conn.0))
                    .arg(Envelope::encode(me, &replaced))
                    .arg(u8::from(c.again));
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
            ClusterOutput::MeshJoin(j) => {
                pipe.cmd("EVAL")
                    .arg(&scripts.mesh_join)
                    .arg(3)
                    .arg(mesh_key(j.app.as_str(), j.room.as_str()))
                    .arg(&seats)
                    .arg(room_key(j.app.as_str(), j.room.as_str()))
                    .arg(node)
                    .arg(j.conn.0)
                    .arg(j.id.map(|id| id.to_string()).unwrap_or_default())
                    .arg(u64::try_from(j.max).unwrap_or(u64::MAX))
                    .arg(u8::from(j.offer))
                    .arg(Envelope::mesh_roster_prefix(me, &j.app, &j.room, j.conn.0))
                    .arg(Envelope::mesh_joined_prefix(me, &j.app, &j.room, j.offer));
            }
            ClusterOutput::MeshLeave {
                conn,
                app,
                room,
                id,
            } => {
                let left = NodeMessage::MeshPeerLeft {
                    app: app.clone(),
                    room: room.clone(),
                    id: *id,
                };
                pipe.cmd("EVAL")
                    .arg(&scripts.room_leave)
                    .arg(2)
                    .arg(mesh_key(app.as_str(), room.as_str()))
                    .arg(&seats)
                    .arg(node)
                    .arg(conn.0)
                    .arg(*id)
                    .arg(Envelope::encode(me, &left));
            }
            ClusterOutput::SioLeave { conn, id, room } => {
                let left = NodeMessage::SioPeerLeft {
                    room: room.clone(),
                    id: id.clone(),
                };
                sio_room_script(
                    &mut pipe,
                    &scripts.room_leave,
                    room,
                    id,
                    &seats,
                    node,
                    *conn,
                )
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
                Ok(v) if v.first().is_some_and(|s| s == "other_mode") => SeatReply::OtherMode,
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
        ClusterOutput::SioJoin(switchboard_core::SioJoin { conn, room, .. }) => {
            let outcome = match redis::from_redis_value::<String>(value).as_deref() {
                Ok("queued") => JoinOutcome::Queued,
                Ok("full") => JoinOutcome::Full,
                _ => JoinOutcome::Unavailable,
            };
            let _ = hub.sio_join_reply(conn, room, outcome).await;
        }
        ClusterOutput::MeshJoin(j) => {
            let outcome = match redis::from_redis_value::<String>(value).as_deref() {
                Ok("queued") => JoinOutcome::Queued,
                Ok("full") => JoinOutcome::Full,
                Ok("other_mode") => JoinOutcome::OtherMode,
                _ => JoinOutcome::Unavailable,
            };
            if j.id.is_none() {
                let _ = hub.mesh_join_reply(j.conn, (j.app, j.room), outcome).await;
            }
        }
        ClusterOutput::PjClaim(switchboard_core::PjClaim {
            conn, id, again, ..
        }) => {
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
        | ClusterOutput::MeshLeave { .. }
        | ClusterOutput::PjUnregister { .. } => {}
    }
}

async fn failed(hub: &HubSender, health: &Health, out: ClusterOutput) {
    health.failed.fetch_add(1, Relaxed);
    let _ = hub.cluster_failed(out).await;
}
