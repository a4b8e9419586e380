//! Switchboard's sans-IO signaling hub.
//!
//! [`Hub`] owns every room and connection of a server and applies the protocol's rules. It
//! does no IO and never reads the clock: the IO edge feeds it inputs with the current time
//! and drains what it must do.
//!
//! # Architecture
//! ```text
//!  edge ── handle_am_connect / handle_am_message / handle_am_activity ──────▶ Hub
//!  edge ── handle_sio_connect / handle_sio_message ──────────────────────────▶ Hub
//!  edge ── handle_pj_connect / handle_pj_message ────────────────────────────▶ Hub
//!  edge ── handle_disconnect, handle_timeout(now) when poll_timeout() is due ▶ Hub
//!  edge ── handle_am_seat / handle_node_message / handle_node_down (cluster) ▶ Hub
//!  edge ◀── poll_output(): AmSend | SioEmit | SioAck | PjSend | Frame | Cluster | Close
//!  edge ◀── poll_event(): Joined | Left (for logs) ────────────────────────── Hub
//! ```
//! After every `handle_*` call the edge drains [`Hub::poll_output`] until it returns `None`
//! and sleeps until [`Hub::poll_timeout`]. Outputs for one connection come out in the order
//! they must be delivered, so a FIFO queue per connection keeps the protocol's ordering.
//!
//! Three dialects share the hub (one connection table, one `max_connections`, one set of
//! counters): Ant Media P2P ([`Hub::handle_am_connect`], [`Hub::handle_am_message`]), the socket.io
//! relay ([`Hub::handle_sio_connect`], [`Hub::handle_sio_message`]: relay to a socket id with `from`
//! stamped, rooms with rosters, acks) and the PeerJS server ([`Hub::handle_pj_connect`],
//! [`Hub::handle_pj_message`]: ids with tokens, a bounded queue with `EXPIRE`, `HEARTBEAT`
//! liveness). [`Hub::handle_disconnect`] and [`Hub::handle_timeout`] serve all three.
//!
//! The Ant Media rules are its P2P mode (see `docs/PROTOCOLS.md`): a room (`streamId`,
//! scoped by app name) holds two peers; the first joiner receives `start` when the second
//! arrives; offers, answers, candidates and `peerMessageCommand`s go to the other peer only;
//! leaving, closing or going silent for the idle timeout sends `stop` to the other peer and
//! frees the seat at once, so a room is never left "full" with nobody in it.
//!
//! # Bounds
//! Connections are capped by [`Config::max_connections`]; each connection is in at most one
//! room and rooms hold at most two peers, so rooms are bounded too. Outputs are queued only
//! until the edge drains them after each input. The timer heap holds at most one live entry
//! per connection plus entries of connections that closed less than one idle timeout ago.
//!
//! # Example
//! ```
//! use std::time::{Duration, Instant};
//! use switchboard_core::{App, Config, ConnId, Hub, Output};
//! use switchboard_proto::antmedia::{decode, ServerMessage};
//!
//! let now = Instant::now();
//! let mut hub = Hub::new(Config::default());
//! let app = App::new("LiveApp").unwrap();
//! hub.handle_am_connect(ConnId(1), app.clone(), None, None, None, now);
//! hub.handle_am_message(ConnId(1), decode(r#"{"command":"join","streamId":"r"}"#), now);
//! let Some(Output::AmSend { conn, msg }) = hub.poll_output() else { panic!() };
//! assert_eq!(conn, ConnId(1));
//! assert_eq!(msg.encode(), r#"{"command":"notification","definition":"joined","streamId":"r"}"#);
//! assert!(hub.poll_output().is_none());
//! ```

/// docs/ARCHITECTURE.md: its Rust blocks (the hub's drive loop) are compiled and run as this
/// crate's doctests, so the API the map shows cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ARCHITECTURE.md")]
pub struct ArchitectureDoc;

pub mod auth;
mod hub;
pub mod ice;
mod timers;

pub use hub::{
    AckId, Change, CloseReason, ClusterOutput, ClusterStats, Config, ConnId, Dialect, ErrorCounts,
    Hub, InvalidConfig, JoinOutcome, LeaveReason, Limits, MAX_EVENTS, MeshJoin, Output,
    PJ_MAX_NAME, PeerEvent, PeerInfo, PeerJsConfig, PerDialect, PjClaim, PjClaimOutcome,
    PjSendOutcome, PjSent, REFUSAL_WINDOW, REFUSALS_BEFORE_CLOSE, RateLimit, RemotePeer,
    RouteOutcome, RouteScope, SIO_MAX_NAME, Seat, SeatClaim, SeatReply, SioAck, SioEmit, SioError,
    SioInput, SioJoin, SioRelay, SioRoute, SourceBudgets, Stats, source_key,
};
pub use switchboard_proto::{App, InvalidApp, MAX_APP_LEN};
