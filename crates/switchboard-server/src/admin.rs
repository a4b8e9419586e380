//! The admin API under `/api/v1/`: list peers, rooms and apps, kick a peer, close a room,
//! node information; `Authorization: Bearer <--admin-key>` on every route but the OpenAPI
//! document (`/api/v1/openapi.json`, generated from these handlers by `utoipa`). Without an
//! admin key the routes answer `403 admin_api_off`. Errors are JSON: `{"error": <code>,
//! "message": <sentence>}`.
//!
//! The rules (what a kick does in each dialect) are the hub's ([`switchboard_core::Hub::handle_kick`]);
//! this module reads requests, asks the hub task (`ops.rs`), and writes JSON. In cluster mode
//! every route answers for the whole cluster: the other live nodes are asked over Redis
//! (`cluster/admin.rs`), their answers merged with this node's, and the nodes that did not
//! answer in time are listed in `unreachable_nodes`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::routes::AppState;

pub(crate) mod ops;
pub(crate) use ops::MAX_PAGE;
use ops::{Answer, AppCount, DialectCounts, DialectName, NodeSummary, Op, Peer, RoomCount};

/// An error: a stable code and a sentence.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiError {
    /// `admin_api_off`, `unauthorized`, `not_found`, `bad_request`, `ambiguous`,
    /// `unavailable`.
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

fn hub_gone() -> Rejection {
    Rejection(Box::new(fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server is shutting down",
    )))
}

/// Answers gathered from this node and (cluster mode) the other live nodes, by node id.
struct Gathered {
    answers: Vec<(Option<String>, Answer)>,
    /// Live nodes that gave no answer in time.
    unreachable: Vec<String>,
}

/// This node's answer to `op`.
async fn here(state: &AppState, op: Op) -> Result<Answer, Rejection> {
    match ops::answer(state.hub(), state.node_id(), state.started(), op).await {
        Answer::Unavailable => Err(hub_gone()),
        a => Ok(a),
    }
}

/// `op` asked of this node and, in cluster mode, of every other live node.
async fn everywhere(state: &AppState, op: Op) -> Result<Gathered, Rejection> {
    let others = async {
        match state.cluster_admin() {
            Some(c) => c.ask(&c.others(), &op).await,
            None => (Vec::new(), Vec::new()),
        }
    };
    let (local, (remote, unreachable)) = tokio::join!(here(state, op.clone()), others);
    let mut answers = vec![(state.node_id().map(str::to_owned), local?)];
    answers.extend(remote.into_iter().map(|(n, a)| (Some(n), a)));
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Gathered {
        answers,
        unreachable,
    })
}

/// `op` asked of one node: this one (`None`, or its own id) or another live node.
async fn on_node(state: &AppState, node: Option<&str>, op: Op) -> Result<Answer, Rejection> {
    let (Some(node), Some(c)) = (node, state.cluster_admin()) else {
        return here(state, op).await;
    };
    if node == c.node() {
        return here(state, op).await;
    }
    if !c.others().iter().any(|n| n == node) {
        return Err(Rejection(Box::new(fail(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live node {node:?}"),
        ))));
    }
    let (mut answers, _) = c.ask(&[node.to_owned()], &op).await;
    answers.pop().map(|(_, a)| a).ok_or_else(|| {
        Rejection(Box::new(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("node {node:?} did not answer"),
        )))
    })
}

/// One page of peers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PeerPage {
    /// In connection order (cluster mode: by node, then connection).
    peers: Vec<Peer>,
    /// Pass it as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<u64>,
    /// Cluster mode: pass it as `after_node` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_node: Option<String>,
    /// Cluster mode: live nodes that did not answer in time (their peers are missing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct PageQuery {
    /// The connection id the page starts after.
    after: Option<u64>,
    /// Cluster mode: the node of `after` (the `next_after_node` of the previous page).
    after_node: Option<String>,
    /// Peers in the page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Lists connected peers, a page at a time (cluster mode: of every node).
#[utoipa::path(get, path = "/api/v1/peers", params(PageQuery), security(("admin_key" = [])),
    responses((status = 200, body = PeerPage), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn peers(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let Query(q) = parsed(query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (mut peers, unreachable) = match state.cluster_admin() {
        None => match here(
            &state,
            Op::Peers {
                after: q.after,
                limit: limit + 1,
            },
        )
        .await?
        {
            Answer::Peers(p) => (p, Vec::new()),
            _ => (Vec::new(), Vec::new()),
        },
        Some(c) => {
            // Nodes in id order; the page goes on from `after` on `after_node`.
            let mut nodes = c.others();
            nodes.push(c.node().to_owned());
            nodes.sort();
            let start = q.after_node.as_deref().unwrap_or("");
            let asks = nodes.into_iter().filter(|n| n.as_str() >= start).map(|n| {
                let after = if n == start { q.after } else { None };
                let state = state.clone();
                async move {
                    let op = Op::Peers {
                        after,
                        limit: limit + 1,
                    };
                    (on_node(&state, Some(&n), op).await, n)
                }
            });
            let mut peers = Vec::new();
            let mut unreachable = Vec::new();
            for (answer, n) in futures_util::future::join_all(asks).await {
                match answer {
                    Ok(Answer::Peers(p)) => peers.extend(p),
                    Err(r) if n == c.node() => return Err(r),
                    _ => unreachable.push(n),
                }
            }
            (peers, unreachable)
        }
    };
    peers.sort_by(|a, b| (&a.node, a.conn).cmp(&(&b.node, b.conn)));
    let more = peers.len() > limit;
    peers.truncate(limit);
    let last = more.then(|| peers.last()).flatten();
    Ok(Json(PeerPage {
        next_after: last.map(|p| p.conn),
        next_after_node: last.and_then(|p| p.node.clone()),
        peers,
        unreachable_nodes: unreachable,
    })
    .into_response())
}

/// A connection, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ConnPath {
    /// The connection id.
    conn: u64,
}

/// Which node holds the connection.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct NodeQuery {
    /// Cluster mode: the node that holds it (its `node` in the peer list). Without it every
    /// node is asked, and an id found on two nodes is `409 ambiguous`.
    node: Option<String>,
}

/// Where `conn` is, and what it is: asked of `node`, or of every node.
async fn locate(
    state: &AppState,
    conn: u64,
    node: Option<String>,
) -> Result<(Option<String>, Peer), Rejection> {
    let found: Vec<(Option<String>, Peer)> = if node.is_some() || state.cluster_admin().is_none() {
        match on_node(state, node.as_deref(), Op::Peer { conn }).await? {
            Answer::Peer(Some(p)) => vec![(node, p)],
            _ => Vec::new(),
        }
    } else {
        let g = everywhere(state, Op::Peer { conn }).await?;
        g.answers
            .into_iter()
            .filter_map(|(n, a)| match a {
                Answer::Peer(Some(p)) => Some((n, p)),
                _ => None,
            })
            .collect()
    };
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(no_peer(conn)),
        (Some(_), Some(_)) => Err(Rejection(Box::new(fail(
            StatusCode::CONFLICT,
            "ambiguous",
            format!("connection {conn} is on more than one node: pass ?node="),
        )))),
    }
}

/// One peer.
#[utoipa::path(get, path = "/api/v1/peers/{conn}", security(("admin_key" = [])),
    params(ConnPath, NodeQuery),
    responses((status = 200, body = Peer), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn peer(
    State(state): State<AppState>,
    path: Result<Path<ConnPath>, PathRejection>,
    query: Result<Query<NodeQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let (Path(ConnPath { conn }), Query(q)) = (parsed(path)?, parsed(query)?);
    let (_, p) = locate(&state, conn, q.node).await?;
    Ok(Json(p).into_response())
}

fn no_peer(conn: u64) -> Rejection {
    Rejection(Box::new(fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no connection {conn}"),
    )))
}

/// How many connections a kick or a room's closing ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Kicked {
    kicked: usize,
    /// Cluster mode: live nodes that did not answer in time (closing a room).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// Kicks a peer: it gets its dialect's normal close (Ant Media `stop` then a close frame,
/// socket.io a disconnect, PeerJS a close), and its partner or room is told as of a leave.
/// In cluster mode the node that holds it does it.
#[utoipa::path(delete, path = "/api/v1/peers/{conn}", security(("admin_key" = [])),
    params(ConnPath, NodeQuery),
    responses((status = 200, body = Kicked), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn kick(
    State(state): State<AppState>,
    path: Result<Path<ConnPath>, PathRejection>,
    query: Result<Query<NodeQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let (Path(ConnPath { conn }), Query(q)) = (parsed(path)?, parsed(query)?);
    let node = match (&q.node, state.cluster_admin()) {
        (None, Some(_)) => locate(&state, conn, None).await?.0,
        _ => q.node,
    };
    match on_node(&state, node.as_deref(), Op::Kick { conn }).await? {
        Answer::Kicked(true) => Ok(Json(Kicked {
            kicked: 1,
            unreachable_nodes: Vec::new(),
        })
        .into_response()),
        _ => Err(no_peer(conn)),
    }
}

/// A room's member.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    conn: u64,
    /// The node that holds it, in cluster mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// A room and its members.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Room {
    dialect: DialectName,
    app: String,
    room: String,
    /// By node, then connection id.
    members: Vec<Member>,
    /// Cluster mode: live nodes that did not answer in time (their members are missing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// A room, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RoomPath {
    /// `antmedia`, `socketio` or `peerjs`.
    #[param(inline)]
    dialect: DialectName,
    /// The Ant Media app, `/` for socket.io (written `%2F`), the PeerJS key.
    app: String,
    /// The room (PeerJS: an id).
    room: String,
}

/// A room's members (PeerJS: the holder of the id).
#[utoipa::path(get, path = "/api/v1/rooms/{dialect}/{app}/{room}", security(("admin_key" = [])),
    params(RoomPath),
    responses((status = 200, body = Room), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn room(
    State(state): State<AppState>,
    path: Result<Path<RoomPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(p) = parsed(path)?;
    let op = Op::Room {
        dialect: p.dialect,
        app: p.app.clone(),
        room: p.room.clone(),
    };
    let g = everywhere(&state, op).await?;
    let mut members = Vec::new();
    for (node, a) in g.answers {
        if let Answer::Members(m) = a {
            members.extend(m.into_iter().map(|conn| Member {
                conn,
                node: node.clone(),
            }));
        }
    }
    if members.is_empty() {
        return Err(no_room(&p.room));
    }
    Ok(Json(Room {
        dialect: p.dialect,
        app: p.app,
        room: p.room,
        members,
        unreachable_nodes: g.unreachable,
    })
    .into_response())
}

fn no_room(room: &str) -> Rejection {
    Rejection(Box::new(fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no room {room:?} with members"),
    )))
}

/// Closes a room: every member is kicked (cluster mode: on every node).
#[utoipa::path(delete, path = "/api/v1/rooms/{dialect}/{app}/{room}", security(("admin_key" = [])),
    params(RoomPath),
    responses((status = 200, body = Kicked), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn close_room(
    State(state): State<AppState>,
    path: Result<Path<RoomPath>, PathRejection>,
) -> Result<Response, Rejection> {
    let Path(p) = parsed(path)?;
    let op = Op::CloseRoom {
        dialect: p.dialect,
        app: p.app,
        room: p.room.clone(),
    };
    let g = everywhere(&state, op).await?;
    let kicked = g
        .answers
        .iter()
        .map(|(_, a)| match a {
            Answer::Closed(n) => *n,
            _ => 0,
        })
        .sum();
    if kicked == 0 {
        return Err(no_room(&p.room));
    }
    Ok(Json(Kicked {
        kicked,
        unreachable_nodes: g.unreachable,
    })
    .into_response())
}

/// An app, as its routes name it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AppPath {
    /// `antmedia`, `socketio` or `peerjs`.
    #[param(inline)]
    dialect: DialectName,
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

/// One page of an app's rooms.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomPage {
    /// In name order; members counted over every node.
    rooms: Vec<RoomCount>,
    /// Pass it as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
    /// Cluster mode: live nodes that did not answer in time (their members are missing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// An app's rooms with members, a page at a time (PeerJS: its ids).
#[utoipa::path(get, path = "/api/v1/rooms/{dialect}/{app}", security(("admin_key" = [])),
    params(AppPath, RoomQuery),
    responses((status = 200, body = RoomPage), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn rooms(
    State(state): State<AppState>,
    path: Result<Path<AppPath>, PathRejection>,
    query: Result<Query<RoomQuery>, QueryRejection>,
) -> Result<Response, Rejection> {
    let (Path(p), Query(q)) = (parsed(path)?, parsed(query)?);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let op = Op::Rooms {
        dialect: p.dialect,
        app: p.app,
        after: q.after,
        limit: limit + 1,
    };
    let g = everywhere(&state, op).await?;
    // Each node gave its first `limit + 1` names: the first `limit + 1` of the union are
    // among them, each with every node's members.
    let mut merged = std::collections::BTreeMap::<String, usize>::new();
    for (_, a) in g.answers {
        if let Answer::Rooms(rooms) = a {
            for r in rooms {
                *merged.entry(r.room).or_default() += r.members;
            }
        }
    }
    let more = merged.len() > limit;
    let rooms: Vec<RoomCount> = merged
        .into_iter()
        .take(limit)
        .map(|(room, members)| RoomCount { room, members })
        .collect();
    Ok(Json(RoomPage {
        next_after: more.then(|| rooms.last().map(|r| r.room.clone())).flatten(),
        rooms,
        unreachable_nodes: g.unreachable,
    })
    .into_response())
}

/// Apps with joined peers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppList {
    /// By dialect and name; peers counted over every node.
    apps: Vec<AppCount>,
    /// Cluster mode: live nodes that did not answer in time (their peers are missing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// Apps with joined peers (cluster mode: on any node).
#[utoipa::path(get, path = "/api/v1/apps", security(("admin_key" = [])),
    responses((status = 200, body = AppList), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn apps(State(state): State<AppState>) -> Result<Response, Rejection> {
    let g = everywhere(&state, Op::Apps).await?;
    let mut merged = std::collections::BTreeMap::<(String, String), i64>::new();
    for (_, a) in g.answers {
        if let Answer::Apps(apps) = a {
            for app in apps {
                *merged.entry((app.dialect, app.app)).or_default() += app.joined_peers;
            }
        }
    }
    let apps = merged
        .into_iter()
        .map(|((dialect, app), joined_peers)| AppCount {
            dialect,
            app,
            joined_peers,
        })
        .collect();
    Ok(Json(AppList {
        apps,
        unreachable_nodes: g.unreachable,
    })
    .into_response())
}

/// This node, and in cluster mode every node that answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Node {
    version: String,
    /// The node's id in cluster mode.
    node_id: Option<String>,
    uptime_seconds: u64,
    connections: DialectCounts,
    /// Rooms with members on this node.
    rooms: DialectCounts,
    /// Live nodes in cluster mode.
    cluster_nodes: Option<usize>,
    /// Cluster mode: every live node that answered (this one included), by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<NodeSummary>>,
    /// Cluster mode: live nodes that did not answer in time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreachable_nodes: Vec<String>,
}

/// This node: version, uptime, connections and rooms by dialect (cluster mode: and every
/// node's).
#[utoipa::path(get, path = "/api/v1/node", security(("admin_key" = [])),
    responses((status = 200, body = Node), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn node(State(state): State<AppState>) -> Result<Response, Rejection> {
    let g = everywhere(&state, Op::Node).await?;
    let mut nodes: Vec<NodeSummary> = g
        .answers
        .into_iter()
        .filter_map(|(_, a)| match a {
            Answer::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    let me = state.node_id();
    let Some(i) = nodes.iter().position(|n| n.node_id.as_deref() == me) else {
        return Err(hub_gone());
    };
    let this = if state.cluster_admin().is_some() {
        nodes[i].clone()
    } else {
        nodes.remove(i)
    };
    Ok(Json(Node {
        version: this.version,
        node_id: this.node_id,
        uptime_seconds: this.uptime_seconds,
        connections: this.connections,
        rooms: this.rooms,
        cluster_nodes: state.cluster_nodes(),
        nodes: state.cluster_admin().is_some().then_some(nodes),
        unreachable_nodes: g.unreachable,
    })
    .into_response())
}

/// The OpenAPI 3.1 document of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard admin API", description = "Peers, rooms and apps of a Switchboard node, or of every node of a cluster; kick a peer, close a room."),
    paths(node, peers, peer, kick, rooms, room, close_room, apps),
    components(schemas(ApiError, Peer, PeerPage, Kicked, Member, Room, RoomCount, RoomPage, DialectCounts, AppCount, AppList, Node, NodeSummary, DialectName)),
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
