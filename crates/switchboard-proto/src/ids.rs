//! Validated identifiers and opaque JSON payloads.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Longest accepted `streamId`, in bytes. Longer names get `invalidStreamName`.
///
/// Ant Media stream ids are short tokens; 128 leaves room for UUIDs with prefixes while
/// keeping every room key small.
pub const MAX_STREAM_ID_LEN: usize = 128;

/// Longest accepted app name, in bytes.
pub const MAX_APP_LEN: usize = 64;

/// A validated name: 1 to `MAX` bytes of `[A-Za-z0-9_.-]`. Cheap to clone (a shared
/// `Arc<str>`): the same name is echoed in every message of a room. [`StreamId`] and [`App`]
/// are the two lengths Switchboard uses; they are distinct types, so one is never passed for
/// the other.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name<const MAX: usize>(Arc<str>);

/// A room name (`streamId`): 1 to [`MAX_STREAM_ID_LEN`] bytes of `[A-Za-z0-9_.-]`.
pub type StreamId = Name<MAX_STREAM_ID_LEN>;

/// An application name (the `<app>` of `/<app>/websocket`): 1 to [`MAX_APP_LEN`] bytes of
/// `[A-Za-z0-9_.-]`. Rooms of different apps never meet.
pub type App = Name<MAX_APP_LEN>;

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than its type allows.
    #[error("name is too long")]
    TooLong,
    /// The name has a character outside `[A-Za-z0-9_.-]`.
    #[error("name may only contain A-Z a-z 0-9 _ . -")]
    BadChar,
}

/// Why a string is not a valid [`StreamId`].
pub type InvalidStreamId = InvalidName;

/// Why a string is not a valid [`App`].
pub type InvalidApp = InvalidName;

impl<const MAX: usize> Name<MAX> {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() {
            return Err(InvalidName::Empty);
        }
        if s.len() > MAX {
            return Err(InvalidName::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(InvalidName::BadChar);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Name<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for Name<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> Serialize for Name<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Read back with the same rules as [`Name::new`] (messages between cluster nodes).
impl<'de, const MAX: usize> serde::Deserialize<'de> for Name<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A JSON value carried through the server untouched: the exact text the sender wrote.
///
/// Used for SDP, ICE candidates and application data. The server checks that it is valid
/// JSON (it came out of a JSON parser) and of the expected kind, and never re-encodes it.
/// One allocation holding the text: a relayed value is moved, never shared.
#[derive(Clone)]
pub struct Opaque(Box<RawValue>);

impl PartialEq for Opaque {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Opaque {}

impl Opaque {
    /// Takes a raw JSON value that serde_json wrote (`serde_json::value::to_raw_value`),
    /// without copying or parsing it again.
    #[must_use]
    pub fn from_boxed(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// Checks that `text` is JSON and keeps it as it is.
    ///
    /// # Errors
    /// When `text` is not one JSON value.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The raw value, to hand to a serializer.
    #[must_use]
    pub fn into_raw(self) -> Box<RawValue> {
        self.0
    }

    /// Copies a raw JSON value out of a parsed frame.
    #[must_use]
    pub fn from_raw(raw: &RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// Wraps a Rust string as a JSON string value (used by tests and native clients).
    #[must_use]
    pub fn string(s: &str) -> Self {
        let text = serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""));
        // A serialized string is always valid JSON, so this never takes the fallback.
        match RawValue::from_string(text) {
            Ok(raw) => Self(raw),
            Err(_) => Self::null(),
        }
    }

    /// The JSON `null` value.
    #[must_use]
    pub fn null() -> Self {
        Self(RawValue::NULL.to_owned())
    }

    /// The exact JSON text.
    #[must_use]
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The value as a Rust string, when it is a JSON string.
    #[must_use]
    pub fn to_str(&self) -> Option<String> {
        serde_json::from_str(self.0.get()).ok()
    }

    /// Whether the value is a JSON string.
    #[must_use]
    pub fn is_string(&self) -> bool {
        self.0.get().starts_with('"')
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl Serialize for Opaque {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Read back as the exact text (messages between cluster nodes).
impl<'de> serde::Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rules() {
        assert!(StreamId::new("room-1_a.b").is_ok());
        assert_eq!(StreamId::new(""), Err(InvalidStreamId::Empty));
        assert_eq!(StreamId::new("a b"), Err(InvalidStreamId::BadChar));
        assert_eq!(StreamId::new("é"), Err(InvalidStreamId::BadChar));
        assert!(StreamId::new(&"a".repeat(MAX_STREAM_ID_LEN)).is_ok());
        assert_eq!(
            StreamId::new(&"a".repeat(MAX_STREAM_ID_LEN + 1)),
            Err(InvalidStreamId::TooLong)
        );
    }

    #[test]
    fn opaque_keeps_text() {
        let o = Opaque::string("v=0\r\n\"x\"");
        assert_eq!(o.json(), r#""v=0\r\n\"x\"""#);
        assert_eq!(o.to_str().as_deref(), Some("v=0\r\n\"x\""));
        assert!(o.is_string());
        assert!(!Opaque::null().is_string());
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn each_name_type_has_its_own_length_and_the_same_characters() {
        assert!(App::new(&"a".repeat(MAX_APP_LEN)).is_ok());
        assert_eq!(
            App::new(&"a".repeat(MAX_APP_LEN + 1)),
            Err(InvalidName::TooLong)
        );
        assert!(StreamId::new(&"a".repeat(MAX_APP_LEN + 1)).is_ok());
        assert_eq!(
            StreamId::new(&"a".repeat(MAX_STREAM_ID_LEN + 1)),
            Err(InvalidName::TooLong)
        );
        assert_eq!(App::new(""), Err(InvalidName::Empty));
        assert_eq!(StreamId::new("a/b"), Err(InvalidName::BadChar));
        assert_eq!(
            App::new("Live_App-1.0").map(|a| a.to_string()),
            Ok("Live_App-1.0".into())
        );
    }
}
