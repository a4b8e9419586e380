// Cluster-mode helpers shared by the test files: a real redis-server started and stopped by
// pid, and a wait until Switchboard nodes see each other.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { freePort } from "./harness.mjs";


/** redis-server on an ephemeral loopback port, nothing persisted; stopped by pid. */
export async function startRedis() {
  return startRedisOn(await freePort());
}

/** redis-server on `port` (to restart one where it was). */
export async function startRedisOn(port) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const deadline = Date.now() + 10000;
  for (;;) {
    const up = await new Promise((ok) => {
      const c = connect(port, "127.0.0.1", () => { c.destroy(); ok(true); });
      c.on("error", () => ok(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error("redis-server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, url: `redis://127.0.0.1:${port}`, stop: () => proc.kill("SIGKILL") };
}

/** Waits until every node sees all of them in its cluster view. */
export async function allSeeEachOther(ns) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const views = await Promise.all(ns.map(async (n) => (await (await fetch(`${n.url}/api/v1/stats`)).json()).cluster));
    if (views.every((v) => v.nodes.length === ns.length && v.subscribed)) return;
    if (Date.now() > deadline) assert.fail(`nodes do not see each other: ${JSON.stringify(views)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

