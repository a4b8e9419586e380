// The container image as an operator builds and runs it: the repository's Dockerfile built
// with podman (its base images, build arguments, made here from Debian's packages by
// scripts/test-images.sh; the build stage reuses this checkout's debug build, mounted at its
// own path, instead of compiling for minutes), then run with host networking and configured
// by SWITCHBOARD_* variables: /healthz and the image's HEALTHCHECK, a call with the demo page
// in Chromium, a TURN allocation with coturn's client, not root, and SIGTERM within the grace
// period with a client still connected.
//
// Needs root, podman, the base image and coturn's turnutils_uclient; scripts/test.sh sets
// SWITCHBOARD_REQUIRE_PACKAGING=1 when it runs as root, which turns a skip into a failure.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import WebSocket from "ws";
import { launch, freePort, eventually } from "./lib/harness.mjs";
import { demoCall } from "./lib/demo.mjs";
import { packagingUnavailable, podman, ulimitArgs, buildImage } from "./lib/podman.mjs";

const REQUIRE = process.env.SWITCHBOARD_REQUIRE_PACKAGING === "1";
const skipReason = packagingUnavailable()
  ?? (spawnSync("sh", ["-c", "command -v turnutils_uclient"]).status === 0 ? null : "coturn's turnutils_uclient is not installed");
if (skipReason) {
  if (REQUIRE) throw new Error(`packaging tests required (SWITCHBOARD_REQUIRE_PACKAGING=1) but cannot run: ${skipReason}`);
  console.log(`SKIPPED: container image: ${skipReason}`);
}

const IMAGE = `localhost/switchboard-test/switchboard:${process.pid}`;
const name = `sb-container-test-${process.pid}`;
let port, turnPort, browsers = [];

let rev;
before(async () => {
  if (skipReason) return;
  rev = buildImage(IMAGE);
  [port, turnPort] = [await freePort(), await freePort()];
  browsers = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (skipReason) return;
  podman(["rm", "-f", "-t", "0", name], { check: false });
  podman(["rmi", "-f", IMAGE], { check: false });
});

test("the image: not root, HEALTHCHECK, EXPOSE, the git revision", { skip: !!skipReason }, () => {
  const [image] = JSON.parse(podman(["image", "inspect", IMAGE]).stdout);
  const config = image.Config;
  assert.equal(config.User, "10001:10001");
  assert.deepEqual(image.Healthcheck.Test, ["CMD", "/usr/bin/switchboard", "health"]);
  assert.deepEqual(Object.keys(config.ExposedPorts).sort(),
    ["3478/tcp", "3478/udp", "49152-65535/udp", "5080/tcp", "5349/tcp"]);
  assert.deepEqual(config.Entrypoint, ["/usr/bin/switchboard"]);
  const version = podman(["run", "--rm", ...ulimitArgs(), IMAGE, "--version"]).stdout.trim();
  assert.equal(version, `switchboard 0.1.0 (${rev})`);
});

test("run with SWITCHBOARD_* variables: /healthz, the HEALTHCHECK, a non-root process", { skip: !!skipReason }, async () => {
  podman(["rm", "-f", name], { check: false });
  podman(["run", "-d", "--name", name, "--network", "host", ...ulimitArgs(),
    "-e", `SWITCHBOARD_LISTEN=127.0.0.1:${port}`, "-e", `SWITCHBOARD_TURN_LISTEN=127.0.0.1:${turnPort}`,
    "-e", "SWITCHBOARD_TURN_SECRET=a-long-random-test-secret", "-e", "SWITCHBOARD_LOG_FORMAT=json", IMAGE]);
  await eventually("/healthz answers", async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
  // The image's own health check, as podman runs it.
  const hc = podman(["healthcheck", "run", name], { check: false });
  assert.equal(hc.status, 0, hc.stdout + hc.stderr);
  assert.equal(podman(["inspect", name, "--format", "{{.State.Healthcheck.Status}}"]).stdout.trim(), "healthy");
  // The server process runs as the image's user.
  const top = podman(["top", name, "user", "huser", "args"]).stdout;
  assert.match(top, /^10001\s+10001\s+\/usr\/bin\/switchboard serve/m, top);
  // Settings from the environment: JSON logs, the listening line on the given port.
  const logs = podman(["logs", name]).stdout + podman(["logs", name]).stderr;
  assert.match(logs, new RegExp(`"message":"switchboard 0\\.1\\.0 \\(${rev}\\) listening on 127\\.0\\.0\\.1:${port}`));
});

test("a call with the demo page through the container", { skip: !!skipReason }, async () => {
  const url = `http://127.0.0.1:${port}/?room=from-the-container`;
  const pages = await demoCall(browsers[0], url, browsers[1], url);
  await Promise.all(pages.map((p) => p.context().close()));
});

test("a TURN allocation with coturn's client against the container's TURN server", { skip: !!skipReason }, async () => {
  const ice = await (await fetch(`http://127.0.0.1:${port}/api/v1/ice-servers`)).json();
  const turn = ice.iceServers.find((s) => s.urls[0].startsWith("turn:"));
  assert.ok(turn, JSON.stringify(ice));
  for (const transport of [[], ["-t"]]) {
    const run = spawnSync("timeout", ["30", "turnutils_uclient", ...transport, "-y", "-u", turn.username, "-w", turn.credential,
      "-p", String(turnPort), "-n", "5", "-m", "1", "-X", "127.0.0.1"], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    // Every message sent through the relay came back.
    assert.match(run.stdout + run.stderr, /Total lost packets 0 \(0\.000000%\)/);
  }
  const stats = await (await fetch(`http://127.0.0.1:${port}/api/v1/stats`)).json();
  assert.ok(stats.turn.allocations_total >= 4 && stats.turn.relayed_to_peers >= 20, JSON.stringify(stats.turn));
});

test("SIGTERM with a client connected: the server says goodbye and exits 0 within the grace period", { skip: !!skipReason }, async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/WebRTCAppEE/websocket`);
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  ws.send(JSON.stringify({ command: "join", streamId: "left-open" }));
  const closed = new Promise((ok) => ws.once("close", (code) => ok(code)));
  const t0 = Date.now();
  // podman stop sends the image's STOPSIGNAL, then SIGKILL after 10 s.
  podman(["stop", "-t", "10", name]);
  const took = Date.now() - t0;
  assert.ok(took < 9000, `stop took ${took} ms`);
  assert.equal(podman(["inspect", name, "--format", "{{.State.ExitCode}}"]).stdout.trim(), "0");
  // The client was told (a close frame, "going away"), not cut off.
  assert.equal(await closed, 1001);
  const logs = podman(["logs", name]).stdout;
  assert.match(logs, /received SIGTERM/);
  assert.match(logs, /"message":"stopped"/);
});
