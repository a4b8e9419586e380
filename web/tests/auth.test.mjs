// Room tokens with real clients: the official Ant Media SDK (token on the WebSocket URL),
// Switchboard's SDK and demo page (token in the join), all in headless Chromium against a
// real `switchboard serve --auth-secret`; tokens signed by the `jsonwebtoken` npm package,
// as an application back end would.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import jwt from "jsonwebtoken";
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
