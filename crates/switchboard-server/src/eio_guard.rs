//! Bounds on Engine.IO sessions (issue 15 finding 7). An Engine.IO polling handshake
//! (`GET /socket.io/?EIO=4&transport=polling` without `sid`) makes socketioxide hold a
//! session (~13 KB) until its heartbeat times out, whether or not the client ever connects a
//! socket.io namespace; 20,000 handshakes over four keep-alive connections took 267 MB and
//! counted against no limit. This layer, in front of socketioxide, counts the sessions that
//! polling handshakes opened, per source address and in total, and refuses a handshake over
//! either bound before socketioxide sees it.
//!
//! A session stays counted while requests carrying its `sid` keep arriving (a live polling
//! client has a request pending at all times; an upgraded one sends the upgrade request) and
//! for [`SESSION_TTL`] after the last one, which is longer than socketioxide's ping interval
//! plus timeout (45 s): a session the server has already dropped is not counted for long, and
//! one that is alive is never forgotten. A handshake straight over WebSocket
//! (`transport=websocket`, no `sid`) is one TCP connection for its whole life and is bounded by
//! the accept loop's per-address limit instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::accept::ClientAddr;

/// How long a session stays counted after the last request that named it.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(60);

/// Largest handshake answer read to learn the new session's id.
const MAX_HANDSHAKE_BODY: usize = 16 * 1024;

/// Sessions counted, per source and in total, with counters for `/api/v1/stats`.
#[derive(Debug)]
pub(crate) struct EioGuard {
    max_total: usize,
    max_per_source: usize,
    table: Mutex<Table>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
}

#[derive(Debug)]
struct Table {
    /// Session id → its source and when a request last named it.
    sessions: HashMap<Box<str>, (IpAddr, Instant)>,
    per_source: HashMap<IpAddr, usize>,
    last_sweep: Instant,
}

impl Table {
    /// Forgets sessions not named for [`SESSION_TTL`] (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let per_source = &mut self.per_source;
        self.sessions.retain(|_, (source, seen)| {
            let keep = now.duration_since(*seen) < SESSION_TTL;
            if !keep {
                if let Some(n) = per_source.get_mut(source) {
                    *n -= 1;
                    if *n == 0 {
                        per_source.remove(source);
                    }
                }
            }
            keep
        });
    }
}

/// Why a handshake was refused.
enum Refusal {
    Total,
    PerSource,
}

impl EioGuard {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            table: Mutex::new(Table {
                sessions: HashMap::new(),
                per_source: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
        }
    }

    /// Polling handshakes refused so far (either limit).
    pub(crate) fn refused(&self) -> u64 {
        self.refused_total.load(Relaxed) + self.refused_per_ip.load(Relaxed)
    }

    /// The counters as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        let sessions = self.table.lock().map_or(0, |t| t.sessions.len());
        serde_json::json!({
            "sessions": sessions,
            "refused_total": self.refused_total.load(Relaxed),
            "refused_per_ip": self.refused_per_ip.load(Relaxed),
        })
    }

    /// Whether a new session from `source` fits.
    fn check(&self, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Ok(mut t) = self.table.lock() else {
            return Ok(());
        };
        t.sweep(now);
        if self.max_total > 0 && t.sessions.len() >= self.max_total {
            self.refused_total.fetch_add(1, Relaxed);
            return Err(Refusal::Total);
        }
        if self.max_per_source > 0
            && t.per_source.get(&source).copied().unwrap_or(0) >= self.max_per_source
        {
            self.refused_per_ip.fetch_add(1, Relaxed);
            return Err(Refusal::PerSource);
        }
        Ok(())
    }

    fn record(&self, sid: &str, source: IpAddr, now: Instant) {
        let Ok(mut t) = self.table.lock() else {
            return;
        };
        if t.sessions.insert(sid.into(), (source, now)).is_none() {
            *t.per_source.entry(source).or_insert(0) += 1;
        }
    }

    fn touch(&self, sid: &str, now: Instant) {
        if let Ok(mut t) = self.table.lock() {
            if let Some((_, seen)) = t.sessions.get_mut(sid) {
                *seen = now;
            }
        }
    }
}

/// The value of `name` in a query string.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The session id in a polling handshake's answer (`0{"sid":"...",...}`, with a length prefix
/// in Engine.IO v3).
fn sid_of(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("\"sid\":\"")? + 7..];
    Some(&rest[..rest.find('"')?])
}

/// The middleware: counts and bounds Engine.IO sessions opened by polling handshakes.
pub(crate) async fn guard(
    State(g): State<std::sync::Arc<EioGuard>>,
    req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/socket.io/") {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let now = Instant::now();
    if let Some(sid) = query_param(query, "sid") {
        g.touch(sid, now);
        return next.run(req).await;
    }
    if query_param(query, "transport") != Some("polling") {
        return next.run(req).await;
    }
    let Some(source) = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| switchboard_core::source_key(a.0.ip()))
    else {
        return next.run(req).await;
    };
    if let Err(why) = g.check(source, now) {
        let (status, message) = match why {
            Refusal::Total => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server is at its socket.io session limit",
            ),
            Refusal::PerSource => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many socket.io sessions from this address",
            ),
        };
        // Engine.IO's error body: `{"code", "message"}` (code 4: Forbidden).
        return (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": 4, "message": message}).to_string(),
        )
            .into_response();
    }
    let response = next.run(req).await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_HANDSHAKE_BODY).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "handshake answer too large",
        )
            .into_response();
    };
    if let Some(sid) = sid_of(&bytes) {
        g.record(sid, source, now);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_parameters_and_handshake_sids() {
        assert_eq!(
            query_param("EIO=4&transport=polling&t=x", "transport"),
            Some("polling")
        );
        assert_eq!(query_param("EIO=4&sid=abc", "sid"), Some("abc"));
        assert_eq!(query_param("EIO=4&sidx=abc", "sid"), None);
        assert_eq!(
            sid_of(br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"]}"#),
            Some("lv_VI97HAXpY6yYWAAAC")
        );
        assert_eq!(sid_of(br#"96:0{"sid":"a1"}"#), Some("a1"));
        assert_eq!(sid_of(b"garbage"), None);
    }

    #[test]
    fn sessions_are_bounded_per_source_and_in_total_and_expire() {
        let g = EioGuard::new(3, 2);
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(g.check(a, t).is_ok());
        g.record("s1", a, t);
        g.record("s2", a, t);
        assert!(matches!(g.check(a, t), Err(Refusal::PerSource)));
        g.record("s3", b, t);
        assert!(matches!(g.check(b, t), Err(Refusal::Total)));
        // A session named again stays; the others are forgotten after the TTL.
        g.touch("s1", t + Duration::from_secs(50));
        let later = t + SESSION_TTL + Duration::from_secs(1);
        assert!(g.check(b, later).is_ok());
        let table = g.table.lock().unwrap();
        assert_eq!(table.sessions.len(), 1);
        assert_eq!(table.per_source.get(&a), Some(&1));
        assert_eq!(table.per_source.get(&b), None);
    }
}
