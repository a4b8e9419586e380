//! `switchboard bench`: the native-peer scenarios run end to end (in-process server) and print
//! one JSON summary line. Timings are reported, never asserted.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout:?} / {stderr}"))
}

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
