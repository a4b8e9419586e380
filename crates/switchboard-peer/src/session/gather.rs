//! Candidates beyond the host sockets: server-reflexive ones over STUN, a relayed one over
//! TURN, and the TURN client's traffic.

use super::*;

impl Session {
    /// Starts STUN Binding requests from every host socket to the first `stun:` server of an
    /// `iceServerConfig` (or its UDP TURN server, which answers them too).
    pub(crate) async fn start_stun(&mut self, servers: &[IceServer]) {
        if self.ice == IcePolicy::RelayOnly {
            return;
        }
        let Some(server) = stun_server_of(servers).await else {
            return;
        };
        let pending = (0..self.net.sockets.len())
            .filter(|i| self.gather.turn.as_ref().is_none_or(|t| t.socket != *i))
            .filter(|i| self.net.addrs[*i].ip().is_loopback() == server.ip().is_loopback())
            .map(|i| (binding_request().0, i, 0))
            .collect();
        self.gather.stun = Some(StunGather {
            server,
            pending,
            next_send: Instant::now(),
        });
    }

    /// (Re)sends pending Binding requests: 3 attempts, 0.3 s apart. Returns the next time.
    pub(crate) fn stun_progress(&mut self) -> Option<Instant> {
        let stun = self.gather.stun.as_mut()?;
        let now = Instant::now();
        if now < stun.next_send {
            return Some(stun.next_send);
        }
        stun.pending.retain(|(_, _, tries)| *tries < 3);
        if stun.pending.is_empty() {
            self.gather.stun = None;
            return None;
        }
        for (id, i, tries) in &mut stun.pending {
            let (new_id, bytes) = binding_request();
            *id = new_id;
            *tries += 1;
            self.net.sockets[*i].send_to(&bytes, stun.server);
        }
        stun.next_send = now + Duration::from_millis(300);
        Some(stun.next_send)
    }

    /// A Binding response to one of this side's requests becomes a server-reflexive
    /// candidate (when it differs from the host address). `true`: the datagram was consumed.
    pub(crate) fn on_stun_response(&mut self, i: usize, from: SocketAddr, data: &[u8]) -> bool {
        use turn_client_proto::types::stun::attribute::XorMappedAddress;
        use turn_client_proto::types::stun::message::Message;
        let Some(stun) = self.gather.stun.as_mut().filter(|s| s.server == from) else {
            return false;
        };
        let Ok(msg) = Message::from_bytes(data) else {
            return false;
        };
        let id = msg.transaction_id();
        let Some(pos) = stun
            .pending
            .iter()
            .position(|(t, s, _)| *t == id && *s == i)
        else {
            return false;
        };
        stun.pending.swap_remove(pos);
        if let Ok(x) = msg.attribute::<XorMappedAddress>() {
            let mapped = x.addr(id);
            let base = self.net.addrs[i];
            if mapped != base && !self.gather.srflx.iter().any(|(_, m)| *m == mapped) {
                tracing::info!("server-reflexive address {mapped} (host {base})");
                self.gather.srflx.push((i, mapped));
                self.add_srflx(mapped, base);
            }
        }
        true
    }

    /// Sends the local candidates found after the offer or answer went out.
    pub(crate) async fn flush_trickle(&mut self) -> Result<(), PeerError> {
        if self.gather.trickle.is_empty() {
            return Ok(());
        }
        let Some(mid) = self.gather.first_mid.clone() else {
            return Ok(());
        };
        let to = self.member_id();
        for line in std::mem::take(&mut self.gather.trickle) {
            let room = self.room.clone();
            self.signal(Request::TakeCandidate {
                stream_id: &room,
                label: 0,
                id: &mid,
                candidate: &line,
                peer_id: to.as_deref(),
            })
            .await?;
        }
        Ok(())
    }

    /// Adds a server-reflexive candidate to the current connection and trickles it.
    pub(crate) fn add_srflx(&mut self, mapped: SocketAddr, base: SocketAddr) {
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        let Ok(c) = Candidate::server_reflexive(mapped, base, "udp") else {
            return;
        };
        if let Some(c) = rtc.add_local_candidate(c) {
            let line = c.to_sdp_string();
            let line = line.strip_prefix("a=").unwrap_or(&line).to_owned();
            self.gather.trickle.push(line);
        }
    }

    /// Installs TURN permissions for every candidate address in `sdp` (an SDP or one
    /// candidate line) before ICE checks start, so the other side's checks can reach this
    /// relay: permissions are per IP, and both sides must have one for a relay pair.
    pub(crate) fn permit_candidates(&mut self, sdp: &str) {
        let Some(turn) = self.gather.turn.as_mut().filter(|t| t.relay.is_some()) else {
            return;
        };
        let now = turn_now(self.base);
        for line in sdp.lines() {
            let line = line.trim().strip_prefix("a=").unwrap_or(line.trim());
            if !line.starts_with("candidate:") {
                continue;
            }
            if let Ok(c) = Candidate::from_sdp_string(line) {
                turn.request_permission(c.addr().ip(), now);
            }
        }
    }

    /// Starts a TURN allocation on the first UDP `turn:` server of an `iceServerConfig`.
    pub(crate) async fn start_turn(&mut self, servers: &[IceServer]) {
        let Some((server, user, pass)) = turn_server_of(servers).await else {
            // URLs only: the servers carry credentials.
            let urls: Vec<&String> = servers.iter().flat_map(|s| &s.urls).collect();
            tracing::info!("the server offers no usable UDP TURN server: {urls:?}");
            return;
        };
        tracing::debug!("TURN server {server} as {user}");
        // A socket of its own (never a host candidate), on the address that reaches the
        // server: loopback for a loopback server, else the first other IPv4 address.
        let Some(ip) = self
            .net
            .sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.ip())
            .find(|ip| ip.is_loopback() == server.ip().is_loopback())
        else {
            return;
        };
        let Ok(sock) = Sock::bind(SocketAddr::new(ip, 0)) else {
            return;
        };
        let Ok(local) = sock.local_addr() else {
            return;
        };
        self.net.sockets.push(sock);
        self.net.addrs.push(local);
        let socket = self.net.sockets.len() - 1;
        self.spawn_reader(socket);
        let mut config = turn_client_proto::api::TurnConfig::new(
            turn_client_proto::types::TurnCredentials::new(&user, &pass),
        );
        // Send USERNAME, not an RFC 8489 USERHASH: REST-API servers (Switchboard's and
        // coturn's) read the expiry from the username itself.
        config.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        let now = Instant::now();
        self.gather.turn = Some(Turn {
            client: TurnClientUdp::allocate(local, server, config),
            socket,
            server,
            relay: None,
            failed: false,
            give_up: now + Duration::from_secs(5),
            next_poll: now,
            requested: std::collections::HashSet::new(),
            held: VecDeque::new(),
        });
    }

    /// Drives the TURN client: sends what it wants sent, handles its events, and joins the
    /// room once the relay is known (or given up on). Returns its next deadline.
    pub(crate) async fn turn_progress(&mut self) -> Result<Option<Instant>, PeerError> {
        let Some(turn) = self.gather.turn.as_mut() else {
            return Ok(None);
        };
        let now = turn_now(self.base);
        let mut wait = None;
        if Instant::now() >= turn.next_poll {
            let ret = turn.client.poll(now);
            tracing::trace!("TURN poll: {ret:?}");
            match ret {
                TurnPollRet::WaitUntil(t) => {
                    let at =
                        self.base + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0));
                    turn.next_poll = at;
                    wait = Some(at);
                }
                TurnPollRet::Closed => turn.failed = true,
                _ => {}
            }
        } else {
            wait = Some(turn.next_poll);
        }
        let mut sent = false;
        while let Some(t) = turn.client.poll_transmit(now) {
            tracing::trace!("TURN transmit {} bytes to {}", t.data.as_ref().len(), t.to);
            self.net.sockets[turn.socket].send_to(t.data.as_ref(), t.to);
            sent = true;
        }
        if sent {
            // The client only expects an answer to a request once `poll` has seen it sent;
            // without this, an answer arriving right away (loopback) is ignored and the
            // request waits for its 500 ms retransmission.
            if let TurnPollRet::WaitUntil(t) = turn.client.poll(now) {
                let at = self.base + Duration::from_nanos(u64::try_from(t.as_nanos()).unwrap_or(0));
                turn.next_poll = at;
                wait = Some(wait.map_or(at, |w: Instant| w.min(at)));
            }
        }
        while let Some(e) = turn.client.poll_event() {
            match e {
                TurnEvent::AllocationCreated(_, relay) => {
                    tracing::info!("TURN relay {relay} via {}", turn.server);
                    turn.relay = Some(relay);
                }
                TurnEvent::AllocationCreateFailed(_) => turn.failed = true,
                TurnEvent::PermissionCreated(_, ip) => {
                    let (ready, rest): (VecDeque<_>, VecDeque<_>) =
                        turn.held.drain(..).partition(|(to, _)| to.ip() == ip);
                    turn.held = rest;
                    for (to, data) in ready {
                        if let Ok(Some(tb)) =
                            turn.client.send_to(TransportType::Udp, to, &data[..], now)
                        {
                            let tb = tb.build();
                            self.net.sockets[turn.socket].send_to(&tb.data, tb.to);
                        }
                    }
                }
                e => tracing::trace!("TURN event {e:?}"),
            }
        }
        let ready = turn.relay.is_some() || turn.failed || Instant::now() >= turn.give_up;
        let relay_missing = turn.relay.is_none();
        let give_up = turn.give_up;
        if !self.signaling.joined_sent {
            if ready {
                if relay_missing && self.ice == IcePolicy::RelayOnly {
                    return Err(PeerError::Rtc("relay-only, but no TURN allocation".into()));
                }
                self.send_join().await?;
            } else {
                wait = Some(wait.map_or(give_up, |w| w.min(give_up)));
            }
        }
        Ok(wait)
    }

    /// A datagram from the TURN server is unwrapped into (peer, relay address, data);
    /// anything else passes unchanged. `None`: consumed (TURN control traffic).
    pub(crate) fn unwrap_turn(
        &mut self,
        socket: usize,
        from: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    ) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let Some(turn) = self
            .gather
            .turn
            .as_mut()
            .filter(|t| t.socket == socket && t.server == from)
        else {
            return Some((from, destination, data));
        };
        let now = turn_now(self.base);
        let transmit = turn_client_proto::stun::agent::Transmit::new(
            &data[..],
            TransportType::Udp,
            from,
            destination,
        );
        // Whatever the datagram was, the client may have more to do now.
        turn.next_poll = Instant::now();
        match turn.client.recv(transmit, now) {
            TurnRecvRet::PeerData(p) => Some((p.peer, turn.relay?, p.data().to_vec())),
            TurnRecvRet::Ignored(_) => {
                tracing::trace!("TURN client ignored {} bytes from {from}", data.len());
                Some((from, destination, data.clone()))
            }
            other => {
                tracing::trace!("TURN recv {} bytes: {other:?}", data.len());
                None
            }
        }
    }
}
