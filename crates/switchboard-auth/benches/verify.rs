//! What a room token costs the server: one signature check per join (or per connection for a
//! URL token), for each algorithm, and a forged token's refusal. Keys are made by `openssl`.
//! `cargo bench -p switchboard-auth`; results in docs/BENCHMARKS.md ("Room tokens").
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard_auth::{JwtVerifier, MintClaims, SigningAlgorithm, SigningKey, mint};
use switchboard_core::auth::TokenVerifier;

fn bench(c: &mut Criterion) {
    let claims = MintClaims {
        exp: 4_000_000_000,
        sub: Some("alice@example.com".into()),
        room: Some("team-*".into()),
        ..MintClaims::default()
    };
    let secret = b"0123456789abcdef0123456789abcdef";
    let mut cases = vec![(
        "HS256",
        JwtVerifier::new(),
        mint(&SigningKey::secret(secret), &claims).unwrap(),
    )];
    cases[0].1.add_secret(None, secret).unwrap();
    for (name, alg, args) in [
        (
            "RS256 (2048)",
            SigningAlgorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "ES256",
            SigningAlgorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "EdDSA",
            SigningAlgorithm::EdDSA,
            &["-algorithm", "ED25519"][..],
        ),
    ] {
        let (private, public) = common::keypair(&name[..5], args);
        let mut v = JwtVerifier::new();
        v.add_public_key_pem(None, &public).unwrap();
        let token = mint(&SigningKey::private_pem(alg, &private).unwrap(), &claims).unwrap();
        cases.push((name, v, token));
    }
    let mut group = c.benchmark_group("verify");
    for (name, verifier, token) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| verifier.verify(black_box(token)).unwrap())
        });
    }
    // A forged token (another payload under the real signature) costs the whole check: what
    // a flood of them costs before the join rate limits stop it.
    let (_, verifier, token) = &cases[1];
    let parts: Vec<&str> = token.split('.').collect();
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"exp":4000000000,"room":"*","sub":"admin"}"#,
    );
    let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
    group.bench_function("RS256 (2048), forged", |b| {
        b.iter(|| verifier.verify(black_box(&forged)).is_err())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
