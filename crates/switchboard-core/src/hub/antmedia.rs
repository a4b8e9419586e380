//! The Ant Media P2P dialect of the hub: rooms of two peers scoped by app, `start` to the
//! first joiner when the second arrives, offers, answers, candidates and peer messages to
//! the other peer only, `stop` when one leaves, closes or goes silent. Mesh rooms (`mesh.rs`)
//! share the connections and the join path.

use switchboard_proto::antmedia::PeerId;
use switchboard_proto::cluster::{AmRelayed, NodeMessage};

use super::cluster::{ClusterOutput, RemotePeer, SeatClaim};
use super::*;

/// Ant Media connections and rooms.
#[derive(Debug, Default)]
pub(super) struct AntMedia {
    pub(super) conns: HashMap<ConnId, Conn>,
    pub(super) rooms: HashMap<(App, StreamId), Room>,
    /// Mesh rooms: their members in the order they joined (at most `max_mesh_peers`).
    pub(super) mesh: HashMap<(App, StreamId), Vec<ConnId>>,
    /// Cluster mode: joins waiting for the registry's answer to their seat claim.
    pub(super) pending: HashMap<ConnId, PendingJoin>,
    /// Cluster mode: mesh members on other nodes, member ids, mesh joins on their way.
    pub(super) mesh_cluster: super::cluster_mesh::MeshCluster,
}

/// A join waiting for its seat (cluster mode).
#[derive(Debug)]
pub(super) struct PendingJoin {
    /// The room.
    pub(super) room: StreamId,
    /// The claims it was admitted with.
    pub(super) grant: Option<Claims>,
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
    /// What room tokens say of this connection; `None` while they say nothing (always, with
    /// tokens off): one pointer per connection, not the claims' size.
    pub(super) auth: Option<Box<ConnAuth>>,
}

/// A connection's room tokens.
#[derive(Debug, Default)]
pub(super) struct ConnAuth {
    /// The token given on the WebSocket URL, verified once at connect (its times, app and
    /// room are checked at each use).
    url_token: Option<Result<Claims, AuthError>>,
    /// The claims the room was joined with: its grants apply while joined.
    pub(super) grant: Option<Claims>,
    /// When the `max_call` grant of the current join runs out.
    pub(super) call_deadline: Option<Instant>,
}

impl Conn {
    /// The claims of the current join, if room tokens admitted it.
    fn grant(&self) -> Option<&Claims> {
        self.auth.as_ref().and_then(|a| a.grant.as_ref())
    }

    /// When the current join's `max_call` runs out.
    pub(super) fn call_deadline(&self) -> Option<Instant> {
        self.auth.as_ref().and_then(|a| a.call_deadline)
    }

    /// Ends the current join's grant and timer; the timer's time, to remove its entry.
    pub(super) fn end_grant(&mut self) -> Option<Instant> {
        let a = self.auth.as_mut()?;
        a.grant = None;
        a.call_deadline.take()
    }
}

/// A room: one or two peers. `peers[0]` is always occupied. In cluster mode the second
/// seat may be held on another node: then `remote` names it and `peers[1]` is empty.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) peers: [Option<ConnId>; 2],
    /// The partner on another node (boxed: one pointer in single-node rooms).
    pub(super) remote: Option<Box<RemotePeer>>,
}

impl Room {
    pub(super) fn other(&self, me: ConnId) -> Option<ConnId> {
        self.peers.iter().flatten().copied().find(|&c| c != me)
    }

    pub(super) fn is_full(&self) -> bool {
        self.peers[1].is_some() || self.remote.is_some()
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

/// Who minted TURN credentials are for, with room tokens on.
enum TurnUser {
    /// A valid token with this identity (or none).
    Of(Option<crate::auth::Identity>),
    /// No valid token granting TURN: STUN servers only.
    Nobody,
}

impl Hub {
    /// A new connection to `app`, made to `host` (the bare host of its `Host` header, see
    /// [`crate::ice::host_from_header`]) from `ip` (for the per-source limits; `None`
    /// exempts it), with the room token of its URL (`?token=`), if any. Over
    /// [`Config::max_connections`] it is answered with `highResourceUsage` and closed. A
    /// repeated id is ignored.
    pub fn handle_am_connect(
        &mut self,
        conn: ConnId,
        app: App,
        host: Option<&str>,
        ip: Option<IpAddr>,
        token: Option<&str>,
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
        self.limiter.connect(conn, ip, &self.config.limits, now);
        // Verified once here, as one of the connection's joins (so a flood of forged tokens
        // costs at most the join budgets in signature checks); a bad one is reported when it
        // is used (a join).
        let auth = match (&self.config.auth, token) {
            (Some(auth), Some(token)) => {
                let checked = match self.limiter.join(conn, &self.config.limits, now) {
                    Verdict::Allow => auth.verify(token),
                    Verdict::Refuse | Verdict::Close => Err(AuthError::RateLimited),
                };
                Some(Box::new(ConnAuth {
                    url_token: Some(checked),
                    ..ConnAuth::default()
                }))
            }
            _ => None,
        };
        self.am.conns.insert(
            conn,
            Conn {
                app,
                room: None,
                last_seen: now,
                host: host.map(Into::into),
                auth,
            },
        );
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
            ClientMessage::GetIceServerConfig => self.am_ice_servers(conn),
            ClientMessage::Join {
                stream_id,
                token,
                mesh,
            } => {
                self.join(conn, stream_id, token.as_deref(), mesh, now);
            }
            ClientMessage::Leave { stream_id } => self.leave(conn, &stream_id, LeaveReason::Leave),
            ClientMessage::TakeConfiguration {
                stream_id,
                kind,
                sdp,
                to,
            } => {
                if kind == switchboard_proto::antmedia::SdpType::Offer && !self.may_offer(conn) {
                    let e = AuthError::NotGranted("this token does not allow making offers");
                    return self.unauthorized(conn, Some(&stream_id), &e);
                }
                self.relay(
                    conn,
                    stream_id,
                    to,
                    AmRelayed::TakeConfiguration { kind, sdp },
                );
            }
            ClientMessage::TakeCandidate {
                stream_id,
                label,
                id,
                candidate,
                to,
            } => self.relay(
                conn,
                stream_id,
                to,
                AmRelayed::TakeCandidate {
                    label,
                    id,
                    candidate,
                },
            ),
            ClientMessage::PeerMessage {
                stream_id,
                definition,
                data,
                to,
            } => self.relay(
                conn,
                stream_id,
                to,
                AmRelayed::PeerMessageCommand { definition, data },
            ),
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

    pub(super) fn join(
        &mut self,
        conn: ConnId,
        stream_id: StreamId,
        token: Option<&str>,
        mesh: bool,
        now: Instant,
    ) {
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        if c.room.as_ref() == Some(&stream_id)
            && !mesh
            && !self
                .am
                .mesh
                .contains_key(&(c.app.clone(), stream_id.clone()))
        {
            self.notify(conn, Notification::Joined, stream_id);
            return;
        }
        match self.limiter.join(conn, &self.config.limits, now) {
            Verdict::Allow => {}
            Verdict::Refuse => return self.rate_limited(conn, Some(&stream_id)),
            Verdict::Close => return self.close_rate_limited(conn),
        }
        let grant = match self.am_authorize(conn, token, &stream_id) {
            Ok(grant) => grant,
            Err(e) => return self.unauthorized(conn, Some(&stream_id), &e),
        };
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        let key = (c.app.clone(), stream_id.clone());
        let clustered = self.node_id().is_some();
        if let Some(why) = self.mode_mismatch(&key, mesh) {
            return self.error(
                conn,
                ErrorCode::RoomModeMismatch,
                Some(&stream_id),
                Some(why),
            );
        }
        if mesh {
            return self.mesh_join(conn, key, grant, now);
        }
        if self.am.rooms.get(&key).is_some_and(Room::is_full) {
            self.error(conn, ErrorCode::NoSpaceForNewPeer, Some(&stream_id), None);
            return;
        }
        if clustered && self.am.pending.contains_key(&conn) {
            return self.error(
                conn,
                ErrorCode::RateLimited,
                Some(&stream_id),
                Some("a join is still in progress; wait for joined"),
            );
        }
        if let Some(old) = c.room.clone() {
            self.leave(conn, &old, LeaveReason::Moved);
        }
        if clustered {
            // The seat is taken in the cluster's registry first; the join goes on in
            // `handle_am_seat`.
            let offer = grant.as_ref().is_none_or(|g| g.offer);
            self.am.pending.insert(
                conn,
                PendingJoin {
                    room: stream_id.clone(),
                    grant,
                },
            );
            return self.cluster_out(ClusterOutput::Claim(SeatClaim {
                conn,
                app: key.0,
                room: stream_id,
                offer,
                again: false,
            }));
        }
        self.seat(conn, stream_id, grant, None, now);
    }

    /// Seats `conn` in `stream_id` (its seat is free: checked, or taken in the cluster's
    /// registry) and sends `joined`, and `start` to the offerer when the room is now full.
    /// `remote`: the other seat's holder on another node, and whether it may offer.
    pub(super) fn seat(
        &mut self,
        conn: ConnId,
        stream_id: StreamId,
        grant: Option<Claims>,
        remote: Option<(RemotePeer, bool)>,
        now: Instant,
    ) {
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        let app = c.app.clone();
        let key = (app.clone(), stream_id.clone());
        if self.am.rooms.get(&key).is_some_and(Room::is_full) {
            // Only in cluster mode, and only if the registry and this node disagree.
            self.error(conn, ErrorCode::NoSpaceForNewPeer, Some(&stream_id), None);
            return self.cluster_out(ClusterOutput::Release {
                conn,
                app,
                room: stream_id,
            });
        }
        let (first, remote) = match self.am.rooms.entry(key) {
            Entry::Vacant(v) => {
                v.insert(Room {
                    peers: [Some(conn), None],
                    remote: remote.as_ref().map(|(p, _)| Box::new(p.clone())),
                });
                (None, remote)
            }
            Entry::Occupied(mut o) => {
                let room = o.get_mut();
                room.peers[1] = Some(conn);
                (room.peers[0], None)
            }
        };
        self.enter(conn, &stream_id, grant, now);
        self.notify(conn, Notification::Joined, stream_id.clone());
        // `start` (make the offer) goes to the first joiner, unless only the second one's
        // token allows offers; when neither may offer, nobody gets it.
        let starter = match (first, remote) {
            (Some(first), _) => [first, conn].into_iter().find(|&c| self.may_offer(c)),
            (None, Some((peer, offers))) => {
                self.tell_remote_first(conn, app, stream_id.clone(), &peer, offers)
            }
            (None, None) => None,
        };
        if let Some(starter) = starter {
            self.send(starter, ServerMessage::Start { stream_id });
        }
    }

    /// `conn` took the second seat of a room whose first is on another node: that node
    /// learns of it (and gives its peer `start` when it may offer). Returns `conn` when it
    /// is the one to offer.
    pub(super) fn tell_remote_first(
        &mut self,
        conn: ConnId,
        app: App,
        room: StreamId,
        first: &RemotePeer,
        first_offers: bool,
    ) -> Option<ConnId> {
        self.cluster.sent += 1;
        self.cluster_out(ClusterOutput::Send {
            node: first.node.clone(),
            from: Some(conn),
            msg: NodeMessage::AmJoined {
                app,
                room,
                to: first.conn,
                from: conn.0,
                start: first_offers,
            },
        });
        (!first_offers && self.may_offer(conn)).then_some(conn)
    }

    /// The claims `conn` may join `stream_id` with: `Ok(None)` when room tokens are off;
    /// with them on, the join's own token, else the one of its URL.
    fn am_authorize(
        &self,
        conn: ConnId,
        token: Option<&str>,
        stream_id: &StreamId,
    ) -> Result<Option<Claims>, AuthError> {
        let (Some(auth), Some(c)) = (&self.config.auth, self.am.conns.get(&conn)) else {
            return Ok(None);
        };
        let (app, room) = (Some(c.app.as_str()), Some(stream_id.as_str()));
        let url_token = c.auth.as_ref().and_then(|a| a.url_token.as_ref());
        let claims = match (token, url_token) {
            (Some(token), _) => auth.admit(Some(token), self.unix_now, app, room)?,
            (None, Some(verified)) => {
                let claims = verified.clone()?;
                auth.check(&claims, self.unix_now, app, room)?;
                claims
            }
            (None, None) => return Err(AuthError::Missing),
        };
        Ok(Some(claims))
    }

    /// Whether `conn`'s grant lets it make offers (always, with room tokens off).
    pub(super) fn may_offer(&self, conn: ConnId) -> bool {
        self.am
            .conns
            .get(&conn)
            .and_then(Conn::grant)
            .is_none_or(|g| g.offer)
    }

    /// Refuses an Ant Media join or request: `unauthorized_access` with the reason. The
    /// connection stays open, so a join with a valid token can follow.
    pub(super) fn unauthorized(
        &mut self,
        conn: ConnId,
        stream_id: Option<&StreamId>,
        e: &AuthError,
    ) {
        self.stats.auth_refused += 1;
        self.error(
            conn,
            ErrorCode::UnauthorizedAccess,
            stream_id,
            Some(&e.to_string()),
        );
    }

    /// Answers `getIceServerConfig`. With room tokens on, TURN servers (and their
    /// credentials) go only to a connection whose token is valid now and grants `turn`
    /// (the joined room's token, else its URL's); the others get the STUN servers alone.
    /// Minted credentials carry the token's identity in their user part.
    fn am_ice_servers(&mut self, conn: ConnId) {
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        let user = match &self.config.auth {
            None => None,
            Some(auth) => {
                let claims = c.grant().or_else(|| {
                    c.auth
                        .as_ref()
                        .and_then(|a| a.url_token.as_ref())
                        .and_then(|t| t.as_ref().ok())
                });
                match claims {
                    Some(g)
                        if g.turn
                            && auth
                                .check(g, self.unix_now, Some(c.app.as_str()), None)
                                .is_ok() =>
                    {
                        Some(TurnUser::Of(g.sub.clone()))
                    }
                    _ => Some(TurnUser::Nobody),
                }
            }
        };
        let reply = match (&self.ice, user) {
            (Some(fixed), None) => Arc::clone(fixed),
            (_, user) => {
                let host = c.host.as_deref();
                let servers = match user {
                    Some(TurnUser::Nobody) => self.config.ice.resolve_stun_only(host),
                    Some(TurnUser::Of(Some(id))) => self.config.ice.resolve(
                        host,
                        self.unix_now,
                        &crate::ice::identity_user(&id),
                    ),
                    Some(TurnUser::Of(None)) | None => {
                        // A user of its own per credential: its own TURN quota.
                        self.turn_users_minted += 1;
                        let prefix = self.config.ice.turn.as_ref().map_or("", |t| &t.user_prefix);
                        let user = format!("{prefix}a{}", self.turn_users_minted);
                        self.config.ice.resolve(host, self.unix_now, &user)
                    }
                };
                Arc::new(IceServerConfig::from_servers(&servers))
            }
        };
        self.send(conn, ServerMessage::IceServerConfig(reply));
    }

    /// Ends `conn`'s join: its `max_call` grant has run out (its timer entry is removed).
    pub(super) fn am_call_timeout(&mut self, conn: ConnId) {
        let Some(c) = self.am.conns.get_mut(&conn) else {
            return;
        };
        let _ = c.end_grant();
        let Some(stream_id) = c.room.take() else {
            return;
        };
        let app = c.app.clone();
        self.stats.max_call_ended += 1;
        self.remove_from_room(conn, app, stream_id.clone(), LeaveReason::MaxCall);
        self.error(
            conn,
            ErrorCode::MaxCallReached,
            Some(&stream_id),
            Some("the token's max_call time is over"),
        );
        self.notify(conn, Notification::Leaved, stream_id);
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
        if let Some(at) = c.end_grant() {
            self.call_deadlines.remove(&(at, conn));
        }
        let app = c.app.clone();
        self.remove_from_room(conn, app, stream_id.clone(), reason);
        self.notify(conn, Notification::Leaved, stream_id.clone());
    }

    /// Frees `conn`'s seat (after it was removed from `conns`), sending `stop` to its peer.
    pub(super) fn vacate(&mut self, conn: ConnId, c: &Conn, reason: LeaveReason) {
        if let Some(at) = c.call_deadline() {
            self.call_deadlines.remove(&(at, conn));
        }
        if let Some(stream_id) = c.room.clone() {
            self.remove_from_room(conn, c.app.clone(), stream_id, reason);
        }
        // A mesh join on its way: its roster, when it comes, frees the place.
        self.am.mesh_cluster.pending.remove(&conn);
        if let Some(p) = self.am.pending.remove(&conn) {
            // A claim on its way: free the seat it may have taken.
            self.cluster_out(ClusterOutput::Release {
                conn,
                app: c.app.clone(),
                room: p.room,
            });
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
        let mesh = !self.am.mesh.is_empty() && self.am.mesh.contains_key(&key);
        if !mesh && !self.am.rooms.contains_key(&key) {
            return;
        }
        self.events.left(
            conn,
            Dialect::AntMedia,
            key.0.as_str(),
            key.1.as_str(),
            reason,
        );
        if mesh {
            return self.mesh_remove(conn, &key);
        }
        let Some(room) = self.am.rooms.get_mut(&key) else {
            return;
        };
        let other = room.other(conn);
        // A room with a remote partner holds one local peer: this one, leaving.
        let remote = room.remote.take();
        if room.remove(conn) {
            self.am.rooms.remove(&key);
        }
        if self.node_id().is_some() {
            self.cluster_out(ClusterOutput::Release {
                conn,
                app: key.0.clone(),
                room: key.1.clone(),
            });
        }
        if let Some(other) = other {
            self.send(other, ServerMessage::Stop { stream_id: key.1 });
        } else if let Some(p) = remote {
            self.cluster.sent += 1;
            self.cluster_out(ClusterOutput::Send {
                node: p.node,
                from: None,
                msg: NodeMessage::AmLeft {
                    app: key.0,
                    room: key.1,
                    to: p.conn,
                    from: conn.0,
                },
            });
        }
    }

    pub(super) fn relay(
        &mut self,
        conn: ConnId,
        stream_id: StreamId,
        to: Option<PeerId>,
        msg: AmRelayed,
    ) {
        // Without mesh rooms (the common case) a relay pays nothing for them.
        if !self.am.mesh.is_empty() {
            let key = self
                .am
                .conns
                .get(&conn)
                .filter(|c| c.room.as_ref() == Some(&stream_id))
                .map(|c| (c.app.clone(), stream_id.clone()));
            if let Some(key) = key.filter(|k| self.am.mesh.contains_key(k)) {
                return self.mesh_relay(conn, &key, to, msg);
            }
        }
        self.relay_one_to_one(conn, stream_id, msg);
    }

    /// A relay in a 1:1 room: to the other peer, here or on another node.
    fn relay_one_to_one(&mut self, conn: ConnId, stream_id: StreamId, msg: AmRelayed) {
        let Some(c) = self.am.conns.get(&conn) else {
            return;
        };
        let room = (c.room.as_ref() == Some(&stream_id))
            .then(|| self.am.rooms.get(&(c.app.clone(), stream_id.clone())))
            .flatten();
        let local = room.and_then(|r| r.other(conn));
        let remote = room.and_then(|r| r.remote.as_deref()).cloned();
        match (local, remote) {
            (Some(other), _) => {
                self.stats.relayed_by_dialect.antmedia += 1;
                self.send(other, msg.into_server_message(stream_id));
            }
            (None, Some(p)) => {
                self.stats.relayed_by_dialect.antmedia += 1;
                self.cluster.sent += 1;
                let app = c.app.clone();
                self.cluster_out(ClusterOutput::Send {
                    node: p.node,
                    from: Some(conn),
                    msg: NodeMessage::AmRelay {
                        app,
                        room: stream_id,
                        to: p.conn,
                        from: conn.0,
                        msg,
                    },
                });
            }
            (None, None) => self.error(
                conn,
                ErrorCode::NoPeerAssociatedBefore,
                Some(&stream_id),
                None,
            ),
        }
    }
}
