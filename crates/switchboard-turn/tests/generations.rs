//! Bounded protocol state: once a generation has seen `max_clients_per_generation` client
//! addresses, a fresh one takes new clients while the old one drains; while one drains and
//! the fresh one is full too, new clients are refused (and counted). Driven by coturn's
//! `turnutils_uclient` against the library's server on loopback.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use switchboard_turn::{TurnConfig, start};

fn have_uclient() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v turnutils_uclient"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_COTURN").is_none(),
            "coturn is required (SWITCHBOARD_REQUIRE_COTURN is set) but not installed"
        );
        eprintln!("SKIPPED: coturn's turnutils_uclient is not installed");
    }
    ok
}

/// Two clients relaying to each other through two allocations; true when every message came
/// back.
async fn run_clients(port: u16, secret: &str) -> bool {
    let user = format!("{}:gen", switchboard_turn_unix_now() + 600);
    let pass = switchboard_core::ice::rest_password(secret, &user);
    let out = tokio::process::Command::new("timeout")
        .args([
            "10",
            "turnutils_uclient",
            "-y",
            "-c",
            "-n",
            "5",
            "-m",
            "2",
            "-X",
        ])
        .args([
            "-u",
            &user,
            "-w",
            &pass,
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && text.contains("tot_send_msgs=10, tot_recv_msgs=10")
}

fn switchboard_turn_unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_tables_rotate_and_refuse_when_both_generations_are_busy() {
    if !have_uclient() {
        return;
    }
    let secret = "generation-test";
    let turn = start(TurnConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        secret: secret.into(),
        // One turnutils_uclient run (-y -m 2) uses three client addresses.
        max_clients_per_generation: 3,
        ..TurnConfig::default()
    })
    .await
    .unwrap();
    let port = turn.port();

    // First generation: the two clients of the first run.
    assert!(run_clients(port, secret).await, "first run failed");
    assert_eq!(turn.stats().refused_busy, 0);
    let after_first = turn.stats();
    assert!(after_first.allocations_total >= 2);
    // Second run: new client addresses start a fresh generation; the first one drains.
    assert!(
        run_clients(port, secret).await,
        "second run (new generation) failed"
    );
    assert_eq!(turn.stats().refused_busy, 0);
    if after_first.allocations_active == 0 {
        // Every allocation of the first run was released, so its generation is retired and
        // the refusal below cannot be forced. (turnutils_uclient leaves one behind.)
        eprintln!("first generation fully released; skipping the refusal check");
        return;
    }
    // Third run: the fresh generation is full and the first one still has allocations.
    assert!(
        !run_clients(port, secret).await,
        "a third generation was created"
    );
    assert!(turn.stats().refused_busy > 0, "{:?}", turn.stats());
    turn.shutdown();
}

/// Unauthenticated requests carrying many distinct (well-formed, unexpired) REST usernames
/// must not take room in the state table: before the fix each one registered a user, 130,000
/// of them filled a generation, and with an allocation draining in the old one every new
/// client was refused. Here: 2,000 such requests against a table of 64 clients, then a real
/// client still relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_usernames_do_not_fill_the_state_table() {
    use turn_client_proto::types::stun::attribute::Username;
    use turn_client_proto::types::stun::message::{
        BINDING, Message, MessageWrite as _, MessageWriteExt as _, MessageWriteVec,
    };
    if !have_uclient() {
        return;
    }
    let secret = "flood-test";
    let turn = start(TurnConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        secret: secret.into(),
        max_clients_per_generation: 64,
        ..TurnConfig::default()
    })
    .await
    .unwrap();
    let port = turn.port();
    // An allocation that stays: its generation cannot be retired while it lives.
    assert!(run_clients(port, secret).await, "first run failed");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let expiry = switchboard_turn_unix_now() + 3600;
    let mut buf = [0u8; 1500];
    for i in 0..2_000 {
        let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
        m.add_attribute(&Username::new(&format!("{expiry}:flood-{i}")).unwrap())
            .unwrap();
        sock.send_to(&m.finish(), ("127.0.0.1", port))
            .await
            .unwrap();
        // Answered (a Binding request is answered without authentication), so the server
        // has processed it before the next.
        tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("the server answers every request")
            .unwrap();
    }
    // Only the real client's username took a place in the table; none of the flood's.
    assert_eq!(turn.stats().users_registered, 1, "{:?}", turn.stats());
    assert_eq!(turn.stats().refused_busy, 0, "{:?}", turn.stats());
    // New client addresses are still served (two more runs: a generation rotation at most).
    assert!(
        run_clients(port, secret).await,
        "a real client was locked out"
    );
    assert!(
        run_clients(port, secret).await,
        "a real client was locked out"
    );
    assert_eq!(turn.stats().refused_busy, 0, "{:?}", turn.stats());
    turn.shutdown();
}
