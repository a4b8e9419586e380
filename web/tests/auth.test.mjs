// Room tokens with real clients: the official Ant Media SDK (token on the WebSocket URL),
// Switchboard's SDK and demo page (token in the join), all in headless Chromium against a
// real `switchboard serve --auth-secret`; tokens signed by the `jsonwebtoken` npm package,
// as an application back end would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import jwt from "jsonwebtoken";
import { io } from "socket.io-client";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";

const SECRET = "a-room-token-secret-at-least-32-bytes-long";
let sb, web, browserA, browserB;

const mint = (claims, options = {}) =>
  jwt.sign(claims, SECRET, { algorithm: "HS256", expiresIn: "10m", ...options });

const amPage = (token, room) => {
  const ws = sb.ws("WebRTCAppEE") + (token ? `?token=${token}` : "");
  return `${web.url}/pages/antmedia.html?ws=${encodeURIComponent(ws)}&room=${room}&media=1`;
};

before(async () => {
  sb = await startSwitchboard(["--auth-secret", SECRET]);
  web = await startStatic({
    "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
    "/peerjs/": join(repo, "web/tests/node_modules/peerjs/dist/"),
  });
  [browserA, browserB] = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all([browserA?.close(), browserB?.close()]);
  await web?.close();
  if (sb) await sb.stop();
});

test("the official Ant Media SDK calls with a token on its URL; without one it is refused and gets no TURN", async () => {
  const room = "am-auth";
  const token = (sub) => mint({ sub, room, app: "WebRTCAppEE" });
  const a = await open(browserA, amPage(token("alice"), room));
  const b = await open(browserB, amPage(token("bob"), room));
  const initialized = (p) => until(p, "initialized", () => window.events.includes("initialized"));
  await Promise.all([initialized(a), initialized(b)]);
  // Its getIceServerConfig (sent at connect) got TURN credentials named after the identity.
  await until(a, "TURN for alice", () => window.received.some((m) =>
    m.command === "iceServerConfig" && (m.iceServers || []).some((s) => String(s.username).endsWith(":u.alice"))));
  await a.evaluate((r) => window.adaptor.join(r), room);
  await until(a, "A joined", () => window.events.includes("joined"));
  await b.evaluate((r) => window.adaptor.join(r), room);
  await until(b, "B joined", () => window.events.includes("joined"));
  const connected = (p) => until(p, "ICE connected", () => window.iceStates.some((s) => s === "connected" || s === "completed"));
  await Promise.all([connected(a), connected(b)]);
  await assertVideoFlowing(b, "B", "remoteVideo", (r) => window.framesDecoded(r), room);

  // No token, an expired one, one for another room: refused with unauthorized_access, the
  // SDK's error callback gets Ant Media's name, and the room hears nothing. TURN goes only
  // to a token valid now (the one for another room is: TURN is not per room).
  const expired = jwt.sign({ room, exp: Math.floor(Date.now() / 1000) - 120 }, SECRET, { algorithm: "HS256" });
  const bad = [[null, false], [expired, false], [mint({ room: "elsewhere" }), true]];
  for (const [t, turn] of bad) {
    const c = await open(browserA, amPage(t, room));
    await initialized(c);
    await until(c, "iceServerConfig", () => window.received.some((m) => m.command === "iceServerConfig"));
    const ice = await c.evaluate(() => window.received.find((m) => m.command === "iceServerConfig"));
    const stunOnly = ice.iceServers.every((s) => s.urls.every((u) => u.startsWith("stun:")));
    assert.equal(stunOnly, !turn, JSON.stringify(ice));
    await c.evaluate((r) => window.adaptor.join(r), room);
    await until(c, "refused", () => window.errors.includes("unauthorized_access"));
    assert.ok(!(await c.evaluate(() => window.events.includes("joined"))));
    await c.close();
  }
  const seenByA = await a.evaluate(() => window.received.filter((m) => m.command === "stop" || m.command === "error").length);
  assert.equal(seenByA, 0);
  await Promise.all([a.close(), b.close()]);
});

test("the demo page calls with ?token=, and a refused token says so on the stage", async () => {
  const room = "demo-auth";
  const url = (t) => `${sb.url}/?room=${room}&token=${t}`;
  const a = await open(browserA, url(mint({ sub: "alice", room })));
  const b = await open(browserB, url(mint({ sub: "bob", room: "demo-*" })));
  const state = (p, who, want) => until(p, `${who} ${want}`, (w) => window.demo.call?.state === w, want);
  await Promise.all([state(a, "A", "connected"), state(b, "B", "connected")]);
  await assertVideoFlowing(b, "B", "remote-video", async () => (await window.demo.call.stats())?.framesDecoded ?? 0);

  const c = await open(browserA, url(mint({ room: "other-room" })));
  await state(c, "C", "closed");
  assert.equal(await c.textContent("#stage-text"), "Could not join the call.");
  assert.match(await c.textContent("#stage-sub"), /valid invitation/);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test("the SDK calls its token function again for a re-join after a reconnect", async () => {
  const room = "sdk-auth";
  const first = mint({ room });
  const second = mint({ room });
  const page = await open(browserA, `${web.url}/pages/sdk.html?sdk=${encodeURIComponent(sb.url + "/sdk/switchboard.js")}` +
    `&ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}&room=${room}&tokens=${first},${second}`);
  await until(page, "joined", () => window.sbStates.includes("waiting"));
  assert.equal(await page.evaluate(() => window.tokenCalls), 1);
  // Drop the signaling socket: the SDK reconnects and re-joins with a fresh token.
  await page.evaluate(() => window.call._ws.close());
  await until(page, "re-joined", () => window.sbStates.lastIndexOf("waiting") > window.sbStates.indexOf("reconnecting") && window.sbStates.includes("reconnecting"));
  assert.equal(await page.evaluate(() => window.tokenCalls), 2);
  // A token function that hands out a bad token ends the call with `unauthorized`.
  const refused = await open(browserB, `${web.url}/pages/sdk.html?sdk=${encodeURIComponent(sb.url + "/sdk/switchboard.js")}` +
    `&ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}&room=${room}&tokens=not-a-token`);
  await until(refused, "unauthorized", () => window.sbErrors.includes("unauthorized"));
  assert.equal(await refused.evaluate(() => window.call.state), "closed");
  await Promise.all([page.close(), refused.close()]);
});

/** A socket.io client with `auth: { token }`: resolves with the socket once connected, or
 * with the `connect_error` message. */
function sio(token) {
  const socket = io(sb.url, { auth: token ? { token } : {}, transports: ["websocket"], reconnection: false, forceNew: true });
  socket.got = [];
  socket.onAny((event, ...args) => socket.got.push({ event, args }));
  return new Promise((ok) => {
    socket.once("connect", () => ok({ socket }));
    socket.once("connect_error", (e) => { socket.close(); ok({ error: e.message }); });
  });
}

const waitFor = async (socket, event, pred = () => true) => {
  const deadline = Date.now() + 5000;
  for (;;) {
    const hit = socket.got.find((g) => g.event === event && pred(g.args[0]));
    if (hit) return hit.args[0];
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${event}; got ${JSON.stringify(socket.got)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("socket.io-client: handshake auth.token; refused with connect_error; the token's sub is the id in rosters and from; rooms bind", async () => {
  assert.deepEqual(await sio(null), { error: "unauthorized_access: a room token is required" });
  const expired = jwt.sign({ room: "sio-1", exp: Math.floor(Date.now() / 1000) - 120 }, SECRET, { algorithm: "HS256" });
  assert.deepEqual(await sio(expired), { error: "unauthorized_access: the token has expired" });
  assert.deepEqual(await sio(jwt.sign({ room: "sio-1" }, "another-secret-that-is-32-bytes-long!!", { expiresIn: "5m" })),
    { error: "unauthorized_access: the token's signature is not valid" });

  const { socket: alice } = await sio(mint({ sub: "alice", room: "sio-*" }));
  const { socket: bob } = await sio(mint({ sub: "bob", room: "sio-1" }));
  try {
    assert.deepEqual(await alice.emitWithAck("join", { room: "sio-1" }), { ok: true, room: "sio-1", peers: [] });
    assert.deepEqual(await bob.emitWithAck("join", { room: "sio-1" }), { ok: true, room: "sio-1", peers: ["alice"] });
    assert.deepEqual(await waitFor(alice, "peer-joined"), { room: "sio-1", id: "bob" });
    // Relays address identities; `from` is the sender's identity, never what it wrote.
    bob.emit("offer", { target: "alice", sdp: { type: "offer", sdp: "v=0" }, from: "mallory" });
    assert.deepEqual(await waitFor(alice, "offer"), { target: "alice", sdp: { type: "offer", sdp: "v=0" }, from: "bob" });
    // bob's token is for sio-1 only.
    const refused = await bob.emitWithAck("join", { room: "sio-2" });
    assert.deepEqual(refused, { ok: false, error: "unauthorized_access", reason: "the token is for another room" });
    // A second socket of alice takes her identity over; the first is told and disconnected.
    const { socket: alice2 } = await sio(mint({ sub: "alice", room: "sio-*" }));
    try {
      assert.deepEqual(await waitFor(alice, "error"), { event: "connect", error: "replaced", reason: "the same identity connected again" });
      await waitFor(bob, "peer-left", (p) => p.id === "alice");
      assert.deepEqual(await alice2.emitWithAck("join", { room: "sio-1" }), { ok: true, room: "sio-1", peers: ["bob"] });
    } finally {
      alice2.close();
    }
  } finally {
    alice.close();
    bob.close();
  }
});

test("peerjs: the key is the room token; its sub is the only id it opens, and a squatter is refused", async () => {
  const page = (browser) => open(browser, `${web.url}/pages/peerjs.html?host=127.0.0.1&port=${sb.port}`);
  const [a, b] = [await page(browserA), await page(browserB)];
  try {
    const alice = mint({ sub: "pj-alice" });
    const bob = mint({ sub: "pj-bob" });
    assert.equal(await a.evaluate(([id, key]) => window.makePeer(id, key), ["pj-alice", alice]), "pj-alice");
    // bob's token cannot open alice's id (nor the configured key any id).
    assert.equal(await b.evaluate(([id, key]) => window.makePeer(id, key), ["pj-alice", bob]), null);
    assert.match((await b.evaluate(() => window.errorMessages)).join(), /unauthorized_access: the token is for another id/);
    assert.equal(await b.evaluate(([id, key]) => window.makePeer(id, key), ["pj-bob", "peerjs"]), null);
    assert.equal(await b.evaluate(([id, key]) => window.makePeer(id, key), ["pj-bob", bob]), "pj-bob");
    assert.equal(await b.evaluate((id) => window.connect(id), "pj-alice"), "echo:hello");
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});
