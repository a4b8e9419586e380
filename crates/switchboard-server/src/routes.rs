//! HTTP routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switchboard_core::ice::host_from_header;
use switchboard_core::{App, ConnId};
use switchboard_web::Kind;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::ServerConfig;
use crate::hub_task::HubSender;

/// Shared state of the routes: configuration, the hub's input queue, connection ids.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    hub: HubSender,
    /// Source of unique connection ids (shared with the socket.io endpoint).
    next_conn: Arc<AtomicU64>,
    /// Tracks connection tasks so shutdown can wait for them.
    tracker: TaskTracker,
    /// Counters of the accept loop's limits.
    edge: Arc<crate::EdgeStats>,
    /// TURN credentials minted by `GET /api/v1/ice-servers`: the serial in each user part.
    turn_users_minted: AtomicU64,
    /// Engine.IO sessions opened by polling handshakes, bounded.
    eio: Arc<crate::eio_guard::EioGuard>,
    /// This node's view of the cluster, in cluster mode.
    cluster: Option<Arc<std::sync::Mutex<crate::cluster::ClusterView>>>,
    /// Cluster mode: the queue of the registry task (the socket.io connect middleware
    /// registers ids there).
    commands: Option<crate::cluster::registry::Commands>,
    /// Cluster mode: the admin API across the nodes.
    cluster_admin: Option<Arc<crate::cluster::admin::ClusterAdmin>>,
    /// The last `/metrics` text, and the metrics that live as long as the server.
    metrics: crate::metrics::Cache,
    long_lived: prometheus::Registry,
    /// When the server started (the admin API's uptime).
    started: std::time::Instant,
}

impl AppState {
    pub(crate) fn new(
        config: ServerConfig,
        hub: HubSender,
        tracker: TaskTracker,
        edge: Arc<crate::EdgeStats>,
        cluster: Option<Arc<std::sync::Mutex<crate::cluster::ClusterView>>>,
        commands: Option<crate::cluster::registry::Commands>,
        cluster_admin: Option<Arc<crate::cluster::admin::ClusterAdmin>>,
    ) -> Self {
        let eio = Arc::new(crate::eio_guard::EioGuard::new(
            config.max_socketio_sessions,
            config.max_socketio_sessions_per_ip,
        ));
        // In cluster mode connection ids travel between nodes: a node restarted with the same
        // id starts its count elsewhere, so a message meant for a connection of its previous
        // run never reaches a new one. Below 2^53, so ids stay exact in JSON.
        let first_conn = if config.cluster.is_some() {
            (u64::from(uuid::Uuid::new_v4().as_u128() as u32) << 20) + 1
        } else {
            1
        };
        Self {
            inner: Arc::new(Inner {
                config,
                hub,
                next_conn: Arc::new(AtomicU64::new(first_conn)),
                tracker,
                edge,
                turn_users_minted: AtomicU64::new(0),
                eio,
                cluster,
                commands,
                cluster_admin,
                metrics: crate::metrics::Cache::default(),
                long_lived: crate::metrics::long_lived(),
                started: std::time::Instant::now(),
            }),
        }
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn hub(&self) -> &HubSender {
        &self.inner.hub
    }

    /// When the server started.
    pub(crate) fn started(&self) -> std::time::Instant {
        self.inner.started
    }

    /// Cluster mode: the admin API across the nodes.
    pub(crate) fn cluster_admin(&self) -> Option<&Arc<crate::cluster::admin::ClusterAdmin>> {
        self.inner.cluster_admin.as_ref()
    }

    /// This node's id in cluster mode.
    pub(crate) fn node_id(&self) -> Option<&str> {
        self.inner
            .config
            .cluster
            .as_ref()
            .map(|c| c.node_id.as_str())
    }

    /// Live nodes, in cluster mode.
    pub(crate) fn cluster_nodes(&self) -> Option<usize> {
        self.inner
            .cluster
            .as_ref()
            .and_then(|v| v.lock().ok().map(|v| v.nodes.len()))
    }
}

/// The router:
///
/// | route | what |
/// |---|---|
/// | `GET /{app}/websocket` | the Ant Media P2P WebSocket |
/// | `/socket.io/` | the socket.io relay (Engine.IO polling and WebSocket; a layer) |
/// | `GET {peerjs_path}` | PeerJS server information |
/// | `GET {peerjs_path}peerjs` | the PeerJS WebSocket |
/// | `GET {peerjs_path}{key}/id` | a fresh PeerJS id |
/// | `GET {peerjs_path}{key}/peers` | connected PeerJS ids, when discovery is on |
/// | `GET /healthz` | liveness |
/// | `GET /api/v1/ice-servers` | an `RTCConfiguration` with fresh TURN credentials |
/// | `GET /api/v1/stats` | counters of the edge, hub, socket.io and TURN |
/// | `GET /metrics` | the same and more in the Prometheus text format (unless turned off) |
/// | `/api/v1/node`, `apps`, `peers`, `peers/{conn}`, `rooms/{dialect}/{app}[/{room}]` | the admin API (with [`ServerConfig::admin_key`]) |
/// | `GET /api/v1/openapi.json` | the admin API's OpenAPI 3.1 document |
/// | `GET /`, `/app.js`, `/style.css` | the demo call page ([`switchboard_web::ASSETS`]) |
/// | `GET /sdk/switchboard.js` (and the modules it imports), `/sdk/switchboard.d.ts` | the browser SDK |
pub fn router(state: AppState) -> Router {
    let pj = state.inner.config.peerjs_path.clone();
    let mut router = Router::new();
    for a in switchboard_web::ASSETS {
        let (content_type, body) = (a.content_type, a.body);
        router = router.route(
            a.path,
            match a.kind {
                Kind::Page => get(move || page(content_type, body)),
                Kind::Asset => get(move || asset(content_type, body)),
                Kind::Sdk => get(move || sdk(content_type, body)),
            },
        );
    }
    router = router
        .route(&pj, get(peerjs_info))
        .route(&format!("{pj}peerjs"), get(peerjs_websocket))
        .route(&format!("{pj}{{key}}/id"), get(peerjs_id))
        .route(&format!("{pj}{{key}}/peers"), get(peerjs_peers))
        .route("/healthz", get(healthz))
        .route("/api/v1/ice-servers", get(ice_servers))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/openapi.json", get(crate::admin::openapi))
        .merge(crate::admin::routes(&state));
    if state.inner.config.metrics.enabled {
        router = router.route("/metrics", get(metrics));
    }
    router
        .route("/{app}/websocket", get(websocket))
        .layer(crate::socketio::layer(
            state.inner.hub.clone(),
            Arc::clone(&state.inner.next_conn),
            state.inner.config.hub.auth.clone(),
            state.inner.config.hub.limits,
            state.inner.commands.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.inner.eio),
            crate::eio_guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::origin::Guard {
                rules: state.inner.config.allowed_origins.clone(),
                peerjs_path: pj,
                edge: Arc::clone(&state.inner.edge),
            },
            crate::origin::guard,
        ))
        .with_state(state)
}

// socket.io and PeerJS pages are often served from another origin than their signaling
// server; socket.io's polling transport and PeerJS's `id` request (plain GET/POST, no
// preflight, no credentials) then need `Access-Control-Allow-Origin`: set by
// `crate::origin::guard` for `/socket.io/` and the PeerJS path (`*`, or the allowed origin
// with `--allowed-origins`).

/// An SDK file: also importable from pages on other origins (`<script type="module">`
/// imports are CORS requests).
async fn sdk(content_type: &'static str, body: &'static str) -> Response {
    let mut response = asset(content_type, body).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    response
}

/// The host a request was addressed to, from its `Host` header.
fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_from_header)
}

/// Body of `GET /api/v1/ice-servers`: an `RTCConfiguration`.
#[derive(serde::Serialize)]
struct IceServers {
    #[serde(rename = "iceServers")]
    ice_servers: Vec<switchboard_proto::IceServer>,
}

/// `?token=` of routes that take a room token.
#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The room token of a request: `Authorization: Bearer <token>`, else `?token=`.
fn request_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .or(query)
}

/// `GET /api/v1/ice-servers`: `{"iceServers":[RTCIceServer...]}`, usable directly as an
/// `RTCConfiguration`; TURN entries carry fresh short-lived credentials.
///
/// With room tokens on, the request needs a valid token (`Authorization: Bearer`, or
/// `?token=`): without one it is answered `401 {"error":"unauthorized_access","reason":..}`;
/// a token that does not grant `turn` gets the STUN servers alone. Minted credentials carry
/// the token's identity (`u.<sub>`) in their user part.
async fn ice_servers(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let host = request_host(&headers);
    let ice = &state.inner.config.hub.ice;
    let now = crate::unix_now();
    let identity = match &state.inner.config.hub.auth {
        None => None,
        Some(auth) => {
            match auth.admit(request_token(&headers, q.token.as_deref()), now, None, None) {
                Ok(claims) if claims.turn => claims
                    .sub
                    .map(|id| switchboard_core::ice::identity_user(&id)),
                Ok(_) => {
                    return ice_reply(ice.resolve_stun_only(host.as_deref()));
                }
                Err(e) => {
                    state
                        .inner
                        .edge
                        .ice_unauthorized
                        .fetch_add(1, Ordering::Relaxed);
                    return (
                        StatusCode::UNAUTHORIZED,
                        [
                            (header::WWW_AUTHENTICATE, "Bearer"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        Json(serde_json::json!({
                            "error": "unauthorized_access",
                            "reason": e.to_string(),
                        })),
                    )
                        .into_response();
                }
            }
        }
    };
    let user = identity.unwrap_or_else(|| {
        // A user of its own per credential, so one client's allocations never use up
        // another's TURN quota.
        let serial = state
            .inner
            .turn_users_minted
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let prefix = ice.turn.as_ref().map_or("", |t| t.user_prefix.as_str());
        format!("{prefix}h{serial}")
    });
    ice_reply(ice.resolve(host.as_deref(), now, &user))
}

fn ice_reply(servers: Vec<switchboard_proto::IceServer>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(IceServers {
            ice_servers: servers,
        }),
    )
        .into_response()
}

/// Counters: `{"http": {...}, "hub": {...}, "turn": {...}}` (`turn` is `null` when the
/// built-in STUN/TURN server is off).
async fn stats(State(state): State<AppState>) -> Response {
    let turn = state
        .inner
        .config
        .turn_stats
        .as_ref()
        .map(|read| (read.0)());
    let http = state.inner.edge.json();
    let hub_stats = state.inner.hub.stats().await;
    let hub = hub_stats.as_ref().map(|s| {
        let h = s.hub;
        serde_json::json!({
            "connections": h.connections,
            "rooms": h.rooms,
            "relayed": h.relayed,
            "errors": h.errors,
            "idle_closed": h.idle_closed,
            "events_dropped": h.events_dropped,
            "peerjs_queued": h.queued,
            "peerjs_queued_bytes": h.queued_bytes,
            "peerjs_queue_refused": h.queue_refused,
            "rate_limited": h.rate_limited,
            "rate_limit_closed": h.rate_limit_closed,
            "auth_refused": h.auth_refused,
            "max_call_ended": h.max_call_ended,
            "kicked": h.kicked,
            "slow_consumers": s.slow_consumers,
            "queued_bytes": s.queued_bytes,
            "sio_closing": s.sio_closing,
        })
    });
    let socketio = state.inner.eio.json();
    let mut cluster = state.inner.cluster.as_ref().and_then(|v| {
        v.lock()
            .ok()
            .map(|v| v.json(hub_stats.as_ref().map(|s| s.cluster)))
    });
    if let (Some(c), Some(a)) = (cluster.as_mut(), state.cluster_admin()) {
        c["admin_malformed"] = a.malformed.load(Ordering::Relaxed).into();
        c["admin_dropped"] = a.dropped.load(Ordering::Relaxed).into();
    }
    let webhooks = state
        .inner
        .config
        .webhooks
        .as_ref()
        .map(|_| state.inner.hub.webhook_stats.json());
    Json(serde_json::json!({
        "webhooks": webhooks,
        "http": http,
        "hub": hub,
        "socketio": socketio,
        "turn": turn,
        "cluster": cluster,
    }))
    .into_response()
}

/// `GET /metrics`: Prometheus text; 401 without the right key when `--metrics-key` is set.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(key) = &state.inner.config.metrics.key {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| crate::metrics::key_matches(g, key)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need Authorization: Bearer <the --metrics-key>\n",
            )
                .into_response();
        }
    }
    let text = state
        .inner
        .metrics
        .get(|| {
            let i = &state.inner;
            crate::metrics::render(crate::metrics::Sources {
                hub: &i.hub,
                edge: &i.edge,
                eio: &i.eio,
                turn: i.config.turn_metrics.as_ref(),
                nodes: i
                    .cluster
                    .as_ref()
                    .and_then(|v| v.lock().ok().map(|v| v.nodes.len())),
                long_lived: &i.long_lived,
                webhooks: i.config.webhooks.as_ref().map(|_| &*i.hub.webhook_stats),
            })
        })
        .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text.to_string(),
    )
        .into_response()
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// An embedded asset. `no-cache` makes browsers revalidate, so an upgraded binary's page is
/// never mixed with a cached older SDK.
async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The demo page's Content-Security-Policy: its own scripts and styles only (no inline
/// script, no eval), media from the camera and blobs, WebSockets to this server, nothing
/// framed and no framing of the page (a received file can never run as script here).
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The demo page, with the headers that keep a hostile peer's content from running in this
/// origin (which holds the camera permission).
async fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = asset(content_type, body).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(DEMO_CSP),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// The query of an Ant Media WebSocket: `?token=` (the official SDK can only set the URL).
#[derive(serde::Deserialize)]
struct AmQuery {
    token: Option<String>,
}

async fn websocket(
    State(state): State<AppState>,
    Path(app): Path<String>,
    axum::extract::Query(q): axum::extract::Query<AmQuery>,
    req: axum::extract::Request,
) -> Response {
    let host = request_host(req.headers()).map(String::into_boxed_str);
    let Ok(app) = App::new(&app) else {
        return (
            StatusCode::NOT_FOUND,
            "app name must be 1-64 characters of A-Z a-z 0-9 _ . -\n",
        )
            .into_response();
    };
    let ip = client_ip(&req);
    let params = crate::hub_task::AmParams {
        app,
        host,
        ip,
        token: q.token.map(String::into_boxed_str),
    };
    upgrade(&state, req, crate::connection::Dialect::AntMedia(params))
}

/// The address the request is from (set by the accept loop: the connection's, or the client a
/// trusted proxy names).
fn client_ip(req: &axum::extract::Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<crate::accept::ClientAddr>()
        .map(|a| a.0.ip())
}

/// Upgrades to a WebSocket with the configured buffer and message limits and runs the
/// connection task for `dialect` (tracked, so shutdown waits for it).
fn upgrade(
    state: &AppState,
    mut req: axum::extract::Request,
    dialect: crate::connection::Dialect,
) -> Response {
    let (on_upgrade, response) = match crate::upgrade::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let cfg = &state.inner.config;
    let conn = ConnId(state.inner.next_conn.fetch_add(1, Ordering::Relaxed));
    let hub = state.inner.hub.clone();
    let queue = cfg.outbound_queue;
    let config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        .max_write_buffer_size(cfg.write_buffer_size + 4 * cfg.max_message_size)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    // Two tasks: the upgrade's state (hyper's pending upgrade, the handshake) is freed once
    // the socket exists, instead of staying part of the connection task for its lifetime.
    let tracker = state.inner.tracker.clone();
    state.inner.tracker.spawn(async move {
        match crate::upgrade::socket(on_upgrade, config).await {
            Ok(socket) => {
                tracker.spawn(crate::connection::serve(
                    socket,
                    conn,
                    Box::new(dialect),
                    hub,
                    queue,
                ));
            }
            Err(e) => tracing::debug!(conn = conn.0, "WebSocket upgrade failed: {e}"),
        }
    });
    response
}

/// `GET {peerjs_path}`: what peerjs-server answers.
async fn peerjs_info() -> Response {
    Json(serde_json::json!({
        "name": "PeerJS Server",
        "description": "A server side element to broker connections between PeerJS clients.",
        "website": "https://peerjs.com/"
    }))
    .into_response()
}

/// Whether a PeerJS `key` is accepted: the configured key, or with room tokens on a token
/// valid now (its claims, to pick the id). Refused: the 401 body.
fn peerjs_key(
    state: &AppState,
    key: &str,
) -> Result<Option<switchboard_core::auth::Claims>, String> {
    match &state.inner.config.hub.auth {
        None if key == &*state.inner.config.hub.peerjs.key => Ok(None),
        None => Err("Invalid key provided".to_owned()),
        Some(auth) => auth
            .admit(Some(key), crate::unix_now(), None, None)
            .map(Some)
            .map_err(|e| format!("unauthorized_access: {e}")),
    }
}

/// `GET {peerjs_path}{key}/id`: a fresh id (a UUID, `text/html` as peerjs-server sends); with
/// room tokens, the key is the token and a token with a `sub` gets that as its id.
async fn peerjs_id(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    let claims = match peerjs_key(&state, &key) {
        Ok(c) => c,
        Err(refused) => return (StatusCode::UNAUTHORIZED, refused).into_response(),
    };
    let id = claims.and_then(|c| c.sub).map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |s| s.as_str().to_owned(),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], id).into_response()
}

/// `GET {peerjs_path}{key}/peers`: the ids connected now, when discovery is allowed (else 401).
async fn peerjs_peers(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    if let Err(refused) = peerjs_key(&state, &key) {
        return (StatusCode::UNAUTHORIZED, refused).into_response();
    }
    match state.inner.hub.pj_peers().await {
        Some(ids) => Json(ids).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// Query of the PeerJS WebSocket.
#[derive(serde::Deserialize)]
struct PeerJsQuery {
    key: Option<String>,
    id: Option<String>,
    token: Option<String>,
}

/// `GET {peerjs_path}peerjs?key&id&token&version`: the PeerJS WebSocket. Missing or wrong
/// parameters are answered on the socket (`ERROR`, then close), as peerjs-server does.
async fn peerjs_websocket(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<PeerJsQuery>,
    req: axum::extract::Request,
) -> Response {
    let params = crate::hub_task::PjParams {
        key: q.key.map(String::into_boxed_str),
        id: q.id.map(String::into_boxed_str),
        token: q.token.map(String::into_boxed_str),
        ip: client_ip(&req),
    };
    upgrade(&state, req, crate::connection::Dialect::PeerJs(params))
}
