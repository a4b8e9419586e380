//! The PeerJS dialect of the hub (issue 7, rules only; the edge is not wired yet): ids
//! claimed with a token, relay of OFFER / ANSWER / CANDIDATE / LEAVE with `src` stamped,
//! a bounded per-id queue for peers not connected yet (EXPIRE to the sender when it
//! expires or is full), HEARTBEAT liveness, and take-over of an id by its own token.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use switchboard_proto::peerjs::{PjClientMessage, PjServerMessage, PjType, errors};

use super::{CloseReason, ConnId, Dialect, Hub, LeaveReason, Output};

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
        }
    }
}

/// One PeerJS socket.
#[derive(Debug)]
pub(super) struct PjConn {
    id: Box<str>,
    last_heartbeat: Instant,
}

/// Who holds an id.
#[derive(Debug)]
pub(super) struct PjHolder {
    conn: ConnId,
    token: Box<str>,
}

/// A message waiting for its receiver.
#[derive(Debug)]
pub(super) struct Queued {
    from: Box<str>,
    msg: PjServerMessage,
    expires: Instant,
}

/// PeerJS timers: a socket's liveness, or the queue of an absent id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PjTimer {
    Alive(ConnId),
    Queue(Box<str>),
}

/// The PeerJS state of a hub.
#[derive(Debug, Default)]
pub(super) struct PeerJs {
    conns: HashMap<ConnId, PjConn>,
    ids: HashMap<Box<str>, PjHolder>,
    queues: HashMap<Box<str>, VecDeque<Queued>>,
    queued: usize,
    timers: BinaryHeap<Reverse<(Instant, PjTimer)>>,
}

impl PeerJs {
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }
}

impl Hub {
    fn pj_send(&mut self, conn: ConnId, msg: PjServerMessage) {
        self.out.push_back(Output::PjSend { conn, msg });
    }

    fn pj_refuse(&mut self, conn: ConnId, msg: PjServerMessage) {
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
        if key != &*self.config.peerjs.key {
            return self.pj_refuse(
                conn,
                PjServerMessage::Error {
                    msg: errors::INVALID_KEY,
                },
            );
        }
        if id.len() > PJ_MAX_NAME || token.len() > PJ_MAX_NAME {
            return self.pj_refuse(
                conn,
                PjServerMessage::Error {
                    msg: errors::TOO_LONG,
                },
            );
        }
        match self.pj.ids.get(id) {
            Some(h) if &*h.token != token => {
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
                let total = self.conns.len() + self.sio.len() + self.pj.len();
                if self.pj.ids.len() >= self.config.peerjs.concurrent_limit
                    || total >= self.config.max_connections
                {
                    return self.pj_refuse(conn, PjServerMessage::Error { msg: errors::LIMIT });
                }
            }
        }
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
            },
        );
        self.pj.timers.push(Reverse((
            now + self.config.peerjs.alive_timeout,
            PjTimer::Alive(conn),
        )));
        self.events.joined(conn, Dialect::PeerJs, key, id);
        self.pj_send(conn, PjServerMessage::Open);
        if let Some(queue) = self.pj.queues.remove(id) {
            self.pj.queued -= queue.len();
            for q in queue {
                self.stats.relayed += 1;
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
        let src = c.id.clone();
        let out = PjServerMessage::Relay {
            kind,
            src: src.clone(),
            dst: dst.clone(),
            payload: msg.payload,
        };
        if let Some(to) = self.pj.ids.get(&dst).map(|h| h.conn) {
            self.stats.relayed += 1;
            self.pj_send(to, out);
            return;
        }
        if kind == PjType::Leave {
            return;
        }
        let cfg = &self.config.peerjs;
        let queue_len = self.pj.queues.get(&dst).map_or(0, VecDeque::len);
        if queue_len >= cfg.queue_per_peer || self.pj.queued >= cfg.queue_total {
            // No room: the sender learns at once that the id is not there.
            self.stats.errors += 1;
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
        self.pj.queues.entry(dst).or_default().push_back(Queued {
            from: src,
            msg: out,
            expires,
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
            }
        }
    }

    /// Expires what was queued for `dst`: a sender with an expired message gets one EXPIRE,
    /// and its other messages to `dst` go too (the attempt is over; PeerJS reports the peer
    /// unavailable), so EXPIRE comes once per (sender, dst).
    fn pj_expire(&mut self, dst: &str, now: Instant) {
        let Some(queue) = self.pj.queues.get_mut(dst) else {
            return;
        };
        let mut senders = Vec::new();
        let mut seen = HashSet::new();
        for q in queue.iter().take_while(|q| q.expires <= now) {
            if seen.insert(q.from.clone()) {
                senders.push(q.from.clone());
            }
        }
        let before = queue.len();
        queue.retain(|q| !seen.contains(&q.from));
        self.pj.queued -= before - queue.len();
        match queue.front() {
            Some(next) => {
                let at = next.expires;
                self.pj
                    .timers
                    .push(Reverse((at, PjTimer::Queue(dst.into()))));
            }
            None => {
                self.pj.queues.remove(dst);
            }
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

    /// Forgets a PeerJS socket (its id is freed if it still holds it). Returns whether it
    /// was one.
    pub(super) fn pj_disconnect(&mut self, conn: ConnId) -> bool {
        self.pj_forget(conn, LeaveReason::Disconnect)
    }

    fn pj_forget(&mut self, conn: ConnId, reason: LeaveReason) -> bool {
        let Some(c) = self.pj.conns.remove(&conn) else {
            return false;
        };
        if self.pj.ids.get(&c.id).is_some_and(|h| h.conn == conn) {
            self.pj.ids.remove(&c.id);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Config;
    use switchboard_proto::peerjs::decode;

    fn out(h: &mut Hub) -> Vec<(u64, String)> {
        std::iter::from_fn(|| h.poll_output())
            .map(|o| match o {
                Output::PjSend { conn, msg } => (conn.0, msg.encode()),
                Output::Close { conn, reason } => (conn.0, format!("CLOSE {reason:?}")),
                other => (0, format!("{other:?}")),
            })
            .collect()
    }

    fn msg(h: &mut Hub, conn: u64, text: &str, now: Instant) {
        h.handle_pj_message(ConnId(conn), decode(text).map_err(|_| ()), now);
    }

    #[test]
    fn connect_checks_in_order_and_relays_with_src_stamped() {
        let t = Instant::now();
        let mut h = Hub::new(Config::default());
        h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), None, t);
        h.handle_pj_connect(ConnId(2), Some("nope"), Some("alice"), Some("t"), t);
        assert_eq!(
            out(&mut h),
            [
                (
                    1,
                    format!(
                        r#"{{"type":"ERROR","payload":{{"msg":"{}"}}}}"#,
                        errors::MISSING
                    )
                ),
                (1, "CLOSE Refused".into()),
                (
                    2,
                    r#"{"type":"ERROR","payload":{"msg":"Invalid key provided"}}"#.into()
                ),
                (2, "CLOSE Refused".into()),
            ]
        );
        h.handle_pj_connect(ConnId(3), Some("peerjs"), Some("alice"), Some("ta"), t);
        h.handle_pj_connect(ConnId(4), Some("peerjs"), Some("bob"), Some("tb"), t);
        h.handle_pj_connect(ConnId(5), Some("peerjs"), Some("bob"), Some("other"), t);
        assert_eq!(
            out(&mut h),
            [
                (3, r#"{"type":"OPEN"}"#.into()),
                (4, r#"{"type":"OPEN"}"#.into()),
                (
                    5,
                    r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#.into()
                ),
                (5, "CLOSE Refused".into()),
            ]
        );
        msg(
            &mut h,
            3,
            r#"{"type":"OFFER","src":"mallory","dst":"bob","payload":{"sdp":1}}"#,
            t,
        );
        msg(&mut h, 3, "not json", t);
        msg(&mut h, 3, r#"{"type":"UNKNOWN","dst":"bob"}"#, t);
        assert_eq!(
            out(&mut h),
            [(
                4,
                r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":1}}"#.into()
            )]
        );
        // Same token: take over, old socket closed.
        h.handle_pj_connect(ConnId(6), Some("peerjs"), Some("bob"), Some("tb"), t);
        assert_eq!(
            out(&mut h),
            [
                (4, "CLOSE Replaced".into()),
                (6, r#"{"type":"OPEN"}"#.into())
            ]
        );
        h.handle_disconnect(ConnId(4)); // the old socket's close does not free the id
        msg(
            &mut h,
            3,
            r#"{"type":"ANSWER","dst":"bob","payload":{}}"#,
            t,
        );
        assert_eq!(out(&mut h)[0].0, 6);
    }

    #[test]
    fn queued_messages_are_delivered_after_open_or_expire_once_per_sender() {
        let t = Instant::now();
        let mut h = Hub::new(Config::default());
        h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), Some("t"), t);
        out(&mut h);
        msg(
            &mut h,
            1,
            r#"{"type":"OFFER","dst":"carol","payload":{"n":1}}"#,
            t,
        );
        msg(
            &mut h,
            1,
            r#"{"type":"CANDIDATE","dst":"carol","payload":{"n":2}}"#,
            t,
        );
        msg(&mut h, 1, r#"{"type":"LEAVE","dst":"carol"}"#, t); // never queued
        assert!(out(&mut h).is_empty());
        h.handle_pj_connect(ConnId(2), Some("peerjs"), Some("carol"), Some("t"), t);
        let o = out(&mut h);
        assert_eq!(o.len(), 3);
        assert!(o[1].1.contains(r#""n":1"#) && o[2].1.contains(r#""n":2"#));

        msg(
            &mut h,
            1,
            r#"{"type":"OFFER","dst":"dave","payload":{}}"#,
            t,
        );
        msg(
            &mut h,
            1,
            r#"{"type":"CANDIDATE","dst":"dave","payload":{}}"#,
            t,
        );
        assert_eq!(h.poll_timeout(), Some(t + Duration::from_secs(5)));
        h.handle_timeout(t + Duration::from_secs(5));
        assert_eq!(
            out(&mut h),
            [(1, r#"{"type":"EXPIRE","src":"dave","dst":"alice"}"#.into())]
        );
    }

    #[test]
    fn queues_are_bounded_and_silence_is_closed() {
        let t = Instant::now();
        let mut h = Hub::new(Config {
            peerjs: PeerJsConfig {
                queue_per_peer: 2,
                ..PeerJsConfig::default()
            },
            ..Config::default()
        });
        h.handle_pj_connect(ConnId(1), Some("peerjs"), Some("alice"), Some("t"), t);
        out(&mut h);
        for _ in 0..3 {
            msg(
                &mut h,
                1,
                r#"{"type":"OFFER","dst":"ghost","payload":{}}"#,
                t,
            );
        }
        assert_eq!(
            out(&mut h),
            [(1, r#"{"type":"EXPIRE","src":"ghost","dst":"alice"}"#.into())]
        );
        // HEARTBEAT keeps the socket; silence for alive_timeout closes it and frees the id.
        msg(
            &mut h,
            1,
            r#"{"type":"HEARTBEAT"}"#,
            t + Duration::from_secs(50),
        );
        h.handle_timeout(t + Duration::from_secs(60));
        assert!(!out(&mut h).iter().any(|(_, m)| m.starts_with("CLOSE")));
        h.handle_timeout(t + Duration::from_secs(110));
        assert!(out(&mut h).contains(&(1, "CLOSE IdleTimeout".into())));
        h.handle_pj_connect(ConnId(2), Some("peerjs"), Some("alice"), Some("new"), t);
        assert_eq!(out(&mut h)[0], (2, r#"{"type":"OPEN"}"#.into()));
    }
}
