// The demo call page served by `switchboard serve` at `/`, built on Switchboard's browser SDK,
// in two separate headless Chromium instances (fake camera and microphone).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing as assertFramesFlowing } from "./lib/harness.mjs";
import { demoCall, waitDemoState as waitState, assertDemoVideoFlowing as assertVideoFlowing } from "./lib/demo.mjs";

const DESKTOP = { width: 1280, height: 720 };
const PHONE = { width: 390, height: 844 };
const artifacts = join(repo, "web/tests/artifacts");
let sb, web, browserA, browserB, a, b;

const room = (name) => `${sb.url}/?room=${name}`;
const state = (page) => page.evaluate(() => window.demo.call?.state);
const frames = (page) => page.evaluate(async () => (await window.demo.call.stats())?.framesDecoded ?? -1);
const audioEnergy = (page) => page.evaluate(async () => (await window.demo.call.stats())?.audioEnergy ?? -1);
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Both pages in `name`, connected, video flowing both ways. */
async function call(name) {
  [a, b] = await demoCall(browserA, room(name), browserB, room(name), [DESKTOP, PHONE]);
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  sb = await startSwitchboard();
  [browserA, browserB] = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all([browserA?.close(), browserB?.close()]);
  await web?.close();
  if (sb) await sb.stop();
});

test("the lobby makes a room link; two tabs are in a call", async () => {
  const lobby = await open(browserA, `${sb.url}/`, DESKTOP);
  const generated = await lobby.inputValue("#room-input");
  // Two words and 96 random bits (issue 15 finding 8: ~20 bits could be found by guessing).
  assert.match(generated, /^[a-z]+-[a-z]+-[a-z2-7]{20}$/);
  const many = await lobby.evaluate(async () => {
    const { randomRoom } = await import("/sdk/switchboard.js");
    return Array.from({ length: 2000 }, () => randomRoom());
  });
  assert.equal(new Set(many).size, many.length);
  assert.ok(many.every((r) => /^[a-z]+-[a-z]+-[a-z2-7]{20}$/.test(r)), many[0]);
  await lobby.fill("#room-input", "lobby-room");
  await lobby.click("button[type=submit]");
  await lobby.waitForURL(/\?room=lobby-room$/);
  await waitState(lobby, "lobby page", "waiting");
  assert.match(await lobby.textContent("#stage-text"), /Waiting for someone/);
  await lobby.context().close();

  await call("main-room");
});

/** Layout facts of `page`: horizontal overflow, and which elements stick out of the viewport. */
const layoutOf = (page) => page.evaluate(() => ({
  scrollW: document.documentElement.scrollWidth, vw: innerWidth,
  outside: [...document.querySelectorAll("body *")].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && getComputedStyle(e).visibility !== "hidden" && (r.left < -1 || r.right > innerWidth + 1);
  }).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`),
}));

test("lobby and waiting views fit 390x844 and 1280x720: no overflow, room name and copy link visible", async () => {
  for (const vp of [PHONE, DESKTOP]) {
    const lobby = await open(browserA, `${sb.url}/`, vp);
    await lobby.screenshot({ path: join(artifacts, `demo-lobby-${vp.width}x${vp.height}.png`) });
    const l = await layoutOf(lobby);
    assert.ok(l.scrollW <= l.vw && l.outside.length === 0, `lobby at ${vp.width}: ${JSON.stringify(l)}`);
    await lobby.context().close();

    const name = "family-call-sunday";
    const waiting = await open(browserA, room(name), vp);
    await waitState(waiting, "waiting page", "waiting");
    await waiting.screenshot({ path: join(artifacts, `demo-waiting-${vp.width}x${vp.height}.png`) });
    const w = await layoutOf(waiting);
    assert.ok(w.scrollW <= w.vw && w.outside.length === 0, `waiting at ${vp.width}: ${JSON.stringify(w)}`);
    // The whole room name is shown (not "fa…"), and the link can be copied on a phone too.
    const code = await waiting.evaluate(() => { const c = document.getElementById("room-name"); return { text: c.textContent, fits: c.scrollWidth <= c.clientWidth }; });
    assert.deepEqual(code, { text: name, fits: true }, `room name at ${vp.width}`);
    assert.ok(await waiting.isVisible("#copy-link"), `copy link at ${vp.width}`);
    await waiting.context().close();
  }
});

test("room names: a refused name is explained in words with a valid suggestion", async () => {
  const lobby = await open(browserA, `${sb.url}/`, PHONE);
  await lobby.fill("#room-input", "my room ü");
  await lobby.click("button[type=submit]");
  assert.match(await lobby.textContent("#room-hint"), /“my room ü” can’t be a room name.*“my-room-u”/);
  assert.equal(await lobby.inputValue("#room-input"), "my-room-u");
  assert.equal(new URL(lobby.url()).search, "", "no navigation with a bad name");
  await lobby.click("button[type=submit]");
  await lobby.waitForURL(/\?room=my-room-u$/);
  await lobby.context().close();

  const link = await open(browserA, `${sb.url}/?room=${encodeURIComponent("café-😀")}`, PHONE);
  assert.equal(await link.inputValue("#room-input"), "cafe");
  assert.match(await link.textContent("#room-hint"), /“café-😀” can’t be a room name/);
  await link.context().close();
});

test("chat messages both ways", async () => {
  await a.fill("#chat-input", "hello from the desktop");
  await a.press("#chat-input", "Enter");
  await b.fill("#chat-input", "hi from the phone");
  await b.click("#chat-send");
  await until(b, "B shows A's message", () => [...document.querySelectorAll(".msg.them")].some((m) => m.textContent === "hello from the desktop"));
  await until(a, "A shows B's message", () => [...document.querySelectorAll(".msg.them")].some((m) => m.textContent === "hi from the phone"));
  assert.equal(await a.locator(".msg.me").last().textContent(), "hello from the desktop");
  // Binary data through the SDK's send().
  await a.evaluate(() => window.demo.call.send(new Uint8Array([1, 2, 3, 4, 5]).buffer));
  await until(b, "B got binary data", () => [...document.querySelectorAll(".msg.system")].some((m) => m.textContent === "Received 5 bytes of binary data."));
});

test("a 5 MB file arrives intact with progress reported", async () => {
  const data = randomBytes(5 * 1024 * 1024);
  const sha = createHash("sha256").update(data).digest("hex");
  const dir = join(tmpdir(), `sb-demo-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "five-megabytes.bin");
  writeFileSync(path, data);
  await a.setInputFiles("#file-input", path);
  await until(b, "B received the file", () => window.demo.files.length === 1, undefined, 60000);
  const got = await b.evaluate(async () => {
    const f = window.demo.files[0];
    const digest = await crypto.subtle.digest("SHA-256", await f.blob.arrayBuffer());
    return { name: f.name, size: f.size, sha: [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, "0")).join("") };
  });
  assert.deepEqual(got, { name: "five-megabytes.bin", size: data.length, sha });
  // Progress went through intermediate values on both sides and reached 100%.
  for (const [page, who] of [[a, "sender"], [b, "receiver"]]) {
    const history = await page.evaluate(() => Object.values(window.demo.transfers).flatMap((t) => t.history));
    assert.ok(history.some((p) => p > 0 && p < 100), `${who} progress had intermediate values: ${history.slice(0, 20)}`);
    assert.equal(Math.max(...history), 100, `${who} progress reached 100%`);
  }
  await until(a, "A says sent", () => [...document.querySelectorAll(".msg.system")].some((m) => m.textContent.includes("Sent “five-megabytes.bin”")));
  assert.ok(await b.locator(".msg.them a[download='five-megabytes.bin']").count() === 1, "download link shown");
});

test("a hostile file (HTML with script, disguised name) is a download, never a page in this origin", async () => {
  // Before: the Blob kept the sender's type (text/html) and the link opened it in
  // Switchboard's origin, where its script ran with the camera permission.
  const n = await b.evaluate(() => window.demo.files.length);
  await a.evaluate(() => {
    const html = "<script>window.parent && (document.title = 'pwned')</script><h1>invoice</h1>";
    const name = "../../\u202Efdp.exe\u0007\u001b[31m invoice.html";
    return window.demo.call.sendFile(new File([html], name, { type: "text/html" }));
  });
  await until(b, "B received the hostile file", (k) => window.demo.files.length === k + 1, n);
  const got = await b.evaluate(() => {
    const f = window.demo.files.at(-1);
    const link = [...document.querySelectorAll(".msg.them a[download]")].at(-1);
    return { name: f.name, type: f.blob.type, download: link.getAttribute("download"), text: link.textContent };
  });
  assert.equal(got.type, "application/octet-stream");
  // No path, no bidirectional override, no control characters (no terminal escapes).
  assert.equal(got.name, "fdp.exe[31m invoice.html");
  assert.equal(got.download, got.name);
  assert.ok(!/[\u0000-\u001f\u202a-\u202e]/.test(got.text), JSON.stringify(got.text));
  // The page itself is served with a strict policy: no inline script, no framing.
  const res = await fetch(`${sb.url}/`);
  const csp = res.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  // And the demo works under it: no policy violation was reported in either page.
  for (const [p, who] of [[a, "A"], [b, "B"]]) {
    assert.deepEqual(p.consoleErrors.filter((e) => /Content Security Policy/i.test(e)), [], who);
  }
});

test("mute and camera-off are visible to the other side", async () => {
  // Before: B hears A. The fake microphone beeps about once a second, so measure the
  // energy received over a 2 s window.
  let e0 = await audioEnergy(b);
  await sleep(2000);
  const unmutedDelta = (await audioEnergy(b)) - e0;
  assert.ok(unmutedDelta > 0.01, `audio energy while unmuted: ${unmutedDelta}`);

  await a.click("#mic-btn");
  assert.equal(await a.getAttribute("#mic-btn", "aria-pressed"), "false");
  await until(b, "muted badge", () => !!document.getElementById("peer-muted"));
  // Let audio already in flight drain: under load the receiver's jitter buffer can hold
  // well over 500 ms, so wait until a window longer than the beeps' period (~1 s) passes with
  // no energy added.
  for (let prev = await audioEnergy(b), tries = 0; tries < 10; tries++) {
    await sleep(1200);
    const now = await audioEnergy(b);
    if (now - prev < unmutedDelta / 100000) break;
    prev = now;
  }
  e0 = await audioEnergy(b);
  await sleep(2000);
  const mutedDelta = (await audioEnergy(b)) - e0;
  // Silence (not even the beeps): at most a rounding residue.
  assert.ok(mutedDelta < unmutedDelta / 1000, `audio energy while muted: ${mutedDelta} (unmuted: ${unmutedDelta})`);

  await a.click("#cam-btn");
  await until(a, "camera off", () => document.getElementById("cam-btn").getAttribute("aria-pressed") === "false");
  await until(b, "camera-off badge", () => !!document.getElementById("peer-camera-off"));
  // Not their frozen last frame: a placeholder covers the video.
  await until(b, "camera-off placeholder", () => !document.getElementById("remote-off").hidden);
  assert.ok(await b.isVisible("#remote-off"));
  await sleep(500);
  const f0 = await frames(b);
  await sleep(1500);
  assert.equal(await frames(b), f0, "no new frames while the camera is off");

  // And back on.
  await a.click("#mic-btn");
  await a.click("#cam-btn");
  await until(b, "badges cleared", () => document.getElementById("peer-badges").children.length === 0);
  assert.ok(await b.evaluate(() => document.getElementById("remote-off").hidden), "placeholder gone when the camera is back");
  await assertVideoFlowing(b, "B after camera on");
  e0 = await audioEnergy(b);
  await until(b, "audio back", async (e) => ((await window.demo.call.stats())?.audioEnergy ?? 0) > e, e0);
});

test("screen sharing replaces the camera for the other side, and back", async () => {
  const width = () => b.evaluate(() => document.getElementById("remote-video").videoWidth);
  const cameraWidth = await width();
  await a.click("#screen-btn");
  await until(a, "sharing", () => document.getElementById("screen-btn").getAttribute("aria-pressed") === "true");
  // The fake screen is larger than the fake camera: B's remote video changes size.
  await until(b, "B sees the screen", (w) => document.getElementById("remote-video").videoWidth !== w, cameraWidth);
  assert.notEqual(await width(), cameraWidth);
  await assertVideoFlowing(b, "B during screen share");
  await a.click("#screen-btn");
  await until(b, "B sees the camera again", (w) => document.getElementById("remote-video").videoWidth === w, cameraWidth);
  await assertVideoFlowing(b, "B after screen share");
});

test("screenshots in a call; no overlapping or empty regions at 1280x720 and 390x844", async () => {
  await a.click("#stats-btn");
  await until(a, "stats overlay filled", () => /RTT/.test(document.getElementById("stats").textContent) && /host/.test(document.getElementById("stats").textContent));
  for (const [page, vp, name] of [[a, DESKTOP, "desktop"], [b, PHONE, "phone"], [a, PHONE, "desktop-page-at-phone-size"], [b, DESKTOP, "phone-page-at-desktop-size"]]) {
    await page.setViewportSize(vp);
    await sleep(300);
    await page.screenshot({ path: join(artifacts, `demo-call-${name}-${vp.width}x${vp.height}.png`) });
    const layout = await page.evaluate(() => {
      const ids = ["room-info", "status", "stage", "controls", "side", "messages", "chat-form"];
      const el = (id) => document.getElementById(id) || document.querySelector(`.${id}`);
      const rects = Object.fromEntries(ids.map((id) => { const r = el(id).getBoundingClientRect(); return [id, { x: r.x, y: r.y, w: r.width, h: r.height }]; }));
      return { rects, scrollW: document.documentElement.scrollWidth, scrollH: document.documentElement.scrollHeight, vw: innerWidth, vh: innerHeight };
    });
    const { rects } = layout;
    assert.ok(layout.scrollW <= layout.vw, `${name}: no horizontal overflow (${layout.scrollW} > ${layout.vw})`);
    assert.ok(layout.scrollH <= layout.vh, `${name}: fits the viewport height`);
    for (const [id, r] of Object.entries(rects)) {
      // On phones the top bar's status is its coloured dot (the stage says the state).
      const [minW, minH] = id === "status" && vp === PHONE ? [8, 8] : [40, 20];
      assert.ok(r.w >= minW && r.h >= minH, `${name}: ${id} is visible (${JSON.stringify(r)})`);
      assert.ok(r.x >= 0 && r.y >= 0 && r.x + r.w <= vp.width + 1 && r.y + r.h <= vp.height + 1, `${name}: ${id} inside the viewport`);
    }
    // Regions that must not overlap each other.
    const separate = ["stage", "controls", "side"];
    const overlap = (p, q) => p.x < q.x + q.w - 1 && q.x < p.x + p.w - 1 && p.y < q.y + q.h - 1 && q.y < p.y + p.h - 1;
    for (let i = 0; i < separate.length; i++) for (let j = i + 1; j < separate.length; j++) {
      assert.ok(!overlap(rects[separate[i]], rects[separate[j]]), `${name}: ${separate[i]} overlaps ${separate[j]}`);
    }
    // The stage shows the remote video, not an empty box.
    assert.ok(rects.stage.h >= vp.height * 0.3, `${name}: stage is the main region`);
    assert.ok(await page.evaluate(() => document.getElementById("stage-message").hidden), `${name}: no placeholder over a live call`);
  }
  await a.setViewportSize(DESKTOP);
  await b.setViewportSize(PHONE);
});

test("restart the server mid-call: both pages reconnect and the call resumes", async () => {
  const port = sb.port;
  const status = await sb.stop();
  assert.equal(status.code, 0);
  await Promise.all([waitState(a, "A", "reconnecting"), waitState(b, "B", "reconnecting")]);
  // Media keeps flowing while the signaling server is down.
  await assertVideoFlowing(a, "A during outage");
  assert.match(await a.textContent("#banner"), /Reconnecting/);
  sb = await startSwitchboard([], port);
  await Promise.all([waitState(a, "A", "connected"), waitState(b, "B", "connected")]);
  await Promise.all([assertVideoFlowing(a, "A after restart"), assertVideoFlowing(b, "B after restart")]);
  // Both are back in the room on the new server: a third person is told it is full.
  const c = await open(browserA, room("main-room"), DESKTOP);
  await waitState(c, "C", "full");
  await c.context().close();
  // Chat still works (data channel survived).
  await a.fill("#chat-input", "still here after the restart");
  await a.press("#chat-input", "Enter");
  await until(b, "B got post-restart chat", () => [...document.querySelectorAll(".msg.them")].some((m) => m.textContent === "still here after the restart"));
});

test("hang-up shows peer left; a third tab sees room full", async () => {
  const c = await open(browserA, room("main-room"), DESKTOP);
  await waitState(c, "C", "full");
  assert.equal(await c.textContent("#stage-text"), "This room is full.");
  assert.equal(await c.textContent("#status-text"), "Room full");
  // The camera is released when the room cannot be joined.
  await until(c, "camera released", () => window.demo.call.localStream.getTracks().length === 0);
  assert.ok(await c.isVisible("#other-room"));
  await c.screenshot({ path: join(artifacts, "demo-room-full.png") });
  await c.context().close();

  await b.click("#hangup-btn");
  await waitState(b, "B", "closed");
  assert.equal(await b.textContent("#stage-text"), "You left the call.");
  await until(a, "A sees peer left", () => document.getElementById("stage-text").textContent === "The other person left the call.");
  assert.equal(await state(a), "waiting");
  await a.screenshot({ path: join(artifacts, "demo-peer-left.png") });

  // Rejoin from the same page: the call comes back.
  await b.click("#rejoin");
  await Promise.all([waitState(a, "A", "connected"), waitState(b, "B", "connected")]);
  await assertVideoFlowing(a, "A after rejoin");
});

test("camera denied and server unreachable are explained", async () => {
  const denied = await launch({ grantMedia: false });
  try {
    const p = await open(denied, room("denied-room"), DESKTOP);
    // The reason stays on the page (not a banner that the next state change hides).
    await until(p, "camera denied notice", () => /blocked/.test(document.getElementById("media-problem").textContent) && !document.getElementById("media-problem").hidden);
    await waitState(p, "denied page", "waiting"); // still joins, receive-only
    await p.screenshot({ path: join(artifacts, "demo-camera-denied.png") });

    // The SDK on a page whose server is not there.
    web = await startStatic({ "/sdk/": join(repo, "web/sdk/"), "/pages/": join(repo, "web/tests/pages/") });
    // The page's origin is the static server; the SDK is imported cross-origin from Switchboard.
    const sdkUrl = encodeURIComponent(`${sb.url}/sdk/switchboard.js`);
    const q = await open(denied, `${web.url}/pages/sdk.html?sdk=${sdkUrl}&ws=${encodeURIComponent("ws://127.0.0.1:9/WebRTCAppEE/websocket")}`);
    await until(q, "server_unreachable", () => window.sbErrors.includes("server_unreachable"));
    // The first connection is not retried forever: the join ends, and says so once.
    await until(q, "closed", () => window.sbStates.at(-1) === "closed");
    assert.ok(!(await q.evaluate(() => window.sbStates.includes("reconnecting"))));
    assert.equal(await q.evaluate(() => window.sbErrors.filter((e) => e === "server_unreachable").length), 1);
  } finally {
    await denied.close();
  }
});

test("interop: Switchboard SDK page and official Ant Media SDK page, either joining first", async () => {
  await Promise.all([a.context().close(), b.context().close()]);
  web ??= await startStatic({ "/sdk/": join(repo, "web/sdk/"), "/pages/": join(repo, "web/tests/pages/") });
  const amsSdk = await startStatic({ "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"), "/pages/": join(repo, "web/tests/pages/") });
  try {
    for (const demoFirst of [true, false]) {
      const name = `interop-${demoFirst ? "demo-first" : "ams-first"}`;
      const amsUrl = `${amsSdk.url}/pages/antmedia.html?ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}`;
      let demoPage, amsPage;
      const openDemo = async () => { demoPage = await open(browserA, room(name), DESKTOP); await waitState(demoPage, "demo", demoFirst ? "waiting" : "connected"); };
      const openAms = async () => {
        amsPage = await open(browserB, amsUrl);
        await until(amsPage, "AMS initialized", () => window.events.includes("initialized"));
        await amsPage.evaluate((r) => window.adaptor.join(r), name);
        await until(amsPage, "AMS joined", () => window.events.includes("joined"));
      };
      if (demoFirst) { await openDemo(); await openAms(); } else { await openAms(); await openDemo(); }
      await waitState(demoPage, "demo", "connected");
      await assertVideoFlowing(demoPage, `demo (${name})`);
      await assertFramesFlowing(amsPage, `Ant Media SDK page (${name})`, "remoteVideo", (r) => window.framesDecoded(r), name);
      await Promise.all([demoPage.context().close(), amsPage.context().close()]);
    }
  } finally {
    await amsSdk.close();
  }
});

test("plain http on a LAN name: the HTTPS reason stays visible all call long, controls tell the truth", async () => {
  // http://call.test is not a secure context (unlike localhost): no camera or microphone.
  const lan = await launch({ extraArgs: ["--host-resolver-rules=MAP call.test 127.0.0.1 , MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"] });
  try {
    const p = await open(lan, `http://call.test:${sb.port}/?room=insecure-room`, PHONE);
    assert.equal(await p.evaluate(() => window.isSecureContext), false);
    await until(p, "HTTPS notice", () => /HTTPS/.test(document.getElementById("media-problem").textContent));
    const other = await open(browserB, room("insecure-room"), DESKTOP);
    await Promise.all([waitState(p, "insecure page", "connected"), waitState(other, "other page", "connected")]);
    // Receive-only works: the other side's video plays here.
    await assertVideoFlowing(p, "insecure page");
    await sleep(500);
    assert.ok(await p.isVisible("#media-problem"), "the reason is still shown once connected");
    for (const id of ["#mic-btn", "#cam-btn"]) {
      assert.equal(await p.getAttribute(id, "aria-pressed"), "false", `${id} shows off`);
      assert.ok(await p.isDisabled(id), `${id} cannot be turned on here`);
    }
    assert.equal(await p.textContent("#local-off"), "No camera (needs HTTPS)");
    await p.screenshot({ path: join(artifacts, "demo-insecure-390x844.png") });
    await other.context().close();
  } finally {
    await lan.close();
  }
});
