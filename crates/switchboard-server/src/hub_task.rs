//! The task that owns the hub.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use futures_util::future::Either;
use socketioxide::extract::{AckSender, SocketRef};
use switchboard_core::{AckId, CloseReason, ConnId, Dialect, Hub, LeaveReason, Output, SioInput};
use switchboard_core::{ClusterOutput, SeatReply};
use switchboard_proto::antmedia::{ClientMessage, DecodeError};
use switchboard_proto::cluster::{NodeId, NodeMessage};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ServerConfig;
use crate::outbound::{ConnHandle, ConnShared, Out, Outbound, charge};

/// Most inputs handled before outputs are flushed and the timer is checked again.
const BATCH: usize = 256;

mod admin;
mod input;
mod sio;
pub(crate) use admin::{AdminCtx, ConnExtra};
pub(crate) use input::{AmParams, PjParams};
use input::{ConnectParams, Input};

/// An input handed to the hub: ready at once unless the hub's queue was full.
pub(crate) type Queued =
    Either<std::future::Ready<bool>, std::pin::Pin<Box<dyn Future<Output = bool> + Send>>>;

/// A cloneable sender of hub inputs, used by connection tasks.
#[derive(Debug, Clone)]
pub(crate) struct HubSender {
    tx: mpsc::Sender<Input>,
    /// Bytes queued to all connections (see [`QueuedBytes`]).
    queued_bytes: Arc<AtomicUsize>,
    /// Webhook deliveries, for `/api/v1/stats` and `/metrics`.
    pub(crate) webhook_stats: Arc<crate::webhooks::WebhookStats>,
}

impl HubSender {
    /// Queues an input; the future is true once queued, false if the hub is gone. The common
    /// case (room in the queue) is a `try_send` done at once, and the returned future is a
    /// ready value; only a full queue awaits, through a boxed future. This keeps every
    /// connection task's state machine small: an inline `Sender::send` future (the input plus
    /// a semaphore waiter) added ~300 bytes to each idle connection.
    fn send(&self, input: Input) -> Queued {
        match self.tx.try_send(input) {
            Ok(()) => Either::Left(std::future::ready(true)),
            Err(TrySendError::Closed(_)) => Either::Left(std::future::ready(false)),
            Err(TrySendError::Full(input)) => {
                let tx = self.tx.clone();
                Either::Right(Box::pin(async move { tx.send(input).await.is_ok() }))
            }
        }
    }

    /// A new connection's shared state.
    pub(crate) fn conn_shared(
        &self,
        peerjs: bool,
        ip: Option<std::net::IpAddr>,
    ) -> Arc<ConnShared> {
        Arc::new(ConnShared::new(Arc::clone(&self.queued_bytes), peerjs, ip))
    }

    /// Registers a connection. The future is false if the hub is gone.
    pub(crate) fn connect(&self, conn: ConnId, params: AmParams, handle: ConnHandle) -> Queued {
        self.send(Input::Connect {
            conn,
            params: ConnectParams::Am(params),
            handle,
        })
    }

    /// Hands a decoded frame to the hub.
    pub(crate) fn message(&self, conn: ConnId, msg: Result<ClientMessage, DecodeError>) -> Queued {
        self.send(Input::Message { conn, msg })
    }

    /// Reports a sign of life that is not a message.
    pub(crate) fn activity(&self, conn: ConnId) -> Queued {
        self.send(Input::Activity { conn })
    }

    /// Registers a PeerJS connection (the hub answers `OPEN`, or an error and a close).
    pub(crate) fn pj_connect(&self, conn: ConnId, params: PjParams, handle: ConnHandle) -> Queued {
        self.send(Input::Connect {
            conn,
            params: ConnectParams::Pj(params),
            handle,
        })
    }

    /// Hands a PeerJS frame (`Err`: not JSON) to the hub.
    pub(crate) fn pj_message(
        &self,
        conn: ConnId,
        msg: Result<switchboard_proto::peerjs::PjClientMessage, ()>,
    ) -> Queued {
        self.send(Input::PjMessage { conn, msg })
    }

    /// The PeerJS ids connected now, if discovery is allowed.
    /// Runs `f` on the hub task (its outputs are carried out right after); `None` if the
    /// hub is gone.
    pub(crate) async fn admin<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AdminCtx<'_>) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: admin::AdminJob = Box::new(move |ctx| {
            let _ = reply.send(f(ctx));
        });
        if !self.send(Input::Admin { job }).await {
            return None;
        }
        answer.await.ok()
    }

    pub(crate) async fn pj_peers(&self) -> Option<Vec<Box<str>>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.send(Input::PjPeers { reply }).await {
            return None;
        }
        answer.await.ok().flatten()
    }

    /// Registers a socket.io connection (from the connect middleware, before the client is
    /// told its id).
    pub(crate) fn sio_connect(&self, conn: ConnId, socket: SocketRef) -> Queued {
        self.send(Input::SioConnect { conn, socket })
    }

    /// A socket.io connection's connect handler ran: its handlers are in place.
    pub(crate) fn sio_ready(&self, conn: ConnId) -> Queued {
        self.send(Input::SioReady { conn })
    }

    /// Hands a socket.io event (and its ack callback, if the client asked for one) to the hub.
    pub(crate) fn sio(&self, conn: ConnId, input: SioInput, ack: Option<AckSender>) -> Queued {
        self.send(Input::Sio { conn, input, ack })
    }

    /// Reports that a connection's socket is gone.
    pub(crate) fn disconnect(&self, conn: ConnId) -> Queued {
        self.send(Input::Disconnect { conn })
    }

    /// The hub's counters now; `None` if the hub is gone. Cheap: `/api/v1/stats` (public and
    /// not cached) and the cluster's lease renewal ask for it.
    pub(crate) async fn stats(&self) -> Option<HubStats> {
        self.stats_of(false).await
    }

    /// [`HubSender::stats`] with the `/metrics` counts, which cost a pass over every
    /// connection: for `/metrics` (at most one render a second) and the admin API.
    pub(crate) async fn stats_with_meter(&self) -> Option<HubStats> {
        self.stats_of(true).await
    }

    async fn stats_of(&self, meter: bool) -> Option<HubStats> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.send(Input::Stats { reply, meter }).await {
            return None;
        }
        let mut stats = answer.await.ok()?;
        stats.queue_depth = self.tx.max_capacity() - self.tx.capacity();
        Some(stats)
    }

    /// The registry's answer to a seat claim.
    pub(crate) fn cluster_seat(
        &self,
        claim: switchboard_core::SeatClaim,
        reply: SeatReply,
    ) -> Queued {
        self.send(Input::Seat { claim, reply })
    }

    /// Messages from another node, in order.
    pub(crate) fn node_messages(&self, from: NodeId, msgs: Vec<NodeMessage>) -> Queued {
        self.send(Input::NodeMessages { from, msgs })
    }

    /// A message for another node could not be delivered.
    pub(crate) fn node_unreachable(&self, from: Option<ConnId>, msg: NodeMessage) -> Queued {
        self.send(Input::NodeUnreachable { from, msg })
    }

    /// The registry's answer to a socket.io relay to another node.
    pub(crate) fn sio_routed(
        &self,
        route: switchboard_core::SioRoute,
        outcome: switchboard_core::RouteOutcome,
    ) -> Queued {
        self.send(Input::SioRouted {
            conn: route.conn,
            ack: route.ack,
            event: route.event,
            target: route.target,
            outcome,
        })
    }

    /// A cluster output could not be carried out (Redis unreachable or too slow).
    pub(crate) fn cluster_failed(&self, out: ClusterOutput) -> Queued {
        self.send(Input::ClusterFailed { out })
    }

    /// The registry's answer to a socket.io join.
    pub(crate) fn sio_join_reply(
        &self,
        conn: ConnId,
        room: Box<str>,
        outcome: switchboard_core::JoinOutcome,
    ) -> Queued {
        self.send(Input::SioJoinReply {
            conn,
            room,
            outcome,
        })
    }

    /// The registry's answer to a mesh join.
    pub(crate) fn mesh_join_reply(
        &self,
        conn: ConnId,
        key: (switchboard_core::App, switchboard_proto::StreamId),
        outcome: switchboard_core::JoinOutcome,
    ) -> Queued {
        self.send(Input::MeshJoinReply { conn, key, outcome })
    }

    /// The registry's answer to a PeerJS id claim.
    pub(crate) fn pj_claim_reply(
        &self,
        conn: ConnId,
        id: Box<str>,
        again: bool,
        outcome: switchboard_core::PjClaimOutcome,
    ) -> Queued {
        self.send(Input::PjClaimReply {
            conn,
            id,
            again,
            outcome,
        })
    }

    /// The registry's answer to a PeerJS message for another node.
    pub(crate) fn pj_sent(
        &self,
        sent: switchboard_core::PjSent,
        outcome: switchboard_core::PjSendOutcome,
    ) -> Queued {
        self.send(Input::PjSent { sent, outcome })
    }

    /// PeerJS messages that expired in the registry's queue.
    pub(crate) fn pj_expired(&self, dst: Box<str>, expired: Vec<(u64, Box<str>)>) -> Queued {
        self.send(Input::PjExpired { dst, expired })
    }

    /// Another node is gone.
    pub(crate) fn node_down(&self, node: NodeId) -> Queued {
        self.send(Input::NodeDown { node })
    }

    /// Claim every seat again.
    pub(crate) fn cluster_reregister(&self, isolated: bool) -> Queued {
        self.send(Input::Reregister { isolated })
    }

    /// Tells every client the server is stopping and closes them; waits until the hub has
    /// queued that for everyone.
    pub(crate) async fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.send(Input::Shutdown { done }).await {
            let _ = wait.await;
        }
    }
}

/// The hub task's link to the cluster edge.
pub(crate) struct ClusterLink {
    /// The queue of cluster outputs, carried out in order by the command task.
    pub(crate) tx: crate::cluster::registry::Commands,
    /// Marked when an output could not even be queued.
    pub(crate) health: Arc<crate::cluster::Health>,
}

/// Starts the hub task; `cluster` in cluster mode.
pub(crate) fn spawn(
    config: &ServerConfig,
    cluster: Option<ClusterLink>,
) -> (HubSender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.hub_queue);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    // The sink the binary started (shared with the TURN server), or one of our own.
    let webhooks = config.webhook_sink.clone().or_else(|| {
        let node = config.cluster.as_ref().map(|c| c.node_id.as_str());
        config
            .webhooks
            .as_ref()
            .map(|w| crate::webhooks::WebhookSink::start(w, node))
    });
    let webhook_stats = webhooks
        .as_ref()
        .map_or_else(Arc::default, |w| Arc::clone(w.stats()));
    let mut hub_config = config.hub.clone();
    if let Some(c) = &config.cluster {
        hub_config.cluster = NodeId::new(&c.node_id).ok();
    }
    let task = HubTask {
        cluster,
        queued_bytes: Arc::clone(&queued_bytes),
        max_conn_bytes: config.max_queued_bytes_per_connection,
        max_bytes: config.max_queued_bytes,
        hub: Hub::new(hub_config),
        conns: HashMap::new(),
        sio: HashMap::new(),
        sio_unready: HashMap::new(),
        acks: HashMap::new(),
        next_ack: 0,
        stopping: false,
        overload_log: crate::RateLimited::default(),
        sio_closing: HashMap::new(),
        slow_consumers: 0,
        meter: crate::metrics::HubMeter::new(&config.metrics),
        webhooks: webhooks.clone().map(crate::webhooks::Webhooks::new),
        joined_at: HashMap::new(),
    };
    let sender = HubSender {
        tx,
        queued_bytes,
        webhook_stats,
    };
    (sender, tokio::spawn(task.run(rx)))
}

struct HubTask {
    hub: Hub,
    /// Cluster mode: where cluster outputs go.
    cluster: Option<ClusterLink>,
    /// Bytes queued to all connections, and the limits on them.
    queued_bytes: Arc<AtomicUsize>,
    max_conn_bytes: usize,
    max_bytes: usize,
    /// Queues of the connections the hub knows.
    conns: HashMap<ConnId, ConnHandle>,
    /// socket.io connections the hub knows.
    sio: HashMap<ConnId, SocketRef>,
    /// socket.io sockets whose connect handler has not run yet (see [`sio`]).
    sio_unready: HashMap<ConnId, sio::Unready>,
    /// Ack callbacks waiting for the hub's answer (answered within the same input, so this
    /// holds at most one entry between inputs).
    acks: HashMap<u64, AckSender>,
    next_ack: u64,
    /// Set once shutdown began: new connections are closed at once.
    stopping: bool,
    /// Refusals at `max_connections` are logged at most once a second (a flood of
    /// connections must not become a flood of log lines).
    overload_log: crate::RateLimited,
    /// socket.io sockets the hub has dropped whose DISCONNECT did not fit in their full
    /// outbound buffer: retried every [`SIO_CLOSE_RETRY`] until it is sent or the transport
    /// is gone, so a dropped client is told and closed instead of lingering as a connected
    /// zombie the hub no longer knows. At most one entry per socket.io connection.
    sio_closing: HashMap<ConnId, SocketRef>,
    /// Clients dropped because they did not read (their outbound queue was full).
    slow_consumers: u64,
    /// Counts for `/metrics`.
    meter: crate::metrics::HubMeter,
    /// Webhooks, when configured.
    webhooks: Option<crate::webhooks::Webhooks>,
    /// When each peer in a room joined it (Unix seconds), for the admin API.
    joined_at: HashMap<ConnId, u64>,
}

/// The hub's counters and the hub task's own, for `/api/v1/stats` and `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct HubStats {
    pub(crate) hub: switchboard_core::Stats,
    /// The hub's cluster counters.
    pub(crate) cluster: switchboard_core::ClusterStats,
    pub(crate) slow_consumers: u64,
    /// Dropped socket.io sockets whose DISCONNECT is still waiting for buffer room.
    pub(crate) sio_closing: usize,
    /// Bytes waiting in connections' outbound queues now.
    pub(crate) queued_bytes: usize,
    /// What the hub task counts for `/metrics`.
    pub(crate) meter: crate::metrics::MeterSnapshot,
    /// Inputs waiting in the hub's queue (filled in by [`HubSender::stats`]).
    pub(crate) queue_depth: usize,
}

/// How often a dropped socket.io socket's DISCONNECT is retried.
const SIO_CLOSE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

impl HubTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut retry = tokio::time::interval(SIO_CLOSE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.hub.poll_timeout().map(Instant::from_std);
            tokio::select! {
                biased;
                _ = retry.tick(), if !self.sio_closing.is_empty() || !self.sio_unready.is_empty() => {
                    self.retry_sio_closing();
                    self.sweep_sio_unready();
                    self.flush();
                }
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now().into_std();
                    self.hub.handle_wall_clock(crate::unix_now());
                    self.apply(input, now);
                    for _ in 1..BATCH {
                        match rx.try_recv() {
                            Ok(input) => self.apply(input, now),
                            Err(_) => break,
                        }
                    }
                    self.meter.busy.observe(now.elapsed().as_secs_f64());
                }
                () = sleep_until(deadline) => {
                    self.hub.handle_timeout(Instant::now().into_std());
                    self.flush();
                }
            }
        }
    }

    fn apply(&mut self, input: Input, now: std::time::Instant) {
        match input {
            Input::Connect {
                conn,
                params,
                handle,
            } => {
                if !self.admit(conn, handle) {
                    return;
                }
                match params {
                    ConnectParams::Am(p) => self.hub.handle_am_connect(
                        conn,
                        p.app,
                        p.host.as_deref(),
                        p.ip,
                        p.token.as_deref(),
                        now,
                    ),
                    ConnectParams::Pj(p) => self.hub.handle_pj_connect(
                        conn,
                        p.key.as_deref(),
                        p.id.as_deref(),
                        p.token.as_deref(),
                        p.ip,
                        now,
                    ),
                }
            }
            Input::Message { conn, msg } => {
                self.meter.received(Dialect::AntMedia);
                self.hub.handle_am_message(conn, msg, now);
            }
            Input::Activity { conn } => self.hub.handle_am_activity(conn, now),
            Input::Disconnect { conn } => {
                self.forget(conn);
                self.sio.remove(&conn);
                self.sio_unready.remove(&conn);
                self.hub.handle_disconnect(conn);
            }
            Input::SioConnect { conn, socket } => {
                if self.stopping {
                    self.sio_unready.insert(conn, sio::Unready::refused(socket));
                    return;
                }
                let grant = crate::socketio::grant(&socket);
                let id = crate::socketio::identity(&socket, grant.as_ref());
                let ip = socket
                    .req_parts()
                    .extensions
                    .get::<crate::accept::ClientAddr>()
                    .map(|a| a.0.ip());
                self.sio_unready
                    .insert(conn, sio::Unready::new(socket.clone()));
                self.sio.insert(conn, socket);
                self.hub.handle_sio_connect(conn, &id, ip, grant, now);
            }
            Input::SioReady { conn } => self.sio_ready(conn),
            Input::PjMessage { conn, msg } => {
                self.meter.received(Dialect::PeerJs);
                self.hub.handle_pj_message(conn, msg, now);
            }
            Input::PjPeers { reply } => {
                let _ = reply.send(self.hub.pj_peers());
            }
            Input::Admin { job } => job(&mut AdminCtx {
                hub: &mut self.hub,
                conns: &self.conns,
                sio: &self.sio,
                joined_at: &self.joined_at,
            }),
            Input::Stats { reply, meter } => {
                let _ = reply.send(HubStats {
                    hub: self.hub.stats(),
                    cluster: self.hub.cluster_stats(),
                    slow_consumers: self.slow_consumers,
                    sio_closing: self.sio_closing.len(),
                    queued_bytes: self.queued_bytes.load(Relaxed),
                    meter: if meter {
                        self.meter.snapshot(
                            self.hub.error_counts(),
                            self.conns.values().map(|h| &*h.shared),
                        )
                    } else {
                        crate::metrics::MeterSnapshot::default()
                    },
                    queue_depth: 0,
                });
            }
            Input::Sio { conn, input, ack } => {
                self.meter.received(Dialect::SocketIo);
                let ack = ack.map(|a| {
                    self.next_ack += 1;
                    self.acks.insert(self.next_ack, a);
                    AckId(self.next_ack)
                });
                self.hub.handle_sio_message(conn, input, ack, now);
            }
            Input::Shutdown { done } => {
                self.stopping = true;
                self.hub.shutdown();
                self.flush();
                let _ = done.send(());
            }
            Input::Seat { claim, reply } => self.hub.handle_am_seat(claim, reply, now),
            Input::NodeMessages { from, msgs } => {
                for msg in msgs {
                    self.hub.handle_node_message(&from, msg, now);
                }
            }
            Input::NodeUnreachable { from, msg } => self.hub.handle_node_unreachable(from, msg),
            Input::ClusterFailed { out } => self.cluster_failed(out),
            Input::NodeDown { node } => self.hub.handle_node_down(&node),
            Input::PjClaimReply {
                conn,
                id,
                again,
                outcome,
            } => self.hub.handle_pj_claim_reply(conn, &id, again, outcome),
            Input::PjSent { sent, outcome } => self.hub.handle_pj_sent(sent, outcome, now),
            Input::PjExpired { dst, expired } => self.hub.handle_pj_expired(&dst, &expired),
            Input::SioRouted {
                conn,
                ack,
                event,
                target,
                outcome,
            } => self
                .hub
                .handle_sio_routed(conn, ack, event, &target, outcome),
            Input::SioJoinReply {
                conn,
                room,
                outcome,
            } => self.hub.handle_sio_join_reply(conn, &room, outcome),
            Input::MeshJoinReply { conn, key, outcome } => {
                self.hub.handle_mesh_join_reply(conn, &key, outcome);
            }
            Input::Reregister { isolated } => {
                if isolated {
                    self.hub.handle_cluster_isolated();
                }
                self.hub.handle_cluster_reregister(isolated);
            }
        }
        self.flush();
    }

    /// Lets go of a connection's queue; `/metrics` keeps counting what its task still
    /// writes until the task ends.
    fn forget(&mut self, conn: ConnId) -> Option<ConnHandle> {
        let h = self.conns.remove(&conn)?;
        self.meter.closing(&h.shared);
        Some(h)
    }

    /// Keeps a new WebSocket connection's queue, unless shutdown began (then it is closed).
    fn admit(&mut self, conn: ConnId, mut handle: ConnHandle) -> bool {
        if self.stopping {
            let _ = handle.tx.try_send(Out::Close(CloseReason::Shutdown));
            return false;
        }
        self.conns.insert(conn, handle);
        true
    }

    /// Queues `out` for `conn`; a full queue, or one holding too many bytes, drops the
    /// connection (slow consumer).
    fn enqueue(&mut self, conn: ConnId, out: Outbound) {
        let Some(handle) = self.conns.get_mut(&conn) else {
            return;
        };
        let n = charge(&out);
        let why = match handle.shared.charge(n, self.max_conn_bytes, self.max_bytes) {
            Err(why) => Some(why),
            Ok(()) => match handle.tx.try_send(out) {
                Ok(()) => None,
                Err(e) => {
                    handle.shared.refund(n);
                    e.is_full().then_some("its outbound queue is full")
                }
            },
        };
        if let Some(why) = why {
            self.slow_consumers += 1;
            tracing::info!(
                conn = conn.0,
                "dropped a client that is not reading ({why})"
            );
            if let Some(h) = self.forget(conn) {
                h.shared.kill();
            }
            self.hub.handle_slow_consumer(conn);
        }
    }

    /// Sends a socket.io socket its DISCONNECT and closes it; when its buffer is full, keeps
    /// it to retry (socketioxide then neither sends nor closes anything).
    fn sio_disconnect(&mut self, conn: ConnId, socket: SocketRef) {
        if let Err(socketioxide::SocketError::InternalChannelFull) = socket.clone().disconnect() {
            self.sio_closing.insert(conn, socket);
        }
    }

    /// Retries the DISCONNECT of dropped socket.io sockets; forgets those that are closed.
    fn retry_sio_closing(&mut self) {
        self.sio_closing.retain(|_, socket| {
            socket.connected()
                && matches!(
                    socket.clone().disconnect(),
                    Err(socketioxide::SocketError::InternalChannelFull)
                )
        });
    }

    /// Queues a cluster output for the command task; when its queue is full (Redis too slow
    /// or away), fails it at once: a claim is answered `Unavailable`, a message's sender is
    /// told, and a lost release has every seat claimed again later.
    fn queue_for_cluster(&mut self, out: ClusterOutput) {
        let Some(link) = &self.cluster else {
            return;
        };
        let out = match link.tx.try_send((out, None)) {
            Ok(()) => return,
            Err(TrySendError::Full((out, _)) | TrySendError::Closed((out, _))) => out,
        };
        link.health
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.cluster_failed(out);
    }

    /// `out` was not carried out: the hub answers it; the registry may need every seat
    /// claimed again.
    fn cluster_failed(&mut self, out: ClusterOutput) {
        if self
            .hub
            .handle_cluster_failed(out, Instant::now().into_std())
        {
            if let Some(link) = &self.cluster {
                link.health.dirty.store(true, Relaxed);
            }
        }
    }

    /// Moves every hub output into connection queues.
    fn flush(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::AmSend { conn, msg } => self.enqueue(conn, Out::Msg(msg)),
                Output::SioEmit { conn, emit } => {
                    let (event, data) = emit.into_wire();
                    self.sio_emit(conn, event, data);
                }
                Output::SioAck { conn, ack, reply } => {
                    if let Some(a) = self.acks.remove(&ack.0) {
                        self.sio_before_ack(conn);
                        if let Err(e) = a.send(&reply.to_json()) {
                            tracing::debug!(conn = conn.0, "ack not sent: {e}");
                        }
                    }
                }
                Output::PjSend { conn, msg } => self.enqueue(conn, Out::Pj(msg)),
                Output::Frame { conn, frame } => self.enqueue(conn, Out::Frame(frame)),
                Output::Cluster(out) => self.queue_for_cluster(out),
                Output::Close { conn, reason } => {
                    self.sio_close(conn);
                    if let Some(mut h) = self.forget(conn) {
                        if h.tx.try_send(Out::Close(reason)).is_err() {
                            h.shared.kill();
                        }
                    }
                    match reason {
                        // A peer in a room also gets its "left ... idle_timeout" line.
                        CloseReason::IdleTimeout => {
                            tracing::debug!(conn = conn.0, "closed idle connection");
                        }
                        CloseReason::Overloaded => {
                            if let Some(quiet) = self.overload_log.due() {
                                tracing::info!(
                                    conn = conn.0,
                                    "refused a connection: at max_connections \
                                     ({quiet} more refused since the last line)"
                                );
                            }
                        }
                        CloseReason::RateLimited => {
                            tracing::debug!(conn = conn.0, "closed a rate-limited connection");
                        }
                        CloseReason::Kicked => {
                            tracing::info!(conn = conn.0, "kicked by the operator");
                        }
                        CloseReason::Shutdown | CloseReason::Refused | CloseReason::Replaced => {}
                    }
                }
            }
        }
        // One line per join and leave: connection id, dialect, app and room.
        while let Some(e) = self.hub.poll_event() {
            self.meter.event(&e);
            match e.change {
                switchboard_core::Change::Joined => {
                    self.joined_at.insert(e.conn, crate::unix_now());
                }
                switchboard_core::Change::Left(_) => {
                    self.joined_at.remove(&e.conn);
                }
            }
            if let Some(w) = &mut self.webhooks {
                w.peer_event(&e);
            }
            tracing::info!(
                conn = e.conn.0,
                dialect = e.dialect.as_str(),
                app = &*e.app,
                room = &*e.room,
                reason = e.change.reason().map(LeaveReason::as_str),
                "{}",
                e.change.as_str()
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
