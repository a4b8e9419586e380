//! socket.io sockets on the hub task: emits, and the moment between registration and the
//! connect handler.
//!
//! socketioxide sends the CONNECT packet that tells a client its id, then marks the socket
//! connected, then runs the connect handler. A socket first reached the hub from that handler,
//! and under CPU contention a peer told the id (by that client) could send to it before: the
//! hub had never heard of the id, answered `unknown_target`, and the message was lost (found
//! by `switchboard bench churn --protocol socketio` in a CI run). So the connect middleware
//! registers the socket, before CONNECT is sent. Until socketioxide marks it connected, it
//! refuses emits to the socket: what the hub sends it then waits here, and is sent in order
//! once the socket is connected (at the next send to it, or when its handler reports in).

use std::time::Duration;

use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use switchboard_core::ConnId;
use tokio::time::Instant;

use super::HubTask;

/// What the hub sent a socket before socketioxide let it send: at most this many entries,
/// then the socket is dropped as a slow consumer. A socket waits a moment here (a peer must
/// first learn its id), so a handful is already a lot.
const EARLY_MAX: usize = 64;

/// A socket whose connect handler has not reported in this long never will (socketioxide
/// failed to send its CONNECT, or the transport closed before the handler ran): the hub
/// forgets it.
const HANDLER_WAIT: Duration = Duration::from_secs(10);

/// A socket registered by the connect middleware whose connect handler has not run yet.
pub(super) struct Unready {
    since: Instant,
    socket: SocketRef,
    /// What the hub sent it while socketioxide would not, in order.
    early: Vec<Early>,
}

impl Unready {
    /// A socket the middleware registered now.
    pub(super) fn new(socket: SocketRef) -> Self {
        Self {
            since: Instant::now(),
            socket,
            early: Vec::new(),
        }
    }

    /// A socket the hub refused (shutting down): closed once connected.
    pub(super) fn refused(socket: SocketRef) -> Self {
        let mut u = Self::new(socket);
        u.early.push(Early::Close);
        u
    }
}

/// An output the hub had for an unready socket.
enum Early {
    Emit(&'static str, Box<RawValue>),
    /// DISCONNECT and close (the hub has already forgotten the socket).
    Close,
}

impl HubTask {
    /// Emits `event` to a socket.io socket, after what waits for it; a socket that does not
    /// read (its buffer is full) is dropped.
    pub(super) fn sio_emit(&mut self, conn: ConnId, event: &'static str, data: Box<RawValue>) {
        if !self.sio.contains_key(&conn) {
            return;
        }
        self.meter.sio_sent(event.len() + data.get().len());
        if !self.sio_pass(conn) {
            let Some(u) = self.sio_unready.get_mut(&conn) else {
                return;
            };
            if u.early.len() < EARLY_MAX {
                u.early.push(Early::Emit(event, data));
            } else {
                self.sio_slow_consumer(conn);
            }
            return;
        }
        let Some(socket) = self.sio.get(&conn) else {
            return;
        };
        if full(socket.emit(event, &data)) {
            self.sio_slow_consumer(conn);
        }
    }

    /// Closes a socket.io socket the hub let go of (its DISCONNECT, once it is connected).
    pub(super) fn sio_close(&mut self, conn: ConnId) {
        if !self.sio.contains_key(&conn) {
            return;
        }
        if !self.sio_pass(conn) {
            if let Some(u) = self.sio_unready.get_mut(&conn) {
                u.early.push(Early::Close);
            }
            self.sio.remove(&conn);
            return;
        }
        self.sio_unready.remove(&conn);
        if let Some(socket) = self.sio.remove(&conn) {
            self.sio_disconnect(conn, socket);
        }
    }

    /// Before an ack to `conn`: what waits for it goes first.
    pub(super) fn sio_before_ack(&mut self, conn: ConnId) {
        self.sio_pass(conn);
    }

    /// The socket's connect handler ran (its disconnect handler is in place): what waited is
    /// sent; a socket that closed before that is forgotten.
    pub(super) fn sio_ready(&mut self, conn: ConnId) {
        if self.sio_pass(conn) {
            self.sio_unready.remove(&conn);
        } else if self.sio_unready.remove(&conn).is_some() {
            self.sio_gone(conn);
        }
    }

    /// Sends what waits for sockets that are connected now; forgets those whose connect
    /// handler never ran.
    pub(super) fn sweep_sio_unready(&mut self) {
        let now = Instant::now();
        let conns: Vec<ConnId> = self.sio_unready.keys().copied().collect();
        for conn in conns {
            let passed = self.sio_pass(conn);
            let Some(u) = self.sio_unready.get(&conn) else {
                continue;
            };
            if now - u.since >= HANDLER_WAIT {
                self.sio_unready.remove(&conn);
                if !passed {
                    self.sio_gone(conn);
                }
            }
        }
    }

    /// True when `conn` may be sent to now: it is not waiting for its connect handler, or it
    /// is connected (then what waited for it has just been sent, in order). False while
    /// socketioxide would refuse to send to it, or when what waited closed it.
    fn sio_pass(&mut self, conn: ConnId) -> bool {
        let Some(u) = self.sio_unready.get_mut(&conn) else {
            return true;
        };
        if !u.socket.connected() {
            return false;
        }
        let socket = u.socket.clone();
        for early in std::mem::take(&mut u.early) {
            match early {
                Early::Emit(event, data) => {
                    if full(socket.emit(event, &data)) {
                        self.sio_slow_consumer(conn);
                        return false;
                    }
                }
                Early::Close => {
                    self.sio_unready.remove(&conn);
                    self.sio_disconnect(conn, socket);
                    return false;
                }
            }
        }
        true
    }

    /// Drops a socket.io client that does not read.
    fn sio_slow_consumer(&mut self, conn: ConnId) {
        self.slow_consumers += 1;
        tracing::info!(
            conn = conn.0,
            "dropped a socket.io client that is not reading"
        );
        let unready = self.sio_unready.remove(&conn).map(|u| u.socket);
        if let Some(s) = self.sio.remove(&conn).or(unready) {
            self.sio_disconnect(conn, s);
        }
        self.hub.handle_slow_consumer(conn);
    }

    /// A socket that is gone with no disconnect handler to say so.
    fn sio_gone(&mut self, conn: ConnId) {
        if self.sio.remove(&conn).is_some() {
            self.hub.handle_disconnect(conn);
        }
    }
}

/// The socket's buffer is full: its client does not read.
fn full(sent: Result<(), socketioxide::SendError>) -> bool {
    matches!(
        sent,
        Err(socketioxide::SendError::Socket(
            socketioxide::SocketError::InternalChannelFull
        ))
    )
}
