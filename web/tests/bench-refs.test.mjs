// `switchboard bench` against the reference servers it is compared with (bench/compare.sh):
// the ten-line socket.io seed relay on the real npm `socket.io` server, and peerjs-server
// (npm `peer`). Proves the load tool's socket.io and PeerJS drivers speak the real protocols:
// every message arrives once and in order, no error frames, churn completes cycles.
// Figures are reported by the tool, never asserted (benchmarks live in docs/BENCHMARKS.md).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { get } from "node:http";
import { switchboardBin, freePort } from "./lib/harness.mjs";

// The reference servers run as child processes (as in bench/compare.sh), stopped by pid.
const children = [];
after(() => children.forEach((c) => c.kill("SIGTERM")));


/** Starts `node <args>` (in this directory, so it finds node_modules) and waits until
 * `http://127.0.0.1:<port><probe>` answers. */
async function startNode(args, port, probe, env = {}) {
  const child = spawn(process.execPath, args, {
    cwd: import.meta.dirname,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const deadline = Date.now() + 15000;
  for (;;) {
    const up = await new Promise((ok) => {
      get({ host: "127.0.0.1", port, path: probe }, (res) => { res.resume(); ok(true); }).on("error", () => ok(false));
    });
    if (up) return;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`reference server did not start:\n${log}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/** The seed relay of docs/PROTOCOLS.md, verbatim, on npm socket.io. */
async function seedRelay() {
  const port = await freePort();
  const relay = `
    const io = require("socket.io")(Number(process.env.PORT));
    io.on("connection", (socket) => {
      socket.on("offer", (data) => socket.to(data.target).emit("offer", data));
      socket.on("answer", (data) => socket.to(data.target).emit("answer", data));
      socket.on("ice-candidate", (data) => socket.to(data.target).emit("ice-candidate", data));
    });`;
  await startNode(["-e", relay], port, "/socket.io/?EIO=4&transport=polling", { PORT: String(port) });
  return port;
}

/** peerjs-server (npm `peer`, its own command line) mounted at /peerjs. */
async function peerServer() {
  const port = await freePort();
  await startNode(["node_modules/peer/dist/bin/peerjs.js", "--port", String(port), "--path", "/peerjs"], port, "/peerjs/");
  return port;
}

/** Runs `switchboard bench <args>` and returns its JSON summary. */
function bench(args) {
  return new Promise((ok, fail) => {
    execFile(switchboardBin(), ["bench", ...args], { timeout: 60000 }, (err, stdout, stderr) => {
      if (err) return fail(new Error(`${err.message}\n${stderr}`));
      try {
        ok(JSON.parse(stdout.trim().split("\n").pop()));
      } catch (e) {
        fail(new Error(`${e.message}: ${stdout}\n${stderr}`));
      }
    });
  });
}

for (const [name, protocol, start] of [
  ["socket.io seed relay", "socketio", seedRelay],
  ["peerjs-server", "peerjs", peerServer],
]) {
  test(`bench relay and churn against ${name}`, async () => {
    const port = await start();
    const server = `127.0.0.1:${port}`;
    const relay = await bench(["relay", "--protocol", protocol, "--server", server,
      "--pairs", "5", "--window", "4", "--duration", "1", "--warmup", "0.3"]);
    assert.equal(relay.protocol, protocol);
    assert.ok(relay.sent > 0, JSON.stringify(relay));
    assert.equal(relay.lost, 0, JSON.stringify(relay));
    assert.equal(relay.out_of_order, 0, JSON.stringify(relay));
    assert.equal(relay.other_frames, 0, JSON.stringify(relay));
    assert.equal(relay.errors, 0, JSON.stringify(relay));
    const churn = await bench(["churn", "--protocol", protocol, "--server", server,
      "--concurrency", "2", "--duration", "1", "--warmup", "0.3"]);
    assert.equal(churn.errors, 0, JSON.stringify(churn));
    assert.ok(churn.pairs_per_s > 0, JSON.stringify(churn));
  });
}
