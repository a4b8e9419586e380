//! Entry points for the fuzz targets (`fuzz/`) and their stable smoke test; not part of the
//! API. Packets go through the same sans-IO machine the listeners drive, with no sockets:
//! replies are counted, not sent.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use turn_server_proto::types::{Instant, TransportType};

use crate::machine::{Command, Now, Turn};
use crate::{Shared, Stats, TurnConfig};

/// A TURN machine with one UDP and one TCP listener on 192.0.2.1:3478, secret `fuzz`, and a
/// clock that starts at Unix time 1,800,000,000.
pub struct Harness {
    turn: Turn<(), ()>,
    now: Now,
    udp: (TransportType, SocketAddr),
    tcp: (TransportType, SocketAddr),
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// The Unix time the harness's clock starts at.
const START: u64 = 1_800_000_000;

impl Harness {
    /// A fresh state.
    #[must_use]
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            config: TurnConfig {
                secret: "fuzz".to_owned(),
                // Small, so that generations roll over within a run.
                max_clients_per_generation: 64,
                ..TurnConfig::default()
            },
            stats: Stats::default(),
        });
        let listen: SocketAddr = ([192, 0, 2, 1], 3478).into();
        let mut turn = Turn::new(
            shared,
            HashSet::from([listen.ip()]),
            HashSet::from([3478]),
            0,
        );
        let udp = (TransportType::Udp, listen);
        let tcp = (TransportType::Tcp, listen);
        turn.add_listener(udp, Some(()));
        turn.add_listener(tcp, None);
        let now = Now {
            mono: Instant::ZERO,
            unix: START,
        };
        Self {
            turn,
            now,
            udp,
            tcp,
        }
    }

    /// One packet from client `port` (on 198.51.100.1) over UDP or TCP (where it may hold
    /// several messages); returns how many packets the machine wants sent and their bytes.
    pub fn packet(&mut self, tcp: bool, port: u16, data: &[u8]) -> (usize, usize) {
        let key = if tcp { self.tcp } else { self.udp };
        let client: SocketAddr = ([198, 51, 100, 1], port).into();
        if tcp {
            self.turn.handle_tcp_open(self.now, key, client, ());
        }
        self.turn.handle_client(self.now, key, client, data);
        self.drain()
    }

    /// Time passes to Unix time `unix_now` (expiries, generations).
    pub fn tick(&mut self, unix_now: u64) -> usize {
        let secs = unix_now.saturating_sub(START);
        self.now = Now {
            mono: Instant::from_nanos(
                i64::try_from(secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX),
            ),
            unix: unix_now,
        };
        self.turn.handle_tick(self.now);
        self.drain().0
    }

    /// Counts the packets to send; no relay socket is ever opened (allocations need a valid
    /// MESSAGE-INTEGRITY, which fuzzed input does not carry; were one asked for, the answer
    /// is "no free port").
    fn drain(&mut self) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        while let Some(c) = self.turn.poll_command() {
            match c {
                Command::Send { data, .. } => {
                    n += 1;
                    bytes += data.len();
                }
                Command::OpenRelay { request, .. } => {
                    let _ = self.turn.handle_relay_opened(self.now, request, None);
                }
                Command::CloseRelay { .. } | Command::Event(_) => {}
            }
        }
        (n, bytes)
    }
}
