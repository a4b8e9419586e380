//! The fuzz targets' smoke run in the normal test suite (stable toolchain, no libFuzzer):
//! every seed in `fuzz/seeds/<target>/`, then mutations of them (bit flips, inserted,
//! deleted and repeated bytes, splices of two seeds, frames shuffled) from a fixed random
//! seed, so a failure reproduces. `SWITCHBOARD_FUZZ_SMOKE=N` sets the mutations per target
//! (default 20,000) and `SWITCHBOARD_FUZZ_SEED` the random seed. The long coverage-guided runs
//! use cargo-fuzz on `fuzz/` (docs/BENCHMARKS.md, "Fuzzing").
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let len = v.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                let b = *[
                    b'"', b'{', b'}', b'\\', b'\n', 0, 0xff, b'0', b'-', b':', b',',
                ]
                .get(rng.random_range(0..11))
                .unwrap();
                v.insert(
                    i,
                    if rng.random_bool(0.5) {
                        b
                    } else {
                        rng.random()
                    },
                );
            }
            2 if len > 1 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(64));
                let chunk: Vec<u8> = v[i..i + n].to_vec();
                for _ in 0..rng.random_range(1..4) {
                    v.splice(i..i, chunk.iter().copied());
                }
            }
            4 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            5 => {
                let mut lines: Vec<Vec<u8>> =
                    v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                if n > 1 {
                    lines.swap(rng.random_range(0..n), rng.random_range(0..n));
                }
                v = lines.join(&b'\n');
            }
            _ => {
                let i = rng.random_range(0..=len);
                let noise: Vec<u8> = (0..rng.random_range(1..32)).map(|_| rng.random()).collect();
                v.splice(i..i, noise);
            }
        }
    }
    v
}

fn smoke(target: &str, run: fn(&[u8])) {
    let seeds = seeds(target);
    for s in &seeds {
        run(s);
    }
    let n: usize = std::env::var("SWITCHBOARD_FUZZ_SMOKE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("SWITCHBOARD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..n {
        let input = mutate(&mut rng, &seeds);
        let result = std::panic::catch_unwind(|| run(&input));
        assert!(
            result.is_ok(),
            "{target}: input {i} (seed {seed}) failed: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn antmedia() {
    smoke("antmedia", switchboard_fuzzing::antmedia);
}

#[test]
fn peerjs() {
    smoke("peerjs", switchboard_fuzzing::peerjs);
}

#[test]
fn socketio() {
    smoke("socketio", switchboard_fuzzing::socketio);
}

#[test]
fn turn() {
    smoke("turn", switchboard_fuzzing::turn);
}

/// The TURN harness is wired: a Binding request from the seeds gets its answer.
#[test]
fn the_turn_harness_answers_a_binding_request() {
    let framed = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/turn/binding.bin"),
    )
    .unwrap();
    let mut h = switchboard_turn::fuzzing::Harness::new();
    assert_eq!(h.packet(false, 40_000, &framed[3..]).0, 1);
}
