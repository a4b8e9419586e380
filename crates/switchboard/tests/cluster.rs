//! Cluster mode, first slice (membership), against a real `redis-server` started and stopped
//! here: nodes see each other, a killed node's lease runs out, a stopped node leaves at once,
//! and a Redis outage leaves every node running and registering again afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, Switchboard, free_port, http_get, start_switchboard};

/// `redis-server` on 127.0.0.1:`port`, nothing persisted.
fn redis(port: u16) -> Killed {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package; scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The TURN secret every node of a cluster shares.
const TURN_SECRET: &str = "cluster-turn-secret";

fn node(redis_port: u16, id: &str) -> Switchboard {
    start_switchboard(
        &[
            "--redis-url",
            &format!("redis://127.0.0.1:{redis_port}"),
            "--node-id",
            id,
            "--turn-secret",
            TURN_SECRET,
            "--turn-allow-peers",
            "127.0.0.0/8",
        ],
        &[],
    )
}

fn cluster(sb: &Switchboard) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&http_get(sb.port, "/api/v1/stats")).unwrap();
    v["cluster"].clone()
}

/// Waits until `pred` holds for `sb`'s cluster view; the time it took.
fn until(
    sb: &Switchboard,
    what: &str,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let c = cluster(sb);
        if pred(&c) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; view {c}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nodes(c: &serde_json::Value) -> Vec<String> {
    c["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn nodes_see_each_other_a_killed_node_expires_and_a_stopped_node_leaves() {
    let port = free_port();
    let _redis = redis(port);
    let a = node(port, "node-a");
    let mut b = node(port, "node-b");
    let c = node(port, "node-c");
    until(&a, "three nodes", Duration::from_secs(5), |c| {
        nodes(c) == ["node-a", "node-b", "node-c"] && c["redis_up"] == true
    });
    let log = a.log.lock().unwrap().join("\n");
    assert!(log.contains("cluster mode: node node-a"), "{log}");

    // Counts are the cluster's: a client on node-b shows in node-a's view.
    let url = format!("ws://127.0.0.1:{}/LiveApp/websocket", b.port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _client = rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"command":"join","streamId":"r"}"#,
        ))
        .await
        .unwrap();
        ws.next().await;
        ws
    });
    until(&a, "node-b's client counted", Duration::from_secs(5), |c| {
        c["connections"].as_u64() >= Some(1) && c["rooms"].as_u64() >= Some(1)
    });

    // SIGKILL: no goodbye; the lease (5 s) runs out and the next renewal drops it.
    b.proc.0.kill().unwrap();
    let _ = b.proc.0.wait();
    let gone = until(&a, "node-b expired", Duration::from_secs(10), |c| {
        nodes(c) == ["node-a", "node-c"]
    });
    println!("a killed node left every view after {gone:?}");
    assert_eq!(redis_cli(port, &["EXISTS", "sb:node:node-b"]), "0");
    assert_eq!(redis_cli(port, &["ZSCORE", "sb:nodes", "node-b"]), "");

    // SIGTERM: the node removes itself on the way out, well before its lease would end.
    let pid = c.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let left = until(&a, "node-c left", Duration::from_secs(4), |c| {
        nodes(c) == ["node-a"]
    });
    println!("a stopped node left every view after {left:?}");
}

#[test]
fn a_redis_outage_leaves_nodes_running_and_they_register_again() {
    let port = free_port();
    let mut redis_proc = redis(port);
    let a = node(port, "node-a");
    let b = node(port, "node-b");
    until(&a, "two nodes", Duration::from_secs(5), |c| {
        nodes(c).len() == 2
    });

    redis_proc.0.kill().unwrap();
    let _ = redis_proc.0.wait();
    until(&a, "outage noticed", Duration::from_secs(5), |c| {
        c["redis_up"] == false && nodes(c) == ["node-a"] && c["last_error"].is_string()
    });
    // The node serves its own clients meanwhile.
    assert!(http_get(a.port, "/healthz").contains("ok"));
    let log = a.log.lock().unwrap().join("\n");
    assert!(log.contains("Redis unreachable"), "{log}");

    let _redis_again = redis(port);
    let back = until(&a, "registered again", Duration::from_secs(5), |c| {
        c["redis_up"] == true && nodes(c) == ["node-a", "node-b"]
    });
    println!("consistent again {back:?} after Redis came back");
    until(&b, "node-b agrees", Duration::from_secs(5), |c| {
        nodes(c) == ["node-a", "node-b"]
    });
}

#[test]
fn turn_credentials_minted_by_one_node_relay_on_another() {
    if !common::coturn_tools_available() {
        return;
    }
    let port = free_port();
    let _redis = redis(port);
    let a = node(port, "node-a");
    let b = node(port, "node-b");
    let (_, user, pass) = common::minted(a.port);
    let (_peer, peer_port) = common::start_echo_peer();
    let peer = peer_port.to_string();
    let relay_via = |turn: u16| {
        let turn = turn.to_string();
        common::uclient(
            &[
                "-u",
                &user,
                "-w",
                &pass,
                "-e",
                "127.0.0.1",
                "-r",
                &peer,
                "-p",
                &turn,
                "-c",
            ],
            5,
            1,
        )
    };
    let (ok, out) = relay_via(b.turn_port.unwrap());
    assert!(ok, "node-b refused node-a's credentials:\n{out}");
    // A node with another secret refuses them: the shared secret is what makes them portable.
    let lone = start_switchboard(&["--turn-allow-peers", "127.0.0.0/8"], &[]);
    let (ok, out) = relay_via(lone.turn_port.unwrap());
    assert!(!ok, "{out}");
    assert!(common::turn_stats(lone.port)["refused_auth"].as_u64() > Some(0));
    assert_eq!(common::turn_stats(b.port)["refused_auth"].as_u64(), Some(0));
}
