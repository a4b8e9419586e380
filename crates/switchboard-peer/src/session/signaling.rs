//! The Ant Media signaling socket: joining, reconnecting, and what the server sends.

use super::*;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The first `a=mid:` of an SDP.
pub(crate) fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

/// A failed WebSocket connection in words, naming the URL and telling a server that is not
/// Switchboard (an HTTP answer other than the upgrade) from one that cannot be reached.
pub(crate) fn connect_error(url: &str, e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(response) => format!(
            "{url} is not a Switchboard WebSocket endpoint: the server answered HTTP {} \
             (check the host, port and the /<app>/websocket path)",
            response.status()
        ),
        WsError::Io(io) => format!("cannot reach {url}: {io}"),
        other => format!("cannot connect to {url}: {other}"),
    }
}

/// Connects a WebSocket to `url` with Nagle's algorithm off: signaling sends small frames in
/// bursts (a mesh member answers several offers at once), and with Nagle on, the second frame
/// of a burst waits for the peer's delayed ACK (40 ms on Linux).
async fn connect(url: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map(|(ws, _)| ws)
}

/// Opens the signaling WebSocket to `url`, within [`CONNECT_TIMEOUT`].
pub(crate) async fn open_signaling(url: &str) -> Result<Ws, PeerError> {
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect(url))
        .await
        .map_err(|_| {
            PeerError::Signaling(format!(
                "cannot reach {url}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| PeerError::Signaling(connect_error(url, &e)))?;
    Ok(ws)
}

/// The sentence for a server error that makes joining `room` impossible (the session ends).
pub(crate) fn refusal(definition: &str, reason: Option<&str>, room: &str) -> Option<String> {
    match definition {
        "unauthorized_access" => Some(format!(
            "the server refused the room token for {room:?}: {} (give a valid one with \
             --token)",
            reason.unwrap_or("no reason given")
        )),
        "max_call_reached" => Some("the room token's max_call time is over".to_owned()),
        "NoSpaceForNewPeer" => Some(format!(
            "room {room:?} is full: it already has two peers (pick another room name, or wait \
             until one leaves)"
        )),
        "invalidStreamName" => Some(format!(
            "{room:?} is not a valid room name: use 1 to 128 letters, digits, '-', '_' or '.'"
        )),
        "noStreamNameSpecified" => Some("the room name is empty".to_owned()),
        _ => None,
    }
}

/// The next message of the signaling socket; never resolves while it is down.
pub(crate) async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The next frame for a mesh member's session once it is ready; never resolves otherwise.
/// `None`: the member left.
pub(crate) async fn member_frame(member: &mut Option<MemberLink>, ready: bool) -> Option<String> {
    match member {
        Some(m) if ready => m.from_room.recv().await,
        _ => std::future::pending().await,
    }
}

impl Session {
    /// The member this session is the connection to, in a mesh room.
    pub(crate) fn member_id(&self) -> Option<String> {
        self.signaling.member.as_ref().map(|m| m.peer_id.clone())
    }

    /// Sends a signaling message. While the socket is down, messages are dropped: the
    /// peer-to-peer connection does not need them, and the room is joined afresh.
    /// Sends `request` to the server (dropped while signaling is down: the re-join after a
    /// reconnection starts over).
    pub(crate) async fn signal(&mut self, request: Request<'_>) -> Result<(), PeerError> {
        if let Some(m) = &self.signaling.member {
            // The driver joins, leaves, pings and asks for ICE servers for the whole room.
            if !matches!(
                request,
                Request::TakeConfiguration { .. } | Request::TakeCandidate { .. }
            ) {
                return Ok(());
            }
            return m
                .to_room
                .send(request.encode())
                .await
                .map_err(|_| PeerError::Closed);
        }
        let text = request.encode();
        let Some(ws) = self.signaling.ws.as_mut() else {
            tracing::debug!("signaling down; not sent: {text}");
            return Ok(());
        };
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| PeerError::Signaling(e.to_string()))
    }

    pub(crate) async fn signaling_lost(&mut self, why: &str) {
        if self.signaling.ws.take().is_some() {
            tracing::info!("signaling connection lost ({why}); reconnecting");
            self.signaling.lost_at = Some(Instant::now());
            self.signaling.backoff = RECONNECT_MIN;
            self.signaling.reconnect_at = Some(Instant::now() + self.signaling.backoff);
            self.emit(PeerEvent::Reconnecting).await;
        }
    }

    /// One reconnection attempt; an error once [`RECONNECT_BUDGET`] is spent.
    pub(crate) async fn reconnect(&mut self) -> Result<(), PeerError> {
        let attempt =
            tokio::time::timeout(Duration::from_secs(3), connect(&self.signaling.url)).await;
        match attempt {
            Ok(Ok(ws)) => {
                self.signaling.ws = Some(ws);
                self.signaling.reconnect_at = None;
                self.signaling.lost_at = None;
                self.signaling.joined_sent = false;
                if let Err(e) = self.send_join().await {
                    self.signaling_lost(&e.to_string()).await;
                }
                Ok(())
            }
            Ok(Err(e)) => self.retry_later(&connect_error(&self.signaling.url, &e)),
            Err(_) => self.retry_later(&format!("cannot reach {}: timed out", self.signaling.url)),
        }
    }

    pub(crate) fn retry_later(&mut self, why: &str) -> Result<(), PeerError> {
        let down_for = self
            .signaling
            .lost_at
            .map_or(Duration::ZERO, |t| t.elapsed());
        if down_for >= self.signaling.reconnect_budget && !self.av.connected {
            return Err(PeerError::Signaling(format!(
                "gave up reconnecting after {} s: {why}",
                down_for.as_secs()
            )));
        }
        self.signaling.backoff = (self.signaling.backoff * 2).min(RECONNECT_MAX);
        tracing::info!(
            "reconnect failed ({why}); next try in {:?}",
            self.signaling.backoff
        );
        self.signaling.reconnect_at = Some(Instant::now() + self.signaling.backoff);
        Ok(())
    }

    pub(crate) async fn on_signal(&mut self, text: &str) -> Result<(), PeerError> {
        let Some(event) = Signal::decode(text) else {
            tracing::debug!("ignoring a signaling message that is not the protocol's: {text}");
            return Ok(());
        };
        match event {
            Signal::Notification { definition, .. } if definition == "joined" => {
                self.emit(PeerEvent::Joined).await;
            }
            Signal::IceServerConfig(config)
                if self.gather.turn.is_none() && !self.signaling.joined_sent =>
            {
                let servers = config.servers();
                self.start_turn(&servers).await;
                self.start_stun(&servers).await;
                if self.gather.turn.is_none() {
                    self.send_join().await?;
                }
            }
            Signal::Start { .. } if self.channel.is_some() => {
                // Re-joined after a signaling drop while the peer-to-peer connection is
                // still up: keep it (the other side may renegotiate; offers are answered).
                tracing::debug!("start with a live connection: keeping it");
            }
            Signal::Start { .. } => {
                self.emit(PeerEvent::PeerJoined).await;
                let room = self.room.clone();
                let wants = [Track::Audio, Track::Video].map(|t| self.av.media.wants(t));
                let rtc = self.new_rtc();
                let mut api = rtc.sdp_api();
                let mut mids = Vec::new();
                for (want, track) in wants.into_iter().zip([Track::Audio, Track::Video]) {
                    // A side that sends offers to receive as well (as browsers do), so the
                    // other side may send on the same m-line whether or not this one records.
                    let dir = match want {
                        (true, _) => Direction::SendRecv,
                        (false, true) => Direction::RecvOnly,
                        (false, false) => continue,
                    };
                    let kind = match track {
                        Track::Audio => MediaKind::Audio,
                        Track::Video => MediaKind::Video,
                    };
                    // str0m reports `MediaAdded` only for m-lines the other side adds.
                    mids.push((
                        api.add_media(kind, dir, Some(room.clone()), None, None),
                        track,
                    ));
                }
                api.add_channel(room);
                let Some((offer, pending)) = api.apply() else {
                    return Err(PeerError::Rtc("no offer to make".into()));
                };
                self.av.mids = mids;
                self.pending = Some(pending);
                let sdp = offer.to_sdp_string();
                self.gather.first_mid = first_mid(&sdp);
                self.take_configuration(SdpType::Offer, &sdp).await?;
            }
            Signal::TakeConfiguration { kind, sdp, .. } => match kind.as_str() {
                "offer" => {
                    if self.rtc.is_none() {
                        self.emit(PeerEvent::PeerJoined).await;
                    }
                    self.permit_candidates(&sdp);
                    let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                        tracing::warn!("ignoring an unparsable offer");
                        return Ok(());
                    };
                    let rtc = match self.rtc.as_mut() {
                        Some(r) => r,
                        None => self.new_rtc(),
                    };
                    let answer = rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| PeerError::Rtc(e.to_string()))?;
                    let sdp = answer.to_sdp_string();
                    self.gather.first_mid = first_mid(&sdp);
                    self.take_configuration(SdpType::Answer, &sdp).await?;
                }
                "answer" => {
                    self.permit_candidates(&sdp);
                    let (Some(rtc), Some(pending)) = (self.rtc.as_mut(), self.pending.take())
                    else {
                        tracing::warn!("ignoring an answer to no offer");
                        return Ok(());
                    };
                    let Ok(answer) = SdpAnswer::from_sdp_string(&sdp) else {
                        tracing::warn!("ignoring an unparsable answer");
                        return Ok(());
                    };
                    rtc.sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| PeerError::Rtc(e.to_string()))?;
                }
                _ => {}
            },
            Signal::TakeCandidate { candidate, .. } => {
                let cand = candidate.strip_prefix("a=").unwrap_or(&candidate);
                self.permit_candidates(cand);
                if let (Some(rtc), Ok(c)) = (self.rtc.as_mut(), Candidate::from_sdp_string(cand)) {
                    rtc.add_remote_candidate(c);
                }
            }
            Signal::Stop {} => {
                self.rtc = None;
                self.pending = None;
                self.channel = None;
                self.emit(PeerEvent::PeerLeft).await;
            }
            Signal::Error { definition, reason } => {
                let refused = refusal(&definition, reason.as_deref(), &self.room);
                self.emit(PeerEvent::ServerError(definition)).await;
                if let Some(why) = refused {
                    if let Some(ws) = self.signaling.ws.as_mut() {
                        let _ = ws.close(None).await;
                    }
                    return Err(PeerError::Refused(why));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends this side's offer or answer.
    pub(crate) async fn take_configuration(
        &mut self,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), PeerError> {
        let room = self.room.clone();
        let to = self.member_id();
        self.signal(Request::TakeConfiguration {
            stream_id: &room,
            kind,
            sdp,
            peer_id: to.as_deref(),
        })
        .await
    }

    pub(crate) async fn send_join(&mut self) -> Result<(), PeerError> {
        self.signaling.joined_sent = true;
        let room = self.room.clone();
        self.signal(Request::Join {
            stream_id: &room,
            multi_peer: false,
            mode: "both",
            // A room token goes on the URL (`?token=`), which the server reads at connect.
            token: None,
            mesh: false,
        })
        .await
    }

    /// Leaves the room and closes the signaling connection.
    pub(crate) async fn leave(&mut self) {
        let room = self.room.clone();
        let _ = self.signal(Request::Leave { stream_id: &room }).await;
        if let Some(ws) = self.signaling.ws.as_mut() {
            let _ = ws.close(None).await;
        }
    }
}
