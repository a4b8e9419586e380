// deploy/compose.yaml as an operator runs it: three Switchboard nodes (the repository's
// Dockerfile, built as in container.test.mjs), Redis and nginx terminating TLS, started with
// podman-compose on host networking (Redis and nginx from the locally made base image, which
// has Debian's redis-server and nginx; the file's own commands and nginx.conf, unchanged).
// Two pages on two nodes make a call, and two pages through the TLS load balancer do too. The
// file is also checked with Docker Compose (`docker-compose config`), where it is installed.
//
// Uses the file's fixed ports (8443, 5081-5083, 3478-3480, 6379): they must be free. Needs
// root, podman, the base image and podman-compose; scripts/test.sh sets
// SWITCHBOARD_REQUIRE_PACKAGING=1 when it runs as root, which turns a skip into a failure.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:https";
import { launch, repo, eventually } from "./lib/harness.mjs";
import { demoCall } from "./lib/demo.mjs";
import { TEST_IMAGE, packagingUnavailable, podman, podmanCompose, buildImage } from "./lib/podman.mjs";

const REQUIRE = process.env.SWITCHBOARD_REQUIRE_PACKAGING === "1";
const file = join(repo, "deploy/compose.yaml");
const PORTS = [8443, 5081, 5082, 5083, 3478, 3479, 3480, 6379];

/** Whether something listens on 127.0.0.1:`port` (TCP). */
const busy = (port) => new Promise((ok) => {
  const s = createConnection({ host: "127.0.0.1", port }, () => { s.destroy(); ok(true); });
  s.on("error", () => ok(false));
});

let skipReason = packagingUnavailable();
if (!skipReason && podmanCompose(["version"], { check: false }).status !== 0) skipReason = "podman-compose is not installed";
if (!skipReason) {
  const taken = [];
  for (const p of PORTS) if (await busy(p)) taken.push(p);
  if (taken.length) skipReason = `ports of deploy/compose.yaml in use: ${taken.join(", ")}`;
}
if (skipReason) {
  if (REQUIRE) throw new Error(`packaging tests required (SWITCHBOARD_REQUIRE_PACKAGING=1) but cannot run: ${skipReason}`);
  console.log(`SKIPPED: compose: ${skipReason}`);
}

const IMAGE = `localhost/switchboard-test/switchboard:compose-${process.pid}`;
const project = `sbcompose${process.pid}`;
const tls = mkdtempSync(join(tmpdir(), "sb-compose-tls-"));
const env = {
  SWITCHBOARD_TURN_SECRET: "compose-test-secret-0123456789",
  SWITCHBOARD_IMAGE: IMAGE, REDIS_IMAGE: TEST_IMAGE, NGINX_IMAGE: TEST_IMAGE, TLS_DIR: tls,
};
const compose = (args, opts = {}) => podmanCompose(["-p", project, "-f", file, ...args], { env, ...opts });
let browsers = [];

/** GET https://localhost:8443`path` (the self-signed certificate of this test): status and body. */
const viaLb = (path) => new Promise((ok, fail) => {
  const req = request({ host: "127.0.0.1", port: 8443, path, servername: "localhost", headers: { host: "localhost:8443" }, rejectUnauthorized: false }, (res) => {
    let body = "";
    res.on("data", (d) => { body += d; });
    res.on("end", () => ok({ status: res.statusCode, body }));
  });
  req.on("error", fail);
  req.end();
});

before(async () => {
  if (skipReason) return;
  const cert = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", join(tls, "privkey.pem"), "-out", join(tls, "fullchain.pem")],
  { encoding: "utf8" });
  assert.equal(cert.status, 0, cert.stderr);
  buildImage(IMAGE);
  compose(["up", "-d"]);
  await eventually("every node sees all three", async () => {
    for (const port of [5081, 5082, 5083]) {
      const stats = await (await fetch(`http://127.0.0.1:${port}/api/v1/stats`)).json();
      if (stats.cluster?.nodes?.length !== 3) return false;
    }
    return true;
  }, 30000);
  await eventually("nginx answers over TLS", async () => (await viaLb("/healthz")).status === 200);
  browsers = await Promise.all([0, 1].map(() => launch({ extraArgs: ["--ignore-certificate-errors"] })));
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (!skipReason) {
    const logs = compose(["logs"], { check: false });
    if (process.env.SWITCHBOARD_TEST_VERBOSE) console.log(logs.stdout, logs.stderr);
    compose(["down", "-t", "2"], { check: false });
    podman(["rmi", "-f", IMAGE], { check: false });
  }
  rmSync(tls, { recursive: true, force: true });
});

test("the compose file: valid for Docker Compose too, and it names what it needs", { skip: !!skipReason }, () => {
  const dc = spawnSync("sh", ["-c", "command -v docker-compose"]);
  if (dc.status !== 0) {
    if (REQUIRE) assert.fail("docker-compose (Debian's) is not installed");
    return;
  }
  const ok = spawnSync("docker-compose", ["-f", file, "config", "-q"], { encoding: "utf8", env: { ...process.env, ...env } });
  assert.equal(ok.status, 0, ok.stderr);
  const { SWITCHBOARD_TURN_SECRET: _, ...without } = { ...process.env, ...env };
  const missing = spawnSync("docker-compose", ["-f", file, "config", "-q"], { encoding: "utf8", env: without });
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /set SWITCHBOARD_TURN_SECRET to a long random string/);
});

test("three nodes on one Redis behind nginx: TLS, a node id each, the same TURN secret", { skip: !!skipReason }, async () => {
  const ids = [];
  for (const port of [5081, 5082, 5083]) {
    const stats = await (await fetch(`http://127.0.0.1:${port}/api/v1/stats`)).json();
    ids.push(stats.cluster.node);
    assert.deepEqual([...stats.cluster.nodes].sort(), ["node1", "node2", "node3"]);
  }
  assert.deepEqual(ids, ["node1", "node2", "node3"]);
  // Through nginx: the demo page and the ICE servers, with TURN credentials every node takes.
  const page = await viaLb("/");
  assert.equal(page.status, 200);
  assert.match(page.body, /<title>/);
  const ice = JSON.parse((await viaLb("/api/v1/ice-servers")).body);
  assert.ok(ice.iceServers.some((s) => s.urls.some((u) => /^turn:localhost:34(78|79|80)\?transport=udp$/.test(u))), JSON.stringify(ice));
});

test("two pages on two nodes make a call", { skip: !!skipReason }, async () => {
  const pages = await demoCall(browsers[0], "http://127.0.0.1:5081/?room=across-nodes", browsers[1], "http://127.0.0.1:5082/?room=across-nodes");
  const [one, two] = await Promise.all([5081, 5082].map(async (p) => (await (await fetch(`http://127.0.0.1:${p}/api/v1/stats`)).json()).cluster));
  // The call crossed Redis: each node relayed to the other.
  assert.ok(one.messages_in > 0 && two.messages_in > 0, JSON.stringify({ one, two }));
  await Promise.all(pages.map((p) => p.context().close()));
});

test("two pages through the TLS load balancer make a call", { skip: !!skipReason }, async () => {
  const url = "https://localhost:8443/?room=through-nginx";
  const pages = await demoCall(browsers[0], url, browsers[1], url);
  assert.equal(await pages[0].evaluate(() => location.protocol), "https:");
  await Promise.all(pages.map((p) => p.context().close()));
});
