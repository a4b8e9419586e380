//! This node's channel (`sb:node:<id>:in`): what other nodes publish for peers held here,
//! handed to the hub in the order Redis delivers it (per publishing node, the order it was
//! sent). A dedicated subscriber connection; when it drops, publishers see this node as not
//! listening (their senders get `cluster_unavailable`) until it is subscribed again, which is
//! retried every [`RETRY`]. The same connection listens on the node's admin channel
//! (`admin.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_proto::cluster::{Batch, NodeId};

use super::registry::{Health, channel};
use crate::hub_task::HubSender;

/// Pause between two subscription attempts.
const RETRY: Duration = Duration::from_millis(250);

/// Listens until `stop` is cancelled.
pub(crate) async fn run(
    client: redis::Client,
    node: NodeId,
    hub: HubSender,
    health: Arc<Health>,
    admin: Arc<super::admin::ClusterAdmin>,
    stop: tokio_util::sync::CancellationToken,
) {
    let name = channel(node.as_str());
    let admin_name = super::admin::channel(node.as_str());
    loop {
        let subscribed = async {
            let mut pubsub =
                tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
                    .await
                    .map_err(|_| "connection timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            pubsub
                .subscribe(&[&name, &admin_name])
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        let pubsub = tokio::select! {
            r = subscribed => r,
            () = stop.cancelled() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                health.subscribed.store(true, Relaxed);
                tracing::debug!("cluster: listening on {name}");
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        () = stop.cancelled() => return,
                    };
                    let Some(msg) = msg else { break };
                    if msg.get_channel_name() == admin_name {
                        admin.received(msg.get_payload_bytes());
                        continue;
                    }
                    health.received.fetch_add(1, Relaxed);
                    match Batch::read(msg.get_payload_bytes()) {
                        Ok(batch) => {
                            if !hub.node_messages(batch.node, batch.msgs).await {
                                return;
                            }
                        }
                        Err(e) => {
                            health.malformed.fetch_add(1, Relaxed);
                            tracing::warn!("cluster: dropped a message on {name} ({e})");
                        }
                    }
                }
                health.subscribed.store(false, Relaxed);
                tracing::warn!("cluster: lost the subscription to {name}; subscribing again");
            }
            Err(e) => tracing::debug!("cluster: cannot subscribe to {name}: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = stop.cancelled() => return,
        }
    }
}
