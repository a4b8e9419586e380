//! ICE servers handed to clients, with short-lived TURN credentials.
//!
//! TURN credentials follow the scheme of coturn's REST API (`use-auth-secret` /
//! `static-auth-secret`), so any TURN server configured with the same shared secret accepts
//! them: username `<expiry-unix-time>:<user>`, password
//! `base64(HMAC-SHA1(secret, username))`. The server checks the HMAC and refuses the
//! username once its expiry time has passed.
//!
//! URLs may contain `{host}`, replaced by the host name or address the client used to reach
//! Switchboard (its `Host` header), so two machines on a LAN get a working TURN URL without
//! configuration.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use switchboard_proto::IceServer;

/// Placeholder in ICE URLs for the host the client used to reach the server.
pub const HOST_PLACEHOLDER: &str = "{host}";

/// Default lifetime of minted TURN credentials: one hour, as coturn's examples use.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(3600);

/// TURN servers that accept coturn REST-API credentials made with a shared secret.
#[derive(Clone)]
pub struct TurnRest {
    /// The shared secret (coturn `static-auth-secret`).
    pub secret: String,
    /// `turn:`/`turns:` URLs the credentials are for; may contain [`HOST_PLACEHOLDER`].
    pub urls: Vec<String>,
    /// How long minted credentials stay valid.
    pub ttl: Duration,
    /// Start of the user part of every minted username; the caller appends a serial, so each
    /// credential has its own user and its own TURN allocation quota (one client's
    /// allocations never use up another's). The binary draws it at random at start, so two
    /// processes sharing a secret (a restart, a second node) never mint the same user.
    pub user_prefix: String,
}

impl fmt::Debug for TurnRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnRest")
            .field("secret", &"<redacted>")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .field("user_prefix", &self.user_prefix)
            .finish()
    }
}

/// Everything needed to answer "which ICE servers should I use?".
#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    /// Fixed servers (STUN, or TURN with static credentials); URLs may contain
    /// [`HOST_PLACEHOLDER`].
    pub servers: Vec<IceServer>,
    /// TURN servers that get freshly minted short-lived credentials per request.
    pub turn: Option<TurnRest>,
}

impl IceConfig {
    /// Checks that every URL is a `stun:`, `turn:` or `turns:` URL, and that minted
    /// credentials have a secret, a lifetime and TURN URLs to be for.
    ///
    /// # Errors
    /// The first thing out of place.
    pub fn validate(&self) -> Result<(), crate::InvalidConfig> {
        for u in self.servers.iter().flat_map(|s| &s.urls) {
            if !switchboard_proto::is_ice_url(u) {
                return Err(crate::InvalidConfig(format!(
                    "ICE server URL {u:?} must start with stun:, turn: or turns:"
                )));
            }
        }
        if let Some(t) = &self.turn {
            crate::hub::check(!t.secret.is_empty(), "turn_secret must not be empty")?;
            crate::hub::check(!t.ttl.is_zero(), "turn_ttl_secs must be at least 1")?;
            crate::hub::check(
                !t.urls.is_empty() && t.urls.iter().all(|u| switchboard_proto::is_turn_url(u)),
                "turn_urls must be turn: or turns: URLs",
            )?;
        }
        Ok(())
    }

    /// Whether every answer is the same (no `{host}`, no minted credentials), so it can be
    /// computed once.
    #[must_use]
    pub fn is_static(&self) -> bool {
        self.turn.is_none()
            && !self
                .servers
                .iter()
                .flat_map(|s| &s.urls)
                .any(|u| u.contains(HOST_PLACEHOLDER))
    }

    /// The ICE servers for a client that reached the server as `host` (a bare host name or
    /// address, see [`host_from_header`]), at wall-clock time `unix_now` (seconds), for
    /// `user` (the user part of minted TURN usernames: [`TurnRest::user_prefix`] followed by
    /// something unique to this credential).
    ///
    /// URLs with [`HOST_PLACEHOLDER`] are left out when `host` is unknown.
    #[must_use]
    pub fn resolve(&self, host: Option<&str>, unix_now: u64, user: &str) -> Vec<IceServer> {
        let fill = |urls: &[String]| -> Vec<String> {
            urls.iter()
                .filter_map(|u| match (u.contains(HOST_PLACEHOLDER), host) {
                    (false, _) => Some(u.clone()),
                    (true, Some(h)) => Some(u.replace(HOST_PLACEHOLDER, h)),
                    (true, None) => None,
                })
                .collect()
        };
        let mut out: Vec<IceServer> = self
            .servers
            .iter()
            .map(|s| IceServer {
                urls: fill(&s.urls),
                ..s.clone()
            })
            .filter(|s| !s.urls.is_empty())
            .collect();
        if let Some(turn) = &self.turn {
            let urls = fill(&turn.urls);
            if !urls.is_empty() {
                let expiry = unix_now.saturating_add(turn.ttl.as_secs());
                let (username, credential) = rest_credentials(&turn.secret, expiry, user);
                out.push(IceServer {
                    urls,
                    username: Some(username),
                    credential: Some(credential),
                });
            }
        }
        out
    }
}

impl IceConfig {
    /// The STUN servers of [`IceConfig::resolve`] alone: what a client without a valid room
    /// token gets when tokens are required (no TURN URL, no credential, minted or fixed).
    #[must_use]
    pub fn resolve_stun_only(&self, host: Option<&str>) -> Vec<IceServer> {
        let no_turn = Self {
            servers: self.servers.clone(),
            turn: None,
        };
        no_turn
            .resolve(host, 0, "")
            .into_iter()
            .filter_map(|mut s| {
                s.urls.retain(|u| u.starts_with("stun:"));
                (!s.urls.is_empty()).then_some(IceServer {
                    username: None,
                    credential: None,
                    ..s
                })
            })
            .collect()
    }
}

/// The user part of TURN credentials minted for a room token's identity: `u.<sub>`. The
/// same identity always gets the same user, so the TURN server's per-user quota and logs
/// are per person; anonymous credentials (`<prefix>a<serial>`) can never look like one,
/// as the prefix is hex digits.
#[must_use]
pub fn identity_user(id: &crate::auth::Identity) -> String {
    format!("u.{id}")
}

/// coturn REST-API credentials: `("<expiry>:<user>", base64(HMAC-SHA1(secret, username)))`.
#[must_use]
pub fn rest_credentials(secret: &str, expiry_unix: u64, user: &str) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// The password coturn expects for a REST-API `username` under `secret`.
#[must_use]
pub fn rest_password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The host part of an HTTP `Host` header (`example.com:5080` → `example.com`,
/// `[::1]:5080` → `[::1]`), if it is a plain DNS name or IP address. Anything else (empty,
/// user info, odd characters) gives `None`, so it can never inject text into a URL.
#[must_use]
pub fn host_from_header(header: &str) -> Option<String> {
    let header = header.trim();
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = header.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let after_ok = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        let inner_ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return (after_ok && inner_ok).then(|| format!("[{}]", inner.to_ascii_lowercase()));
    }
    let (host, port) = match header.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (header, None),
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && port.is_none_or(port_ok)
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rest_password_known_answer() {
        // Computed independently (Python hmac): base64(HMAC-SHA1("north", "1700000000:alice")).
        assert_eq!(
            rest_password("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
        let (u, p) = rest_credentials("north", 1_700_000_000, "alice");
        assert_eq!(u, "1700000000:alice");
        assert_eq!(p, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn resolve_fills_host_and_mints() {
        let cfg = IceConfig {
            servers: vec![
                IceServer::stun("stun:{host}:3478"),
                IceServer::stun("stun:s.example:1"),
            ],
            turn: Some(TurnRest {
                secret: "north".into(),
                urls: vec!["turn:{host}:3478?transport=udp".into()],
                ttl: Duration::from_secs(600),
                user_prefix: "sb-".into(),
            }),
        };
        assert!(!cfg.is_static());
        let got = cfg.resolve(Some("10.1.2.3"), 1_700_000_000, "bob");
        assert_eq!(got[0].urls, vec!["stun:10.1.2.3:3478"]);
        assert_eq!(got[1].urls, vec!["stun:s.example:1"]);
        assert_eq!(got[2].urls, vec!["turn:10.1.2.3:3478?transport=udp"]);
        assert_eq!(got[2].username.as_deref(), Some("1700000600:bob"));
        assert_eq!(
            got[2].credential.as_deref(),
            Some(rest_password("north", "1700000600:bob").as_str())
        );
        // Unknown host: the {host} URLs are left out, the rest stays.
        let got = cfg.resolve(None, 1_700_000_000, "bob");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].urls, vec!["stun:s.example:1"]);
        assert!(
            IceConfig {
                servers: vec![IceServer::stun("stun:a:1")],
                turn: None
            }
            .is_static()
        );
    }

    #[test]
    fn host_header_parsing() {
        assert_eq!(
            host_from_header("Example.com:5080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_from_header("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(host_from_header("[::1]:5080").as_deref(), Some("[::1]"));
        assert_eq!(host_from_header("[fe80::1]").as_deref(), Some("[fe80::1]"));
        for bad in [
            "",
            "a b",
            "user@host",
            "h/x",
            "[::1]x",
            "[]",
            "a:1:2",
            "turn:evil?x",
            "[::g]",
        ] {
            assert_eq!(host_from_header(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = TurnRest {
            secret: "hunter2".into(),
            urls: vec![],
            ttl: DEFAULT_TURN_TTL,
            user_prefix: String::new(),
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
