//! What the admin API asks one node, and that node's answer: the same for the node's own
//! routes and for another node asking over Redis (cluster mode, `cluster/admin.rs`).

use serde::{Deserialize, Serialize};
use switchboard_core::{ConnId, Dialect, PeerInfo};
use utoipa::ToSchema;

use crate::hub_task::HubSender;

/// A dialect as the admin API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DialectName {
    Antmedia,
    Socketio,
    Peerjs,
}

impl DialectName {
    pub(crate) fn dialect(self) -> Dialect {
        match self {
            Self::Antmedia => Dialect::AntMedia,
            Self::Socketio => Dialect::SocketIo,
            Self::Peerjs => Dialect::PeerJs,
        }
    }
}

/// A connection and what the server knows of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Peer {
    /// The connection id (unique on its node; in a cluster, ids are drawn so that they
    /// rarely repeat across nodes).
    pub(crate) conn: u64,
    /// The node that holds it, in cluster mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// `antmedia`, `socketio` or `peerjs`.
    pub(crate) dialect: String,
    /// The Ant Media app, `/` for socket.io, the PeerJS key.
    pub(crate) app: String,
    /// The room it is in (PeerJS: its id), if any.
    pub(crate) room: Option<String>,
    /// Its socket.io or PeerJS id.
    pub(crate) id: Option<String>,
    /// The client's address.
    pub(crate) remote_address: Option<String>,
    /// When it connected, Unix seconds (Ant Media and PeerJS).
    pub(crate) connected_at: Option<u64>,
    /// When it joined its room (PeerJS: opened its id), Unix seconds.
    pub(crate) joined_at: Option<u64>,
    /// Messages it sent (Ant Media and PeerJS).
    pub(crate) messages_in: Option<u64>,
    /// Messages written to it (Ant Media and PeerJS).
    pub(crate) messages_out: Option<u64>,
}

fn peer_json(p: PeerInfo, x: crate::hub_task::ConnExtra, node: Option<&str>) -> Peer {
    Peer {
        conn: p.conn.0,
        node: node.map(str::to_owned),
        dialect: p.dialect.as_str().to_owned(),
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

/// A room in a list: its name and how many members it has.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RoomCount {
    pub(crate) room: String,
    pub(crate) members: usize,
}

/// Counts by dialect.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub(crate) struct DialectCounts {
    pub(crate) antmedia: u64,
    pub(crate) socketio: u64,
    pub(crate) peerjs: u64,
}

impl DialectCounts {
    fn of(p: switchboard_core::PerDialect<usize>) -> Self {
        Self {
            antmedia: p.antmedia as u64,
            socketio: p.socketio as u64,
            peerjs: p.peerjs as u64,
        }
    }
}

/// An app (namespace of rooms) with peers in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AppCount {
    pub(crate) dialect: String,
    /// The app; Ant Media apps past `--metrics-max-apps` are counted together as `_other`.
    pub(crate) app: String,
    pub(crate) joined_peers: i64,
}

/// One node: version, uptime, connections and rooms by dialect.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct NodeSummary {
    pub(crate) version: String,
    /// The node's id in cluster mode.
    pub(crate) node_id: Option<String>,
    pub(crate) uptime_seconds: u64,
    pub(crate) connections: DialectCounts,
    /// Rooms with members on this node.
    pub(crate) rooms: DialectCounts,
}

/// A question for one node's hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Node,
    Apps,
    Peers {
        after: Option<u64>,
        limit: usize,
    },
    Peer {
        conn: u64,
    },
    Kick {
        conn: u64,
    },
    Rooms {
        dialect: DialectName,
        app: String,
        after: Option<String>,
        limit: usize,
    },
    Room {
        dialect: DialectName,
        app: String,
        room: String,
    },
    CloseRoom {
        dialect: DialectName,
        app: String,
        room: String,
    },
}

/// One node's answer to an [`Op`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    Node(NodeSummary),
    Apps(Vec<AppCount>),
    /// At most the limit asked for, in connection order.
    Peers(Vec<Peer>),
    Peer(Option<Peer>),
    /// Whether the connection was there to kick.
    Kicked(bool),
    /// At most the limit asked for, in name order.
    Rooms(Vec<RoomCount>),
    /// A room's members on the node, in connection order.
    Members(Vec<u64>),
    /// Members kicked by a room's closing.
    Closed(usize),
    /// The node cannot answer now (shutting down, or answering too many requests).
    Unavailable,
}

/// Most peers or rooms one answer holds.
pub(crate) const MAX_PAGE: usize = 1000;

/// This node's answer to `op`; `node` is its id in cluster mode.
pub(crate) async fn answer(
    hub: &HubSender,
    node: Option<&str>,
    started: std::time::Instant,
    op: Op,
) -> Answer {
    let node = node.map(str::to_owned);
    let answer = match op {
        Op::Node => hub.stats().await.map(|stats| {
            Answer::Node(NodeSummary {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                node_id: node,
                uptime_seconds: started.elapsed().as_secs(),
                connections: DialectCounts::of(stats.hub.connections_by_dialect),
                rooms: DialectCounts::of(stats.hub.rooms_by_dialect),
            })
        }),
        Op::Apps => hub.stats_with_meter().await.map(|stats| {
            Answer::Apps(
                stats
                    .meter
                    .joined
                    .iter()
                    .filter(|(_, _, n)| *n > 0)
                    .map(|(d, app, n)| AppCount {
                        dialect: d.as_str().to_owned(),
                        app: app.to_string(),
                        joined_peers: *n,
                    })
                    .collect(),
            )
        }),
        Op::Peers { after, limit } => {
            let limit = limit.clamp(1, MAX_PAGE + 1);
            hub.admin(move |ctx| {
                let list = ctx.hub.peers(after.map(ConnId), limit);
                Answer::Peers(
                    list.into_iter()
                        .map(|p| {
                            let x = ctx.extra(p.conn);
                            peer_json(p, x, node.as_deref())
                        })
                        .collect(),
                )
            })
            .await
        }
        Op::Peer { conn } => {
            hub.admin(move |ctx| {
                Answer::Peer(ctx.hub.peer(ConnId(conn)).map(|p| {
                    let x = ctx.extra(p.conn);
                    peer_json(p, x, node.as_deref())
                }))
            })
            .await
        }
        Op::Kick { conn } => {
            hub.admin(move |ctx| Answer::Kicked(ctx.hub.handle_kick(ConnId(conn))))
                .await
        }
        Op::Rooms {
            dialect,
            app,
            after,
            limit,
        } => {
            let limit = limit.clamp(1, MAX_PAGE + 1);
            hub.admin(move |ctx| {
                let rooms = ctx
                    .hub
                    .rooms_of(dialect.dialect(), &app, after.as_deref(), limit);
                Answer::Rooms(
                    rooms
                        .into_iter()
                        .map(|(room, members)| RoomCount {
                            room: room.into(),
                            members,
                        })
                        .collect(),
                )
            })
            .await
        }
        Op::Room { dialect, app, room } => {
            hub.admin(move |ctx| {
                Answer::Members(
                    ctx.hub
                        .room_members(dialect.dialect(), &app, &room)
                        .into_iter()
                        .map(|c| c.0)
                        .collect(),
                )
            })
            .await
        }
        Op::CloseRoom { dialect, app, room } => {
            hub.admin(move |ctx| {
                Answer::Closed(ctx.hub.handle_close_room(dialect.dialect(), &app, &room))
            })
            .await
        }
    };
    answer.unwrap_or(Answer::Unavailable)
}
