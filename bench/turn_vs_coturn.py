#!/usr/bin/env python3
"""Built-in STUN/TURN vs coturn, side by side, with coturn's own load client.

Starts each server pinned to CPU 0 (`taskset -c 0`), runs `turnutils_uclient` pinned to CPU 1
with the same REST-API credentials scheme, and reports the median of RUNS runs per scenario:
client-measured throughput, loss and round trip, and the server's CPU time per relayed
message (from /proc/<pid>/stat). Prints a Markdown table (docs/BENCHMARKS.md).

    cargo build --release && python3 bench/turn_vs_coturn.py

Needs Debian's coturn (turnserver, turnutils_uclient) and taskset. Environment: RUNS (3),
SERVERS (e.g. `switchboard` to run one side), SWITCHBOARD_BIN, RUST_LOG (passed to
switchboard).
"""
import base64, hashlib, hmac, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

from benchlib import rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, "target/release/switchboard"))
SECRET = "bench-secret"
RUNS = int(os.environ.get("RUNS", "3"))
TICK = os.sysconf("SC_CLK_TCK")

SCENARIOS = [
    # name, uclient args, what the figure means
    ("relay: 100 clients x 500 msgs x 500 B, client to client", ["-y", "-c", "-m", "100", "-n", "500", "-l", "500", "-z", "0"]),
    ("relay: 10 clients x 2000 msgs x 1200 B, client to client", ["-y", "-c", "-m", "10", "-n", "2000", "-l", "1200", "-z", "0"]),
    # turnutils_uclient sets clients up one after another (~0.1 s each with either server), so
    # this measures the server's CPU per allocation, not its allocation rate.
    ("allocations: 200 clients, 1 msg each", ["-y", "-c", "-m", "200", "-n", "1", "-l", "100"]),
]


def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime




def creds(ttl=3600):
    user = f"{int(time.time()) + ttl}:bench"
    pw = base64.b64encode(hmac.new(SECRET.encode(), user.encode(), hashlib.sha1).digest()).decode()
    return user, pw


def start_switchboard():
    port = free_port()
    log = open(os.path.join(tempfile.mkdtemp(prefix="sb-bench-"), "switchboard.log"), "w+")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", SB, "--listen", "127.0.0.1:0", "--turn-listen", f"127.0.0.1:{port}",
         "--turn-secret", SECRET, "--turn-user-quota", "100000", "--turn-ip-quota", "100000",
         "--turn-relay-ports", "40000-44999"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        log.seek(0)
        if "listening on" in log.read():
            break
        time.sleep(0.05)
    proc.log = log
    return proc, port


def start_coturn():
    port = free_port()
    d = tempfile.mkdtemp(prefix="sb-bench-coturn-")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log",
         "--log-file=stdout", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
         "--min-port=45000", "--max-port=49999", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=bench", "--relay-threads=1", "--allow-loopback-peers", "--no-stdout-log", f"--pidfile={d}/pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        r = subprocess.run(["timeout", "2", "turnutils_stunclient", "-p", str(port), "127.0.0.1"],
                           capture_output=True, text=True)
        if "reflexive" in r.stdout:
            break
        time.sleep(0.2)
    return proc, port


def run(pid, port, args):
    user, pw = creds()
    before = cpu_ticks(pid)
    t0 = time.time()
    r = subprocess.run(["timeout", "120", "taskset", "-c", "1", "turnutils_uclient", *args, "-u", user, "-w", pw,
                        "-p", str(port), "-X", "127.0.0.1"], capture_output=True, text=True)
    wall = time.time() - t0
    cpu = (cpu_ticks(pid) - before) / TICK
    out = r.stdout + r.stderr
    sends = [int(x) for x in re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=\d+\n", out)]
    recvs = [int(x) for x in re.findall(r"start_mclient: tot_send_msgs=\d+, tot_recv_msgs=(\d+)\n", out)]
    tt = re.findall(r"Total transmit time is (\d+)", out)
    rtt = re.findall(r"Average round trip delay ([\d.]+) ms", out)
    lost = re.findall(r"Total lost packets (\d+)", out)
    if not sends:
        raise RuntimeError(f"uclient failed:\n{out[-2000:]}")
    return {
        "sent": sends[-1], "received": recvs[-1], "wall_s": wall, "transmit_s": int(tt[-1]) if tt else None,
        "rtt_ms": float(rtt[-1]) if rtt else None, "lost": int(lost[-1]) if lost else None, "server_cpu_s": cpu,
    }


def main():
    results = {}
    # A fresh server per run: turnutils_uclient leaves some allocations behind, and a later
    # run reusing one of their client ports would get 437 (Allocation Mismatch).
    servers = [("switchboard", start_switchboard), ("coturn 4.6", start_coturn)]
    only = os.environ.get("SERVERS")  # e.g. SERVERS=switchboard
    servers = [s for s in servers if not only or s[0] in only.split(",")]
    for name, start in servers:
        for scen, args in SCENARIOS:
            results[(name, scen)] = []
            for _ in range(RUNS):
                proc, port = start()
                try:
                    results[(name, scen)].append(run(proc.pid, port, args))
                    results[(name, "rss", scen)] = rss_kib(proc.pid)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=10)
    print("| scenario | server | msgs relayed (median) | lost | wall time | msgs/s (wall) | client RTT avg | server CPU | server CPU per 1k msgs |")
    # msgs relayed: what the clients received back; every one crossed the server twice (two
    # relays, client to client).
    print("|---|---|---|---|---|---|---|---|---|")
    for scen, _ in SCENARIOS:
        for name, _ in servers:
            rs = results[(name, scen)]
            med = lambda k: statistics.median(r[k] for r in rs)
            recv, wall, cpu = med("received"), med("wall_s"), med("server_cpu_s")
            per_k = 1000 * cpu / recv if recv else float("nan")
            print(f"| {scen} | {name} | {int(recv)} / {int(med('sent'))} | {int(med('lost'))} | {wall:.2f} s | "
                  f"{recv / wall:,.0f} | {med('rtt_ms'):.3f} ms | {cpu:.2f} s | {per_k * 1000:.1f} ms |")
    print()
    for scen, _ in SCENARIOS:
        rss = ", ".join(f"{name} {results[(name, 'rss', scen)]} KiB" for name, _ in servers)
        print(f"- server RSS after \"{scen}\": {rss}")
    print(json.dumps({f"{k[0]}|{k[1]}": v for k, v in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
