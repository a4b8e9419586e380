#!/usr/bin/env python3
"""Cluster benchmarks (issue 18): Switchboard nodes sharing one redis-server, measured by
`switchboard bench` against one node, against one node of a cluster, and across nodes.

    cargo build --release -p switchboard && python3 bench/cluster.py [--quick]

Servers (nodes and redis-server) are pinned to SERVER_CPU, the load tool to LOAD_CPU
(`taskset`), as in bench/compare.py; each is stopped by pid. Prints one JSON line per
measurement and a Markdown summary at the end (pasted into docs/BENCHMARKS.md by hand).

- relay / rate / churn, per dialect: (a) one node without cluster mode, (b) both peers of
  every pair on one node of a two-node cluster, (c) every pair across the two nodes, measured
  back to back in each repeat. Redis's CPU over each run is read from /proc, and given per
  relayed message. The summary (stderr) gives the cross-node relay rate per node-core as a
  share of the single node's in the same repeat, and the one-way p50 at a fixed rate that
  cluster mode adds over the single node's in the same repeat: median and range over the
  repeats.
- idle: 100,000 joined Ant Media peers over six nodes (each process may hold 20,000 sockets
  on this machine), held by six load-tool processes; RSS of every node and of redis-server
  before and after, per peer.

Environment: DURATION (5), SERVER_CPU (0), LOAD_CPU (1), IDLE_PEERS (100000), IDLE_NODES (6),
PROTOCOLS (antmedia,socketio,peerjs), SCENARIOS (relay,rate,churn), REPEAT (1: runs of each
measurement, one JSON line each; this VM's runs vary by about ±15%). `--only=load` or `--only=idle` runs one part.
"""
import json, os, signal, subprocess, sys, tempfile, time

from benchlib import cpu_seconds, free_port, raise_nofile, rss_kib, stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, "target/release/switchboard"))
DURATION = os.environ.get("DURATION", "5")
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
IDLE_PEERS = int(os.environ.get("IDLE_PEERS", "100000"))
IDLE_NODES = int(os.environ.get("IDLE_NODES", "6"))
SCENARIOS = os.environ.get("SCENARIOS", "relay,rate,churn").split(",")
REPEAT = int(os.environ.get("REPEAT", "1"))
LOG = tempfile.NamedTemporaryFile("w", prefix="sb-cluster-bench-", suffix=".log", delete=False)


def spawn(cmd, port, env=None):
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=LOG,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            preexec_fn=raise_nofile)
    wait_port(port, proc)
    return proc


def redis():
    port = free_port()
    proc = spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--maxclients", "1000"], port)
    return proc, port


def node(redis_port=None, node_id=None):
    port = free_port()
    cmd = [SB, "serve", "--listen", f"127.0.0.1:{port}", "--builtin-turn", "false",
           "--max-connections", "1000000", "--peerjs-concurrent-limit", "1000000",
           "--max-connections-per-ip", "0", "--max-joins-per-ip-per-sec", "0"]
    if redis_port:
        cmd += ["--redis-url", f"redis://127.0.0.1:{redis_port}", "--node-id", node_id]
    proc = spawn(cmd, port, {"RUST_LOG": "error"})
    return proc, port


def wait_cluster(ports, n):
    deadline = time.time() + 15
    while time.time() < deadline:
        views = []
        for p in ports:
            out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{p}/api/v1/stats"],
                                 capture_output=True, text=True).stdout
            views.append(json.loads(out)["cluster"])
        if all(len(v["nodes"]) == n and v["subscribed"] for v in views):
            return
        time.sleep(0.2)
    raise RuntimeError("the nodes do not see each other")


def bench(args, servers, pids):
    cmd = ["taskset", "-c", LOAD_CPU, SB, "bench"] + args + [
        "--server", ",".join(f"127.0.0.1:{p}" for p in servers),
        "--server-pid", ",".join(str(p) for p in pids), "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=raise_nofile)
    LOG.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_runs(protocol, results):
    """(a) one node without cluster mode, (b) same-node and (c) cross-node in a two-node
    cluster, all started once and measured back to back in each repeat, so that every ratio
    compares runs made within seconds of each other (this VM's speed drifts by ±15% over
    minutes)."""
    common = ["--duration", DURATION, "--warmup", "2", "--protocol", protocol]
    # The fixed-rate latency runs first: after saturating relay runs the same processes
    # measured p50s several times higher on this VM (single node included).
    scenarios = [
        ("rate", ["rate", "--pairs", "100", "--rate", "5000"]),
        ("relay", ["relay", "--pairs", "100", "--window", "16"]),
        ("churn", ["churn", "--concurrency", "32"]),
    ]
    n, port = node()
    rp, rport = redis()
    a, pa = node(rport, "bench-a")
    b, pb = node(rport, "bench-b")
    try:
        wait_cluster([pa, pb], 2)
        for name, args in scenarios:
            if name not in SCENARIOS:
                continue
            for rep in range(REPEAT):
                r = bench(args + common, [port], [n.pid])
                results.append({"protocol": protocol, "scenario": name, "setup": "single",
                                "repeat": rep, **r})
                print(json.dumps(results[-1]), flush=True)
                for setup, servers in [("same-node", [pa]), ("cross-node", [pa, pb])]:
                    c0 = cpu_seconds(rp.pid)
                    t0 = time.time()
                    r = bench(args + common, servers, [a.pid, b.pid])
                    redis_cpu = (cpu_seconds(rp.pid) - c0) / (time.time() - t0) * 100
                    row = {"protocol": protocol, "scenario": name, "setup": setup,
                           "repeat": rep, "redis_cpu_pct": redis_cpu, **r}
                    if name == "relay" and r.get("msgs_per_s"):
                        # Redis CPU over the whole run (warm-up and drain included) per
                        # message delivered in the measured window: an upper bound.
                        row["redis_cpu_us_per_msg"] = redis_cpu / 100 / r["msgs_per_s"] * 1e6
                    results.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        for p in (n, a, b, rp):
            stop(p)


def per_core(row):
    """Messages per second per core the measured server processes used."""
    return row["msgs_per_s"] / max(row["server_cpu_pct"], 1) * 100


def summary(results):
    """Per dialect: the cross-node relay rate per node-core as a share of the single node's
    in the same repeat (median and range), and the raw rates."""
    by = {}
    for r in results:
        if r.get("scenario") == "relay":
            by.setdefault((r["protocol"], r["repeat"]), {})[r["setup"]] = r
    protocols = sorted({p for p, _ in by})
    print("| dialect | single msgs/s | cross-node msgs/s | cross-node per node-core, % of "
          "single (median, range) | Redis µs/msg |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for p in protocols:
        runs = [v for (q, _), v in sorted(by.items()) if q == p and "cross-node" in v]
        ratios = sorted(100 * per_core(v["cross-node"]) / per_core(v["single"]) for v in runs)
        if not ratios:
            continue
        single = [v["single"]["msgs_per_s"] / 1000 for v in runs]
        cross = [v["cross-node"]["msgs_per_s"] / 1000 for v in runs]
        redis = [v["cross-node"].get("redis_cpu_us_per_msg", 0) for v in runs]
        print(f"| {p} | {min(single):.0f}k–{max(single):.0f}k | {min(cross):.0f}k–{max(cross):.0f}k"
              f" | {ratios[len(ratios) // 2]:.0f}% ({ratios[0]:.0f}–{ratios[-1]:.0f}%)"
              f" | {min(redis):.2f}–{max(redis):.2f} |", file=sys.stderr)


def latency_summary(results):
    """Per dialect: the one-way p50 that cluster mode adds at a fixed rate, cross-node (and
    same-node) minus the single node's in the same repeat: median and range."""
    by = {}
    for r in results:
        if r.get("scenario") == "rate":
            by.setdefault((r["protocol"], r["repeat"]), {})[r["setup"]] = r
    print("| dialect | single p50 µs | cross-node p50 µs | added cross-node (median, range) "
          "| added same-node (median, range) |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for p in sorted({p for p, _ in by}):
        runs = [v for (q, _), v in sorted(by.items()) if q == p and "cross-node" in v]
        if not runs:
            continue
        single = [v["single"]["p50_us"] for v in runs]
        cross = [v["cross-node"]["p50_us"] for v in runs]
        added = sorted(c - s for c, s in zip(cross, single))
        same = sorted(v["same-node"]["p50_us"] - v["single"]["p50_us"] for v in runs)
        print(f"| {p} | {min(single):.0f}–{max(single):.0f} | {min(cross):.0f}–{max(cross):.0f}"
              f" | +{added[len(added) // 2]:.0f} ({added[0]:+.0f} to {added[-1]:+.0f})"
              f" | {same[len(same) // 2]:+.0f} ({same[0]:+.0f} to {same[-1]:+.0f}) |",
              file=sys.stderr)


def idle(results):
    rp, rport = redis()
    nodes = [node(rport, f"idle-{i}") for i in range(IDLE_NODES)]
    ports = [p for _, p in nodes]
    try:
        wait_cluster(ports, IDLE_NODES)
        pids = [n.pid for n, _ in nodes] + [rp.pid]
        before = {pid: rss_kib(pid) for pid in pids}
        per_tool = IDLE_PEERS // IDLE_NODES
        tools = []
        t0 = time.time()
        for i in range(IDLE_NODES):
            # Each tool process holds its share, its pairs across nodes (it starts at
            # another node each time), from eight loopback source addresses.
            order = ports[i:] + ports[:i]
            cmd = ["taskset", "-c", LOAD_CPU, SB, "bench", "idle", "--peers", str(per_tool),
                   "--concurrency", "32", "--sources", "8", "--hold", "600", "--threads", "1",
                   "--server", ",".join(f"127.0.0.1:{p}" for p in order)]
            tools.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, preexec_fn=raise_nofile))
        # Every tool prints its report once all its peers joined, then holds them.
        deadline = time.time() + 900
        joined = 0
        while time.time() < deadline:
            views = []
            for p in ports:
                out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{p}/api/v1/stats"],
                                     capture_output=True, text=True).stdout
                views.append(json.loads(out)["hub"]["connections"])
            joined = sum(views)
            if joined >= per_tool * IDLE_NODES:
                break
            if any(t.poll() is not None for t in tools):
                raise RuntimeError("a load tool ended early: " + tools[0].stderr.read()[-2000:])
            time.sleep(1)
        secs = time.time() - t0
        time.sleep(5)  # let the join burst's buffers go
        after = {pid: rss_kib(pid) for pid in pids}
        per_node = [(after[n.pid] - before[n.pid]) * 1024 / (joined / IDLE_NODES) for n, _ in nodes]
        redis_per_peer = (after[rp.pid] - before[rp.pid]) * 1024 / joined
        row = {"scenario": "idle-cluster", "nodes": IDLE_NODES, "peers": joined,
               "join_s": secs, "peers_per_s": joined / secs,
               "node_rss_after_kib": [after[n.pid] for n, _ in nodes],
               "node_bytes_per_peer": per_node, "redis_rss_after_kib": after[rp.pid],
               "redis_bytes_per_peer": redis_per_peer}
        results.append(row)
        print(json.dumps(row), flush=True)
        for t in tools:
            t.send_signal(signal.SIGINT)
        for t in tools:
            try:
                t.wait(timeout=20)
            except subprocess.TimeoutExpired:
                t.kill()
    finally:
        for n, _ in nodes:
            stop(n)
        stop(rp)


def main():
    quick = "--quick" in sys.argv
    only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")]
    results = []
    protocols = ["antmedia"] if quick else ["antmedia", "socketio", "peerjs"]
    if os.environ.get("PROTOCOLS"):
        protocols = os.environ["PROTOCOLS"].split(",")
    if not only or "load" in only:
        for p in protocols:
            load_runs(p, results)
        summary(results)
        latency_summary(results)
    if not only or "idle" in only:
        idle(results)
    print(f"# log: {LOG.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
