//! Who may join: the rules of signed room tokens, with no cryptography.
//!
//! A room token is a JWT made by the application in front of Switchboard. Checking its
//! signature is a [`TokenVerifier`]'s job (the `switchboard-auth` crate implements one with
//! a JWT library; the hub only sees the trait). What the claims allow is decided here, once
//! for every dialect and for the HTTP `ice-servers` route:
//!
//! - `exp` (required) and `nbf` against the edge's wall clock ([`crate::Hub::handle_wall_clock`]),
//!   with [`AuthConfig::skew`] of tolerance either way;
//! - `app`: when present, the app the client connected to must be this one;
//! - `room`: when present, an exact room name, or a prefix ending in `*` (`team-*`; `*`
//!   alone allows every room); a join of another room is refused;
//! - `sub`: the identity, 1 to [`MAX_IDENTITY_LEN`] bytes of `[A-Za-z0-9._@+-]`, carried in
//!   the user part of minted TURN credentials;
//! - grants: `turn` (may get TURN credentials, default true), `offer` (may make offers,
//!   default true), `max_call` (seconds a join may last, at most [`MAX_CALL_LIMIT`]).
//!
//! A token is checked when it is used (a join, a request for ICE servers): expiry during a
//! call does not end the call; a re-join needs a token valid at that moment.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Longest token accepted, in bytes; a longer one is refused before any decoding, so a
/// client cannot make the server parse or hold more than this per connection.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Longest identity (`sub`), in bytes.
pub const MAX_IDENTITY_LEN: usize = 128;

/// Longest `max_call` grant: one day.
pub const MAX_CALL_LIMIT: Duration = Duration::from_secs(86_400);

/// A validated identity (the token's `sub`): 1 to [`MAX_IDENTITY_LEN`] bytes of
/// `[A-Za-z0-9._@+-]` (an e-mail address or a user id fits; nothing that needs escaping in
/// a log line, a TURN username or JSON).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity(Arc<str>);

impl Identity {
    /// Validates `s`.
    ///
    /// # Errors
    /// [`AuthError::BadClaim`] when `s` is empty, too long or has another character.
    pub fn new(s: &str) -> Result<Self, AuthError> {
        if s.is_empty()
            || s.len() > MAX_IDENTITY_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'))
        {
            return Err(AuthError::BadClaim(
                "sub must be 1-128 characters of A-Z a-z 0-9 . _ @ + -",
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The identity as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rooms a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRule {
    /// Exactly this room.
    Exact(Box<str>),
    /// Every room whose name starts with this (the claim was `<prefix>*`; `*` alone is the
    /// empty prefix: every room).
    Prefix(Box<str>),
}

impl RoomRule {
    /// Parses a `room` claim: a room name, or a prefix followed by one `*` at the end.
    ///
    /// # Errors
    /// [`AuthError::BadClaim`] for an empty claim, a `*` anywhere but at the end, or a
    /// claim longer than a room name may be.
    pub fn parse(claim: &str) -> Result<Self, AuthError> {
        const BAD: AuthError = AuthError::BadClaim(
            "room must be a room name, or a prefix followed by * (at most 128 characters)",
        );
        if claim.is_empty() || claim.len() > switchboard_proto::MAX_STREAM_ID_LEN {
            return Err(BAD);
        }
        match claim.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(Self::Prefix(prefix.into())),
            None if !claim.contains('*') => Ok(Self::Exact(claim.into())),
            _ => Err(BAD),
        }
    }

    /// The claim as written, which [`RoomRule::parse`] reads back.
    #[must_use]
    pub fn to_claim(&self) -> Box<str> {
        match self {
            Self::Exact(r) => r.clone(),
            Self::Prefix(p) => format!("{p}*").into(),
        }
    }

    /// Whether a join of `room` is allowed.
    #[must_use]
    pub fn allows(&self, room: &str) -> bool {
        match self {
            Self::Exact(r) => **r == *room,
            Self::Prefix(p) => room.starts_with(&**p),
        }
    }
}

/// The claims of a token whose signature a [`TokenVerifier`] has checked. Times are Unix
/// seconds and are not checked yet: [`AuthConfig::admit`] does that with the hub's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `exp`: not accepted at or after this time (plus the skew).
    pub exp: u64,
    /// `nbf`: not accepted before this time (minus the skew).
    pub nbf: Option<u64>,
    /// `sub`: who holds the token.
    pub sub: Option<Identity>,
    /// `app`: the only app it is good for (any when absent).
    pub app: Option<Box<str>>,
    /// `room`: the rooms it is good for (any when absent).
    pub room: Option<RoomRule>,
    /// `turn`: may get TURN credentials (default true).
    pub turn: bool,
    /// `offer`: may be the offerer (default true).
    pub offer: bool,
    /// `max_call`: how long a join may last (no limit when absent).
    pub max_call: Option<Duration>,
}

impl Claims {
    /// Claims with only an expiry: any app, any room, every grant.
    #[must_use]
    pub fn expiring(exp: u64) -> Self {
        Self {
            exp,
            nbf: None,
            sub: None,
            app: None,
            room: None,
            turn: true,
            offer: true,
            max_call: None,
        }
    }
}

/// Checks a token's signature and decodes its claims. Implemented outside the core (the
/// `switchboard-auth` crate) so the hub stays free of cryptography libraries; a test may
/// implement it with a fake.
pub trait TokenVerifier: Send + Sync + fmt::Debug {
    /// The claims of `token` if its signature is good, its algorithm is the one pinned for
    /// its key, and its claims have the right types. Must not check `exp`/`nbf` (the caller
    /// does, with its own clock).
    ///
    /// # Errors
    /// Why the token is refused.
    fn verify(&self, token: &str) -> Result<Claims, AuthError>;
}

/// Room tokens are required: how they are verified, and the clock tolerance.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Checks signatures.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Tolerance for clocks that disagree, applied to `exp` and `nbf`. Default 30 s.
    pub skew: Duration,
}

/// Default [`AuthConfig::skew`].
pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);

impl AuthConfig {
    /// Token checking with `verifier` and the default skew.
    #[must_use]
    pub fn new(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self {
            verifier,
            skew: DEFAULT_SKEW,
        }
    }

    /// Whether `token` admits its holder, at wall-clock time `now_unix`, to `app` (when
    /// given: the HTTP routes have none) and `room` (when given).
    ///
    /// # Errors
    /// Why not: no token, too long, a bad signature or claim, expired, not yet valid, or
    /// another app or room.
    pub fn admit(
        &self,
        token: Option<&str>,
        now_unix: u64,
        app: Option<&str>,
        room: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let claims = self.verify(token.ok_or(AuthError::Missing)?)?;
        self.check(&claims, now_unix, app, room)?;
        Ok(claims)
    }

    /// The signature part of [`AuthConfig::admit`]: refuses an empty or oversized token
    /// before the verifier sees it.
    ///
    /// # Errors
    /// As [`AuthConfig::admit`], except the time, app and room checks.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLong);
        }
        self.verifier.verify(token)
    }

    /// The time, app and room checks of [`AuthConfig::admit`] on claims verified before
    /// (a token given once per connection is verified once, and checked at each use).
    ///
    /// # Errors
    /// As [`AuthConfig::admit`].
    pub fn check(
        &self,
        claims: &Claims,
        now_unix: u64,
        app: Option<&str>,
        room: Option<&str>,
    ) -> Result<(), AuthError> {
        let skew = self.skew.as_secs();
        if now_unix >= claims.exp.saturating_add(skew) {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now_unix.saturating_add(skew) < nbf)
        {
            return Err(AuthError::NotYetValid);
        }
        if let (Some(allowed), Some(app)) = (&claims.app, app) {
            if **allowed != *app {
                return Err(AuthError::WrongApp);
            }
        }
        if let (Some(rule), Some(room)) = (&claims.room, room) {
            if !rule.allows(room) {
                return Err(AuthError::WrongRoom);
            }
        }
        Ok(())
    }
}

/// Why a token is refused. Every dialect answers with its `unauthorized_access` error and
/// its text (`Display`) as the reason (docs/PROTOCOLS.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was given.
    #[error("a room token is required")]
    Missing,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than 4096 bytes")]
    TooLong,
    /// Not a JWT (three base64url parts of JSON).
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Its `alg` is not one this server accepts for the key (including `none`).
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// Its `kid` names no configured key.
    #[error("the token's key id is unknown")]
    UnknownKey,
    /// The signature does not match (wrong key, or a changed header or payload).
    #[error("the token's signature is not valid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` has not come yet.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A claim is missing or of the wrong form (the text says which).
    #[error("{0}")]
    BadClaim(&'static str),
    /// The token is for another app.
    #[error("the token is for another app")]
    WrongApp,
    /// The token is for another room.
    #[error("the token is for another room")]
    WrongRoom,
    /// The token does not grant what was asked (the text says what).
    #[error("{0}")]
    NotGranted(&'static str),
    /// Its check was refused by the join rate limits (too many token checks from this
    /// connection or address); the token itself was not looked at.
    #[error("too many token checks from this address; try again in a moment")]
    RateLimited,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug)]
    struct Fixed(Result<Claims, AuthError>);

    impl TokenVerifier for Fixed {
        fn verify(&self, _token: &str) -> Result<Claims, AuthError> {
            self.0.clone()
        }
    }

    fn config(claims: Claims) -> AuthConfig {
        AuthConfig::new(Arc::new(Fixed(Ok(claims))))
    }

    #[test]
    fn identities_are_a_safe_charset() {
        assert!(Identity::new("alice@example.com").is_ok());
        assert!(Identity::new("user_1.b+c-d").is_ok());
        for bad in ["", "a b", "a:b", "a\"b", "é", &"a".repeat(129)] {
            assert!(Identity::new(bad).is_err(), "{bad:?}");
        }
        assert!(Identity::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn room_rules() {
        let exact = RoomRule::parse("team-1").unwrap();
        assert!(exact.allows("team-1"));
        assert!(!exact.allows("team-10"));
        let prefix = RoomRule::parse("team-*").unwrap();
        assert!(prefix.allows("team-1") && prefix.allows("team-"));
        assert!(!prefix.allows("other"));
        let any = RoomRule::parse("*").unwrap();
        assert!(any.allows("x"));
        for bad in ["", "a*b", "**", "*a", &"a".repeat(129)] {
            assert!(RoomRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_app_and_room_are_checked_with_the_skew() {
        let mut claims = Claims::expiring(1_000);
        claims.nbf = Some(500);
        claims.app = Some("LiveApp".into());
        claims.room = Some(RoomRule::parse("r1").unwrap());
        let auth = config(claims);
        let admit = |now, app, room| auth.admit(Some("t"), now, Some(app), room);
        assert!(admit(700, "LiveApp", Some("r1")).is_ok());
        // 30 s of skew either way.
        assert!(admit(1_029, "LiveApp", Some("r1")).is_ok());
        assert_eq!(admit(1_030, "LiveApp", Some("r1")), Err(AuthError::Expired));
        assert!(admit(470, "LiveApp", Some("r1")).is_ok());
        assert_eq!(
            admit(469, "LiveApp", Some("r1")),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(admit(700, "Other", Some("r1")), Err(AuthError::WrongApp));
        assert_eq!(admit(700, "LiveApp", Some("r2")), Err(AuthError::WrongRoom));
        // No room asked (ICE servers): the room claim does not apply.
        assert!(admit(700, "LiveApp", None).is_ok());
    }

    #[test]
    fn missing_and_oversized_tokens_never_reach_the_verifier() {
        let auth = AuthConfig::new(Arc::new(Fixed(Err(AuthError::Signature))));
        assert_eq!(auth.admit(None, 0, None, None), Err(AuthError::Missing));
        assert_eq!(auth.admit(Some(""), 0, None, None), Err(AuthError::Missing));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            auth.admit(Some(&long), 0, None, None),
            Err(AuthError::TooLong)
        );
        assert_eq!(
            auth.admit(Some("x"), 0, None, None),
            Err(AuthError::Signature)
        );
    }
}
