// Cluster mode (`--redis-url`) with real clients in headless Chromium: three Switchboard
// nodes share a real redis-server (started and stopped here); pages connected to different
// nodes call each other. Contract: docs/OPERATIONS.md "Cluster", docs/PROTOCOLS.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { join } from "node:path";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";

let redis, nodes, web, browserA, browserB;

const freePort = () => new Promise((ok) => {
  const s = createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
});

/** redis-server on an ephemeral loopback port, nothing persisted; stopped by pid. */
async function startRedis() {
  const port = await freePort();
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
async function allSeeEachOther(ns) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const views = await Promise.all(ns.map(async (n) => (await (await fetch(`${n.url}/api/v1/stats`)).json()).cluster));
    if (views.every((v) => v.nodes.length === ns.length && v.subscribed)) return;
    if (Date.now() > deadline) assert.fail(`nodes do not see each other: ${JSON.stringify(views)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  redis = await startRedis();
  nodes = await Promise.all(["node-1", "node-2", "node-3"].map((id) =>
    startSwitchboard(["--redis-url", redis.url, "--node-id", id, "--turn-secret", "cluster-test-secret"])));
  await allSeeEachOther(nodes);
  web = await startStatic({
    "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
  });
  [browserA, browserB] = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all([browserA?.close(), browserB?.close()]);
  await web?.close();
  await Promise.all((nodes ?? []).map((n) => n.stop()));
  redis?.stop();
});

test("cluster: the official Ant Media SDK on two nodes makes a call (video both ways, data channel, peer messages)", async () => {
  const ROOM = "cluster-room";
  const pageUrl = (node) =>
    `${web.url}/pages/antmedia.html?ws=${encodeURIComponent(node.ws("WebRTCAppEE"))}&room=${ROOM}&media=1`;
  const a = await open(browserA, pageUrl(nodes[0]));
  const b = await open(browserB, pageUrl(nodes[1]));
  try {
    await Promise.all([
      until(a, "A initialized", () => window.events.includes("initialized")),
      until(b, "B initialized", () => window.events.includes("initialized")),
    ]);
    await a.evaluate((room) => window.adaptor.join(room), ROOM);
    await until(a, "A joined", () => window.events.includes("joined"));
    await b.evaluate((room) => window.adaptor.join(room), ROOM);
    await until(b, "B joined", () => window.events.includes("joined"));
    await until(a, "A got start from across the cluster", () => window.received.some((m) => m.command === "start"));
    await Promise.all([
      assertVideoFlowing(a, "A", "remoteVideo", (room) => window.framesDecoded(room), ROOM),
      assertVideoFlowing(b, "B", "remoteVideo", (room) => window.framesDecoded(room), ROOM),
    ]);
    await Promise.all([
      until(a, "A data channel open", () => window.events.includes("data_channel_opened")),
      until(b, "B data channel open", () => window.events.includes("data_channel_opened")),
    ]);
    await a.evaluate((room) => window.adaptor.sendData(room, "hello from node-1"), ROOM);
    await until(b, "B got A's data", () => window.dataReceived.includes("hello from node-1"));
    await b.evaluate((room) => window.adaptor.peerMessage(room, "chat", "over the cluster"), ROOM);
    await until(a, "A got B's peerMessageCommand", () =>
      window.peerMessages.some((m) => m.definition === "chat" && m.data === "over the cluster"));
    // The signaling really crossed nodes.
    const stats = await (await fetch(`${nodes[1].url}/api/v1/stats`)).json();
    assert.ok(stats.cluster.relayed_out > 0 && stats.cluster.relayed_in > 0, JSON.stringify(stats.cluster));
    // A third SDK client on the third node finds the room full.
    const c = await open(browserA, pageUrl(nodes[2]));
    await until(c, "C initialized", () => window.events.includes("initialized"));
    await c.evaluate((room) => window.adaptor.join(room), ROOM);
    await until(c, "C refused", () => window.errors.some((e) => String(e).includes("NoSpaceForNewPeer")));
    await c.close();
    // Closing one page stops the other across nodes.
    await b.close();
    await until(a, "A got stop", () => window.received.some((m) => m.command === "stop"));
  } finally {
    await a.close();
    if (!b.isClosed()) await b.close();
  }
});

test("cluster: the demo page on two nodes is in a call", async () => {
  const name = "cluster-demo";
  const a = await open(browserA, `${nodes[0].url}/?room=${name}`);
  const b = await open(browserB, `${nodes[2].url}/?room=${name}`);
  try {
    const waitState = (page, who, want) => until(page, `${who} state ${want}`, (w) => window.demo.call?.state === w, want);
    await Promise.all([waitState(a, "A", "connected"), waitState(b, "B", "connected")]);
    const frames = async () => (await window.demo.call.stats())?.framesDecoded ?? 0;
    await Promise.all([assertVideoFlowing(a, "A", "remote-video", frames), assertVideoFlowing(b, "B", "remote-video", frames)]);
    // Chat crosses nodes too.
    await a.fill("#chat-input", "hi from node-1");
    await a.press("#chat-input", "Enter");
    await until(b, "B got the chat", () => [...document.querySelectorAll(".msg.them")].some((m) => m.textContent === "hi from node-1"));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
