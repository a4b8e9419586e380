//! Records the git revision the binary is built from (`switchboard --version`, the startup
//! line): `SWITCHBOARD_GIT_REV` when set (a package built from a source tarball), else
//! `git rev-parse --short=12 HEAD` of the checkout, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_GIT_REV");
    let rev = std::env::var("SWITCHBOARD_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_rev)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SWITCHBOARD_GIT_REV={rev}");
}

/// `git` with `args` in this crate's folder: its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The checkout's revision; the build script runs again when HEAD or its branch moves.
fn git_rev() -> Option<String> {
    let dir = git(&["rev-parse", "--absolute-git-dir"])?;
    let mut watched = vec![format!("{dir}/HEAD"), format!("{dir}/packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(format!("{dir}/{branch}"));
    }
    // Only files that exist: a missing one would run the script at every build.
    for path in watched.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
