//! One WebSocket connection: read, decode, hand to the hub; write what the hub queues.

use std::borrow::Cow;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt;
use switchboard_core::{App, CloseReason, ConnId};
use switchboard_proto::ErrorCode;
use switchboard_proto::antmedia::{DecodeError, decode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub_task::{ConnHandle, HubSender, Out, Outbound, PjParams};

/// Which protocol a WebSocket speaks.
pub(crate) enum Dialect {
    /// Ant Media P2P at `/<app>/websocket`.
    AntMedia { app: App, host: Option<Box<str>> },
    /// The PeerJS server protocol at `{peerjs_path}peerjs`.
    PeerJs(PjParams),
}

/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// Runs one connection to the end.
pub(crate) async fn serve(
    mut socket: WebSocket,
    conn: ConnId,
    dialect: Dialect,
    hub: HubSender,
    queue: usize,
) {
    let (tx, mut rx) = mpsc::channel(queue);
    let kill = CancellationToken::new();
    let handle = ConnHandle {
        tx,
        kill: kill.clone(),
    };
    let peerjs = matches!(dialect, Dialect::PeerJs(_));
    let registered = match dialect {
        Dialect::AntMedia { app, host } => hub.connect(conn, app, host, handle).await,
        Dialect::PeerJs(params) => hub.pj_connect(conn, params, handle).await,
    };
    if !registered {
        let _ = socket.send(close(CloseReason::Shutdown)).await;
        return;
    }
    loop {
        tokio::select! {
            biased;
            () = kill.cancelled() => break,
            out = rx.recv() => {
                let Some(out) = out else { break };
                let done = tokio::select! {
                    done = write(&mut socket, &mut rx, out) => done,
                    () = kill.cancelled() => true,
                };
                if done {
                    break;
                }
            }
            frame = socket.recv() => match frame {
                // PeerJS: bad JSON is ignored and the socket stays (as peerjs-server does).
                Some(Ok(Message::Text(text))) if peerjs => {
                    hub.pj_message(conn, switchboard_proto::peerjs::decode(&text).map_err(|_| ())).await;
                }
                Some(Ok(Message::Text(text))) => {
                    let _ = hub.message(conn, decode(&text)).await;
                }
                Some(Ok(Message::Binary(_))) if peerjs => {}
                // PeerJS liveness is HEARTBEAT only.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) if peerjs => {}
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
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    if is_too_big(e) {
                        let frame = CloseFrame {
                            code: close_code::SIZE,
                            reason: Utf8Bytes::from_static("message too big"),
                        };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
            },
        }
    }
    hub.disconnect(conn).await;
}

/// Writes `first` and whatever else is already queued, then flushes. Returns true when the
/// connection must end (a close was written, or the socket failed).
async fn write(socket: &mut WebSocket, rx: &mut mpsc::Receiver<Outbound>, first: Outbound) -> bool {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(out) = next.take() {
        let text = match *out {
            Out::Msg(msg) => msg.encode(),
            Out::Pj(msg) => msg.encode(),
            Out::Close(reason) => {
                let _ = socket.feed(close(reason)).await;
                let _ = socket.flush().await;
                return true;
            }
        };
        if socket
            .feed(Message::Text(Utf8Bytes::from(text)))
            .await
            .is_err()
        {
            return true;
        }
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    socket.flush().await.is_err()
}

fn close(reason: CloseReason) -> Message {
    let (code, text) = match reason {
        CloseReason::IdleTimeout => (close_code::AWAY, "idle timeout"),
        CloseReason::Overloaded => (close_code::AGAIN, "server at connection limit"),
        CloseReason::Shutdown => (close_code::AWAY, "server shutting down"),
        CloseReason::Refused => (close_code::POLICY, "refused"),
        CloseReason::Replaced => (close_code::NORMAL, "replaced by a new connection"),
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(text),
    }))
}

/// Whether a read error is tungstenite's "message or frame too long".
fn is_too_big(e: axum::Error) -> bool {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => matches!(*e, tungstenite::Error::Capacity(_)),
        Err(_) => false,
    }
}
