//! Switchboard's IO edge: the HTTP and WebSocket server that drives the sans-IO hub.
//!
//! # Architecture
//! ```text
//!  socket ─▶ connection task ─ decode ─▶ bounded hub queue ─▶ hub task (owns switchboard_core::Hub)
//!  socket ◀─ connection task ◀─ bounded per-connection FIFO ◀─ Output::AmSend
//! ```
//! - One **hub task** owns the [`switchboard_core::Hub`]: no locks. It feeds inputs with the
//!   current time, drains outputs into per-connection queues with `try_send`, and sleeps
//!   until the hub's next timeout.
//! - One **connection task** per WebSocket reads frames, decodes them in parallel with other
//!   connections, and writes its queue to the socket, batching what is ready into one flush.
//! - A connection whose queue is full (a client that stopped reading) is dropped at once and
//!   its peer gets `stop`: memory per connection is bounded by
//!   [`ServerConfig::outbound_queue`] messages of at most [`ServerConfig::max_message_size`].
//! - Frames over [`ServerConfig::max_message_size`] close the socket with code 1009.
//! - The WebSocket upgrade is done here (not by axum's extractor) so the socket can be read
//!   through a coalescing reader: one `recv` takes up to 16 KiB into a buffer shared by the
//!   runtime thread's sockets, while each socket keeps only a
//!   [`ServerConfig::read_buffer_size`] (256-byte) buffer and a spill that exists only while
//!   it holds bytes. Per-connection queues allocate nothing while idle. An idle joined peer
//!   costs about 3.3 KiB of server memory.
//!
//! Endpoints on one port: Ant Media P2P at `/<app>/websocket`, the socket.io relay at
//! `/socket.io/` (socketioxide, polling and websocket), the PeerJS server at
//! [`ServerConfig::peerjs_path`] (`/peerjs/`), the demo page and SDK, `/healthz`,
//! `/api/v1/ice-servers`, `/api/v1/stats`, `/metrics` (Prometheus), the admin API (`admin`,
//! with [`ServerConfig::admin_key`]) and its OpenAPI document; webhooks (`webhooks`, with
//! [`ServerConfig::webhooks`]).
//!
//! Entry points: [`run`] serves until a shutdown future resolves, then every client gets
//! `notification server_will_stop` and a close frame (1001), and `run` returns within
//! [`ServerConfig::shutdown_grace`]. [`router`] builds the axum router for embedding.

mod accept;
mod admin;
mod cluster;
mod config;
mod connection;
mod eio_guard;
mod forwarded;
mod hub_task;
mod metrics;
mod origin;
mod outbound;
mod routes;
mod socketio;
mod tls;
mod upgrade;
mod webhooks;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use accept::EdgeStats;
pub use cluster::{ClusterConfig, redacted_url};
pub use config::{DEFAULT_LISTEN, ServerConfig, StatsSource};
pub use metrics::{
    AddMetrics, MIN_INTERVAL as METRICS_MIN_INTERVAL, MetricsConfig, MetricsSource, OTHER_APP,
};
pub use origin::{BadOrigin, OriginRule};
pub use routes::{AppState, router};
pub use tls::CertReloader;
pub use webhooks::{RETRIES as WEBHOOK_RETRIES, WebhookConfig, WebhookSink, WebhookStats};

/// At most one log line a second, with a count of the ones left out.
#[derive(Debug, Default)]
pub(crate) struct RateLimited {
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl RateLimited {
    /// `Some(n)`: log now, mentioning `n` left out since the last line; `None`: stay quiet.
    pub(crate) fn due(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }
}

/// A fresh start for the user part of minted TURN usernames
/// ([`switchboard_core::ice::TurnRest::user_prefix`]): eight random hex digits and a dash,
/// drawn once per process so a restarted or second node never mints a user that an earlier
/// credential still holds.
#[must_use]
pub fn turn_user_prefix() -> String {
    let id = uuid::Uuid::new_v4().as_u128();
    format!("{:08x}-", id as u32)
}

/// Wall-clock time in Unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `listener` until `shutdown` resolves, then shuts down gracefully.
///
/// # Errors
/// `InvalidInput` for a configuration [`ServerConfig::validate`] refuses; otherwise only if
/// accepting connections fails in a way that cannot be recovered from.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tracker = TaskTracker::new();
    let leave = tokio_util::sync::CancellationToken::new();
    let health = std::sync::Arc::new(cluster::Health::default());
    let (cluster_tx, cluster_rx) = tokio::sync::mpsc::channel(cluster::registry::QUEUE);
    let commands = config.cluster.as_ref().map(|_| cluster_tx.clone());
    let link = config.cluster.as_ref().map(|_| hub_task::ClusterLink {
        tx: cluster_tx,
        health: std::sync::Arc::clone(&health),
    });
    let (hub, hub_handle) = hub_task::spawn(&config, link);
    let edge = std::sync::Arc::new(EdgeStats::default());
    let cluster = config
        .cluster
        .clone()
        .map(|c| cluster::start(c, hub.clone(), cluster_rx, health, leave.clone()));
    let state = AppState::new(
        config.clone(),
        hub.clone(),
        tracker.clone(),
        std::sync::Arc::clone(&edge),
        cluster.as_ref().map(|c| std::sync::Arc::clone(&c.view)),
        commands,
        cluster.as_ref().and_then(|c| c.admin.clone()),
    );
    let app = router(state);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let accept = accept::serve(listener, app, config.clone(), edge, async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    let server = tokio::spawn(accept);

    // Wait for the shutdown signal (or the server ending on its own).
    let _ = stop_rx.await;
    tracing::info!("shutting down: notifying clients");
    hub.shutdown().await;
    tracker.close();
    let grace = config.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "connections still open after the shutdown grace period; dropping them"
        );
    }
    // Leave the cluster (the lease is removed at once instead of running out).
    leave.cancel();
    if let Some(c) = cluster {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), c.task).await;
    }
    drop(hub);
    hub_handle.abort();
    // Plain HTTP connections (keep-alive, polling) finish their request and close.
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(http)) => {
            let _ = tokio::time::timeout(grace, http.wait()).await;
            Ok(())
        }
        Ok(Err(join)) => Err(io::Error::other(join)),
        Err(_) => Ok(()),
    }
}

/// Entry points for the fuzz targets (`fuzz/`) and their smoke test; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// What the socket.io endpoint hands the hub for `event` with payload `data` (as
    /// socketioxide decoded it from the packet's JSON), sent by socket id `from`.
    #[must_use]
    pub fn sio_input(
        event: &str,
        data: serde_json::Value,
        from: &str,
    ) -> switchboard_core::SioInput {
        crate::socketio::input_for(event, Ok(data), from)
    }
}
