//! One WebSocket connection: read, decode, hand to the hub; write what the hub queues.

use std::borrow::Cow;

use futures_util::SinkExt;
use futures_util::StreamExt;
use switchboard_core::{CloseReason, ConnId};
use switchboard_proto::ErrorCode;
use switchboard_proto::antmedia::{DecodeError, decode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::hub_task::{HubSender, PjParams};
use crate::outbound::{ConnHandle, Out, Outbound};
use crate::upgrade::Socket;

/// Which protocol a WebSocket speaks.
pub(crate) enum Dialect {
    /// Ant Media P2P at `/<app>/websocket`.
    AntMedia(crate::hub_task::AmParams),
    /// The PeerJS server protocol at `{peerjs_path}peerjs`.
    PeerJs(PjParams),
}

/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// Loop turns in a row without the socket running dry before the task yields. One socket read
/// can hold hundreds of small frames; handing them all to the hub in one go would fill the
/// receiver's queue before its writer runs, and drop a client that is reading fine as a slow
/// consumer. The count restarts whenever a read finds the socket empty, so ordinary traffic
/// (bursts of a few dozen frames) never yields: a yield costs a trip through the IO driver.
const READ_STREAK: u32 = 32;

/// Runs one connection to the end.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments in its state machine and moves them into locals of their own, so the
/// socket (368 bytes) and the rest were held twice for the connection's whole life. The block
/// uses what it captured in place (the test below holds it to that).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve(
    mut socket: Socket,
    conn: ConnId,
    // Boxed: the dialect (names, the client address) is only needed at the start.
    dialect: Box<Dialect>,
    hub: HubSender,
    queue: usize,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        // futures-channel's capacity is `buffer` plus one per sender (the hub's only).
        let (tx, mut rx) = futures_channel::mpsc::channel(queue.saturating_sub(1));
        let (peerjs, ip) = match &*dialect {
            Dialect::AntMedia(p) => (false, p.ip),
            Dialect::PeerJs(p) => (true, p.ip),
        };
        let shared = hub.conn_shared(peerjs, ip);
        let handle = ConnHandle {
            tx,
            shared: std::sync::Arc::clone(&shared),
        };
        let registered = match *dialect {
            Dialect::AntMedia(params) => hub.connect(conn, params, handle).await,
            Dialect::PeerJs(params) => hub.pj_connect(conn, params, handle).await,
        };
        if !registered {
            let _ = socket.send(close(CloseReason::Shutdown)).await;
            return;
        }
        let mut streak = 0;
        loop {
            streak += 1;
            if socket.get_mut().ran_dry() {
                streak = 0;
            }
            if streak >= READ_STREAK {
                streak = 0;
                tokio::task::yield_now().await;
            }
            // What to write is taken out of the select first and written after it: the select's
            // output (a queue entry) is then not part of the state held while writing.
            let first = tokio::select! {
                biased;
                () = shared.killed() => break,
                out = rx.next() => {
                    let Some(out) = out else { break };
                    shared.release(&out);
                    render(out)
                }
                frame = socket.next() => { match frame {
                    // PeerJS: bad JSON is ignored and the socket stays (as peerjs-server does).
                    Some(Ok(Message::Text(text))) if peerjs => {
                        shared.received();
                        hub.pj_message(conn, switchboard_proto::peerjs::decode(&text).map_err(|_| ())).await;
                    }
                    Some(Ok(Message::Text(text))) => {
                        shared.received();
                        let _ = hub.message(conn, decode(&text)).await;
                    }
                    Some(Ok(Message::Binary(_))) if peerjs => {}
                    // PeerJS liveness is HEARTBEAT only.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) if peerjs => {}
                    Some(Ok(Message::Binary(_))) => {
                        let err = DecodeError {
                            code: ErrorCode::BinaryFrame,
                            stream_id: None,
                            reason: Cow::Borrowed("binary frames are not supported; send JSON text"),
                        };
                        hub.message(conn, Err(err)).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        let _ = hub.activity(conn).await;
                    }
                    // Raw frames are a write-side type; reads never yield one.
                    Some(Ok(Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        if matches!(e, tungstenite::Error::Capacity(_)) {
                            let frame = CloseFrame {
                                code: CloseCode::Size,
                                reason: Utf8Bytes::from_static("message too big"),
                            };
                            let _ = socket.send(Message::Close(Some(frame))).await;
                        }
                        break;
                    }
                } continue },
            };
            let done = tokio::select! {
                done = write(&mut socket, &mut rx, first, &shared) => done,
                () = shared.killed() => true,
            };
            if done {
                break;
            }
        }
        // What is still queued will never be written: its bytes go back to the process-wide
        // budget now, not when `shared` is dropped (the `/metrics` meter keeps ended
        // connections' shares until its next sweep, to count their bytes). After `close` the
        // hub's sends fail, and it refunds what it charged for them.
        rx.close();
        while let Ok(out) = rx.try_recv() {
            shared.release(&out);
        }
        hub.disconnect(conn).await;
    }
}

/// A queue entry made ready to write: encoded before any await, so that a connection's
/// state machine never holds a decoded message across a suspension point (each copy of an
/// [`Out`] held there would be part of every idle connection's memory).
enum Ready {
    Text(String),
    Close(CloseReason),
}

fn render(out: Outbound) -> Ready {
    match out {
        Out::Msg(msg) => Ready::Text(msg.encode()),
        Out::Pj(msg) => Ready::Text(msg.encode()),
        Out::Frame(frame) => Ready::Text(frame.into_string()),
        Out::Close(reason) => Ready::Close(reason),
    }
}

/// Writes `first` and whatever else is already queued, then flushes. Returns true when the
/// connection must end (a close was written, or the socket failed).
async fn write(
    socket: &mut Socket,
    rx: &mut futures_channel::mpsc::Receiver<Outbound>,
    first: Ready,
    bytes: &crate::outbound::ConnShared,
) -> bool {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(ready) = next.take() {
        let message = match ready {
            Ready::Text(text) => {
                bytes.sent(text.len());
                Message::Text(Utf8Bytes::from(text))
            }
            Ready::Close(reason) => {
                let _ = socket.feed(close(reason)).await;
                if socket.flush().await.is_ok() {
                    // Boxed: only a closing connection pays for the timer.
                    Box::pin(linger(socket)).await;
                }
                return true;
            }
        };
        if socket.feed(message).await.is_err() {
            return true;
        }
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok().map(|out| {
                bytes.release(&out);
                render(out)
            });
        }
    }
    socket.flush().await.is_err()
}

/// How long a connection the server closes keeps reading after its close frame.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// After the server's close frame: reads and drops what the client still sends until its own
/// close frame, the end of the stream or [`LINGER`]. Closing a TCP socket with unread bytes
/// resets it, and a client still sending (a flood closed as rate limited, say) would lose the
/// close frame and its reason.
async fn linger(socket: &mut Socket) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(m)) = socket.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

fn close(reason: CloseReason) -> Message {
    let (code, text) = match reason {
        CloseReason::IdleTimeout => (CloseCode::Away, "idle timeout"),
        CloseReason::Overloaded => (CloseCode::Again, "server at connection limit"),
        CloseReason::Shutdown => (CloseCode::Away, "server shutting down"),
        CloseReason::Refused => (CloseCode::Policy, "refused"),
        CloseReason::Replaced => (CloseCode::Normal, "replaced by a new connection"),
        CloseReason::RateLimited => (CloseCode::Policy, "rate limited"),
        CloseReason::Kicked => (CloseCode::Policy, "kicked by the operator"),
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(text),
    }))
}

#[cfg(test)]
mod tests {
    /// The size of what a function returns, without calling it.
    fn returned_size<A, B, C, D, E, R>(_: fn(A, B, C, D, E) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// A connection's state machine is most of an idle connection's memory (tokio rounds its
    /// task to 128-byte lines: 1,024 bytes with this future, 1,664 when the socket was held
    /// twice). This keeps it from growing unseen: a new local held across an await point
    /// shows here first.
    #[test]
    fn the_connection_future_holds_the_socket_once() {
        let socket = std::mem::size_of::<super::Socket>();
        let future = returned_size(super::serve);
        eprintln!("socket {socket} bytes, connection future {future} bytes");
        // Beyond 912 bytes, tokio's task (header 32, trailer 48, core and tracker 32 bytes)
        // takes a ninth 128-byte line.
        assert!(future <= 912, "{future} bytes (socket: {socket})");
    }
}
