//! Real signatures: keys made by the `openssl` command, tokens signed by `jsonwebtoken`
//! (and, for the attacks, put together by hand), checked by [`JwtVerifier`].
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use base64::Engine as _;
use common::keypair;
use switchboard_auth::{JwtVerifier, KeyError, MintClaims, SigningAlgorithm, SigningKey, mint};
use switchboard_core::auth::{AuthError, RoomRule, TokenVerifier};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const EXP: u64 = 4_000_000_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa() -> (Vec<u8>, Vec<u8>) {
    keypair(
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

fn claims() -> MintClaims {
    MintClaims {
        exp: EXP,
        sub: Some("alice".into()),
        room: Some("team-*".into()),
        ..MintClaims::default()
    }
}

fn hs_verifier() -> JwtVerifier {
    let mut v = JwtVerifier::new();
    v.add_secret(None, SECRET).unwrap();
    v
}

#[test]
fn a_good_hs256_token_gives_its_claims() {
    let token = mint(&SigningKey::secret(SECRET), &claims()).unwrap();
    let c = hs_verifier().verify(&token).unwrap();
    assert_eq!(c.exp, EXP);
    assert_eq!(c.sub.unwrap().as_str(), "alice");
    assert_eq!(c.room, Some(RoomRule::Prefix("team-".into())));
    assert!(c.turn && c.offer && c.max_call.is_none());
}

#[test]
fn every_asymmetric_algorithm_verifies_with_its_public_key() {
    let cases = [
        (SigningAlgorithm::RS256, rsa()),
        (
            SigningAlgorithm::ES256,
            keypair(
                "p256",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
        ),
        (
            SigningAlgorithm::ES384,
            keypair(
                "p384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            ),
        ),
        (
            SigningAlgorithm::EdDSA,
            keypair("ed25519", &["-algorithm", "ED25519"]),
        ),
    ];
    for (alg, (private, public)) in cases {
        let mut v = JwtVerifier::new();
        v.add_public_key_pem(None, &public).unwrap();
        assert_eq!(v.describe(), vec![format!("{alg:?}")]);
        let key = SigningKey::private_pem(alg, &private).unwrap();
        let token = mint(&key, &claims()).unwrap();
        assert_eq!(v.verify(&token).unwrap().exp, EXP, "{alg:?}");
        // Tampered payload: the signature no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let evil = b64(format!(r#"{{"exp":{EXP},"sub":"mallory"}}"#).as_bytes());
        let tampered = format!("{}.{evil}.{}", parts[0], parts[2]);
        assert_eq!(v.verify(&tampered), Err(AuthError::Signature), "{alg:?}");
    }
}

#[test]
fn alg_none_and_unconfigured_algorithms_are_refused() {
    let v = hs_verifier();
    let payload = b64(format!(r#"{{"exp":{EXP}}}"#).as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        assert_eq!(
            v.verify(&format!("{header}.{payload}.")),
            Err(AuthError::Algorithm)
        );
    }
    // A real RS256 token when only an HS256 secret is configured.
    let (private, _) = rsa();
    let rs = mint(
        &SigningKey::private_pem(SigningAlgorithm::RS256, &private).unwrap(),
        &claims(),
    )
    .unwrap();
    assert_eq!(v.verify(&rs), Err(AuthError::Algorithm));
}

#[test]
fn hs256_signed_with_the_public_key_is_not_accepted() {
    // The classic confusion: the attacker knows the RSA public key and signs HS256 with its
    // bytes as the secret.
    let (_, public) = rsa();
    let forged = mint(&SigningKey::secret(&public), &claims()).unwrap();
    let mut rs_only = JwtVerifier::new();
    rs_only.add_public_key_pem(None, &public).unwrap();
    assert_eq!(rs_only.verify(&forged), Err(AuthError::Algorithm));
    // With an HS256 secret configured too, the token is checked against that secret only.
    let mut both = hs_verifier();
    both.add_public_key_pem(None, &public).unwrap();
    assert_eq!(both.verify(&forged), Err(AuthError::Signature));
}

#[test]
fn wrong_secret_and_malformed_tokens() {
    let v = hs_verifier();
    let other = mint(
        &SigningKey::secret(b"another-secret-another-secret-xx"),
        &claims(),
    )
    .unwrap();
    assert_eq!(v.verify(&other), Err(AuthError::Signature));
    for junk in ["", "abc", "a.b", "a.b.c", "....", "eyJ.eyJ.x"] {
        assert_eq!(v.verify(junk), Err(AuthError::Malformed), "{junk:?}");
    }
}

#[test]
fn kid_selects_the_key_for_rotation() {
    let mut v = JwtVerifier::new();
    v.add_secret(Some("old"), SECRET).unwrap();
    v.add_secret(Some("new"), b"fedcba9876543210fedcba9876543210")
        .unwrap();
    let old = mint(&SigningKey::secret(SECRET).with_kid("old"), &claims()).unwrap();
    let new = mint(
        &SigningKey::secret(b"fedcba9876543210fedcba9876543210").with_kid("new"),
        &claims(),
    )
    .unwrap();
    assert!(v.verify(&old).is_ok());
    assert!(v.verify(&new).is_ok());
    // Signed with the old key but naming the new one: checked against the new one only.
    let crossed = mint(&SigningKey::secret(SECRET).with_kid("new"), &claims()).unwrap();
    assert_eq!(v.verify(&crossed), Err(AuthError::Signature));
    let unknown = mint(&SigningKey::secret(SECRET).with_kid("gone"), &claims()).unwrap();
    assert_eq!(v.verify(&unknown), Err(AuthError::UnknownKey));
    assert!(matches!(
        v.add_secret(Some("old"), SECRET),
        Err(KeyError::DuplicateKid(_))
    ));
}

#[test]
fn claims_are_checked_for_type_and_form() {
    let v = hs_verifier();
    let sign = |json: &str| {
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64(json.as_bytes());
        let msg = format!("{header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
            SigningAlgorithm::HS256,
        )
        .unwrap();
        format!("{msg}.{sig}")
    };
    assert_eq!(
        v.verify(&sign(r#"{"sub":"a"}"#)),
        Err(AuthError::BadClaim("the token has no exp claim"))
    );
    assert!(matches!(
        v.verify(&sign(r#"{"exp":"soon"}"#)),
        Err(AuthError::BadClaim(_))
    ));
    assert!(matches!(
        v.verify(&sign(r#"{"exp":4000000000,"sub":"a b"}"#)),
        Err(AuthError::BadClaim(_))
    ));
    assert!(matches!(
        v.verify(&sign(r#"{"exp":4000000000,"room":"a*b"}"#)),
        Err(AuthError::BadClaim(_))
    ));
    assert!(matches!(
        v.verify(&sign(r#"{"exp":4000000000,"max_call":0}"#)),
        Err(AuthError::BadClaim(_))
    ));
    assert!(matches!(
        v.verify(&sign(r#"{"exp":4000000000,"app":"no/slash"}"#)),
        Err(AuthError::BadClaim(_))
    ));
    // A fractional time (Date.now() / 1000) is rounded down; unknown claims are ignored.
    let c = v
        .verify(&sign(
            r#"{"exp":4000000000.7,"iat":1,"aud":"x","turn":false,"offer":false,"max_call":90}"#,
        ))
        .unwrap();
    assert_eq!(c.exp, 4_000_000_000);
    assert!(!c.turn && !c.offer);
    assert_eq!(c.max_call, Some(std::time::Duration::from_secs(90)));
}

#[test]
fn bad_keys_are_refused_at_configuration() {
    let mut v = JwtVerifier::new();
    assert!(matches!(
        v.add_secret(None, b"short"),
        Err(KeyError::ShortSecret)
    ));
    assert!(matches!(
        v.add_public_key_pem(
            None,
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        ),
        Err(KeyError::NotAPublicKey)
    ));
    assert!(v.is_empty());
}
