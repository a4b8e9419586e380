//! The admin API under `/api/v1/`: list peers, rooms and apps, kick a peer, close a room,
//! node information; `Authorization: Bearer <--admin-key>` on every route but the OpenAPI
//! document (`/api/v1/openapi.json`, generated from these handlers by `utoipa`). Without an
//! admin key the routes answer `403 admin_api_off`. Errors are JSON: `{"error": <code>,
//! "message": <sentence>}`.
//!
//! The rules (what a kick does in each dialect) are the hub's ([`switchboard_core::Hub::handle_kick`]);
//! this module reads requests, asks the hub task, and writes JSON.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_core::{ConnId, Dialect, PeerInfo};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::routes::AppState;

/// Most peers in one page of `GET /api/v1/peers` (the default page: 100).
pub(crate) const MAX_PAGE: usize = 1000;

/// An error: a stable code and a sentence.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiError {
    /// `admin_api_off`, `unauthorized`, `not_found`, `bad_request`, `unavailable`.
    error: &'static str,
    /// What went wrong, for people.
    message: String,
}

fn fail(status: StatusCode, error: &'static str, message: impl Into<String>) -> Response {
    let body = Json(ApiError {
        error,
        message: message.into(),
    });
    if status == StatusCode::UNAUTHORIZED {
        return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
    }
    (status, body).into_response()
}

/// An error response, boxed (a small `Err`).
pub(crate) struct Rejection(Box<Response>);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Lets a request through to an admin route if it carries the admin key.
pub(crate) async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(r) => r.into_response(),
    }
}

/// The request's key against `--admin-key`; the error response otherwise.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(key) = &state.config().admin_key else {
        return Err(Rejection(Box::new(fail(
            StatusCode::FORBIDDEN,
            "admin_api_off",
            "the admin API is off: start Switchboard with --admin-key (SWITCHBOARD_ADMIN_KEY)",
        ))));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| crate::metrics::key_matches(g, key)) {
        Ok(())
    } else {
        Err(Rejection(Box::new(fail(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <the --admin-key>",
        ))))
    }
}

/// A path or query that did not parse: `400 bad_request` saying why, as JSON.
fn parsed<T>(r: Result<T, impl std::fmt::Display>) -> Result<T, Rejection> {
    r.map_err(|e| {
        Rejection(Box::new(fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        )))
    })
}

fn hub_gone() -> Response {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server is shutting down",
    )
}

/// A connection and what the server knows of it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Peer {
    /// The connection id (unique on this node).
    conn: u64,
    /// `antmedia`, `socketio` or `peerjs`.
    dialect: &'static str,
    /// The Ant Media app, `/` for socket.io, the PeerJS key.
    app: String,
    /// The room it is in (PeerJS: its id), if any.
    room: Option<String>,
    /// Its socket.io or PeerJS id.
    id: Option<String>,
    /// The client's address.
    remote_address: Option<String>,
    /// When it connected, Unix seconds (Ant Media and PeerJS).
    connected_at: Option<u64>,
    /// When it joined its room (PeerJS: opened its id), Unix seconds.
    joined_at: Option<u64>,
    /// Messages it sent (Ant Media and PeerJS).
    messages_in: Option<u64>,
    /// Messages written to it (Ant Media and PeerJS).
    messages_out: Option<u64>,
}

fn peer_json(p: PeerInfo, x: crate::hub_task::ConnExtra) -> Peer {
    Peer {
        conn: p.conn.0,
        dialect: p.dialect.as_str(),
        app: p.app.into(),
        room: p.room.map(Into::into),
        id: p.id.map(Into::into),
        remote_address: x.remote_address.map(|a| a.to_string()),
        connected_at: x.connected_at,
        joined_at: x.joined_at,
        messages_in: x.messages_in,
        messages_out: x.messages_out,
    }
}

/// One page of peers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PeerPage {
    /// In connection order.
    peers: Vec<Peer>,
    /// Pass it as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<u64>,
}

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct PageQuery {
    /// The connection id the page starts after.
    after: Option<u64>,
    /// Peers in the page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Lists connected peers, a page at a time.
#[utoipa::path(get, path = "/api/v1/peers", params(PageQuery), security(("admin_key" = [])),
    responses((status = 200, body = PeerPage), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn peers(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let Query(q) = parsed(query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = q.after.map(ConnId);
    let page = state
        .hub()
        .admin(move |ctx| {
            let list = ctx.hub.peers(after, limit + 1);
            list.into_iter()
                .map(|p| {
                    let x = ctx.extra(p.conn);
                    peer_json(p, x)
                })
                .collect::<Vec<_>>()
        })
        .await;
    let Some(mut peers) = page else {
        return Ok(hub_gone());
    };
    let more = peers.len() > limit;
    peers.truncate(limit);
    let next_after = more.then(|| peers.last().map(|p| p.conn)).flatten();
    Ok(Json(PeerPage { peers, next_after }).into_response())
}

/// A connection, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ConnPath {
    /// The connection id.
    conn: u64,
}

/// One peer.
#[utoipa::path(get, path = "/api/v1/peers/{conn}", security(("admin_key" = [])),
    params(ConnPath),
    responses((status = 200, body = Peer), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn peer(
    State(state): State<AppState>,
    path: Result<Path<ConnPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(ConnPath { conn }) = parsed(path)?;
    let found = state
        .hub()
        .admin(move |ctx| {
            let p = ctx.hub.peer(ConnId(conn))?;
            let x = ctx.extra(p.conn);
            Some(peer_json(p, x))
        })
        .await;
    Ok(match found {
        None => hub_gone(),
        Some(None) => no_peer(conn),
        Some(Some(p)) => Json(p).into_response(),
    })
}

fn no_peer(conn: u64) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no connection {conn} on this node"),
    )
}

/// How many connections a kick or a room's closing ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Kicked {
    kicked: usize,
}

/// Kicks a peer: it gets its dialect's normal close (Ant Media `stop` then a close frame,
/// socket.io a disconnect, PeerJS a close), and its partner or room is told as of a leave.
#[utoipa::path(delete, path = "/api/v1/peers/{conn}", security(("admin_key" = [])),
    params(ConnPath),
    responses((status = 200, body = Kicked), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn kick(
    State(state): State<AppState>,
    path: Result<Path<ConnPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(ConnPath { conn }) = parsed(path)?;
    Ok(
        match state
            .hub()
            .admin(move |ctx| ctx.hub.handle_kick(ConnId(conn)))
            .await
        {
            None => hub_gone(),
            Some(false) => no_peer(conn),
            Some(true) => Json(Kicked { kicked: 1 }).into_response(),
        },
    )
}

/// A room and its members on this node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Room {
    dialect: &'static str,
    app: String,
    room: String,
    /// The members' connection ids.
    members: Vec<u64>,
}

fn dialect(name: &str) -> Result<Dialect, Rejection> {
    match name {
        "antmedia" => Ok(Dialect::AntMedia),
        "socketio" => Ok(Dialect::SocketIo),
        "peerjs" => Ok(Dialect::PeerJs),
        _ => Err(Rejection(Box::new(fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "dialect is antmedia, socketio or peerjs",
        )))),
    }
}

/// A room, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RoomPath {
    /// `antmedia`, `socketio` or `peerjs`.
    dialect: String,
    /// The Ant Media app, `/` for socket.io (written `%2F`), the PeerJS key.
    app: String,
    /// The room (PeerJS: an id).
    room: String,
}

/// A room's members on this node (PeerJS: the holder of the id).
#[utoipa::path(get, path = "/api/v1/rooms/{dialect}/{app}/{room}", security(("admin_key" = [])),
    params(RoomPath),
    responses((status = 200, body = Room), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn room(
    State(state): State<AppState>,
    path: Result<Path<RoomPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(p) = parsed(path)?;
    let dialect = dialect(&p.dialect)?;
    let (a, r) = (p.app.clone(), p.room.clone());
    let Some(members) = state
        .hub()
        .admin(move |ctx| ctx.hub.room_members(dialect, &a, &r))
        .await
    else {
        return Ok(hub_gone());
    };
    if members.is_empty() {
        return Ok(no_room(&p.room));
    }
    Ok(Json(Room {
        dialect: dialect.as_str(),
        app: p.app,
        room: p.room,
        members: members.into_iter().map(|c| c.0).collect(),
    })
    .into_response())
}

fn no_room(room: &str) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no room {room:?} with members on this node"),
    )
}

/// Closes a room: every member on this node is kicked.
#[utoipa::path(delete, path = "/api/v1/rooms/{dialect}/{app}/{room}", security(("admin_key" = [])),
    params(RoomPath),
    responses((status = 200, body = Kicked), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn close_room(
    State(state): State<AppState>,
    path: Result<Path<RoomPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(p) = parsed(path)?;
    let dialect = dialect(&p.dialect)?;
    let (app, r) = (p.app, p.room.clone());
    Ok(
        match state
            .hub()
            .admin(move |ctx| ctx.hub.handle_close_room(dialect, &app, &r))
            .await
        {
            None => hub_gone(),
            Some(0) => no_room(&p.room),
            Some(kicked) => Json(Kicked { kicked }).into_response(),
        },
    )
}

/// An app, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AppPath {
    /// `antmedia`, `socketio` or `peerjs`.
    dialect: String,
    /// The Ant Media app, `/` for socket.io (written `%2F`), the PeerJS key.
    app: String,
}

/// Which page of rooms.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RoomQuery {
    /// The room name the page starts after.
    after: Option<String>,
    /// Rooms in the page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// A room in a list: its name and members on this node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomCount {
    room: String,
    members: usize,
}

/// One page of an app's rooms.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomPage {
    /// In name order.
    rooms: Vec<RoomCount>,
    /// Pass it as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// An app's rooms with members on this node, a page at a time (PeerJS: its ids).
#[utoipa::path(get, path = "/api/v1/rooms/{dialect}/{app}", security(("admin_key" = [])),
    params(AppPath, RoomQuery),
    responses((status = 200, body = RoomPage), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn rooms(
    State(state): State<AppState>,
    path: Result<Path<AppPath>, PathRejection>,
    query: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let (Path(p), Query(q)) = (parsed(path)?, parsed(query)?);
    let dialect = dialect(&p.dialect)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let Some(mut rooms) = state
        .hub()
        .admin(move |ctx| {
            ctx.hub
                .rooms_of(dialect, &p.app, q.after.as_deref(), limit + 1)
        })
        .await
    else {
        return Ok(hub_gone());
    };
    let more = rooms.len() > limit;
    rooms.truncate(limit);
    let next_after = more
        .then(|| rooms.last().map(|r| r.0.to_string()))
        .flatten();
    let rooms = rooms
        .into_iter()
        .map(|(room, members)| RoomCount {
            room: room.into(),
            members,
        })
        .collect();
    Ok(Json(RoomPage { rooms, next_after }).into_response())
}

/// Counts by dialect.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DialectCounts {
    antmedia: u64,
    socketio: u64,
    peerjs: u64,
}

/// An app (namespace of rooms) with peers in it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppCount {
    dialect: &'static str,
    /// The app; Ant Media apps past `--metrics-max-apps` are counted together as `_other`.
    app: String,
    joined_peers: i64,
}

/// Apps with joined peers on this node.
#[utoipa::path(get, path = "/api/v1/apps", security(("admin_key" = [])),
    responses((status = 200, body = [AppCount]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn apps(State(state): State<AppState>) -> Result<Response, Rejection> {
    let Some(stats) = state.hub().stats_with_meter().await else {
        return Ok(hub_gone());
    };
    let mut apps: Vec<AppCount> = stats
        .meter
        .joined
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(d, app, n)| AppCount {
            dialect: d.as_str(),
            app: app.to_string(),
            joined_peers: *n,
        })
        .collect();
    apps.sort_by(|a, b| (a.dialect, &a.app).cmp(&(b.dialect, &b.app)));
    Ok(Json(apps).into_response())
}

/// This node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Node {
    version: &'static str,
    /// The node's id in cluster mode.
    node_id: Option<String>,
    uptime_seconds: u64,
    connections: DialectCounts,
    rooms: DialectCounts,
    /// Live nodes in cluster mode.
    cluster_nodes: Option<usize>,
}

/// This node: version, uptime, connections and rooms by dialect.
#[utoipa::path(get, path = "/api/v1/node", security(("admin_key" = [])),
    responses((status = 200, body = Node), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn node(State(state): State<AppState>) -> Result<Response, Rejection> {
    let Some(stats) = state.hub().stats().await else {
        return Ok(hub_gone());
    };
    let counts = |p: switchboard_core::PerDialect<usize>| DialectCounts {
        antmedia: p.antmedia as u64,
        socketio: p.socketio as u64,
        peerjs: p.peerjs as u64,
    };
    Ok(Json(Node {
        version: env!("CARGO_PKG_VERSION"),
        node_id: state.config().cluster.as_ref().map(|c| c.node_id.clone()),
        uptime_seconds: state.uptime().as_secs(),
        connections: counts(stats.hub.connections_by_dialect),
        rooms: counts(stats.hub.rooms_by_dialect),
        cluster_nodes: state.cluster_nodes(),
    })
    .into_response())
}

/// The OpenAPI 3.1 document of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard admin API", description = "Peers, rooms and apps of one Switchboard node; kick a peer, close a room."),
    paths(node, peers, peer, kick, rooms, room, close_room, apps),
    components(schemas(ApiError, Peer, PeerPage, Kicked, Room, RoomCount, RoomPage, DialectCounts, AppCount, Node)),
    modifiers(&BearerKey)
)]
pub(crate) struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "admin_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The admin routes, behind [`guard`].
pub(crate) fn routes(state: &AppState) -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/node", get(node))
        .route("/api/v1/apps", get(apps))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/peers/{conn}", get(peer).delete(kick))
        .route("/api/v1/rooms/{dialect}/{app}", get(rooms))
        .route(
            "/api/v1/rooms/{dialect}/{app}/{room}",
            get(room).delete(close_room),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
