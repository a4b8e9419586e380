//! Running the real `switchboard` binary in tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process, killed (by pid) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `switchboard serve` on an ephemeral loopback port.
pub struct Switchboard {
    pub proc: Killed,
    pub port: u16,
}

impl Switchboard {
    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// Starts `switchboard serve --listen 127.0.0.1:0 <args>` with extra environment `env`, and
/// waits for its startup line (which must name the WebSocket URL) to learn the port.
pub fn start_switchboard(args: &[&str], env: &[(&str, &str)]) -> Switchboard {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("switchboard exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            assert!(
                line.contains("/<app>/websocket"),
                "startup line names the URLs: {line}"
            );
            break rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Switchboard {
        proc: Killed(child),
        port,
    }
}
