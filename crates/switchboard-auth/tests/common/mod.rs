//! Key pairs made by the `openssl` command, for the tests and the benchmark
//! (`#[path]`-included there).

use std::path::PathBuf;
use std::process::Command;

/// A key pair made by `openssl`: (private PEM, public PEM).
pub(crate) fn keypair(name: &str, genpkey_args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("auth-keys");
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run at once (threads or processes): each pair gets its own files.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{name}-{}-{n}", std::process::id());
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl")
        .arg("genpkey")
        .args(genpkey_args)
        .arg("-out")
        .arg(&private)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey {name}");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout {name}");
    (
        std::fs::read(private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}
