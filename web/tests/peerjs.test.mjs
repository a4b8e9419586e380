// PeerJS compatibility: the official `peerjs` client (npm) in headless Chromium against a real
// `switchboard serve` (path /peerjs), and raw WebSocket checks of the server protocol.
// Contract: shared/docs/protocols/peerjs.md; docs/PROTOCOLS.md ("PeerJS").
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import WebSocket from "ws";
import { pjRaw } from "./lib/peerjs.mjs";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";

let sb, web, ba, bb;
before(async () => {
  sb = await startSwitchboard();
  web = await startStatic({
    "/peerjs/": join(repo, "web/tests/node_modules/peerjs/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
  });
  [ba, bb] = await Promise.all([launch(), launch()]);
});
after(async () => {
  await Promise.all([ba?.close(), bb?.close()]);
  await web?.close();
  await sb?.stop();
});

const page = (browser) => open(browser, `${web.url}/pages/peerjs.html?host=127.0.0.1&port=${sb.port}`);
const uniq = (p) => `${p}${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;

test("peerjs: data connection both ways, media call with video both ways", async () => {
  const [a, b] = [await page(ba), await page(bb)];
  try {
    const [ida, idb] = [uniq("alice"), uniq("bob")];
    assert.equal(await a.evaluate((id) => window.makePeer(id), ida), ida);
    assert.equal(await b.evaluate((id) => window.makePeer(id), idb), idb);
    assert.equal(await a.evaluate((id) => window.connect(id), idb), "echo:hello");
    assert.deepEqual(await b.evaluate(() => window.received), ["hello"]);
    await a.evaluate((id) => window.startCall(id), idb);
    await assertVideoFlowing(a, "caller", "remote", () => window.framesDecoded());
    await assertVideoFlowing(b, "callee", "remote", () => window.framesDecoded());
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

test("peerjs: EXPIRE for an id that never connects, ID-TAKEN for a duplicate", async () => {
  const [a, b] = [await page(ba), await page(bb)];
  try {
    const ida = uniq("carol");
    await a.evaluate((id) => window.makePeer(id), ida);
    // Connecting to an absent id: the OFFER is queued, expires after 5 s, the server sends
    // EXPIRE and PeerJS reports `peer-unavailable`.
    await a.evaluate(() => { window.peer.connect("nobody-here"); });
    await until(a, "peer-unavailable", () => window.errors.includes("peer-unavailable"), undefined, 15000);
    assert.equal(await b.evaluate((id) => window.makePeer(id), ida), null);
    assert.deepEqual(await b.evaluate(() => window.errors), ["unavailable-id"]);
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

test("peerjs: reconnect() after a dropped socket keeps the same id", async () => {
  const [a, b] = [await page(ba), await page(bb)];
  try {
    const [ida, idb] = [uniq("dora"), uniq("eve")];
    await a.evaluate((id) => window.makePeer(id), ida);
    await b.evaluate((id) => window.makePeer(id), idb);
    await a.evaluate(() => { window.peer.socket._socket.close(); });
    await until(a, "disconnected", () => window.events.includes("disconnected"));
    await a.evaluate(() => new Promise((ok) => { window.peer.once("open", ok); window.peer.reconnect(); }));
    assert.equal(await a.evaluate(() => window.peer.id), ida);
    assert.equal(await b.evaluate((id) => window.connect(id), ida), "echo:hello");
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

/** A raw PeerJS WebSocket to the test server with its frames collected. */
const raw = (query) => pjRaw(sb.port, query);

test("peerjs raw protocol: errors, relay with src stamped, bad JSON, HTTP endpoints", async () => {
  const info = await (await fetch(`${sb.url}/peerjs/`)).json();
  assert.equal(info.name, "PeerJS Server");
  const idRes = await fetch(`${sb.url}/peerjs/peerjs/id?ts=1&version=1.5.5`);
  assert.match(idRes.headers.get("content-type"), /text\/html/);
  assert.match(await idRes.text(), /^[0-9a-f-]{36}$/);
  assert.equal((await fetch(`${sb.url}/peerjs/peerjs/peers`)).status, 401, "discovery is off by default");
  assert.equal((await fetch(`${sb.url}/peerjs/wrong/id`)).status, 401);

  const missing = await raw("key=peerjs&id=x1");
  assert.deepEqual(await missing.next(), { type: "ERROR", payload: { msg: "No id, token, or key supplied to websocket server" } });
  await missing.closed;
  const badKey = await raw("key=nope&id=x1&token=t");
  assert.deepEqual(await badKey.next(), { type: "ERROR", payload: { msg: "Invalid key provided" } });
  await badKey.closed;

  const a = await raw("key=peerjs&id=rawa&token=ta&version=1.5.5");
  const b = await raw("key=peerjs&id=rawb&token=tb&version=1.5.5");
  assert.deepEqual(await a.next(), { type: "OPEN" });
  assert.deepEqual(await b.next(), { type: "OPEN" });
  const taken = await raw("key=peerjs&id=rawb&token=other");
  assert.deepEqual(await taken.next(), { type: "ID-TAKEN", payload: { msg: "ID is taken" } });
  await taken.closed;

  a.send("this is not json");
  a.send({ type: "OFFER", src: "forged", dst: "rawb", payload: { sdp: { type: "offer", sdp: "v=0" }, type: "media", connectionId: "mc_1" }, extra: 1 });
  assert.deepEqual(await b.next(), { type: "OFFER", src: "rawa", dst: "rawb", payload: { sdp: { type: "offer", sdp: "v=0" }, type: "media", connectionId: "mc_1" } });
  a.send({ type: "HEARTBEAT" });
  a.send({ type: "LEAVE", dst: "rawb" });
  assert.deepEqual(await b.next(), { type: "LEAVE", src: "rawa", dst: "rawb" });

  // Queued for an id that connects later, delivered after its OPEN, in order.
  a.send({ type: "OFFER", dst: "rawc", payload: { n: 1 } });
  a.send({ type: "CANDIDATE", dst: "rawc", payload: { n: 2 } });
  const c = await raw("key=peerjs&id=rawc&token=tc");
  assert.deepEqual(await c.next(), { type: "OPEN" });
  assert.deepEqual((await c.next()).payload, { n: 1 });
  assert.deepEqual((await c.next()).payload, { n: 2 });

  // Reconnect with the same token takes the id over; the old socket is closed.
  const b2 = await raw("key=peerjs&id=rawb&token=tb");
  assert.deepEqual(await b2.next(), { type: "OPEN" });
  await b.closed;
  a.send({ type: "ANSWER", dst: "rawb", payload: {} });
  assert.equal((await b2.next()).src, "rawa");
  for (const s of [a, b2, c]) s.ws.close();
});

test("peerjs raw protocol: the queue for an absent id is bounded (EXPIRE at once when full)", async () => {
  const a = await raw("key=peerjs&id=rawq&token=t");
  await a.next();
  for (let i = 0; i < 65; i++) a.send({ type: "CANDIDATE", dst: "ghost", payload: { i } });
  // The 65th finds the queue full: EXPIRE now, not after 5 s.
  assert.deepEqual(await a.next(undefined, 1000), { type: "EXPIRE", src: "ghost", dst: "rawq" });
  // Then the 64 queued ones expire: one EXPIRE for the pair, not 64.
  assert.deepEqual(await a.next(undefined, 8000), { type: "EXPIRE", src: "ghost", dst: "rawq" });
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(a.frames, []);
  a.ws.close();
});

test("peerjs options: path, key, discovery, concurrent limit, alive timeout", async () => {
  const small = await startSwitchboard(["--peerjs-path", "/pj", "--peerjs-key", "k2", "--peerjs-allow-discovery", "true",
    "--peerjs-concurrent-limit", "1", "--peerjs-alive-timeout", "1000"]);
  const rawOn = async (query) => {
    const ws = new WebSocket(`ws://127.0.0.1:${small.port}/pj/peerjs?${query}`);
    const frames = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    const closed = new Promise((ok) => ws.on("close", (code) => ok(code)));
    await new Promise((ok, fail) => { ws.on("open", ok); ws.on("error", fail); });
    return { ws, frames, closed };
  };
  try {
    const a = await rawOn("key=k2&id=only&token=t");
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(a.frames, [{ type: "OPEN" }]);
    assert.deepEqual(await (await fetch(`${small.url}/pj/k2/peers`)).json(), ["only"]);
    const b = await rawOn("key=k2&id=second&token=t");
    await b.closed;
    assert.deepEqual(b.frames, [{ type: "ERROR", payload: { msg: "Server has reached its concurrent user limit" } }]);
    // Unknown types are ignored; the socket stays until HEARTBEATs stop for alive_timeout.
    a.ws.send(JSON.stringify({ type: "SOMETHING", dst: "x" }));
    for (let i = 0; i < 4; i++) {
      a.ws.send(JSON.stringify({ type: "HEARTBEAT" }));
      await new Promise((r) => setTimeout(r, 400));
    }
    assert.equal(a.ws.readyState, WebSocket.OPEN, "heartbeats keep it");
    const started = Date.now();
    await a.closed;
    const silent = Date.now() - started;
    assert.ok(silent >= 500 && silent < 3000, `closed after ${silent} ms of silence`);
    assert.deepEqual(await (await fetch(`${small.url}/pj/k2/peers`)).json(), []);
  } finally {
    await small.stop();
  }
});
