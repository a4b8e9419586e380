//! The admin API across a cluster: a node asks the other live nodes over Redis and they
//! answer from their own hubs (`admin/ops.rs`), so any node answers for the whole cluster
//! and a kick reaches the node that holds the peer.
//!
//! Each node listens on `sb:node:<id>:admin` (on the subscriber connection of `bus.rs`). A
//! request names the channel to answer on; the asking node waits at most [`WAIT`] for the
//! answers and reports the nodes that gave none. A node answers at most [`ANSWERING`]
//! requests at once and drops the others (counted): a burst of admin calls cannot queue up
//! work, or tasks, on every node. Admin traffic is rare and small next to signaling, so it shares nothing with
//! the hub's ordered command queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::ClusterView;
use crate::admin::ops::{self, Answer, Op};
use crate::hub_task::HubSender;

/// How long a node waits for the others' answers.
pub(crate) const WAIT: Duration = Duration::from_secs(2);

/// Requests from other nodes a node answers at once.
const ANSWERING: usize = 8;

/// The admin channel of `node`.
pub(crate) fn channel(node: &str) -> String {
    format!("sb:node:{node}:admin")
}

/// What travels on the admin channels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Request {
        id: u64,
        from: String,
        op: Op,
    },
    Reply {
        id: u64,
        node: String,
        answer: Answer,
    },
}

/// This node's side of the admin API across the cluster.
#[derive(Debug)]
pub(crate) struct ClusterAdmin {
    node: String,
    client: redis::Client,
    /// Publishes requests and answers (made at first use; it reconnects by itself).
    con: tokio::sync::OnceCell<ConnectionManager>,
    /// Requests waiting for answers: where each answer goes.
    pending: Mutex<HashMap<u64, tokio::sync::mpsc::Sender<(String, Answer)>>>,
    next: AtomicU64,
    view: Arc<Mutex<ClusterView>>,
    answering: Arc<tokio::sync::Semaphore>,
    hub: HubSender,
    started: std::time::Instant,
    /// Admin messages that did not parse.
    pub(crate) malformed: AtomicU64,
    /// Requests from other nodes not answered: [`ANSWERING`] were being answered already.
    pub(crate) dropped: AtomicU64,
}

impl ClusterAdmin {
    pub(crate) fn new(
        node: String,
        client: redis::Client,
        view: Arc<Mutex<ClusterView>>,
        hub: HubSender,
    ) -> Self {
        Self {
            node,
            client,
            con: tokio::sync::OnceCell::new(),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            view,
            answering: Arc::new(tokio::sync::Semaphore::new(ANSWERING)),
            hub,
            started: std::time::Instant::now(),
            malformed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// This node's id.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// The other live nodes, sorted.
    pub(crate) fn others(&self) -> Vec<String> {
        self.view
            .lock()
            .map(|v| {
                v.nodes
                    .iter()
                    .filter(|n| **n != self.node)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks `nodes` `op`; their answers, and the nodes that gave none within [`WAIT`] (or
    /// answered `unavailable`).
    pub(crate) async fn ask(
        &self,
        nodes: &[String],
        op: &Op,
    ) -> (Vec<(String, Answer)>, Vec<String>) {
        if nodes.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let id = self.next.fetch_add(1, Relaxed);
        let (tx, mut rx) = tokio::sync::mpsc::channel(nodes.len());
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let request = Wire::Request {
            id,
            from: self.node.clone(),
            op: op.clone(),
        };
        let mut answers = Vec::with_capacity(nodes.len());
        if let Ok(text) = serde_json::to_string(&request) {
            let channels: Vec<String> = nodes.iter().map(|n| channel(n)).collect();
            // A node nobody listens for (its subscriber is down) is not waited for.
            let listening = self
                .publish(&channels, &text)
                .await
                .map_or(0, |heard| heard.iter().filter(|n| **n > 0).count());
            if listening > 0 {
                let deadline = tokio::time::Instant::now() + WAIT;
                while answers.len() < listening {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(a)) => answers.push(a),
                        _ => break,
                    }
                }
            }
        }
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
        answers.retain(|(_, a)| !matches!(a, Answer::Unavailable));
        let silent = nodes
            .iter()
            .filter(|n| !answers.iter().any(|(m, _)| m == *n))
            .cloned()
            .collect();
        answers.sort_by(|a, b| a.0.cmp(&b.0));
        (answers, silent)
    }

    /// A message on this node's admin channel.
    pub(crate) fn received(self: &Arc<Self>, payload: &[u8]) {
        match serde_json::from_slice::<Wire>(payload) {
            Ok(Wire::Request { id, from, op }) => {
                // Busy: no answer (the asker names this node after its wait), and no task.
                let Ok(permit) = Arc::clone(&self.answering).try_acquire_owned() else {
                    self.dropped.fetch_add(1, Relaxed);
                    return;
                };
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    // Held until the answer is published: at most ANSWERING tasks at once.
                    let _permit = permit;
                    let answer = ops::answer(&me.hub, Some(&me.node), me.started, op).await;
                    let reply = Wire::Reply {
                        id,
                        node: me.node.clone(),
                        answer,
                    };
                    if let Ok(text) = serde_json::to_string(&reply) {
                        let _ = me.publish(&[channel(&from)], &text).await;
                    }
                });
            }
            Ok(Wire::Reply { id, node, answer }) => {
                let to = self.pending.lock().ok().and_then(|p| p.get(&id).cloned());
                if let Some(to) = to {
                    let _ = to.try_send((node, answer));
                }
            }
            Err(e) => {
                self.malformed.fetch_add(1, Relaxed);
                tracing::warn!("cluster: dropped a malformed admin message ({e})");
            }
        }
    }

    /// Publishes `text` on `channels`: how many subscribers heard it on each, or `None` if
    /// Redis could not be reached.
    async fn publish(&self, channels: &[String], text: &str) -> Option<Vec<i64>> {
        let con = tokio::time::timeout(
            WAIT,
            self.con.get_or_try_init(|| super::connect(&self.client)),
        )
        .await;
        let Ok(Ok(con)) = con else {
            return None;
        };
        let mut con = con.clone();
        let mut pipe = redis::pipe();
        for c in channels {
            pipe.publish(c, text);
        }
        match tokio::time::timeout(WAIT, pipe.query_async::<Vec<i64>>(&mut con)).await {
            Ok(Ok(heard)) => Some(heard),
            _ => None,
        }
    }
}
