//! Webhooks: `room_started`, `peer_joined`, `peer_left` (with why), `room_finished`, POSTed
//! as JSON to every `--webhook-url`, signed as the Standard Webhooks specification says
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`, the key
//! from `--webhook-secret whsec_<base64>`).
//!
//! Sending never blocks signaling: the hub task hands each event to every URL's bounded queue
//! with `try_send`; a full queue drops the event and counts it. Each URL has one sender task
//! that delivers its events in order, retrying a failed one with backoff ([`RETRIES`]); an
//! event that still fails is given up and counted. The room events come from the hub's peer
//! events (a room starts with its first member and finishes with its last); PeerJS has no
//! rooms, so its ids give `peer_joined` and `peer_left` only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use switchboard_core::{Change, Dialect, PeerEvent};
use tokio::sync::mpsc;

/// Delays before the retries of a failed delivery (after the first attempt).
pub const RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// How long one delivery may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where events are POSTed (none: webhooks off).
    pub urls: Vec<String>,
    /// The signing secret, `whsec_<base64>` (required with URLs).
    pub secret: String,
    /// Events that may wait for one URL; more are dropped (counted). Default 10,000.
    pub queue: usize,
}

impl WebhookConfig {
    /// Checks the secret and the URLs.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let key = self.secret.strip_prefix("whsec_").ok_or_else(|| {
            "webhook_secret must be whsec_<base64> (the Standard Webhooks form)".to_owned()
        })?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| "webhook_secret: the part after whsec_ is not base64".to_owned())?;
        if bytes.len() < 24 {
            return Err("webhook_secret must hold at least 24 bytes".to_owned());
        }
        for url in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "webhook_url {url:?} must start with http:// or https://"
                ));
            }
        }
        if self.queue == 0 {
            return Err("webhook_queue must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Webhook counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Deliveries that got a 2xx answer.
    pub delivered: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retried: AtomicU64,
    /// Events given up after the last retry.
    pub failed: AtomicU64,
    /// Events dropped because a URL's queue was full (its receiver down or slow).
    pub dropped: AtomicU64,
}

impl WebhookStats {
    /// The counters, in the order of [`WebhookStats::NAMES`].
    pub(crate) fn values(&self) -> [u64; 4] {
        [&self.delivered, &self.retried, &self.failed, &self.dropped].map(|a| a.load(Relaxed))
    }

    /// Their names in `/api/v1/stats` and the `outcome` label of `/metrics`.
    pub(crate) const NAMES: [&'static str; 4] = ["delivered", "retried", "failed", "dropped"];

    /// As JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        Self::NAMES
            .iter()
            .zip(self.values())
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// One event, rendered once for every URL.
#[derive(Debug)]
struct Event {
    /// `evt_<uuid>`: the same for every URL and every retry (receivers deduplicate on it).
    id: String,
    body: String,
}

/// Where webhook events are queued: one bounded queue per URL, each drained by its sender
/// task. Cheap to clone (the hub task and the TURN server share one).
#[derive(Debug, Clone)]
pub struct WebhookSink {
    queues: Arc<Vec<mpsc::Sender<Arc<Event>>>>,
    stats: Arc<WebhookStats>,
    /// This node's id in cluster mode, in every event.
    node: Option<Arc<str>>,
}

impl WebhookSink {
    /// Starts one sender task per URL (on the current tokio runtime); `node`: this node's id
    /// in cluster mode, sent in every event.
    #[must_use]
    pub fn start(config: &WebhookConfig, node: Option<&str>) -> Self {
        let stats = Arc::new(WebhookStats::default());
        let key = standardwebhooks::Webhook::new(&config.secret)
            .ok()
            .map(Arc::new);
        // A redirect is an answer that is not 2xx: retried, never followed (a POST must not
        // turn into a GET somewhere else).
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok();
        let queues = match (key, client) {
            (Some(key), Some(client)) => config
                .urls
                .iter()
                .map(|url| {
                    let (tx, rx) = mpsc::channel(config.queue);
                    tokio::spawn(send(
                        url.clone(),
                        rx,
                        client.clone(),
                        Arc::clone(&key),
                        Arc::clone(&stats),
                    ));
                    tx
                })
                .collect(),
            _ => {
                tracing::error!("webhooks: no client or key; webhooks are off");
                Vec::new()
            }
        };
        Self {
            queues: Arc::new(queues),
            stats,
            node: node.map(Into::into),
        }
    }

    /// The delivery counters.
    #[must_use]
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// A TURN allocation opened (`created`) or ended: `allocation_created` /
    /// `allocation_ended` with the relay and client addresses and the credential's user.
    pub fn allocation(&self, created: bool, relay: SocketAddr, client: SocketAddr, user: &str) {
        let kind = if created {
            "allocation_created"
        } else {
            "allocation_ended"
        };
        let data = serde_json::json!({
            "relay": relay.to_string(),
            "client": client.to_string(),
            "user": user,
        });
        self.queue(kind, data);
    }

    /// Renders an event once and queues it for every URL (a full queue drops it, counted).
    fn queue(&self, kind: &str, data: serde_json::Value) {
        let mut body = serde_json::json!({
            "type": kind,
            "timestamp": rfc3339_now(),
            "data": data,
        });
        if let Some(node) = &self.node {
            body["node"] = (**node).into();
        }
        let body = body.to_string();
        let event = Arc::new(Event {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            body,
        });
        for q in self.queues.iter() {
            if q.try_send(Arc::clone(&event)).is_err() {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The hub task's end: turns peer events into webhook events.
#[derive(Debug)]
pub(crate) struct Webhooks {
    sink: WebhookSink,
    /// Members of each room with members, to know when a room starts and finishes.
    rooms: HashMap<(Dialect, Box<str>, Box<str>), u32>,
}

impl Webhooks {
    pub(crate) fn new(sink: WebhookSink) -> Self {
        Self {
            sink,
            rooms: HashMap::new(),
        }
    }

    /// The webhook events of a peer event, queued for every URL.
    pub(crate) fn peer_event(&mut self, e: &PeerEvent) {
        let rooms = e.dialect != Dialect::PeerJs;
        let key = (e.dialect, e.app.clone(), e.room.clone());
        match e.change {
            Change::Joined => {
                let n = self.rooms.entry(key).or_insert(0);
                *n += 1;
                if *n == 1 && rooms {
                    self.queue("room_started", e, None);
                }
                self.queue("peer_joined", e, None);
            }
            Change::Left(reason) => {
                self.queue("peer_left", e, Some(reason.as_str()));
                let last = match self.rooms.get_mut(&key) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    _ => {
                        self.rooms.remove(&key);
                        true
                    }
                };
                if last && rooms {
                    self.queue("room_finished", e, None);
                }
            }
        }
    }

    fn queue(&self, kind: &str, e: &PeerEvent, reason: Option<&str>) {
        let mut data = serde_json::json!({
            "dialect": e.dialect.as_str(),
            "app": &*e.app,
            "room": &*e.room,
        });
        if kind.starts_with("peer_") {
            data["conn"] = e.conn.0.into();
        }
        if let Some(r) = reason {
            data["reason"] = r.into();
        }
        self.sink.queue(kind, data);
    }
}

/// Now, as RFC 3339 UTC.
fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Delivers one URL's events in order, each retried with backoff until it succeeds or the
/// retries are used up.
async fn send(
    url: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
    client: reqwest::Client,
    key: Arc<standardwebhooks::Webhook>,
    stats: Arc<WebhookStats>,
) {
    let mut failures_logged = crate::RateLimited::default();
    while let Some(event) = rx.recv().await {
        let mut delays = RETRIES.iter();
        loop {
            let why = match attempt(&client, &url, &key, &event).await {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Relaxed);
                    break;
                }
                Err(why) => why,
            };
            match delays.next() {
                Some(delay) => {
                    stats.retried.fetch_add(1, Relaxed);
                    tokio::time::sleep(*delay).await;
                }
                None => {
                    stats.failed.fetch_add(1, Relaxed);
                    if let Some(quiet) = failures_logged.due() {
                        tracing::warn!(
                            "webhook to {url} given up after {} attempts ({why}); {quiet} more \
                             given up since the last line",
                            RETRIES.len() + 1
                        );
                    }
                    break;
                }
            }
        }
    }
}

/// One signed POST; a 2xx answer is a delivery.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    key: &standardwebhooks::Webhook,
    event: &Event,
) -> Result<(), String> {
    let timestamp = i64::try_from(crate::unix_now()).unwrap_or(i64::MAX);
    let signature = key
        .sign(&event.id, timestamp, event.body.as_bytes())
        .map_err(|e| e.to_string())?;
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(event.body.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", res.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }

    #[test]
    fn secrets_and_urls_are_checked() {
        let ok = WebhookConfig {
            urls: vec!["https://example.com/hook".into()],
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            queue: 10,
        };
        assert_eq!(ok.validate(), Ok(()));
        for (secret, url) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "https://e.com"),
            ("whsec_not base64!", "https://e.com"),
            ("whsec_c2hvcnQ=", "https://e.com"),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "ftp://e.com"),
        ] {
            let c = WebhookConfig {
                urls: vec![url.into()],
                secret: secret.into(),
                queue: 10,
            };
            assert!(c.validate().is_err(), "{secret} {url}");
        }
    }
}
