//! Application names: independent namespaces of rooms.

use std::fmt;
use std::sync::Arc;

/// Longest accepted app name, in bytes.
pub const MAX_APP_LEN: usize = 64;

/// An application name (the `<app>` of `/<app>/websocket`): 1 to [`MAX_APP_LEN`] bytes of
/// `[A-Za-z0-9_.-]`. Rooms of different apps never meet.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct App(Arc<str>);

/// Why a string is not a valid [`App`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("app name must be 1-{MAX_APP_LEN} characters of A-Z a-z 0-9 _ . -")]
pub struct InvalidApp;

impl App {
    /// Validates an app name.
    pub fn new(s: &str) -> Result<Self, InvalidApp> {
        let ok = !s.is_empty()
            && s.len() <= MAX_APP_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidApp)
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
