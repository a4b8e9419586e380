// NAT traversal matrix: two headless Chromium instances running the demo page, each behind
// its own NAT in a network namespace, Switchboard (signaling + built-in STUN/TURN) on the
// "public" side. Topology and reference results (coturn 4.6.1): shared/docs/testing.md;
// the namespaces are built by nat/netns.sh.
//
// Needs root (network namespaces), iproute2 and nftables. Without them the test is skipped
// and says why; scripts/test.sh sets SWITCHBOARD_REQUIRE_NAT=1 when it runs as root, which
// turns a skip into a failure.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSwitchboard, switchboardBin, launch, until, assertVideoFlowing, chromiumArgs, chromiumPath, repo } from "./lib/harness.mjs";

const PUB = "203.0.113.10";
const P = `sb${process.pid % 100000}`;
const NETNS = join(repo, "web/tests/nat/netns.sh");
const REQUIRE = process.env.SWITCHBOARD_REQUIRE_NAT === "1";
// A case that neither connects nor fails within this time is a test failure ("timed out").
const OUTCOME_TIMEOUT_MS = 60000;

function whyNot() {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const tool of ["ip", "nft"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `${tool} is not installed (apt-get install iproute2 nftables)`;
    }
  }
  return null;
}

const skipReason = whyNot();
if (skipReason) {
  if (REQUIRE) throw new Error(`NAT matrix required (SWITCHBOARD_REQUIRE_NAT=1) but cannot run: ${skipReason}`);
  console.log(`SKIPPED: NAT matrix: ${skipReason}`);
}

const env = {};
const report = [];

before(async () => {
  if (skipReason) return;
  execFileSync(NETNS, ["up", P], { stdio: "inherit" });
  const ns = (n) => `${P}${n}`;
  // A: signaling + STUN/TURN, advertised to clients (the default configuration).
  env.full = await startSwitchboard(["--turn-listen", `${PUB}:3478`], 5080, { netns: ns("pub"), host: PUB });
  // B: STUN only (A's STUN server), TURN not advertised.
  env.stun = await startSwitchboard(["--builtin-turn", "false", "--ice-servers", `stun:${PUB}:3478`], 5081,
    { netns: ns("pub"), host: PUB });
  // C: no ICE servers at all.
  env.none = await startSwitchboard(["--builtin-turn", "false", "--ice-servers", ""], 5082, { netns: ns("pub"), host: PUB });

  const dir = mkdtempSync(join(tmpdir(), "sb-nat-"));
  const real = existsSync("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : chromiumPath();
  const origins = [env.full, env.stun, env.none].map((s) => s.url).join(",");
  const args = [
    `--unsafely-treat-insecure-origin-as-secure=${origins}`,
    `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE ${PUB}`,
  ];
  env.browsers = {};
  for (const lan of ["lan1", "lan2", "lan3", "lan4"]) {
    const wrapper = join(dir, `chromium-${lan}`);
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns(lan)} ${real} "$@"\n`, { mode: 0o755 });
    env.browsers[lan] = await launch({
      executablePath: wrapper,
      extraArgs: args,
    });
  }
  assert.ok(!chromiumArgs.some((a) => a.startsWith("--unsafely")), "harness flags unchanged");
});

after(async () => {
  if (skipReason) return;
  for (const b of Object.values(env.browsers || {})) await b.close().catch(() => {});
  for (const s of [env.full, env.stun, env.none]) if (s) await s.stop();
  execFileSync(NETNS, ["down", P], { stdio: "inherit" });
  if (report.length) {
    mkdirSync(join(repo, "web/tests/artifacts"), { recursive: true });
    writeFileSync(join(repo, "web/tests/artifacts/nat-matrix.json"), JSON.stringify(report, null, 2));
    console.log("NAT matrix (side A = lan1, port-restricted cone):");
    for (const r of report) {
      console.log(`  ${(r.native ? "native " : "") + r.nat2.padEnd(11)} ${r.ice.padEnd(10)} → ${r.outcome.padEnd(9)} in ${String(r.ms).padStart(5)} ms` +
        (r.pair ? `  pair ${r.pair}` : ""));
    }
  }
});

/** Records every RTCPeerConnection state change, before the page's own scripts run. */
function recordStates() {
  window.__pcStates = [];
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) {
      super(...args);
      this.addEventListener("connectionstatechange", () => window.__pcStates.push(this.connectionState));
    }
  };
}

async function openDemo(browser, url) {
  const context = await browser.newContext();
  await context.addInitScript(recordStates);
  const page = await context.newPage();
  page.consoleErrors = [];
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  await page.goto(url);
  return page;
}

/** "connected" once both pages' connections are connected, "failed" as soon as one fails. */
async function outcome(pages) {
  const deadline = Date.now() + OUTCOME_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const states = await Promise.all(pages.map((p) => p.evaluate(() => window.__pcStates)));
    if (states.some((s) => s.includes("failed"))) return "failed";
    if (states.every((s) => s.includes("connected"))) return "connected";
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return "timed out";
}

const frames = () => window.demo.call.stats().then((s) => s?.framesDecoded || 0);

const CASES = [
  // [nat2 type, lan of side B, ICE configuration, server, relay-only, expected]
  ["cone", "lan2", "none", "none", false, "failed"],
  ["cone", "lan2", "stun", "stun", false, "connected"],
  ["cone", "lan2", "stun+turn", "full", false, "connected"],
  ["cone", "lan2", "relay-only", "full", true, "connected"],
  ["symmetric", "lan3", "none", "none", false, "failed"],
  ["symmetric", "lan3", "stun", "stun", false, "failed"],
  ["symmetric", "lan3", "stun+turn", "full", false, "connected"],
  ["symmetric", "lan3", "relay-only", "full", true, "connected"],
  // Side B behind a firewall that lets no UDP out: only TURN over TCP gets through.
  ["udp-blocked", "lan4", "stun+turn", "full", false, "connected"],
];

/** The selected pair's local candidate: type, and the protocol to the TURN server. */
function selectedLocal() {
  return window.demo.call.peerConnection.getStats().then((report) => {
    let pair = null;
    report.forEach((r) => {
      if (r.type === "transport" && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    });
    const local = pair && report.get(pair.localCandidateId);
    return local ? { type: local.candidateType, relayProtocol: local.relayProtocol || null } : null;
  });
}

for (const [nat2, lanB, ice, server, relay, expected] of CASES) {
  test(`NAT cone ↔ ${nat2}, ${ice}: ${expected}`, { skip: skipReason || false }, async () => {
    const room = `nat-${nat2}-${ice.replace("+", "-")}`;
    const url = `${env[server].url}/?room=${room}${relay ? "&relay=1" : ""}`;
    const a = await openDemo(env.browsers.lan1, url);
    const b = await openDemo(env.browsers[lanB], url);
    try {
      await until(a, "side A joined", () => ["waiting", "calling", "connected"].includes(window.demo?.call?.state));
      const started = Date.now();
      const got = await outcome([a, b]);
      const ms = Date.now() - started;
      const row = { nat2, ice, expected, outcome: got, ms };
      report.push(row);
      assert.equal(got, expected, `cone ↔ ${nat2} with ${ice}: ${got} after ${ms} ms`);
      if (got !== "connected") return;
      await assertVideoFlowing(a, "side A", "remote-video", frames);
      await assertVideoFlowing(b, "side B", "remote-video", frames);
      const sa = await a.evaluate(() => window.demo.call.stats());
      row.pair = `${sa.localCandidateType} ↔ ${sa.remoteCandidateType}`;
      if (relay) {
        assert.equal(row.pair, "relay ↔ relay", "relay-only policy");
      } else if (nat2 === "symmetric") {
        assert.ok(row.pair.includes("relay"), `a symmetric NAT needs the relay: ${row.pair}`);
      } else if (nat2 === "udp-blocked") {
        const local = await b.evaluate(selectedLocal);
        row.pair += ` (side B: ${local?.type} over ${local?.relayProtocol})`;
        assert.deepEqual(local, { type: "relay", relayProtocol: "tcp" }, "side B relays over TCP");
      } else if (ice === "stun") {
        assert.equal(row.pair, "srflx ↔ srflx", "hole punching between two cone NATs");
      }
      if (server === "full" && row.pair.includes("relay")) {
        const stats = await a.evaluate(() => fetch("/api/v1/stats").then((r) => r.json()));
        assert.ok(stats.turn.relayed_to_peers > 0 && stats.turn.allocations_active > 0, JSON.stringify(stats.turn));
      }
    } finally {
      for (const p of [a, b]) {
        await p.evaluate(() => window.demo?.call?.hangup()).catch(() => {});
        await p.context().close().catch(() => {});
      }
    }
  });
}

// The native peer (`switchboard peer`, str0m) as side B, in its own namespace behind a NAT,
// with Chromium (the demo page) as side A behind the port-restricted cone NAT.
const NATIVE_CASES = [
  // [nat2 type, lan of side B, ICE configuration, server, the native side's path]
  // Two cone NATs with STUN only: the native side's server-reflexive candidate punches through.
  ["cone", "lan2", "stun", "stun", "srflx"],
  // Symmetric NAT: only a relay works; Switchboard's TURN carries the call.
  ["symmetric", "lan3", "stun+turn", "full", null],
];

for (const [nat2, lanB, ice, server, nativePath] of NATIVE_CASES) {
  test(`NAT cone (Chromium) ↔ ${nat2} (native peer), ${ice}: connected`, { skip: skipReason || false }, async () => {
    const room = `nat-native-${nat2}-${ice.replace("+", "-")}`;
    const a = await openDemo(env.browsers.lan1, `${env[server].url}/?room=${room}`);
    await until(a, "side A waiting", () => window.demo?.call?.state === "waiting");
    const proc = spawn("ip", ["netns", "exec", `${P}${lanB}`, switchboardBin(), "peer", "--server", `${PUB}:${env[server].port}`,
      "--room", room, "--chat", "--play", "test", "--stats"], { stdio: ["pipe", "pipe", "pipe"] });
    const err = [];
    createInterface({ input: proc.stderr }).on("line", (l) => err.push(l));
    const exited = new Promise((ok) => proc.on("exit", (code) => ok(code)));
    const waitFor = async (text, what) => {
      const deadline = Date.now() + OUTCOME_TIMEOUT_MS;
      while (!err.some((l) => l.includes(text))) {
        if (Date.now() > deadline) throw new Error(`native peer: timed out waiting for ${what}; stderr: ${err.join(" | ")}`);
        await new Promise((ok) => setTimeout(ok, 50));
      }
    };
    const started = Date.now();
    const row = { native: true, nat2, ice, expected: "connected" };
    try {
      const got = await outcome([a]);
      row.outcome = got;
      row.ms = Date.now() - started;
      report.push(row);
      assert.equal(got, "connected", `native behind ${nat2} with ${ice}: ${got}; native stderr: ${err.join(" | ")}`);
      await waitFor("connected", "data channel open");
      // Chrome decodes the native test pattern; the native side receives Chrome's camera.
      await assertVideoFlowing(a, "side A (Chromium)", "remote-video", frames);
      await waitFor("receiving video (vp8)", "Chrome's video");
      const sa = await a.evaluate(() => window.demo.call.stats());
      row.pair = `${sa.localCandidateType} ↔ ${sa.remoteCandidateType}`;
      await waitFor("stats: path=", "a stats line");
      const path = err.filter((l) => l.startsWith("stats: path=")).at(-1).match(/path=(\S+)/)[1];
      row.pair += ` (native path ${path})`;
      if (nativePath === "srflx") {
        // The native side learned its NAT binding from STUN and trickled it: Chrome's remote
        // candidate is that server-reflexive one (ICE reports the native local side as its base).
        assert.ok(err.some((l) => l.includes("server-reflexive address")), err.join("\n"));
        assert.equal(row.pair.split(" (")[0], "srflx ↔ srflx", "hole punching between two cone NATs");
      } else {
        assert.ok(row.pair.includes("relay") || path === "relay", `a symmetric NAT needs the relay: ${row.pair}`);
      }
      proc.stdin.end();
      assert.equal(await exited, 0, err.join("\n"));
    } finally {
      proc.kill();
      await a.evaluate(() => window.demo?.call?.hangup()).catch(() => {});
      await a.context().close().catch(() => {});
    }
  });
}
