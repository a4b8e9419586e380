//! A connection's outbound queue (hub → connection task): what it holds, and the bytes it
//! is charged against the per-connection and process-wide limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use switchboard_core::CloseReason;
use switchboard_proto::antmedia::ServerMessage;

/// What a connection task receives from the hub, in order.
pub(crate) type Outbound = Out;

/// A connection's queue, hub → connection task. futures-channel's bounded queue allocates
/// nothing until a message is sent (one node per message, holding it; no separate box), so
/// an idle connection's queue is ~150 bytes. tokio's bounded channel costs ~800 bytes per
/// connection (cache-padded shared state plus a 32-slot block allocated up front), a fifth of
/// an idle connection's memory.
pub(crate) type ConnQueue = futures_channel::mpsc::Sender<Outbound>;

/// An entry of a connection's queue.
#[derive(Debug)]
pub(crate) enum Out {
    /// An Ant Media message to write.
    Msg(ServerMessage),
    /// A PeerJS message to write.
    Pj(switchboard_proto::peerjs::PjServerMessage),
    /// A frame another node rendered (Ant Media or PeerJS), written as it is.
    Frame(switchboard_proto::cluster::Frame),
    /// Write a close frame and end.
    Close(CloseReason),
}

/// The hub's hold on one connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// The connection's bounded FIFO.
    pub(crate) tx: ConnQueue,
    /// What the hub and the connection task share: the bytes waiting in `tx` and the kill
    /// switch.
    pub(crate) shared: Arc<ConnShared>,
}

/// Shared by the hub and one connection task, in one small allocation (a
/// `CancellationToken` alone cost more): bytes charged for the connection's queued messages,
/// part of the process-wide total (whatever is still charged when both ends let go is
/// returned to it), and a signal to drop the connection at once (slow consumer), even
/// mid-write.
#[derive(Debug)]
pub(crate) struct ConnShared {
    conn: AtomicUsize,
    total: Arc<AtomicUsize>,
    kill: tokio::sync::Notify,
    /// Text bytes written, for `/metrics` (only this connection's task adds to it).
    sent: AtomicU64,
    /// Messages read and written, for the admin API (only this connection's task adds).
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    /// The connection speaks PeerJS (else Ant Media), for `/metrics`.
    peerjs: bool,
    /// The client's address and when it connected (Unix seconds), for the admin API.
    pub(crate) ip: Option<std::net::IpAddr>,
    pub(crate) connected_at: u64,
}

impl ConnShared {
    /// A connection's share, part of `total`.
    pub(crate) fn new(total: Arc<AtomicUsize>, peerjs: bool, ip: Option<std::net::IpAddr>) -> Self {
        Self {
            conn: AtomicUsize::new(0),
            total,
            kill: tokio::sync::Notify::new(),
            sent: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            peerjs,
            ip,
            connected_at: crate::unix_now(),
        }
    }

    /// Counts a text message of `n` bytes written to the socket.
    pub(crate) fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Relaxed);
        self.msgs_out.fetch_add(1, Relaxed);
    }

    /// Counts a text message read from the socket.
    pub(crate) fn received(&self) {
        self.msgs_in.fetch_add(1, Relaxed);
    }

    /// Messages read and written so far.
    pub(crate) fn messages(&self) -> (u64, u64) {
        (self.msgs_in.load(Relaxed), self.msgs_out.load(Relaxed))
    }

    /// Text bytes written so far, and the dialect.
    pub(crate) fn sent_bytes(&self) -> (switchboard_core::Dialect, u64) {
        let d = if self.peerjs {
            switchboard_core::Dialect::PeerJs
        } else {
            switchboard_core::Dialect::AntMedia
        };
        (d, self.sent.load(Relaxed))
    }

    /// Charges `n` bytes to this connection and to the process-wide total, unless that
    /// would pass `max_conn` or `max_total` (then: which limit, and nothing is charged).
    pub(crate) fn charge(
        &self,
        n: usize,
        max_conn: usize,
        max_total: usize,
    ) -> Result<(), &'static str> {
        if self.conn.load(Relaxed) + n > max_conn {
            return Err("its queued bytes reached max_queued_bytes_per_connection");
        }
        if self.total.load(Relaxed) + n > max_total {
            return Err("all queues together reached max_queued_bytes");
        }
        self.conn.fetch_add(n, Relaxed);
        self.total.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Gives back `n` bytes charged for a message that was not queued after all.
    pub(crate) fn refund(&self, n: usize) {
        self.conn.fetch_sub(n, Relaxed);
        self.total.fetch_sub(n, Relaxed);
    }

    /// Drops the connection: [`ConnShared::killed`] completes (now, or when next awaited).
    pub(crate) fn kill(&self) {
        self.kill.notify_one();
    }

    /// Completes once [`ConnShared::kill`] was called.
    pub(crate) async fn killed(&self) {
        self.kill.notified().await;
    }

    /// The connection task took `out` from the queue.
    pub(crate) fn release(&self, out: &Out) {
        let n = charge(out);
        self.conn.fetch_sub(n, Relaxed);
        self.total.fetch_sub(n, Relaxed);
    }
}

impl Drop for ConnShared {
    fn drop(&mut self) {
        self.total.fetch_sub(*self.conn.get_mut(), Relaxed);
    }
}

/// Bytes a queued message is charged: its estimated encoded length.
pub(crate) fn charge(out: &Out) -> usize {
    match out {
        Out::Msg(msg) => msg.size_hint(),
        Out::Pj(msg) => match msg {
            switchboard_proto::peerjs::PjServerMessage::Relay {
                src, dst, payload, ..
            } => 64 + src.len() + dst.len() + payload.as_ref().map_or(0, |p| p.json().len()),
            _ => 128,
        },
        Out::Frame(frame) => frame.len(),
        Out::Close(_) => 0,
    }
}
