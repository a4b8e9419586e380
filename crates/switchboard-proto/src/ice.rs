//! ICE server descriptions handed to clients.

use serde::{Deserialize, Serialize};

/// One ICE server in the standard `RTCIceServer` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs of this server (read from one string or a list,
    /// as `RTCIceServer` allows).
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// TURN username; absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password; absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `"url"` or `["url", ...]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Urls::deserialize(d)? {
        Urls::One(u) => vec![u],
        Urls::Many(v) => v,
    })
}

/// Whether `url` is a TURN URL (`turn:` or `turns:`).
#[must_use]
pub fn is_turn_url(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// Whether `url` is any ICE server URL (`stun:`, `turn:` or `turns:`).
#[must_use]
pub fn is_ice_url(url: &str) -> bool {
    url.starts_with("stun:") || is_turn_url(url)
}

impl IceServer {
    /// A STUN-only server at `url`.
    #[must_use]
    pub fn stun(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            username: None,
            credential: None,
        }
    }

    /// Whether any URL of this server is a TURN URL.
    #[must_use]
    pub fn is_turn(&self) -> bool {
        self.urls.iter().any(|u| is_turn_url(u))
    }
}
