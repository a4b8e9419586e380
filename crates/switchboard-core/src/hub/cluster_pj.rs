//! Cluster mode for the PeerJS dialect: ids unique across nodes, take-over by the same token
//! from any node, messages to an id on another node, and messages to an id no node holds
//! queued in the registry until it connects anywhere (or `EXPIRE`, as on one node).
//!
//! The queue lives in Redis, so order is kept whatever node the receiver connects to: the
//! claim script takes the queue and publishes it with the claim's confirmation
//! ([`NodeMessage::PjClaimed`]) on the claimer's own channel, before any later message.
//! The sender's node keeps what it needs to send `EXPIRE` ([`super::peerjs::PjWaiting`]) and
//! counts those messages against its per-sender and total queue limits; the per-receiver
//! limits are checked by the registry.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::time::Instant;

use switchboard_proto::cluster::{NodeId, NodeMessage, PjRelayed};
use switchboard_proto::peerjs::{PjServerMessage, PjType, errors};

use super::cluster::{ClusterOutput, PjClaim, PjClaimOutcome, PjSendOutcome, PjSent};
use super::peerjs::{PjTimer, PjWaiting};
use super::{CloseReason, ConnId, Hub, LeaveReason, Output};

impl Hub {
    /// The registry's answer to a [`ClusterOutput::PjClaim`] of `conn` for `id`.
    pub fn handle_pj_claim_reply(
        &mut self,
        conn: ConnId,
        id: &str,
        again: bool,
        outcome: PjClaimOutcome,
    ) {
        if again {
            let held = self.pj.ids.get(id).is_some_and(|h| h.conn == conn);
            if held && outcome == PjClaimOutcome::Taken {
                // Another node's socket took the id while Redis had forgotten this one.
                let _ = self.pj_forget(conn, LeaveReason::Replaced);
                self.out.push_back(Output::Close {
                    conn,
                    reason: CloseReason::Replaced,
                });
            }
            return;
        }
        if self.pj.pending.get(&conn).is_none_or(|p| &*p.id != id) {
            return;
        }
        let refusal = match outcome {
            PjClaimOutcome::Done => return,
            PjClaimOutcome::Taken => PjServerMessage::IdTaken,
            PjClaimOutcome::Unavailable => {
                self.cluster.unavailable += 1;
                PjServerMessage::Error {
                    msg: errors::CLUSTER_UNAVAILABLE,
                }
            }
        };
        self.pj.pending.remove(&conn);
        self.limiter.forget(conn, &self.config.limits);
        self.pj_refuse(conn, refusal);
    }

    pub(super) fn pj_node_message(&mut self, from: &NodeId, msg: NodeMessage, now: Instant) {
        match msg {
            NodeMessage::PjRelay(m) => {
                if let Some((conn, src, dst)) = self.pj_relay_in(from, m.kind, m.src, m.dst, m.back)
                {
                    let msg = PjServerMessage::Relay {
                        kind: m.kind,
                        src,
                        dst,
                        payload: m.payload,
                    };
                    self.pj_send(conn, msg);
                }
            }
            NodeMessage::PjFrame(m) => {
                if let Some((conn, ..)) = self.pj_relay_in(from, m.kind, m.src, m.dst, m.back) {
                    self.out.push_back(Output::Frame {
                        conn,
                        frame: m.frame,
                    });
                }
            }
            NodeMessage::PjMiss {
                conn,
                kind,
                src,
                dst,
            } => {
                self.pj.routes.forget(&dst, from);
                self.cluster.route_misses += 1;
                self.pj_direct_failed(ConnId(conn), kind, src, dst);
            }
            NodeMessage::PjClaimed { to, id, queued } => {
                let conn = ConnId(to);
                if self.pj.ids.get(&id).is_some_and(|h| h.conn == conn) {
                    // Claimed again (Redis had forgotten it): what was sent to the id
                    // meanwhile waited in Redis, and comes before anything later.
                    for m in queued {
                        self.stats.relayed_by_dialect.peerjs += 1;
                        self.cluster.received += 1;
                        self.pj_send(conn, m.into_server_message());
                    }
                    return;
                }
                if self.pj.pending.get(&conn).is_none_or(|p| p.id != id) {
                    // Gone meanwhile (its id was given back): what waited is lost with it,
                    // as when a receiver closes right after connecting.
                    self.cluster.stale += 1;
                    return;
                }
                let Some(p) = self.pj.pending.remove(&conn) else {
                    return;
                };
                self.pj_open(conn, &p.id, &p.token, p.grant, now, queued);
            }
            NodeMessage::PjReplaced { id } => {
                let Some(old) = self.pj.ids.get(&*id).map(|h| h.conn) else {
                    self.cluster.stale += 1;
                    return;
                };
                self.cluster.received += 1;
                let _ = self.pj_forget(old, LeaveReason::Replaced);
                self.out.push_back(Output::Close {
                    conn: old,
                    reason: CloseReason::Replaced,
                });
            }
            _ => {}
        }
    }

    /// Who gets a relay from `src` on `from` to the id `dst` (and the ids back); when no
    /// connection here holds `dst`, the sender hears of it if it was sent straight here
    /// from a cached route (`back`). Counted either way.
    fn pj_relay_in(
        &mut self,
        from: &NodeId,
        kind: PjType,
        src: Box<str>,
        dst: Box<str>,
        back: Option<u64>,
    ) -> Option<(ConnId, Box<str>, Box<str>)> {
        if let Some(to) = self.pj.ids.get(&dst).map(|h| h.conn) {
            self.cluster.received += 1;
            return Some((to, src, dst));
        }
        self.cluster.stale += 1;
        if let Some(conn) = back {
            let msg = NodeMessage::PjMiss {
                conn,
                kind,
                src,
                dst,
            };
            self.cluster_out(ClusterOutput::Send {
                node: from.clone(),
                from: None,
                msg,
            });
        }
        None
    }

    /// A message for an id this node does not hold: through the registry.
    pub(super) fn pj_send_remote(&mut self, conn: ConnId, out: PjServerMessage, bytes: usize) {
        let PjServerMessage::Relay {
            kind,
            src,
            dst,
            payload,
        } = out
        else {
            return;
        };
        if let Some(node) = self.pj.routes.get(&dst) {
            // Where the id was last found: straight there (a miss comes back as EXPIRE).
            let msg = NodeMessage::PjRelay(PjRelayed {
                kind,
                src,
                dst,
                payload,
                back: Some(conn.0),
            });
            self.stats.relayed_by_dialect.peerjs += 1;
            self.cluster.sent += 1;
            self.cluster.routed_direct += 1;
            return self.cluster_out(ClusterOutput::Send {
                node: node.clone(),
                from: Some(conn),
                msg,
            });
        }
        let queue = kind != PjType::Leave;
        let cfg = &self.config.peerjs;
        if queue && !self.pj.fits(cfg, &src, bytes) {
            self.stats.errors += 1;
            self.stats.queue_refused += 1;
            return self.pj_send(conn, PjServerMessage::Expire { src: dst, dst: src });
        }
        self.pj.next_tag += 1;
        self.cluster.sent += 1;
        let (max_msgs, max_bytes, expire) = (
            cfg.queue_per_peer,
            cfg.queue_bytes_per_peer,
            cfg.expire_timeout,
        );
        self.cluster_out(ClusterOutput::PjSend {
            sent: PjSent {
                conn,
                tag: self.pj.next_tag,
                from: src.clone(),
                dst: dst.clone(),
                bytes,
            },
            msg: PjRelayed {
                kind,
                src,
                dst,
                payload,
                back: None,
            },
            queue,
            max_msgs,
            max_bytes,
            expire,
        });
    }

    /// The registry's answer to a [`ClusterOutput::PjSend`].
    pub fn handle_pj_sent(&mut self, sent: PjSent, outcome: PjSendOutcome, now: Instant) {
        let node = match &outcome {
            PjSendOutcome::Delivered(node) => Some(node),
            _ => None,
        };
        if self
            .pj
            .routes
            .answered(&sent.dst, node, self.config.route_cache)
        {
            self.cluster.route_resets += 1;
        }
        match outcome {
            PjSendOutcome::Delivered(_) => self.stats.relayed_by_dialect.peerjs += 1,
            PjSendOutcome::Absent => {}
            PjSendOutcome::Queued => {
                self.pj.count_bytes(&sent.from, sent.bytes);
                let expires = now + self.config.peerjs.expire_timeout;
                let list = self.pj.waiting.entry(sent.dst.clone()).or_default();
                if list.is_empty() {
                    self.pj
                        .timers
                        .push(Reverse((expires, PjTimer::Remote(sent.dst.clone()))));
                }
                list.push_back(PjWaiting {
                    tag: sent.tag,
                    from: sent.from,
                    bytes: sent.bytes,
                    expires,
                });
            }
            PjSendOutcome::Full | PjSendOutcome::Unavailable => {
                self.stats.errors += 1;
                if outcome == PjSendOutcome::Full {
                    self.stats.queue_refused += 1;
                } else {
                    self.cluster.unavailable += 1;
                }
                if self
                    .pj
                    .ids
                    .get(&sent.from)
                    .is_some_and(|h| h.conn == sent.conn)
                {
                    let expire = PjServerMessage::Expire {
                        src: sent.dst,
                        dst: sent.from,
                    };
                    self.pj_send(sent.conn, expire);
                }
            }
        }
    }

    /// A message `conn` (id `src`) sent straight to `dst`'s last known node did not reach
    /// it: the sender gets `EXPIRE` (not for `LEAVE`), as when the registry cannot deliver.
    pub(super) fn pj_direct_failed(
        &mut self,
        conn: ConnId,
        kind: PjType,
        src: Box<str>,
        dst: Box<str>,
    ) {
        if kind == PjType::Leave || self.pj.ids.get(&src).is_none_or(|h| h.conn != conn) {
            return;
        }
        self.pj_send(conn, PjServerMessage::Expire { src: dst, dst: src });
    }

    /// Messages this node queued in the registry for `dst` are due: ask which still wait.
    pub(super) fn pj_expire_remote(&mut self, dst: &str, now: Instant) {
        let Some(list) = self.pj.waiting.get_mut(dst) else {
            return;
        };
        let mut due = Vec::new();
        while list.front().is_some_and(|w| w.expires <= now) {
            if let Some(w) = list.pop_front() {
                due.push(w);
            }
        }
        let next = list.front().map(|w| w.expires);
        if list.is_empty() {
            self.pj.waiting.remove(dst);
        }
        if let Some(at) = next {
            self.pj
                .timers
                .push(Reverse((at, PjTimer::Remote(dst.into()))));
        }
        if due.is_empty() {
            return;
        }
        for w in &due {
            self.pj.uncount_bytes(&w.from, w.bytes);
        }
        self.cluster_out(ClusterOutput::PjExpire {
            dst: dst.into(),
            entries: due.into_iter().map(|w| (w.tag, w.from)).collect(),
        });
    }

    /// The messages `expired` (tag, sender) were still waiting for `dst` and are dropped:
    /// each sender gets one `EXPIRE`.
    pub fn handle_pj_expired(&mut self, dst: &str, expired: &[(u64, Box<str>)]) {
        let mut told = HashSet::new();
        for (_, from) in expired {
            if !told.insert(from.clone()) {
                continue;
            }
            if let Some(to) = self.pj.ids.get(from).map(|h| h.conn) {
                self.pj_send(
                    to,
                    PjServerMessage::Expire {
                        src: dst.into(),
                        dst: from.clone(),
                    },
                );
            }
        }
    }

    /// Claims every id held here again ([`Hub::handle_cluster_reregister`]).
    pub(super) fn pj_reregister(&mut self) {
        let mut held: Vec<(ConnId, Box<str>, Box<str>)> = self
            .pj
            .ids
            .iter()
            .map(|(id, h)| (h.conn, id.clone(), h.token.clone()))
            .collect();
        held.sort_unstable();
        for (conn, id, token) in held {
            self.cluster_out(ClusterOutput::PjClaim(PjClaim {
                conn,
                id,
                token,
                again: true,
            }));
        }
    }
}
