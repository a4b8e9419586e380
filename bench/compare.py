#!/usr/bin/env python3
"""Runs `switchboard bench` against Switchboard and the reference signaling servers.

Called by bench/compare.sh (which installs the reference servers). Every run starts a fresh
server pinned to SERVER_CPU (`taskset`), runs one scenario with the load tool pinned to
LOAD_CPU, and stops the server by pid. Each scenario runs RUNS times; the table holds the
median. Results: a JSON file, a Markdown section of docs/BENCHMARKS.md (between the
`compare:begin` / `compare:end` markers) and docs/compare.svg.

Environment: RUNS (3), DURATION (measured seconds, 5), SERVER_CPU (0), LOAD_CPU (1),
IDLE_SIZES (2000,10000,19000).
"""
import argparse, datetime, json, os, platform, re, statistics
import subprocess, sys, time

from benchlib import free_port, raise_nofile, stop, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, "target/release/switchboard"))
RUNS = int(os.environ.get("RUNS", "3"))
DURATION = os.environ.get("DURATION", "5")
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
IDLE_SIZES = [int(x) for x in os.environ.get("IDLE_SIZES", "2000,10000,19000").split(",")]


def servers(work):
    sb = [SB, "serve", "--listen", "127.0.0.1:{port}", "--builtin-turn", "false",
          "--max-connections", "1000000", "--peerjs-concurrent-limit", "1000000",
          # The idle scenario holds 19,000 connections from four loopback addresses, and
          # churn and idle join thousands of peers a second from them.
          "--max-connections-per-ip", "0", "--max-joins-per-ip-per-sec", "0"]
    node = os.path.join(work, "node")
    return {
        "switchboard-antmedia": ("Switchboard (Ant Media P2P)", "antmedia", sb, {"RUST_LOG": "error"}),
        "switchboard-socketio": ("Switchboard (socket.io)", "socketio", sb, {"RUST_LOG": "error"}),
        "switchboard-peerjs": ("Switchboard (PeerJS)", "peerjs", sb, {"RUST_LOG": "error"}),
        "socketio-seed": ("socket.io seed relay (Node)", "socketio",
                          ["node", os.path.join(node, "relay.js")], {"PORT": "{port}"}),
        "peerjs-server": ("peerjs-server (Node)", "peerjs",
                          ["node", os.path.join(node, "node_modules/peer/dist/bin/peerjs.js"),
                           "--port", "{port}", "--path", "/peerjs", "--concurrent_limit", "1000000"], {}),
        "matchbox": ("matchbox_server (Rust)", "matchbox",
                     [os.path.join(work, "matchbox/bin/matchbox_server"), "127.0.0.1:{port}"],
                     {"RUST_LOG": "error"}),
    }


def scenarios():
    common = ["--duration", DURATION, "--warmup", "2"]
    out = [
        ("relay", ["relay", "--pairs", "100", "--window", "16"] + common),
        ("rate", ["rate", "--pairs", "100", "--rate", "20000"] + common),
        ("churn", ["churn", "--concurrency", "32"] + common),
    ]
    for n in IDLE_SIZES:
        out.append((f"idle{n}", ["idle", "--peers", str(n), "--concurrency", "64"]))
    return out








def start(cmd, env_extra, port, log):
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    env = dict(os.environ)
    env.update({k: v.replace("{port}", str(port)) for k, v in env_extra.items()})
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
    wait_port(port, proc)
    time.sleep(0.5)
    return proc




def run_one(key, spec, scenario_args, work, log):
    label, protocol, cmd, env = spec
    for attempt in range(5):
        port = free_port()
        try:
            proc = start(cmd, env, port, log)
            break
        except RuntimeError as e:
            log.write(f"server start failed ({e}); retrying\n")
            time.sleep(1)
    else:
        return None
    try:
        args = ["taskset", "-c", LOAD_CPU, SB, "bench"] + scenario_args + [
            "--protocol", protocol, "--server", f"127.0.0.1:{port}",
            "--server-pid", str(proc.pid), "--label", key]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, text=True, timeout=300)
        if out.returncode != 0:
            return None
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        return None
    finally:
        stop(proc)
        time.sleep(1)


def median(rows, field):
    vals = [r[field] for r in rows if r and r.get(field) is not None]
    return statistics.median(vals) if vals else None


def version(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - a missing tool just has no version
        return "?"


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024 // 1024
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB, Linux {platform.release()}"


def fmt(v, spec="{:,.0f}", suffix=""):
    return "n/a" if v is None else spec.format(v) + suffix


def table(results, specs):
    head = ("| server | relay msgs/s (100 pairs, window 16) | at 20k msgs/s: p99 latency, server CPU "
            "| server RSS per idle joined peer (19k) | joins/s (19k peers) | churn pairs/s (join, 10 msgs, leave) |\n"
            "|---|---|---|---|---|---|\n")
    rows = []
    big = f"idle{max(IDLE_SIZES)}"
    for key, runs in results.items():
        label = specs[key][0]
        relay, rate, churn, idle = (runs.get(s, []) for s in ("relay", "rate", "churn", big))
        rss = median(idle, "rss_bytes_per_peer")
        rows.append(
            f"| {label} "
            f"| {fmt(median(relay, 'msgs_per_s'))} (server {fmt(median(relay, 'server_cpu_pct'), suffix='%')}, tool {fmt(median(relay, 'tool_cpu_pct'), suffix='%')}) "
            f"| {fmt(median(rate, 'p99_us'), '{:,.0f}', ' µs')}, {fmt(median(rate, 'server_cpu_pct'), '{:.0f}', '%')} (tool {fmt(median(rate, 'tool_cpu_pct'), suffix='%')}) "
            f"| {fmt(rss and rss / 1024, '{:.2f}', ' KiB')} "
            f"| {fmt(median(idle, 'peers_per_s'))} (tool {fmt(median(idle, 'tool_cpu_pct'), suffix='%')}) "
            f"| {fmt(median(churn, 'pairs_per_s'))} (tool {fmt(median(churn, 'tool_cpu_pct'), suffix='%')}) |")
    lin = ["", "Server RSS per idle joined peer by size (median; shows memory is linear):", "",
           "| server | " + " | ".join(f"{n:,} peers" for n in IDLE_SIZES) + " |",
           "|---|" + "---|" * len(IDLE_SIZES)]
    for key, runs in results.items():
        cells = []
        for n in IDLE_SIZES:
            rows_n = runs.get(f"idle{n}", [])
            per = median(rows_n, "rss_bytes_per_peer")
            tot = median(rows_n, "server_rss_after_kib")
            cells.append("n/a" if per is None else f"{per / 1024:.2f} KiB ({tot / 1024:.0f} MiB)")
        lin.append(f"| {specs[key][0]} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n" + "\n".join(lin) + "\n"


def svg(results, specs, path):
    """Four horizontal bar panels; one bar per server."""
    big = f"idle{max(IDLE_SIZES)}"
    panels = [
        ("relay msgs/s (higher is better)", "relay", "msgs_per_s", 1, "{:,.0f}"),
        ("server CPU % at 20k msgs/s (lower is better)", "rate", "server_cpu_pct", 1, "{:.0f}%"),
        ("KiB RSS per idle peer (lower is better)", big, "rss_bytes_per_peer", 1 / 1024, "{:.1f}"),
        ("churn pairs/s (higher is better)", "churn", "pairs_per_s", 1, "{:,.0f}"),
    ]
    keys = list(results)
    bar_h, gap, label_w, chart_w = 18, 6, 230, 300
    panel_h = 28 + len(keys) * (bar_h + gap)
    width = label_w + chart_w + 90
    height = panel_h * len(panels) + 10
    colors = {"switchboard": "#2b7bb9"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for p, (title, scen, field, scale, f) in enumerate(panels):
        y0 = p * panel_h + 10
        out.append(f'<text x="5" y="{y0 + 12}" font-weight="bold">{title}</text>')
        vals = [median(results[k].get(scen, []), field) for k in keys]
        top = max([v for v in vals if v is not None] or [1]) or 1
        for i, (k, v) in enumerate(zip(keys, vals)):
            y = y0 + 22 + i * (bar_h + gap)
            out.append(f'<text x="5" y="{y + 13}">{specs[k][0]}</text>')
            if v is None:
                out.append(f'<text x="{label_w}" y="{y + 13}" fill="#888">n/a</text>')
                continue
            w = max(1, v / top * chart_w)
            color = colors["switchboard"] if k.startswith("switchboard") else "#999"
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{f.format(v * scale)}</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--servers", default="")
    ap.add_argument("--scenarios", default="")
    ap.add_argument("--no-docs", action="store_true", help="print the table only")
    a = ap.parse_args()
    specs = servers(a.work)
    keys = [k for k in specs if not a.servers or k in a.servers.split(",")]
    scens = [s for s in scenarios() if not a.scenarios or s[0] in a.scenarios.split(",")
             or (s[0].startswith("idle") and "idle" in a.scenarios.split(","))]
    log_path = os.path.join(a.work, "compare.log")
    results = {k: {} for k in keys}
    with open(log_path, "a") as log:
        for name, args in scens:
            for key in keys:
                for run in range(RUNS):
                    print(f"{name:>10} {key:<22} run {run + 1}/{RUNS} ...", end=" ", flush=True)
                    log.write(f"\n=== {name} {key} run {run + 1}\n")
                    log.flush()
                    r = run_one(key, specs[key], args, a.work, log)
                    results[key].setdefault(name, []).append(r)
                    with open(os.path.join(a.work, "compare-partial.json"), "w") as fh:
                        json.dump(results, fh)
                    print("failed (see compare.log)" if r is None else json.dumps(
                        {f: r.get(f) for f in ("msgs_per_s", "p99_us", "server_cpu_pct",
                                               "tool_cpu_pct", "rss_bytes_per_peer",
                                               "peers_per_s", "pairs_per_s") if r.get(f) is not None}))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    rev = version(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    raw = {"date": stamp, "machine": machine(), "switchboard": rev, "runs": RUNS,
           "duration_s": DURATION, "results": results}
    with open(os.path.join(a.work, "compare.json"), "w") as fh:
        json.dump(raw, fh, indent=1)
    md = table(results, specs)
    print(md)
    if a.no_docs:
        return
    node_mods = os.path.join(a.work, "node/node_modules")
    def pkg(name):
        try:
            return json.load(open(os.path.join(node_mods, name, "package.json")))["version"]
        except OSError:
            return "?"
    section = (
        f"Measured {stamp} on {machine()}; Switchboard {rev}, socket.io {pkg('socket.io')} "
        f"(the ten-line seed relay) on Node {version(['node', '--version'])}, peer (peerjs-server) "
        f"{pkg('peer')}, matchbox_server {os.environ.get('MATCHBOX_VERSION', '?')} (RUST_LOG=error). "
        f"Server pinned to CPU {SERVER_CPU}, load tool pinned to CPU {LOAD_CPU} (`taskset`); a fresh server "
        f"per run; median of {RUNS} runs; {DURATION} s measured after a 2 s warm-up. "
        "Command: `bench/compare.sh`. The tool's own CPU use (one core = 100%) is shown beside each "
        "figure.\n\n" + md + "\n![Switchboard vs reference servers](compare.svg)\n")
    doc = os.path.join(ROOT, "docs/BENCHMARKS.md")
    text = open(doc).read()
    begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + section + text[text.index(end):]
    else:
        text += f"\n{begin}\n{section}{end}\n"
    open(doc, "w").write(text)
    svg(results, specs, os.path.join(ROOT, "docs/compare.svg"))
    print(f"wrote docs/BENCHMARKS.md and docs/compare.svg; raw results in {a.work}/compare.json")


if __name__ == "__main__":
    main()
