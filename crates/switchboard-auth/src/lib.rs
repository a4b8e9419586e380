//! Switchboard's room tokens: signed JWTs checked with the `jsonwebtoken` crate.
//!
//! [`JwtVerifier`] is the [`TokenVerifier`] the server gives the hub: it holds the
//! configured keys, each with the one algorithm it may verify (an HS256 secret, or an
//! RS256 / ES256 / ES384 / EdDSA public key from a PEM file, the algorithm read from the
//! key itself), optionally named by a `kid`. A token is checked only against keys of its
//! header's `alg` (and of its `kid`, when it names one), so:
//!
//! - `alg: none` and every algorithm without a configured key are refused;
//! - an HS256 token "signed" with a public key's bytes never meets that key (the public key
//!   is only ever used for its own asymmetric algorithm), so there is no HS/RS confusion;
//! - keys rotate by `kid`: tokens name the key that signed them, old and new are both
//!   configured during the change-over.
//!
//! What the claims allow (times, app, room, grants) is the core's rule
//! ([`switchboard_core::auth`]); this crate only checks signatures and claim types, and mints
//! tokens for `switchboard token` and tests ([`mint`]).

use std::collections::HashSet;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_core::auth::{
    AuthError, Claims, Identity, MAX_CALL_LIMIT, RoomRule, TokenVerifier,
};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An HS256 secret shorter than [`MIN_SECRET_LEN`].
    #[error("the auth secret must be at least {MIN_SECRET_LEN} bytes (RFC 7518 §3.2)")]
    ShortSecret,
    /// A PEM file that holds no RSA, EC (P-256/P-384) or Ed25519 public key.
    #[error("not an RSA, EC (P-256 or P-384) or Ed25519 public key in PEM form")]
    NotAPublicKey,
    /// Two keys with the same `kid` (or two without one of the same algorithm family
    /// would make the choice ambiguous only by algorithm; that is allowed).
    #[error("two keys have the key id {0:?}")]
    DuplicateKid(String),
}

/// One configured key.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Checks room tokens against configured keys. See the crate docs.
#[derive(Default)]
pub struct JwtVerifier {
    keys: Vec<Key>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.alg))
            .collect();
        f.debug_struct("JwtVerifier").field("keys", &keys).finish()
    }
}

impl JwtVerifier {
    /// A verifier with no keys (it refuses every token until one is added).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no key is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The algorithms of the configured keys, for the startup log.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| match &k.kid {
                Some(kid) => format!("{:?} (kid {kid})", k.alg),
                None => format!("{:?}", k.alg),
            })
            .collect()
    }

    /// Adds an HS256 shared secret.
    ///
    /// # Errors
    /// [`KeyError::ShortSecret`] below [`MIN_SECRET_LEN`] bytes; a repeated `kid`.
    pub fn add_secret(&mut self, kid: Option<&str>, secret: &[u8]) -> Result<(), KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret);
        }
        self.push(kid, Algorithm::HS256, DecodingKey::from_secret(secret))
    }

    /// Adds a public key in PEM form; its algorithm comes from the key: RSA → RS256,
    /// EC P-256 → ES256, EC P-384 → ES384, Ed25519 → EdDSA.
    ///
    /// # Errors
    /// [`KeyError::NotAPublicKey`] for anything else (a private key, a certificate, junk);
    /// a repeated `kid`.
    pub fn add_public_key_pem(&mut self, kid: Option<&str>, pem: &[u8]) -> Result<(), KeyError> {
        let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, k)
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (ec_algorithm(pem).ok_or(KeyError::NotAPublicKey)?, k)
        } else {
            return Err(KeyError::NotAPublicKey);
        };
        self.push(kid, alg, key)
    }

    fn push(
        &mut self,
        kid: Option<&str>,
        alg: Algorithm,
        key: DecodingKey,
    ) -> Result<(), KeyError> {
        if let Some(kid) = kid {
            if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(KeyError::DuplicateKid(kid.to_owned()));
            }
        }
        self.keys.push(Key {
            kid: kid.map(str::to_owned),
            alg,
            key,
        });
        Ok(())
    }
}

/// ES256 or ES384, from the curve named in an EC public key's DER (its `namedCurve` OID).
fn ec_algorithm(pem: &[u8]) -> Option<Algorithm> {
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(P256) {
        Some(Algorithm::ES256)
    } else if has(P384) {
        Some(Algorithm::ES384)
    } else {
        None
    }
}

/// The claims as they are on the wire. Numbers are taken as JSON numbers so a fractional
/// time (`Date.now() / 1000` without rounding) is accepted, rounded down.
#[derive(Deserialize)]
struct WireClaims {
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    sub: Option<String>,
    app: Option<String>,
    room: Option<String>,
    turn: Option<bool>,
    offer: Option<bool>,
    max_call: Option<serde_json::Number>,
}

/// A JSON number as whole seconds, if it is a non-negative number.
fn seconds(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            // In range and finite: the cast cannot truncate anything but the fraction.
            .map(|f| f.floor() as u64)
    })
}

impl WireClaims {
    fn into_claims(self) -> Result<Claims, AuthError> {
        let exp = self
            .exp
            .ok_or(AuthError::BadClaim("the token has no exp claim"))?;
        let exp = seconds(&exp).ok_or(AuthError::BadClaim("exp must be a number of seconds"))?;
        let nbf = match self.nbf {
            None => None,
            Some(n) => {
                Some(seconds(&n).ok_or(AuthError::BadClaim("nbf must be a number of seconds"))?)
            }
        };
        let max_call = match self.max_call {
            None => None,
            Some(n) => {
                let s = seconds(&n)
                    .filter(|&s| s >= 1 && s <= MAX_CALL_LIMIT.as_secs())
                    .ok_or(AuthError::BadClaim(
                        "max_call must be a number of seconds from 1 to 86400",
                    ))?;
                Some(std::time::Duration::from_secs(s))
            }
        };
        let app = match self.app {
            None => None,
            Some(a) => Some(
                switchboard_core::App::new(&a)
                    .map_err(|_| AuthError::BadClaim("app must be an app name"))?
                    .as_str()
                    .into(),
            ),
        };
        Ok(Claims {
            exp,
            nbf,
            sub: self.sub.as_deref().map(Identity::new).transpose()?,
            app,
            room: self.room.as_deref().map(RoomRule::parse).transpose()?,
            turn: self.turn.unwrap_or(true),
            offer: self.offer.unwrap_or(true),
            max_call,
        })
    }
}

/// The algorithm a token's header names, read without the `jsonwebtoken` header type (which
/// rejects names it does not know, such as `none`, as malformed JSON).
fn header_alg(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    let first = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Alg>(&json).ok().map(|a| a.alg)
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // A readable header with an algorithm this library does not know (`none`).
            Err(_) if header_alg(token).is_some() && token.split('.').count() == 3 => {
                return Err(AuthError::Algorithm);
            }
            Err(_) => return Err(AuthError::Malformed),
        };
        let of_alg = self.keys.iter().filter(|k| k.alg == header.alg);
        // A `kid` selects among named keys; when no key is named, it is ignored (many
        // libraries always write one).
        let named = self.keys.iter().any(|k| k.kid.is_some());
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) if named => {
                if !self.keys.iter().any(|k| k.kid.as_ref() == Some(kid)) {
                    return Err(AuthError::UnknownKey);
                }
                of_alg.filter(|k| k.kid.as_ref() == Some(kid)).collect()
            }
            _ => of_alg.collect(),
        };
        if candidates.is_empty() {
            return Err(AuthError::Algorithm);
        }
        let mut validation = Validation::new(header.alg);
        // The core checks times with the hub's clock; `exp` is required there.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let mut last = AuthError::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<WireClaims>(token, &key.key, &validation) {
                Ok(data) => return data.claims.into_claims(),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::Signature,
                        ErrorKind::InvalidAlgorithm
                        | ErrorKind::InvalidAlgorithmName
                        | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
                        ErrorKind::Json(_) => {
                            return Err(AuthError::BadClaim(
                                "a claim has the wrong type (exp, nbf and max_call are numbers, \
                                 sub, app and room strings, turn and offer booleans)",
                            ));
                        }
                        _ => AuthError::Malformed,
                    };
                    if last != AuthError::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// Claims of a token to mint ([`mint`]): what an application back end puts in one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MintClaims {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// App.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Room name or `prefix*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// May get TURN credentials (absent: yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<bool>,
    /// May make offers (absent: yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<bool>,
    /// Longest join, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_call: Option<u64>,
}

/// A key to sign tokens with.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
}

impl SigningKey {
    /// An HS256 shared secret.
    #[must_use]
    pub fn secret(secret: &[u8]) -> Self {
        Self {
            alg: Algorithm::HS256,
            kid: None,
            key: EncodingKey::from_secret(secret),
        }
    }

    /// A private key in PEM form for `alg` (RS256, ES256, ES384 or EdDSA).
    ///
    /// # Errors
    /// The key does not parse for that algorithm.
    pub fn private_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem)?,
            _ => EncodingKey::from_rsa_pem(pem)?,
        };
        Ok(Self {
            alg,
            kid: None,
            key,
        })
    }

    /// The same key, named `kid` in the tokens it signs.
    #[must_use]
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }
}

/// Signs `claims` into a token.
///
/// # Errors
/// The key cannot sign (a key of the wrong type for its algorithm).
pub fn mint(key: &SigningKey, claims: &MintClaims) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(key.alg);
    header.kid.clone_from(&key.kid);
    jsonwebtoken::encode(&header, claims, &key.key)
}

pub use jsonwebtoken::Algorithm as SigningAlgorithm;
