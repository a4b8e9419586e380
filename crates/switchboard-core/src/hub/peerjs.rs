//! The PeerJS dialect of the hub (the edge: `switchboard-server`'s `{peerjs_path}peerjs`): ids
//! claimed with a token, relay of OFFER / ANSWER / CANDIDATE / LEAVE with `src` stamped,
//! a bounded per-id queue for peers not connected yet (EXPIRE to the sender when it
//! expires or is full), HEARTBEAT liveness, and take-over of an id by its own token.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use switchboard_proto::cluster::PjRelayed;
use switchboard_proto::peerjs::{PjClientMessage, PjServerMessage, PjType, errors};

use super::cluster::{ClusterOutput, PjClaim};
use super::{AuthError, Claims, CloseReason, ConnId, Dialect, Hub, LeaveReason, Output};

/// Longest id or token accepted (bytes).
pub const PJ_MAX_NAME: usize = 256;

/// Settings of the PeerJS dialect, mirroring peerjs-server's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerJsConfig {
    /// The API key clients must present (`key`). Default `peerjs`.
    pub key: Box<str>,
    /// Life of a message queued for an id that is not connected. Default 5 s.
    pub expire_timeout: Duration,
    /// A socket that sends no HEARTBEAT for this long is closed. Default 60 s.
    pub alive_timeout: Duration,
    /// Most ids at once. Default 5000.
    pub concurrent_limit: usize,
    /// Whether `GET {path}{key}/peers` lists ids. Default false.
    pub allow_discovery: bool,
    /// Most messages queued for one absent id (more: EXPIRE to the sender at once). Default 64.
    pub queue_per_peer: usize,
    /// Most messages queued in total. Default 10,000.
    pub queue_total: usize,
    /// Most bytes queued for one absent id. Default 256 KiB (an offer and its candidates
    /// take a few KiB).
    pub queue_bytes_per_peer: usize,
    /// Most bytes one sender id may have waiting in queues, over all receivers. Default
    /// 256 KiB: one sender cannot fill the shared queue and make everyone else's offers
    /// `EXPIRE`.
    pub queue_bytes_per_sender: usize,
    /// Most bytes queued in total. Default 16 MiB.
    pub queue_bytes_total: usize,
}

impl Default for PeerJsConfig {
    fn default() -> Self {
        Self {
            key: "peerjs".into(),
            expire_timeout: Duration::from_secs(5),
            alive_timeout: Duration::from_secs(60),
            concurrent_limit: 5000,
            allow_discovery: false,
            queue_per_peer: 64,
            queue_total: 10_000,
            queue_bytes_per_peer: 256 * 1024,
            queue_bytes_per_sender: 256 * 1024,
            queue_bytes_total: 16 * 1024 * 1024,
        }
    }
}

/// One PeerJS socket.
#[derive(Debug)]
pub(super) struct PjConn {
    pub(super) id: Box<str>,
    last_heartbeat: Instant,
    /// The claims of its key, when room tokens are on (the key is the token).
    grant: Option<Box<Claims>>,
}

/// Who holds an id.
#[derive(Debug)]
pub(super) struct PjHolder {
    pub(super) conn: ConnId,
    pub(super) token: Box<str>,
}

/// A connection whose id claim is out (cluster mode).
#[derive(Debug)]
pub(super) struct PjPending {
    pub(super) id: Box<str>,
    pub(super) token: Box<str>,
    pub(super) grant: Option<Box<Claims>>,
}

/// A message this node queued in the registry for an id no node holds (cluster mode).
#[derive(Debug)]
pub(super) struct PjWaiting {
    pub(super) tag: u64,
    pub(super) from: Box<str>,
    pub(super) bytes: usize,
    pub(super) expires: Instant,
}

/// A message waiting for its receiver.
#[derive(Debug)]
pub(super) struct Queued {
    from: Box<str>,
    msg: PjServerMessage,
    expires: Instant,
    /// What it holds, as counted against the byte limits.
    bytes: usize,
}

/// The messages waiting for one absent id.
#[derive(Debug, Default)]
pub(super) struct Queue {
    msgs: VecDeque<Queued>,
    pub(super) bytes: usize,
}

/// Bytes counted for a queued message besides its text: the queue entry, the message and
/// their allocations' bookkeeping.
const QUEUED_OVERHEAD: usize = 128;

/// PeerJS timers: a socket's liveness, or the queue of an absent id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PjTimer {
    Alive(ConnId),
    Queue(Box<str>),
    /// Messages queued in the registry for this id are due (cluster mode).
    Remote(Box<str>),
}

/// The PeerJS state of a hub.
#[derive(Debug, Default)]
pub(super) struct PeerJs {
    conns: HashMap<ConnId, PjConn>,
    pub(super) ids: HashMap<Box<str>, PjHolder>,
    pub(super) queues: HashMap<Box<str>, Queue>,
    queued: usize,
    /// Bytes held by all queues.
    queued_bytes: usize,
    /// Bytes each sender id has waiting in queues (no entry at zero).
    pub(super) sender_bytes: HashMap<Box<str>, usize>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, PjTimer)>>,
    /// Cluster mode: connections whose id claim is out.
    pub(super) pending: HashMap<ConnId, PjPending>,
    /// Cluster mode: messages queued in the registry, by receiver id, oldest first.
    pub(super) waiting: HashMap<Box<str>, VecDeque<PjWaiting>>,
    /// Cluster mode: the tag of the last message sent through the registry.
    pub(super) next_tag: u64,
    /// Cluster mode: the nodes where ids held elsewhere were last found.
    pub(super) routes: super::cluster_routes::Routes,
}

impl PeerJs {
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The connections of open ids.
    pub(super) fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// The id `conn` holds.
    pub(super) fn id_of(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(|c| &*c.id)
    }

    pub(super) fn len(&self) -> usize {
        self.conns.len() + self.pending.len()
    }

    /// Messages and bytes queued for absent ids now.
    pub(super) fn queued(&self) -> (usize, usize) {
        (self.queued, self.queued_bytes)
    }

    /// Whether one more queued message of `bytes` from `src` stays within the per-sender
    /// and total limits (the per-receiver ones are checked where the queue is: here on one
    /// node, in the registry in cluster mode).
    pub(super) fn fits(&self, cfg: &PeerJsConfig, src: &str, bytes: usize) -> bool {
        let sender_bytes = self.sender_bytes.get(src).copied().unwrap_or(0);
        self.queued < cfg.queue_total
            && sender_bytes + bytes <= cfg.queue_bytes_per_sender
            && self.queued_bytes + bytes <= cfg.queue_bytes_total
    }

    /// Takes `q` out of the counts (it was delivered or dropped).
    fn uncount(&mut self, q: &Queued) {
        self.uncount_bytes(&q.from, q.bytes);
    }

    /// Takes one message of `from` holding `bytes` out of the counts.
    pub(super) fn uncount_bytes(&mut self, from: &str, bytes: usize) {
        self.queued -= 1;
        self.queued_bytes -= bytes;
        if let Some(b) = self.sender_bytes.get_mut(from) {
            *b -= bytes;
            if *b == 0 {
                self.sender_bytes.remove(from);
            }
        }
    }

    /// Counts one message of `from` holding `bytes`.
    pub(super) fn count_bytes(&mut self, from: &str, bytes: usize) {
        self.queued += 1;
        self.queued_bytes += bytes;
        *self.sender_bytes.entry(from.into()).or_default() += bytes;
    }
}

impl Hub {
    pub(super) fn pj_send(&mut self, conn: ConnId, msg: PjServerMessage) {
        self.out.push_back(Output::PjSend { conn, msg });
    }

    pub(super) fn pj_refuse(&mut self, conn: ConnId, msg: PjServerMessage) {
        self.stats.errors += 1;
        self.pj_send(conn, msg);
        self.out.push_back(Output::Close {
            conn,
            reason: CloseReason::Refused,
        });
    }

    /// A PeerJS WebSocket opened with these query parameters. Answered `OPEN` (then the
    /// messages queued for the id), or an `ERROR` / `ID-TAKEN` and a close.
    pub fn handle_pj_connect(
        &mut self,
        conn: ConnId,
        key: Option<&str>,
        id: Option<&str>,
        token: Option<&str>,
        ip: Option<std::net::IpAddr>,
        now: Instant,
    ) {
        let (Some(key), Some(id), Some(token)) = (
            key.filter(|s| !s.is_empty()),
            id.filter(|s| !s.is_empty()),
            token.filter(|s| !s.is_empty()),
        ) else {
            return self.pj_refuse(
                conn,
                PjServerMessage::Error {
                    msg: errors::MISSING,
                },
            );
        };
        if id.len() > PJ_MAX_NAME || token.len() > PJ_MAX_NAME {
            return self.pj_refuse(
                conn,
                PjServerMessage::Error {
                    msg: errors::TOO_LONG,
                },
            );
        }
        // A PeerJS connection is its one join: it counts against its source's join budget.
        let limits = self.config.limits;
        self.limiter.connect(conn, ip, &limits, now);
        if self.limiter.join(conn, &limits, now) != super::Verdict::Allow {
            self.limiter.forget(conn, &self.config.limits);
            return self.pj_refuse(
                conn,
                PjServerMessage::Error {
                    msg: errors::RATE_LIMITED,
                },
            );
        }
        // With room tokens on, the key is a token: it must admit this id (its `sub` is the
        // only id it may hold; its `room` rule applies to ids, a PeerJS peer's only place).
        // Checked after the join budget, so a flood of forged keys costs at most that budget
        // in signature checks.
        let grant = match &self.config.auth {
            None if key != &*self.config.peerjs.key => {
                self.limiter.forget(conn, &self.config.limits);
                return self.pj_refuse(
                    conn,
                    PjServerMessage::Error {
                        msg: errors::INVALID_KEY,
                    },
                );
            }
            None => None,
            Some(auth) => match pj_admit(auth, key, id, self.unix_now) {
                Ok(claims) => Some(Box::new(claims)),
                Err(e) => {
                    self.stats.auth_refused += 1;
                    self.limiter.forget(conn, &self.config.limits);
                    return self.pj_refuse(
                        conn,
                        PjServerMessage::Unauthorized {
                            reason: e.to_string().into(),
                        },
                    );
                }
            },
        };
        let pending_other = self
            .pj
            .pending
            .values()
            .any(|p| &*p.id == id && &*p.token != token);
        if pending_other {
            self.limiter.forget(conn, &self.config.limits);
            return self.pj_refuse(conn, PjServerMessage::IdTaken);
        }
        match self.pj.ids.get(id) {
            Some(h) if &*h.token != token => {
                self.limiter.forget(conn, &self.config.limits);
                return self.pj_refuse(conn, PjServerMessage::IdTaken);
            }
            Some(h) => {
                // The same client reconnecting: the new socket takes the id over and the old
                // one is closed (peerjs-server leaves it open).
                let old = h.conn;
                self.pj.conns.remove(&old);
                self.events
                    .left(old, Dialect::PeerJs, key, id, LeaveReason::Replaced);
                self.out.push_back(Output::Close {
                    conn: old,
                    reason: CloseReason::Replaced,
                });
            }
            None => {
                let total = self.am.conns.len() + self.sio.conns.len() + self.pj.len();
                if self.pj.ids.len() + self.pj.pending.len() >= self.config.peerjs.concurrent_limit
                    || total >= self.config.max_connections
                {
                    self.limiter.forget(conn, &self.config.limits);
                    return self.pj_refuse(conn, PjServerMessage::Error { msg: errors::LIMIT });
                }
            }
        }
        if self.node_id().is_some() {
            // The id is claimed in the cluster's registry first; `OPEN` follows the claim
            // (`handle_pj_claim_reply`, then the registry's `PjClaimed`).
            self.pj.ids.remove(id);
            self.pj.pending.insert(
                conn,
                PjPending {
                    id: id.into(),
                    token: token.into(),
                    grant,
                },
            );
            return self.cluster_out(ClusterOutput::PjClaim(PjClaim {
                conn,
                id: id.into(),
                token: token.into(),
                again: false,
            }));
        }
        self.pj_open(conn, id, token, grant, now, Vec::new());
    }

    /// `conn` holds `id` now: `OPEN`, then what waited for the id (here, and `remote`:
    /// what waited in the cluster's registry).
    pub(super) fn pj_open(
        &mut self,
        conn: ConnId,
        id: &str,
        token: &str,
        grant: Option<Box<Claims>>,
        now: Instant,
        remote: Vec<PjRelayed>,
    ) {
        self.pj.ids.insert(
            id.into(),
            PjHolder {
                conn,
                token: token.into(),
            },
        );
        self.pj.conns.insert(
            conn,
            PjConn {
                id: id.into(),
                last_heartbeat: now,
                grant,
            },
        );
        self.pj.timers.push(Reverse((
            now + self.config.peerjs.alive_timeout,
            PjTimer::Alive(conn),
        )));
        let key = self.config.peerjs.key.clone();
        self.events.joined(conn, Dialect::PeerJs, &key, id);
        self.pj_send(conn, PjServerMessage::Open);
        for m in remote {
            self.stats.relayed_by_dialect.peerjs += 1;
            self.cluster.received += 1;
            self.pj_send(conn, m.into_server_message());
        }
        if let Some(queue) = self.pj.queues.remove(id) {
            for q in queue.msgs {
                self.pj.uncount(&q);
                self.stats.relayed_by_dialect.peerjs += 1;
                self.pj_send(conn, q.msg);
            }
        }
    }

    /// A frame from a PeerJS socket (`Err`: not JSON; ignored, the socket stays).
    pub fn handle_pj_message(
        &mut self,
        conn: ConnId,
        msg: Result<PjClientMessage, ()>,
        now: Instant,
    ) {
        if !self.pj.conns.contains_key(&conn) {
            return;
        }
        match self.limiter.message(conn, &self.config.limits, now) {
            super::Verdict::Allow => {}
            verdict => {
                self.stats.errors += 1;
                self.pj_send(
                    conn,
                    PjServerMessage::Error {
                        msg: errors::RATE_LIMITED,
                    },
                );
                if verdict == super::Verdict::Close {
                    self.pj_forget(conn, LeaveReason::RateLimited);
                    self.out.push_back(Output::Close {
                        conn,
                        reason: CloseReason::RateLimited,
                    });
                }
                return;
            }
        }
        let Some(c) = self.pj.conns.get_mut(&conn) else {
            return;
        };
        let Ok(msg) = msg else {
            return;
        };
        let kind = match msg.kind {
            Some(PjType::Heartbeat) => {
                c.last_heartbeat = now;
                return;
            }
            // Unknown types are ignored; only the server sends EXPIRE.
            None | Some(PjType::Expire) => return,
            Some(kind) => kind,
        };
        let Some(dst) = msg.dst else {
            return;
        };
        // A token's room rule bounds whom its holder can reach too (times are not checked: a
        // call goes on after its token expired).
        if let Some(rule) = c.grant.as_ref().and_then(|g| g.room.as_ref()) {
            if !rule.allows(&dst) {
                self.stats.auth_refused += 1;
                self.stats.errors += 1;
                let reason = AuthError::WrongRoom.to_string().into();
                return self.pj_send(conn, PjServerMessage::Unauthorized { reason });
            }
        }
        let src = c.id.clone();
        let bytes = QUEUED_OVERHEAD
            + src.len()
            + dst.len()
            + msg.payload.as_ref().map_or(0, |p| p.json().len());
        let out = PjServerMessage::Relay {
            kind,
            src: src.clone(),
            dst: dst.clone(),
            payload: msg.payload,
        };
        if let Some(to) = self.pj.ids.get(&dst).map(|h| h.conn) {
            self.stats.relayed_by_dialect.peerjs += 1;
            self.pj_send(to, out);
            return;
        }
        if self.node_id().is_some() {
            return self.pj_send_remote(conn, out, bytes);
        }
        if kind == PjType::Leave {
            return;
        }
        let cfg = &self.config.peerjs;
        let (queue_len, queue_bytes) = self
            .pj
            .queues
            .get(&dst)
            .map_or((0, 0), |q| (q.msgs.len(), q.bytes));
        if queue_len >= cfg.queue_per_peer
            || queue_bytes + bytes > cfg.queue_bytes_per_peer
            || !self.pj.fits(cfg, &src, bytes)
        {
            // No room: the sender learns at once that the id is not there.
            self.stats.errors += 1;
            self.stats.queue_refused += 1;
            self.pj_send(conn, PjServerMessage::Expire { src: dst, dst: src });
            return;
        }
        let expires = now + cfg.expire_timeout;
        if queue_len == 0 {
            self.pj
                .timers
                .push(Reverse((expires, PjTimer::Queue(dst.clone()))));
        }
        self.pj.queued += 1;
        self.pj.queued_bytes += bytes;
        *self.pj.sender_bytes.entry(src.clone()).or_default() += bytes;
        let queue = self.pj.queues.entry(dst).or_default();
        queue.bytes += bytes;
        queue.msgs.push_back(Queued {
            from: src,
            msg: out,
            expires,
            bytes,
        });
    }

    /// Expires queued messages and closes silent sockets.
    pub(super) fn pj_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.pj.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.pj.timers.pop() else {
                break;
            };
            match timer {
                PjTimer::Alive(conn) => {
                    let Some(c) = self.pj.conns.get(&conn) else {
                        continue;
                    };
                    let due = c.last_heartbeat + self.config.peerjs.alive_timeout;
                    if due > now {
                        self.pj.timers.push(Reverse((due, PjTimer::Alive(conn))));
                        continue;
                    }
                    self.pj_forget(conn, LeaveReason::IdleTimeout);
                    self.stats.idle_closed += 1;
                    self.out.push_back(Output::Close {
                        conn,
                        reason: CloseReason::IdleTimeout,
                    });
                }
                PjTimer::Queue(dst) => self.pj_expire(&dst, now),
                PjTimer::Remote(dst) => self.pj_expire_remote(&dst, now),
            }
        }
    }

    /// Expires what was queued for `dst`: a sender with an expired message gets one EXPIRE,
    /// and its other messages to `dst` go too (the attempt is over; PeerJS reports the peer
    /// unavailable), so EXPIRE comes once per (sender, dst).
    fn pj_expire(&mut self, dst: &str, now: Instant) {
        let Some(mut queue) = self.pj.queues.remove(dst) else {
            return;
        };
        let mut senders = Vec::new();
        let mut seen = HashSet::new();
        for q in queue.msgs.iter().take_while(|q| q.expires <= now) {
            if seen.insert(q.from.clone()) {
                senders.push(q.from.clone());
            }
        }
        let (gone, kept): (VecDeque<Queued>, VecDeque<Queued>) = std::mem::take(&mut queue.msgs)
            .into_iter()
            .partition(|q| seen.contains(&q.from));
        for q in &gone {
            self.pj.uncount(q);
            queue.bytes -= q.bytes;
        }
        queue.msgs = kept;
        if let Some(next) = queue.msgs.front() {
            let at = next.expires;
            self.pj
                .timers
                .push(Reverse((at, PjTimer::Queue(dst.into()))));
            self.pj.queues.insert(dst.into(), queue);
        }
        for from in senders {
            if let Some(to) = self.pj.ids.get(&from).map(|h| h.conn) {
                self.pj_send(
                    to,
                    PjServerMessage::Expire {
                        src: dst.into(),
                        dst: from,
                    },
                );
            }
        }
    }

    pub(super) fn pj_forget(&mut self, conn: ConnId, reason: LeaveReason) -> bool {
        if let Some(p) = self.pj.pending.remove(&conn) {
            // Its claim may have gone through: give the id back.
            self.cluster_out(ClusterOutput::PjUnregister { conn, id: p.id });
            return true;
        }
        let Some(c) = self.pj.conns.remove(&conn) else {
            return false;
        };
        if self.pj.ids.get(&c.id).is_some_and(|h| h.conn == conn) {
            self.pj.ids.remove(&c.id);
        }
        if self.node_id().is_some() {
            self.cluster_out(ClusterOutput::PjUnregister {
                conn,
                id: c.id.clone(),
            });
        }
        let key = &*self.config.peerjs.key;
        self.events.left(conn, Dialect::PeerJs, key, &c.id, reason);
        true
    }

    /// Ids connected now, when discovery is allowed (`GET {path}{key}/peers`).
    #[must_use]
    pub fn pj_peers(&self) -> Option<Vec<Box<str>>> {
        self.config
            .peerjs
            .allow_discovery
            .then(|| self.pj.ids.keys().cloned().collect())
    }

    /// Closes every PeerJS socket (shutdown).
    pub(super) fn pj_shutdown(&mut self) {
        self.close_for_shutdown(self.pj.conns.keys().copied().collect());
        self.pj = PeerJs::default();
    }
}

/// Whether a PeerJS key (a room token, with room tokens on) admits `id` now.
fn pj_admit(
    auth: &crate::auth::AuthConfig,
    key: &str,
    id: &str,
    now_unix: u64,
) -> Result<Claims, AuthError> {
    let claims = auth.admit(Some(key), now_unix, None, Some(id))?;
    match &claims.sub {
        Some(sub) if sub.as_str() != id => Err(AuthError::NotGranted(
            "the token is for another id (its sub)",
        )),
        _ => Ok(claims),
    }
}
