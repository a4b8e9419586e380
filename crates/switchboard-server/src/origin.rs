//! `--allowed-origins`: which web pages may use Switchboard from a browser.
//!
//! Browsers send `Origin` with every WebSocket handshake and every cross-origin request, and
//! let a page read a cross-origin response only if the server allows it (CORS). With an
//! allow-list, a request whose `Origin` is neither on it nor the server's own origin (the
//! demo page) is refused with 403 before it reaches any dialect: WebSocket upgrades (Ant
//! Media, PeerJS, socket.io), socket.io polling, the PeerJS HTTP routes and `/api/`. Requests
//! without `Origin` (native clients, curl) are not browser requests and pass: an origin check
//! protects users' browsers from other sites, it does not authenticate (room tokens do).
//! Allowed cross-origin requests get `Access-Control-Allow-Origin: <their origin>` and
//! `Vary: Origin` instead of `*`. The embedded page, its scripts and the SDK stay public.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// Exactly this origin, e.g. `https://app.example.com` or `http://localhost:3000`.
    Exact(String),
    /// Any subdomain of `domain` (not `domain` itself), with this scheme if given and this
    /// port if given: `https://*.example.com`, `*.example.com`.
    Subdomains {
        /// `https`, `http`, or any when `None`.
        scheme: Option<String>,
        /// The parent domain, lower case, without the leading dot.
        domain: String,
        /// The port, or the scheme's default when `None`.
        port: Option<u16>,
    },
}

/// An entry of `--allowed-origins` that is not an origin or a `*.domain` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "allowed origin {0:?}: expected an origin (https://app.example.com, http://localhost:3000) or a pattern (https://*.example.com, *.example.com)"
)]
pub struct BadOrigin(pub String);

/// An origin's parts: (scheme, host, port), all lower case; `None` for `null` or junk.
fn parts(origin: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) if rest.starts_with('[') && rest.ends_with(']') => (rest, None),
            Err(_) => return None,
        },
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// The port an origin means: its own, or its scheme's default.
fn port_of(scheme: &str, port: Option<u16>) -> u16 {
    port.unwrap_or(if scheme == "https" { 443 } else { 80 })
}

impl OriginRule {
    /// Parses one entry.
    ///
    /// # Errors
    /// [`BadOrigin`] for anything that is not an origin or a `*.` pattern.
    pub fn parse(entry: &str) -> Result<Self, BadOrigin> {
        let bad = || BadOrigin(entry.to_owned());
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, entry),
        };
        if let Some(domain_port) = rest.strip_prefix("*.") {
            let (domain, port) = match domain_port.rsplit_once(':') {
                Some((d, p)) => (d, Some(p.parse::<u16>().map_err(|_| bad())?)),
                None => (domain_port, None),
            };
            let ok_scheme = scheme
                .as_deref()
                .is_none_or(|s| s == "http" || s == "https");
            let ok_domain = domain.contains('.')
                && domain.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok_scheme || !ok_domain {
                return Err(bad());
            }
            return Ok(Self::Subdomains {
                scheme,
                domain: domain.to_ascii_lowercase(),
                port,
            });
        }
        let (s, host, port) = parts(entry).ok_or_else(bad)?;
        if host.contains('*') {
            return Err(bad());
        }
        Ok(Self::Exact(match port {
            Some(p) => format!("{s}://{host}:{p}"),
            None => format!("{s}://{host}"),
        }))
    }

    /// Whether `origin` (an `Origin` header) is allowed by this rule.
    #[must_use]
    pub fn allows(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = parts(origin) else {
            return false;
        };
        match self {
            Self::Exact(o) => parts(o).is_some_and(|(s, h, p)| {
                s == scheme && h == host && port_of(&s, p) == port_of(&scheme, port)
            }),
            Self::Subdomains {
                scheme: want,
                domain,
                port: want_port,
            } => {
                want.as_deref().is_none_or(|w| w == scheme)
                    && host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                    && want_port.unwrap_or_else(|| port_of(&scheme, None)) == port_of(&scheme, port)
            }
        }
    }
}

/// Whether `origin` is the server's own: its host and port are the request's `Host`.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, oh, op)) = parts(origin) else {
        return false;
    };
    let want = match op {
        Some(p) => format!("{oh}:{p}"),
        None => oh,
    };
    let host = host.to_ascii_lowercase();
    host == want
        || host
            .strip_suffix(&format!(":{}", port_of(&scheme, None)))
            .is_some_and(|h| h == want)
}

/// Whether a request to `path` with these headers is a browser use of the server that the
/// allow-list governs.
fn guarded(path: &str, headers: &HeaderMap, peerjs_path: &str) -> bool {
    path.starts_with("/socket.io/")
        || path.starts_with(peerjs_path)
        || path.starts_with("/api/")
        || headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// What the middleware needs.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) rules: Option<Arc<[OriginRule]>>,
    pub(crate) peerjs_path: String,
    pub(crate) edge: Arc<crate::EdgeStats>,
}

/// The middleware: refuses disallowed origins, and sets the CORS headers of `/socket.io/`
/// and the PeerJS path (`*` without an allow-list, else the allowed origin).
pub(crate) async fn guard(
    axum::extract::State(g): axum::extract::State<Guard>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let cors = path.starts_with("/socket.io/") || path.starts_with(&g.peerjs_path);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let mut allowed_origin = None;
    if let (Some(rules), Some(origin)) = (&g.rules, &origin) {
        if guarded(path, req.headers(), &g.peerjs_path) {
            let ok = same_origin(origin, req.headers()) || rules.iter().any(|r| r.allows(origin));
            if !ok {
                g.edge.refused_origin.fetch_add(1, Ordering::Relaxed);
                return (
                    StatusCode::FORBIDDEN,
                    [(header::VARY, "Origin")],
                    "origin not allowed (--allowed-origins)\n",
                )
                    .into_response();
            }
            allowed_origin = Some(origin.clone());
        }
    }
    let mut res = next.run(req).await;
    if cors {
        let headers = res.headers_mut();
        match (&g.rules, allowed_origin) {
            (None, _) => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            (Some(_), Some(origin)) => {
                if let Ok(v) = HeaderValue::from_str(&origin) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                }
                headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            (Some(_), None) => {}
        }
    }
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exact_origins_and_subdomain_patterns() {
        let exact = OriginRule::parse("https://App.Example.com").unwrap();
        assert!(exact.allows("https://app.example.com"));
        assert!(exact.allows("https://app.example.com:443"));
        assert!(!exact.allows("http://app.example.com"));
        assert!(!exact.allows("https://app.example.com.evil.net"));
        assert!(!exact.allows("https://app.example.com:8443"));
        let local = OriginRule::parse("http://localhost:3000").unwrap();
        assert!(local.allows("http://localhost:3000"));
        assert!(!local.allows("http://localhost:3001"));

        let sub = OriginRule::parse("https://*.example.com").unwrap();
        assert!(sub.allows("https://a.example.com"));
        assert!(sub.allows("https://a.b.example.com"));
        assert!(!sub.allows("https://example.com"));
        assert!(!sub.allows("https://evilexample.com"));
        assert!(!sub.allows("http://a.example.com"));
        assert!(!sub.allows("https://a.example.com:8443"));
        let any_scheme = OriginRule::parse("*.example.com").unwrap();
        assert!(any_scheme.allows("http://a.example.com"));
        assert!(any_scheme.allows("https://a.example.com"));
        for junk in [
            "null",
            "",
            "https://",
            "ftp://a.example.com",
            "https://a.example.com/x",
        ] {
            assert!(!any_scheme.allows(junk), "{junk:?}");
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "example.com",
            "*",
            "*.com",
            "https://*.",
            "ftp://x.org",
            "https://a*.b.com",
            "https://x.org/path",
        ] {
            assert!(OriginRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_servers_own_origin_is_same_origin() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("sb.example.com:5080"),
        );
        assert!(same_origin("http://sb.example.com:5080", &h));
        assert!(!same_origin("http://evil.example.com:5080", &h));
        h.insert(header::HOST, HeaderValue::from_static("sb.example.com"));
        assert!(same_origin("https://sb.example.com", &h));
        h.insert(header::HOST, HeaderValue::from_static("sb.example.com:443"));
        assert!(same_origin("https://sb.example.com", &h));
    }
}
