//! The Ant Media P2P dialect of the hub: rooms of two peers scoped by app, `start` to the
//! first joiner when the second arrives, offers, answers, candidates and peer messages to
//! the other peer only, `stop` when one leaves, closes or goes silent.

use super::*;

/// Ant Media connections and rooms.
#[derive(Debug, Default)]
pub(super) struct AntMedia {
    pub(super) conns: HashMap<ConnId, Conn>,
    pub(super) rooms: HashMap<(App, StreamId), Room>,
}

/// What the hub knows of one connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// Namespace of the rooms this connection can join.
    pub(super) app: App,
    /// The room joined, if any (at most one).
    pub(super) room: Option<StreamId>,
    /// Last time a frame arrived; the idle deadline is `last_seen + idle_timeout`.
    pub(super) last_seen: Instant,
    /// The host the client used to reach the server, for `{host}` in ICE URLs.
    host: Option<Box<str>>,
}

/// A room: one or two peers. `peers[0]` is always occupied.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) peers: [Option<ConnId>; 2],
}

impl Room {
    pub(super) fn other(&self, me: ConnId) -> Option<ConnId> {
        self.peers.iter().flatten().copied().find(|&c| c != me)
    }

    pub(super) fn is_full(&self) -> bool {
        self.peers[1].is_some()
    }

    /// Removes `me`; returns whether the room is now empty.
    pub(super) fn remove(&mut self, me: ConnId) -> bool {
        if self.peers[0] == Some(me) {
            self.peers[0] = self.peers[1].take();
        } else if self.peers[1] == Some(me) {
            self.peers[1] = None;
        }
        self.peers[0].is_none()
    }
}

impl Hub {
    /// A new connection to `app`, made to `host` (the bare host of its `Host` header, see
    /// [`crate::ice::host_from_header`]) from `ip` (for the per-source limits; `None`
    /// exempts it). Over [`Config::max_connections`] it is answered with
    /// `highResourceUsage` and closed. A repeated id is ignored.
    pub fn handle_am_connect(
        &mut self,
        conn: ConnId,
        app: App,
        host: Option<&str>,
        ip: Option<IpAddr>,
        now: Instant,
    ) {
        if self.am.conns.contains_key(&conn) {
            return;
        }
        if self.am.conns.len() + self.sio.conns.len() + self.pj.len() >= self.config.max_connections
        {
            self.error(
                conn,
                ErrorCode::HighResourceUsage,
                None,
                Some("server is at its connection limit"),
            );
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Overloaded,
            });
            return;
        }
        self.am.conns.insert(
            conn,
            Conn {
                app,
                room: None,
                last_seen: now,
                host: host.map(Into::into),
            },
        );
        self.limiter.connect(conn, ip, &self.config.limits, now);
        self.deadlines.push(now + self.config.idle_timeout, conn);
    }

    /// Any sign of life that is not a message (a WebSocket ping or pong frame). It counts
    /// against the connection's message budget like a message: a flood of ping frames is
    /// refused with `rate_limited` and closed as one of text frames is.
    pub fn handle_am_activity(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.am.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        match self.limiter.message(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => self.rate_limited(conn, None),
            Verdict::Close => self.close_rate_limited(conn),
        }
    }

    /// One decoded frame (or the reason it could not be decoded) from `conn`.
    pub fn handle_am_message(
        &mut self,
        conn: ConnId,
        msg: Result<ClientMessage, DecodeError>,
        now: Instant,
    ) {
        let Some(c) = self.am.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        match self.limiter.message(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => return self.rate_limited(conn, None),
            Verdict::Close => return self.close_rate_limited(conn),
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                self.stats.errors += 1;
                self.out.push_back(Output::AmSend {
                    conn,
                    msg: ServerMessage::Error {
                        definition: e.code,
                        stream_id: e.stream_id,
                        reason: Some(e.reason.into()),
                    },
                });
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.send(conn, ServerMessage::Pong),
            ClientMessage::GetIceServerConfig => {
                let reply = match &self.ice {
                    Some(fixed) => Arc::clone(fixed),
                    None => {
                        let host = self.am.conns.get(&conn).and_then(|c| c.host.as_deref());
                        // A user of its own per credential: its own TURN quota.
                        self.turn_users_minted += 1;
                        let prefix = self.config.ice.turn.as_ref().map_or("", |t| &t.user_prefix);
                        let user = format!("{prefix}a{}", self.turn_users_minted);
                        let servers = self.config.ice.resolve(host, self.unix_now, &user);
                        Arc::new(IceServerConfig::from_servers(&servers))
                    }
                };
                self.send(conn, ServerMessage::IceServerConfig(reply));
            }
            ClientMessage::Join { stream_id } => self.join(conn, stream_id, now),
            ClientMessage::Leave { stream_id } => self.leave(conn, &stream_id, LeaveReason::Leave),
            ClientMessage::TakeConfiguration {
                stream_id,
                kind,
                sdp,
            } => self.relay(conn, stream_id, |stream_id| {
                ServerMessage::TakeConfiguration {
                    stream_id,
                    kind,
                    sdp,
                    id_mapping: EmptyMap,
                }
            }),
            ClientMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            } => self.relay(conn, stream_id, |stream_id| ServerMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
            }),
            ClientMessage::PeerMessage {
                stream_id,
                definition,
                data,
            } => self.relay(conn, stream_id, |stream_id| {
                ServerMessage::PeerMessageCommand {
                    stream_id,
                    definition,
                    data,
                }
            }),
        }
    }

    /// Refuses an Ant Media message or join over its rate limit.
    pub(super) fn rate_limited(&mut self, conn: ConnId, stream_id: Option<&StreamId>) {
        self.error(
            conn,
            ErrorCode::RateLimited,
            stream_id,
            Some("too many messages or joins a second; slow down"),
        );
    }

    /// Closes an Ant Media connection that went on after many refusals; its peer gets
    /// `stop`.
    pub(super) fn close_rate_limited(&mut self, conn: ConnId) {
        self.rate_limited(conn, None);
        if let Some(c) = self.am.conns.remove(&conn) {
            self.vacate(conn, &c, LeaveReason::RateLimited);
        }
        self.out.push_back(Output::Close {
            conn,
            reason: CloseReason::RateLimited,
        });
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push_back(Output::AmSend { conn, msg });
    }

    pub(super) fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        stream_id: Option<&StreamId>,
        reason: Option<&str>,
    ) {
        self.stats.errors += 1;
        self.send(
            conn,
            ServerMessage::Error {
                definition: code,
                stream_id: stream_id.map(|s| s.as_str().into()),
                reason: reason.map(Into::into),
            },
        );
    }

    pub(super) fn notify(&mut self, conn: ConnId, definition: Notification, stream_id: StreamId) {
        self.send(
            conn,
            ServerMessage::Notification {
                definition,
                stream_id: Some(stream_id),
            },
        );
    }

    pub(super) fn join(&mut self, conn: ConnId, stream_id: StreamId, now: Instant) {
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        if c.room.as_ref() == Some(&stream_id) {
            self.notify(conn, Notification::Joined, stream_id);
            return;
        }
        match self.limiter.join(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => return self.rate_limited(conn, Some(&stream_id)),
            Verdict::Close => return self.close_rate_limited(conn),
        }
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        let key = (c.app.clone(), stream_id.clone());
        if self.am.rooms.get(&key).is_some_and(Room::is_full) {
            self.error(conn, ErrorCode::NoSpaceForNewPeer, Some(&stream_id), None);
            return;
        }
        if let Some(old) = c.room.clone() {
            self.leave(conn, &old, LeaveReason::Moved);
        }
        let first = match self.am.rooms.entry(key) {
            Entry::Vacant(v) => {
                v.insert(Room {
                    peers: [Some(conn), None],
                });
                None
            }
            Entry::Occupied(mut o) => {
                let room = o.get_mut();
                room.peers[1] = Some(conn);
                room.peers[0]
            }
        };
        if let Some(c) = self.am.conns.get_mut(&conn) {
            c.room = Some(stream_id.clone());
            self.events
                .joined(conn, Dialect::AntMedia, c.app.as_str(), stream_id.as_str());
        }
        self.notify(conn, Notification::Joined, stream_id.clone());
        if let Some(first) = first {
            self.send(first, ServerMessage::Start { stream_id });
        }
    }

    pub(super) fn leave(&mut self, conn: ConnId, stream_id: &StreamId, reason: LeaveReason) {
        let Some(c) = self.am.conns.get_mut(&conn) else {
            return;
        };
        if c.room.as_ref() != Some(stream_id) {
            self.error(
                conn,
                ErrorCode::NoPeerAssociatedBefore,
                Some(stream_id),
                None,
            );
            return;
        }
        c.room = None;
        let app = c.app.clone();
        self.remove_from_room(conn, app, stream_id.clone(), reason);
        self.notify(conn, Notification::Leaved, stream_id.clone());
    }

    /// Frees `conn`'s seat (after it was removed from `conns`), sending `stop` to its peer.
    pub(super) fn vacate(&mut self, conn: ConnId, c: &Conn, reason: LeaveReason) {
        if let Some(stream_id) = c.room.clone() {
            self.remove_from_room(conn, c.app.clone(), stream_id, reason);
        }
    }

    pub(super) fn remove_from_room(
        &mut self,
        conn: ConnId,
        app: App,
        stream_id: StreamId,
        reason: LeaveReason,
    ) {
        let key = (app, stream_id);
        let Some(room) = self.am.rooms.get_mut(&key) else {
            return;
        };
        self.events.left(
            conn,
            Dialect::AntMedia,
            key.0.as_str(),
            key.1.as_str(),
            reason,
        );
        let other = room.other(conn);
        if room.remove(conn) {
            self.am.rooms.remove(&key);
        }
        if let Some(other) = other {
            self.send(other, ServerMessage::Stop { stream_id: key.1 });
        }
    }

    pub(super) fn relay(
        &mut self,
        conn: ConnId,
        stream_id: StreamId,
        msg: impl FnOnce(StreamId) -> ServerMessage,
    ) {
        let other = self.am.conns.get(&conn).and_then(|c| {
            if c.room.as_ref() != Some(&stream_id) {
                return None;
            }
            self.am
                .rooms
                .get(&(c.app.clone(), stream_id.clone()))
                .and_then(|r| r.other(conn))
        });
        match other {
            Some(other) => {
                self.stats.relayed += 1;
                self.send(other, msg(stream_id));
            }
            None => self.error(
                conn,
                ErrorCode::NoPeerAssociatedBefore,
                Some(&stream_id),
                None,
            ),
        }
    }
}
