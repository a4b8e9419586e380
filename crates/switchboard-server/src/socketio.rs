//! The socket.io endpoint at `/socket.io/` (protocol v5, Engine.IO v4, polling and websocket
//! with upgrade), built on `socketioxide`. Events become hub inputs; the hub task emits
//! what the hub decides. See `docs/PROTOCOLS.md` ("socket.io").
//!
//! socketioxide does not join a socket to a room named after its own id (socket.io does),
//! so a literal port of the ten-line relay would deliver nothing; here the hub looks the
//! target id up itself, which also keeps a room name from being used as a target.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Socket;
use switchboard_core::{ConnId, SIO_MAX_NAME, SioInput, SioRelay};

use crate::hub_task::HubSender;

/// Node socket.io's defaults, which pages written against it expect.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_PAYLOAD: u64 = 1_000_000;
/// Packets queued per socket before it counts as a slow consumer and is dropped.
const SOCKET_BUFFER: usize = 256;

/// Whether the client asked for an ack (the event's ack id).
struct WantsAck(bool);

impl<A: Adapter> FromMessageParts<A> for WantsAck {
    type Error = Infallible;
    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(WantsAck(ack_id.is_some()))
    }
}

/// The claims of a socket's handshake token, kept in its extensions by [`admit`].
#[derive(Clone)]
struct Grant(switchboard_core::auth::Claims);

/// Why a handshake was refused: socket.io's `connect_error`, whose `message` is
/// `unauthorized_access: <reason>`.
#[derive(Debug)]
struct Refused(switchboard_core::auth::AuthError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unauthorized_access: {}", self.0)
    }
}

/// What the connect middleware needs: the token rules, and the per-address budget of token
/// checks (socket.io lets a client repeat CONNECT on one session, each asking for a check;
/// the budget is the joins per address, `--max-joins-per-ip-per-sec`).
#[derive(Clone)]
struct Admission {
    auth: Option<switchboard_core::auth::AuthConfig>,
    checks: Arc<std::sync::Mutex<switchboard_core::SourceBudgets>>,
    /// Cluster mode: where the socket's id is registered before socket.io tells the client
    /// its id.
    cluster: Option<crate::cluster::registry::Commands>,
    /// The hub, told of the socket before socket.io tells the client its id.
    hub: HubSender,
    /// The source of connection ids.
    next_conn: Arc<AtomicU64>,
}

/// The connection id given to a socket by [`admit`].
#[derive(Clone, Copy)]
struct AssignedConn(ConnId);

/// How long a new socket waits for its id to be registered in the cluster before socket.io
/// tells the client its id (Redis slow or away: it goes on, registered again later).
const REGISTER_WAIT: Duration = Duration::from_secs(1);

/// The connect middleware: with room tokens on, the handshake's `auth: { token }` must be a
/// token valid now (its room is checked at each `join`); its claims go with the socket. An
/// admitted socket is registered (with the cluster, then the hub) here, before socketioxide
/// sends the CONNECT that tells the client its id: a peer the client tells its id may send
/// to it at once, and must not find it unknown (see `hub_task/sio.rs`).
async fn admit(
    socket: SocketRef,
    TryData(auth_payload): TryData<Value>,
    admission: Admission,
) -> Result<(), Refused> {
    if let Some(auth) = &admission.auth {
        check_token(&socket, auth_payload.ok(), auth, &admission.checks)?;
    }
    let conn = ConnId(admission.next_conn.fetch_add(1, Ordering::Relaxed));
    socket.extensions.insert(AssignedConn(conn));
    if let Some(commands) = &admission.cluster {
        // In a cluster a peer on another node may learn this socket's id as soon as the
        // client does, and send to it: the id is in the registry before socket.io's CONNECT
        // tells the client (which is sent once this middleware returns).
        let id = identity(&socket, grant(&socket).as_ref());
        let (done, registered) = tokio::sync::oneshot::channel();
        let out = switchboard_core::ClusterOutput::SioRegister {
            conn,
            id: (*id).into(),
        };
        if commands.try_send((out, Some(done))).is_ok() {
            let _ = tokio::time::timeout(REGISTER_WAIT, registered).await;
        }
    }
    admission.hub.sio_connect(conn, socket).await;
    Ok(())
}

/// The handshake token check (room tokens on).
fn check_token(
    socket: &SocketRef,
    payload: Option<Value>,
    auth: &switchboard_core::auth::AuthConfig,
    checks: &std::sync::Mutex<switchboard_core::SourceBudgets>,
) -> Result<(), Refused> {
    let token = payload
        .as_ref()
        .and_then(|v| v.get("token"))
        .and_then(Value::as_str);
    if token.is_some() {
        let ip = socket
            .req_parts()
            .extensions
            .get::<crate::accept::ClientAddr>()
            .map(|a| a.0.ip());
        let allowed = match (ip, checks.lock()) {
            (Some(ip), Ok(mut checks)) => checks.take(ip, std::time::Instant::now()),
            _ => true,
        };
        if !allowed {
            return Err(Refused(switchboard_core::auth::AuthError::RateLimited));
        }
    }
    let claims = auth
        .admit(token, crate::unix_now(), None, None)
        .map_err(Refused)?;
    socket.extensions.insert(Grant(claims));
    Ok(())
}

/// The claims a socket was admitted with, if room tokens are on.
pub(crate) fn grant(socket: &SocketRef) -> Option<switchboard_core::auth::Claims> {
    socket.extensions.get::<Grant>().map(|g| g.0)
}

/// The socket's id in rosters, `from` and `target`: its token's identity when it has one,
/// else socket.io's own id.
pub(crate) fn identity(
    socket: &SocketRef,
    grant: Option<&switchboard_core::auth::Claims>,
) -> Arc<str> {
    match grant.and_then(|g| g.sub.as_ref()) {
        Some(sub) => sub.as_str().into(),
        None => socket.id.as_str().into(),
    }
}

/// The socket.io layer for the router.
pub(crate) fn layer(
    hub: HubSender,
    next_conn: Arc<AtomicU64>,
    auth: Option<switchboard_core::auth::AuthConfig>,
    limits: switchboard_core::Limits,
    cluster: Option<crate::cluster::registry::Commands>,
) -> SocketIoLayer {
    let admission = Admission {
        auth,
        checks: Arc::new(std::sync::Mutex::new(switchboard_core::SourceBudgets::new(
            limits.joins_per_source,
        ))),
        cluster,
        hub: hub.clone(),
        next_conn,
    };
    let (layer, io) = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_PAYLOAD)
        // The same limit on the websocket transport (Node applies `maxHttpBufferSize` to both).
        .ws_max_message_size(MAX_PAYLOAD as usize)
        .ws_max_frame_size(MAX_PAYLOAD as usize)
        .max_buffer_size(SOCKET_BUFFER)
        .build_layer();
    let handler = move |socket: SocketRef| {
        // Every admitted socket has its id (`admit` runs first).
        let queued = socket
            .extensions
            .get::<AssignedConn>()
            .map(|a| on_connect(socket, a.0, &hub));
        async move {
            if let Some(queued) = queued {
                let _ = queued.await;
            }
        }
    };
    io.ns(
        "/",
        handler.with(move |socket: SocketRef, data: TryData<Value>| {
            admit(socket, data, admission.clone())
        }),
    );
    layer
}

/// Registers a socket.io connection's handlers, then tells the hub they are in place (the
/// hub knows the socket since [`admit`]). Every handler hands its input to the hub when
/// socketioxide calls it, in the order the packets arrived: socketioxide runs a handler's
/// future as its own task, so anything done inside that future can overtake an earlier
/// packet's (found by `switchboard bench relay --protocol socketio`: reordered and, at
/// disconnect, lost messages).
fn on_connect(socket: SocketRef, conn: ConnId, hub: &HubSender) -> crate::hub_task::Queued {
    let id = identity(&socket, grant(&socket).as_ref());
    for event in SioRelay::ALL {
        let hub = hub.clone();
        let id = Arc::clone(&id);
        socket.on(
            event.as_str(),
            move |TryData(data): TryData<Value>, WantsAck(wants), ack: AckSender| {
                let input = relay_input(event, data.map_err(|e| e.to_string()), &id);
                let queued = hub.sio(conn, input, wants.then_some(ack));
                async move {
                    let _ = queued.await;
                }
            },
        );
    }
    {
        let hub = hub.clone();
        socket.on(
            "join",
            move |TryData(data): TryData<Value>, WantsAck(wants), ack: AckSender| {
                let input = join_input(data.map_err(|e| e.to_string()));
                let queued = hub.sio(conn, input, wants.then_some(ack));
                async move {
                    let _ = queued.await;
                }
            },
        );
    }
    {
        let hub = hub.clone();
        socket.on("leave", move |WantsAck(wants), ack: AckSender| {
            let queued = hub.sio(conn, SioInput::Leave, wants.then_some(ack));
            async move {
                let _ = queued.await;
            }
        });
    }
    {
        let hub = hub.clone();
        socket.on_disconnect(move || {
            let queued = hub.disconnect(conn);
            async move {
                let _ = queued.await;
            }
        });
    }
    hub.sio_ready(conn)
}

/// The hub input for a client event: a relay event, `join` or `leave` (other events have no
/// handler and never reach the hub; here they are `Invalid`).
pub(crate) fn input_for(event: &str, data: Result<Value, String>, from: &str) -> SioInput {
    match event {
        "join" => join_input(data),
        "leave" => SioInput::Leave,
        _ => match SioRelay::ALL.into_iter().find(|r| r.as_str() == event) {
            Some(relay) => relay_input(relay, data, from),
            None => invalid(event, "no such event"),
        },
    }
}

fn invalid(event: &str, reason: impl Into<Box<str>>) -> SioInput {
    SioInput::Invalid {
        event: event.into(),
        reason: reason.into(),
    }
}

/// A relay event's payload: an object with a string `target`; `from` is set to the sender.
fn relay_input(event: SioRelay, data: Result<Value, String>, from: &str) -> SioInput {
    let name = event.as_str();
    let mut v = match data {
        Ok(Value::Object(map)) => map,
        Ok(_) => return invalid(name, "the payload must be an object with a string `target`"),
        Err(e) => return invalid(name, format!("unreadable payload: {e}")),
    };
    let target: Box<str> = match v.get("target") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= SIO_MAX_NAME => t.as_str().into(),
        Some(Value::String(_)) => {
            return invalid(name, format!("`target` must be 1 to {SIO_MAX_NAME} bytes"));
        }
        _ => return invalid(name, "the payload has no string `target`"),
    };
    v.insert("from".into(), Value::String(from.into()));
    match serde_json::value::to_raw_value(&v) {
        Ok(payload) => SioInput::Relay {
            event,
            target,
            payload: switchboard_proto::Opaque::from_boxed(payload),
        },
        Err(e) => invalid(name, format!("unencodable payload: {e}")),
    }
}

/// `join`'s payload: `{room}` or the room name itself.
fn join_input(data: Result<Value, String>) -> SioInput {
    let room = match data {
        Ok(Value::String(r)) => r,
        Ok(Value::Object(mut m)) => match m.remove("room") {
            Some(Value::String(r)) => r,
            _ => return invalid("join", "the payload has no string `room`"),
        },
        Ok(_) => return invalid("join", "the payload must be `{room}` or a room name"),
        Err(e) => return invalid("join", format!("unreadable payload: {e}")),
    };
    if room.is_empty() || room.len() > SIO_MAX_NAME {
        return invalid("join", format!("`room` must be 1 to {SIO_MAX_NAME} bytes"));
    }
    SioInput::Join { room: room.into() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relay_payloads_get_from_stamped_and_bad_ones_are_invalid() {
        let SioInput::Relay {
            target, payload, ..
        } = relay_input(
            SioRelay::Offer,
            Ok(json!({"target": "b", "sdp": {"type": "offer"}, "from": "forged"})),
            "a",
        )
        else {
            panic!()
        };
        assert_eq!(&*target, "b");
        let v: Value = serde_json::from_str(payload.json()).unwrap();
        assert_eq!(
            v,
            json!({"target": "b", "sdp": {"type": "offer"}, "from": "a"})
        );
        for bad in [
            json!("text"),
            json!({"sdp": 1}),
            json!({"target": 5}),
            json!({"target": ""}),
        ] {
            assert!(matches!(
                relay_input(SioRelay::Answer, Ok(bad), "a"),
                SioInput::Invalid { .. }
            ));
        }
        assert!(matches!(
            relay_input(
                SioRelay::Answer,
                Ok(json!({"target": "x".repeat(300)})),
                "a"
            ),
            SioInput::Invalid { .. }
        ));
    }

    #[test]
    fn join_takes_an_object_or_a_name() {
        assert_eq!(
            join_input(Ok(json!({"room": "r"}))),
            SioInput::Join { room: "r".into() }
        );
        assert_eq!(
            join_input(Ok(json!("r"))),
            SioInput::Join { room: "r".into() }
        );
        assert!(matches!(join_input(Ok(json!(3))), SioInput::Invalid { .. }));
        assert!(matches!(
            join_input(Ok(json!({"room": ""}))),
            SioInput::Invalid { .. }
        ));
    }
}
