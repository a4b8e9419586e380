//! Entry points for the fuzz targets (`fuzz/`) and their stable smoke test; not part of the
//! API. Packets go through the same [`State`] the listeners drive, with no sockets: replies
//! are counted, not sent.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use turn_server_proto::types::TransportType;

use crate::state::State;
use crate::{Shared, Stats, TurnConfig};

/// A TURN state with one UDP and one TCP listener on 192.0.2.1:3478, secret `fuzz`.
pub struct Harness {
    state: State,
    udp: (TransportType, SocketAddr),
    tcp: (TransportType, SocketAddr),
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

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
        let mut state = State::new(
            shared,
            HashSet::from([listen.ip()]),
            HashSet::from([3478]),
            // No relay socket is ever started: allocations need a valid MESSAGE-INTEGRITY.
            Box::new(|_, _| tokio::spawn(async {}).abort_handle()),
        );
        let udp = (TransportType::Udp, listen);
        let tcp = (TransportType::Tcp, listen);
        state.add_listener(udp, None);
        state.add_listener(tcp, None);
        Self { state, udp, tcp }
    }

    /// One packet from client `port` (on 198.51.100.1) over UDP or TCP (where it may hold
    /// several messages); returns how many packets the state wants sent and their bytes.
    pub fn packet(&mut self, tcp: bool, port: u16, data: &[u8]) -> (usize, usize) {
        let key = if tcp { self.tcp } else { self.udp };
        let client: SocketAddr = ([198, 51, 100, 1], port).into();
        let out = self.state.on_client(key, client, data);
        (out.len(), out.iter().map(|o| o.data.len()).sum())
    }

    /// Time passes (expiries, generations).
    pub fn tick(&mut self, unix_now: u64) -> usize {
        self.state.on_tick(unix_now).len()
    }
}
