//! RFC 5766 §9: "the port portion of each XOR-PEER-ADDRESS is ignored" in CreatePermission.
//! Clients such as `turn-client-proto` send port 0; a permission towards an address that
//! hosts relays of this server must still be granted (relay to relay), while packets sent
//! through it are checked with their real ports. Driven by the `turn-client-proto` client
//! over real UDP sockets.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_turn::{TurnConfig, start};
use turn_client_proto::api::{
    TurnClientApi as _, TurnConfig as ClientConfig, TurnEvent, TurnPollRet,
};
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

struct Client {
    turn: TurnClientUdp,
    socket: UdpSocket,
    base: Instant,
}

impl Client {
    fn new(server: SocketAddr, secret: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let user = format!(
            "{}:perm",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 600
        );
        let pass = switchboard_core::ice::rest_password(secret, &user);
        let mut config = ClientConfig::new(TurnCredentials::new(&user, &pass));
        config.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        let turn = TurnClientUdp::allocate(socket.local_addr().unwrap(), server, config);
        Self {
            turn,
            socket,
            base: Instant::now(),
        }
    }

    /// Drives the client until `want` returns a value for one of its events (5 s at most).
    fn until<T>(&mut self, mut want: impl FnMut(&TurnEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let now = turn_client_proto::types::Instant::from_std(self.base);
            let _ = matches!(self.turn.poll(now), TurnPollRet::WaitUntil(_));
            while let Some(t) = self.turn.poll_transmit(now) {
                self.socket.send_to(t.data.as_ref(), t.to).unwrap();
            }
            while let Some(e) = self.turn.poll_event() {
                if let Some(v) = want(&e) {
                    return v;
                }
            }
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                let t = turn_client_proto::stun::agent::Transmit::new(
                    &buf[..n],
                    TransportType::Udp,
                    from,
                    self.socket.local_addr().unwrap(),
                );
                let _ = self.turn.recv(t, now);
            }
        }
        panic!("timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_with_port_0_to_a_relay_address_is_granted() {
    let secret = "permission-test";
    let server = start(TurnConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        secret: secret.into(),
        ..TurnConfig::default()
    })
    .await
    .unwrap();
    let addr: SocketAddr = server.udp_addrs()[0];
    let (granted, refused) = tokio::task::spawn_blocking(move || {
        let mut a = Client::new(addr, secret);
        let mut b = Client::new(addr, secret);
        let relay_a = a.until(|e| match e {
            TurnEvent::AllocationCreated(_, r) => Some(*r),
            _ => None,
        });
        let relay_b = b.until(|e| match e {
            TurnEvent::AllocationCreated(_, r) => Some(*r),
            _ => None,
        });
        assert_eq!(relay_a.ip(), relay_b.ip());
        let now = turn_client_proto::types::Instant::from_std(a.base);
        // turn-client-proto puts port 0 in XOR-PEER-ADDRESS.
        a.turn
            .create_permission(TransportType::Udp, relay_b.ip(), now)
            .unwrap();
        let granted = a.until(|e| match e {
            TurnEvent::PermissionCreated(..) => Some(true),
            TurnEvent::PermissionCreateFailed(..) => Some(false),
            _ => None,
        });
        // A loopback address that hosts no relay stays refused (default policy).
        let now = turn_client_proto::types::Instant::from_std(a.base);
        a.turn
            .create_permission(TransportType::Udp, "127.0.0.2".parse().unwrap(), now)
            .unwrap();
        let refused = a.until(|e| match e {
            TurnEvent::PermissionCreated(..) => Some(false),
            TurnEvent::PermissionCreateFailed(..) => Some(true),
            _ => None,
        });
        (granted, refused)
    })
    .await
    .unwrap();
    assert!(
        granted,
        "permission towards this server's relay address refused"
    );
    assert!(refused, "permission towards a loopback address granted");
    assert!(server.stats().refused_peer_loopback >= 1);
}
