// Room tokens with real clients: the official Ant Media SDK (token on the WebSocket URL),
// Switchboard's SDK and demo page (token in the join), all in headless Chromium against a
// real `switchboard serve --auth-secret`; tokens signed by the `jsonwebtoken` npm package,
// as an application back end would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import jwt from "jsonwebtoken";
import { io } from "socket.io-client";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";
import { recording, waitFor } from "./lib/sio.mjs";

const SECRET = "a-room-token-secret-at-least-32-bytes-long";
let sb, web, browserA, browserB, keyDir, rsaPublic;

const mint = (claims, options = {}) =>
  jwt.sign(claims, SECRET, { algorithm: "HS256", expiresIn: "10m", ...options });

const amPage = (token, room) => {
  const ws = sb.ws("WebRTCAppEE") + (token ? `?token=${token}` : "");
  return `${web.url}/pages/antmedia.html?ws=${encodeURIComponent(ws)}&room=${room}&media=1`;
};

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/**
 * The attacks every dialect must refuse, for a token that would otherwise admit to `room` of
 * `app`: [name, token, the server's reason]. "wrong app" only where apps exist (Ant Media).
 */
function badTokens(room, app) {
  const claims = { room, ...(app ? { app } : {}) };
  const good = mint(claims);
  const [header, , signature] = good.split(".");
  const unsigned = (alg) => `${b64({ alg, typ: "JWT" })}.${b64({ ...claims, exp: now() + 600 })}.`;
  // HS256 "signed" with the RSA public key the server trusts for RS256 (the key confusion
  // attack); built by hand, as jsonwebtoken itself refuses to.
  const hsBody = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ ...claims, exp: now() + 600 })}`;
  const confused = `${hsBody}.${createHmac("sha256", rsaPublic).update(hsBody).digest("base64url")}`;
  const cases = [
    ["missing", null, "a room token is required"],
    ["expired", jwt.sign({ ...claims, exp: now() - 120 }, SECRET, { algorithm: "HS256" }), "the token has expired"],
    ["not yet valid", mint({ ...claims, nbf: now() + 600 }), "the token is not valid yet"],
    ["wrong room", mint({ ...claims, room: `not-${room}` }), "the token is for another room"],
    ["wrong key", jwt.sign(claims, "some-other-secret-of-at-least-32-bytes", { algorithm: "HS256", expiresIn: "10m" }),
      "the token's signature is not valid"],
    ["alg none", unsigned("none"), "the token's algorithm is not accepted"],
    ["HS256 signed with the public key", confused, "the token's signature is not valid"],
    ["tampered payload", `${header}.${b64({ ...claims, room: "*", sub: "admin", exp: now() + 600 })}.${signature}`,
      "the token's signature is not valid"],
  ];
  if (app) cases.push(["wrong app", mint({ ...claims, app: "OtherApp" }), "the token is for another app"]);
  return cases;
}

before(async () => {
  // The server also trusts an RSA key (RS256), so the HS256-with-the-public-key attack has a
  // public key to abuse.
  keyDir = mkdtempSync(join(tmpdir(), "sb-auth-"));
  execFileSync("openssl", ["genpkey", "-algorithm", "RSA", "-out", join(keyDir, "rsa.key")], { stdio: "ignore" });
  execFileSync("openssl", ["pkey", "-pubout", "-in", join(keyDir, "rsa.key"), "-out", join(keyDir, "rsa.pub")], { stdio: "ignore" });
  rsaPublic = readFileSync(join(keyDir, "rsa.pub"));
  sb = await startSwitchboard(["--auth-secret", SECRET, "--auth-public-key", join(keyDir, "rsa.pub")]);
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
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
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

  // Every attack, on the SDK's URL: refused with unauthorized_access and its reason (the
  // SDK's error callback gets Ant Media's name); the room's members hear nothing. TURN goes
  // only to a token valid now.
  for (const [name, t, reason] of badTokens(room, "WebRTCAppEE")) {
    const c = await open(browserA, amPage(t, room));
    await initialized(c);
    await until(c, `${name}: iceServerConfig`, () => window.received.some((m) => m.command === "iceServerConfig"));
    const ice = await c.evaluate(() => window.received.find((m) => m.command === "iceServerConfig"));
    const stunOnly = ice.iceServers.every((s) => s.urls.every((u) => u.startsWith("stun:")));
    // A token for another room of this app is valid here: it gets TURN (TURN is per app,
    // not per room); one for another app does not.
    assert.equal(stunOnly, name !== "wrong room", `${name}: ${JSON.stringify(ice)}`);
    await c.evaluate((r) => window.adaptor.join(r), room);
    await until(c, `${name}: refused`, () => window.errors.includes("unauthorized_access"));
    const refusal = await c.evaluate(() => window.received.find((m) => m.definition === "unauthorized_access"));
    assert.equal(refusal.reason, reason, name);
    assert.ok(!(await c.evaluate(() => window.events.includes("joined"))), name);
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

test("Switchboard's SDK: every bad token ends join() with unauthorized and the server's reason", async () => {
  const sdkUrl = encodeURIComponent(sb.url + "/sdk/switchboard.js");
  for (const [name, t, reason] of badTokens("sdk-bad", "WebRTCAppEE")) {
    const page = await open(browserB, `${web.url}/pages/sdk.html?sdk=${sdkUrl}&ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}` +
      `&room=sdk-bad${t ? `&token=${t}` : ""}`);
    await until(page, `${name}: refused`, () => window.sbErrors.includes("unauthorized"));
    assert.deepEqual(await page.evaluate(() => [window.call.state, window.sbReasons.at(-1)]), ["closed", reason], name);
    await page.close();
  }
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
  recording(socket);
  return new Promise((ok) => {
    socket.once("connect", () => ok({ socket }));
    socket.once("connect_error", (e) => { socket.close(); ok({ error: e.message }); });
  });
}


test("socket.io-client: handshake auth.token; refused with connect_error; the token's sub is the id in rosters and from; rooms bind", async () => {
  // Every attack at the handshake (a room claim is checked at `join`: "wrong room" below).
  for (const [name, t, reason] of badTokens("sio-1", null)) {
    if (name === "wrong room") continue;
    assert.deepEqual(await sio(t), { error: `unauthorized_access: ${reason}` }, name);
  }

  const { socket: alice } = await sio(mint({ sub: "alice", room: "sio-*" }));
  const { socket: bob } = await sio(mint({ sub: "bob", room: "sio-1" }));
  try {
    assert.deepEqual(await alice.emitWithAck("join", { room: "sio-1" }), { ok: true, room: "sio-1", peers: [] });
    assert.deepEqual(await bob.emitWithAck("join", { room: "sio-1" }), { ok: true, room: "sio-1", peers: ["alice"] });
    assert.deepEqual(await waitFor(alice, "peer-joined"), { room: "sio-1", id: "bob" });
    // Relays address identities; `from` is the sender's identity, never what it wrote.
    bob.emit("offer", { target: "alice", sdp: { type: "offer", sdp: "v=0" }, from: "mallory" });
    assert.deepEqual(await waitFor(alice, "offer"), { target: "alice", sdp: { type: "offer", sdp: "v=0" }, from: "bob" });
    // bob's token is for sio-1 only; a token for another room cannot join, nor reach the
    // members of sio-1, who hear nothing of it.
    const refused = await bob.emitWithAck("join", { room: "sio-2" });
    assert.deepEqual(refused, { ok: false, error: "unauthorized_access", reason: "the token is for another room" });
    const { socket: eve } = await sio(mint({ sub: "eve", room: "not-sio-1" }));
    try {
      assert.deepEqual(await eve.emitWithAck("join", { room: "sio-1" }),
        { ok: false, error: "unauthorized_access", reason: "the token is for another room" });
      assert.deepEqual(await eve.emitWithAck("offer", { target: "alice", sdp: {} }),
        { ok: false, error: "unauthorized_access", reason: "the token is for another room" });
    } finally {
      eve.close();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!alice.got.some((g) => JSON.stringify(g.args).includes("eve")), JSON.stringify(alice.got));
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
    // Every attack as the key (the room rule applies to ids: "wrong room" is an id outside it).
    for (const [name, t, reason] of badTokens("pj-room", null)) {
      if (name === "missing") continue; // the client always sends a key (its default "peerjs")
      const before = (await b.evaluate(() => window.errorMessages)).length;
      assert.equal(await b.evaluate(([id, key]) => window.makePeer(id, key), ["pj-room", t]), null, name);
      const msg = (await b.evaluate(() => window.errorMessages)).slice(before).join();
      assert.ok(msg.includes(`unauthorized_access: ${reason}`), `${name}: ${msg}`);
    }
    assert.equal(await a.evaluate(() => window.received.length), 0, "alice heard nothing");
    assert.equal(await b.evaluate(([id, key]) => window.makePeer(id, key), ["pj-bob", bob]), "pj-bob");
    assert.equal(await b.evaluate((id) => window.connect(id), "pj-alice"), "echo:hello");
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

/** The ```LANG block after `<!-- tested: NAME` in docs/OPERATIONS.md. */
function docSnippet(name, lang) {
  const md = readFileSync(join(repo, "docs/OPERATIONS.md"), "utf8");
  const at = md.indexOf(`<!-- tested: ${name}`);
  assert.ok(at >= 0, `OPERATIONS.md has no snippet ${name}`);
  const m = md.slice(at).match(new RegExp("\\n```" + lang + "\\n([\\s\\S]*?)\\n```"));
  assert.ok(m, `no ${lang} block after ${name}`);
  return m[1];
}

/** Joins `room` of `app` over a raw WebSocket with `token` on the URL: the first reply. */
async function joinWith(app, room, token) {
  const { default: WebSocket } = await import("ws");
  const ws = new WebSocket(`${sb.ws(app)}?token=${token}`);
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  ws.send(JSON.stringify({ command: "join", streamId: room }));
  const reply = await new Promise((ok) => ws.once("message", (d) => ok(JSON.parse(String(d)))));
  ws.close();
  return reply;
}

test("docs/OPERATIONS.md's minting examples, run as written (Node jsonwebtoken, Python PyJWT), admit to their room", async () => {
  const env = { ...process.env, SWITCHBOARD_AUTH_SECRET: SECRET };
  // Node: saved next to node_modules so its import resolves; `user` is the page's variable.
  const nodeFile = join(repo, "web/tests", `.mint-example-${process.pid}.mjs`);
  writeFileSync(nodeFile, `const user = { id: "alice" };\n${docSnippet("mint-node", "js")}\nconsole.log(token);\n`);
  let nodeToken;
  try {
    nodeToken = execFileSync(process.execPath, [nodeFile], { env }).toString().trim();
  } finally {
    rmSync(nodeFile, { force: true });
  }
  assert.deepEqual(await joinWith("LiveApp", "team-42", nodeToken),
    { command: "notification", definition: "joined", streamId: "team-42" });
  // The example's app claim binds it to LiveApp.
  assert.equal((await joinWith("WebRTCAppEE", "team-42", nodeToken)).reason, "the token is for another app");

  const pyToken = execFileSync("python3", ["-c", `user_id = "bob"\n${docSnippet("mint-python", "python")}\nprint(token)`], {
    env: { ...env, PYTHONPATH: join(repo, "web/tests/.pydeps") },
  }).toString().trim();
  assert.deepEqual(await joinWith("LiveApp", "team-42", pyToken),
    { command: "notification", definition: "joined", streamId: "team-42" });
  assert.equal((await joinWith("LiveApp", "team-43", pyToken)).reason, "the token is for another room");
});

test("socket.io: a flood of handshakes with forged tokens meets the address's join budget before any token check", async () => {
  // Burst 20 (2/s, bursts of ten times), so the flood is short.
  const small = await startSwitchboard(["--auth-secret", SECRET, "--max-joins-per-ip-per-sec", "2"]);
  try {
    const forged = jwt.sign({ room: "r" }, "not-the-secret-not-the-secret-not-the-secret", { expiresIn: "5m" });
    const reasons = [];
    for (let i = 0; i < 30; i++) {
      const socket = io(small.url, { auth: { token: forged }, transports: ["websocket"], reconnection: false, forceNew: true });
      reasons.push(await new Promise((ok) => {
        socket.once("connect", () => { socket.close(); ok("connected"); });
        socket.once("connect_error", (e) => { socket.close(); ok(e.message); });
      }));
    }
    const checked = reasons.filter((r) => r === "unauthorized_access: the token's signature is not valid").length;
    const limited = reasons.filter((r) => r === "unauthorized_access: too many token checks from this address; try again in a moment").length;
    assert.equal(checked + limited, 30, JSON.stringify(reasons));
    assert.ok(checked <= 21 && limited >= 9, `${checked} checked, ${limited} refused unchecked`);
  } finally {
    await small.stop();
  }
});
