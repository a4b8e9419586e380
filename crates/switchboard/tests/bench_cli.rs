//! `switchboard bench`: the native-peer scenarios (in-process server) and the signaling load
//! scenarios (against a real `switchboard serve`, every dialect) run end to end and print one
//! JSON summary line. Timings are reported, never asserted; what is asserted is that every
//! message arrived once and in order, and that the counters add up.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::bench;

#[test]
fn setup_rtt_and_throughput_report_json() {
    let v = bench(&["setup", "--runs", "2"]);
    assert_eq!(v["scenario"], "setup");
    assert_eq!(v["runs"], 2);
    assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{v}");

    let v = bench(&["dc-rtt", "--runs", "2", "--messages", "20", "--via-turn"]);
    assert_eq!(v["scenario"], "dc-rtt");
    assert_eq!(v["via_turn"], true);
    assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{v}");

    let v = bench(&["dc-throughput", "--runs", "1", "--mib", "2"]);
    assert_eq!(v["scenario"], "dc-throughput");
    assert!(v["median_mb_s"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn zero_runs_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "setup", "--runs", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runs must be at least 1"));
}

/// Relay and rate over each dialect of one server: nothing lost or reordered, no error frames,
/// CPU of both processes reported.
#[test]
fn load_scenarios_measure_every_dialect_without_loss() {
    let server = common::start_switchboard(&["--builtin-turn", "false"], &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let pid = server.pid().to_string();
    for protocol in ["antmedia", "socketio", "peerjs"] {
        let common = [
            "--protocol",
            protocol,
            "--server",
            &addr,
            "--server-pid",
            &pid,
            "--pairs",
            "5",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ];
        let v = bench(&[&["relay", "--window", "4"][..], &common[..]].concat());
        assert_eq!(v["scenario"], "relay", "{v}");
        assert_eq!(v["protocol"], protocol, "{v}");
        assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["sent"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        assert_eq!(v["out_of_order"], 0, "{v}");
        assert_eq!(v["other_frames"], 0, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["server_cpu_pct"].as_f64().unwrap() > 0.0, "{v}");
        assert!(
            v["p99_us"].as_f64().unwrap() >= v["p50_us"].as_f64().unwrap(),
            "{v}"
        );

        let v = bench(&[&["rate", "--rate", "500"][..], &common[..]].concat());
        assert_eq!(v["scenario"], "rate", "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        // 500 msgs/s offered for 1 s (plus warm-up and drain): about that many were sent.
        let sent = v["sent"].as_u64().unwrap();
        assert!((400..=1000).contains(&sent), "{v}");
    }
}

/// Idle peers are counted in the server's memory; churn completes cycles for each dialect.
#[test]
fn idle_and_churn_report_memory_and_cycles() {
    let server = common::start_switchboard(&["--builtin-turn", "false"], &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let pid = server.pid().to_string();
    let v = bench(&[
        "idle",
        "--peers",
        "200",
        "--server",
        &addr,
        "--server-pid",
        &pid,
    ]);
    assert_eq!(v["peers"], 200, "{v}");
    assert!(v["server_rss_after_kib"].as_u64().unwrap() > 0, "{v}");
    assert!(v["rss_bytes_per_peer"].is_number(), "{v}");
    assert!(v["peers_per_s"].as_f64().unwrap() > 0.0, "{v}");
    // The server keeps serving after the idle peers left (churn below runs on it).

    for protocol in ["antmedia", "socketio", "peerjs"] {
        let v = bench(&[
            "churn",
            "--protocol",
            protocol,
            "--server",
            &addr,
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ]);
        assert_eq!(v["errors"], 0, "{protocol}: {v}");
        assert!(v["pairs_per_s"].as_f64().unwrap() > 0.0, "{protocol}: {v}");
    }
}

#[test]
fn load_against_nothing_is_a_clear_error() {
    let port = common::free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "relay", "--pairs", "1", "--server"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connecting to 127.0.0.1"), "{stderr}");
}
