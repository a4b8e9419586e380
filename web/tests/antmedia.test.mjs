// The official Ant Media JavaScript SDK (npm @antmedia/webrtc_adaptor, ES build, unchanged)
// in two headless Chromium instances against a real `switchboard serve` process.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startSwitchboard, antMediaPages, open, until, assertVideoFlowing as assertFramesFlowing } from "./lib/harness.mjs";

const ROOM = "room1";
let sb, browserA, browserB, a, b;

const pageUrl = (ws, room = ROOM, media = true) => pages.url(ws, room, media);

/** Waits until the page's SDK is connected to the server. */
const initialized = (page) => until(page, "initialized", () => window.events.includes("initialized"));

/** Counts server frames of a given command (and definition) received by the page. */
const countReceived = (page, command, definition) =>
  page.evaluate(([c, d]) => window.received.filter((m) => m.command === c && (!d || m.definition === d)).length, [command, definition]);

/** Remote video is playing and frames keep decoding on the room's peer connection. */
const assertVideoFlowing = (page, who) =>
  assertFramesFlowing(page, who, "remoteVideo", (room) => window.framesDecoded(room), ROOM);

const iceConnected = (page, who, after = 0) =>
  until(page, `${who}: ICE connected`, (n) => window.iceStates.slice(n).some((s) => s === "connected" || s === "completed"), after);

let pages;
before(async () => {
  sb = await startSwitchboard();
  pages = await antMediaPages();
  [browserA, browserB] = pages.browsers;
});

after(async () => {
  await pages?.close();
  if (sb) await sb.stop();
});

test("two SDK peers connect with video both ways", async () => {
  a = await open(browserA, pageUrl(sb.ws("WebRTCAppEE")));
  b = await open(browserB, pageUrl(sb.ws("WebRTCAppEE")));
  await Promise.all([initialized(a), initialized(b)]);
  // The SDK asked for ICE servers (no peerconnection_config on the page) and got an answer.
  await until(a, "iceServerConfig reply", () => window.received.some((m) => m.command === "iceServerConfig"));

  await a.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(a, "A joined", () => window.events.includes("joined"));
  await b.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(b, "B joined", () => window.events.includes("joined"));
  // The first joiner is told to start (offer).
  await until(a, "A got start", () => window.received.some((m) => m.command === "start"));

  await Promise.all([iceConnected(a, "A"), iceConnected(b, "B")]);
  await Promise.all([assertVideoFlowing(a, "A"), assertVideoFlowing(b, "B")]);
  // Every relayed offer/answer carried idMapping, as the SDK needs.
  const configs = await b.evaluate(() => window.received.filter((m) => m.command === "takeConfiguration"));
  assert.ok(configs.length >= 1);
  for (const c of configs) assert.deepEqual(c.idMapping, {});
});

test("data channel messages both ways", async () => {
  await Promise.all([
    until(a, "A data channel open", () => window.events.includes("data_channel_opened")),
    until(b, "B data channel open", () => window.events.includes("data_channel_opened")),
  ]);
  await a.evaluate((room) => window.adaptor.sendData(room, "hello from A"), ROOM);
  await b.evaluate((room) => window.adaptor.sendData(room, "hello from B"), ROOM);
  await until(b, "B got A's data", () => window.dataReceived.includes("hello from A"));
  await until(a, "A got B's data", () => window.dataReceived.includes("hello from B"));
});

test("peerMessageCommand is relayed", async () => {
  await a.evaluate((room) => window.adaptor.peerMessage(room, "chat", "hi over signaling"), ROOM);
  await until(b, "B got peerMessageCommand", () =>
    window.peerMessages.some((m) => m.definition === "chat" && m.data === "hi over signaling"));
  // Not echoed to the sender.
  assert.equal(await countReceived(a, "peerMessageCommand"), 0);
});

test("a third peer gets NoSpaceForNewPeer; another app is a separate namespace", async () => {
  const c = await open(browserA, pageUrl(sb.ws("WebRTCAppEE"), ROOM, false));
  await initialized(c);
  await c.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(c, "NoSpaceForNewPeer", () => window.errors.includes("NoSpaceForNewPeer"));
  assert.ok(!(await c.evaluate(() => window.events.includes("joined"))));
  await c.context().close();

  // Same room name under another app: joined, and a second peer there starts a session.
  const d = await open(browserA, pageUrl(sb.ws("LiveApp"), ROOM, false));
  const e = await open(browserA, pageUrl(sb.ws("LiveApp"), ROOM, false));
  await Promise.all([initialized(d), initialized(e)]);
  await d.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(d, "LiveApp peer joined", () => window.events.includes("joined"));
  await e.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(e, "second LiveApp peer joined", () => window.events.includes("joined"));
  await until(d, "LiveApp start", () => window.received.some((m) => m.command === "start"));
  assert.deepEqual(await d.evaluate(() => window.errors), []);
  await Promise.all([d.context().close(), e.context().close()]);
  // The WebRTCAppEE call is untouched.
  await assertVideoFlowing(a, "A");
});

test("leave and re-join reconnects the call", async () => {
  const stopsBefore = await countReceived(a, "stop");
  const iceA = await a.evaluate(() => window.iceStates.length);
  const iceB = await b.evaluate(() => window.iceStates.length);
  // Tag the current peer connections so the test can tell the new call from the old one.
  for (const p of [a, b]) await p.evaluate((room) => { window.adaptor.remotePeerConnection[room].oldCall = true; }, ROOM);
  await b.evaluate((room) => window.adaptor.leave(room), ROOM);
  await until(b, "B leaved", () => window.events.includes("leaved"));
  await until(a, "A got stop", (n) => window.received.filter((m) => m.command === "stop").length > n, stopsBefore);

  const startsBefore = await countReceived(a, "start");
  await b.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(a, "A got start again", (n) => window.received.filter((m) => m.command === "start").length > n, startsBefore);
  await Promise.all([iceConnected(a, "A", iceA), iceConnected(b, "B", iceB)]);
  for (const p of [a, b]) {
    assert.equal(await p.evaluate((room) => window.adaptor.remotePeerConnection[room]?.oldCall, ROOM), undefined, "a new peer connection");
  }
  await Promise.all([assertVideoFlowing(a, "A"), assertVideoFlowing(b, "B")]);
  const frames = await a.evaluate((room) => window.framesDecoded(room), ROOM);
  console.log(`re-joined call: A decoded ${frames} frames so far`);
});

test("closing a page sends stop to the other peer and frees the seat", async () => {
  const stopsBefore = await countReceived(a, "stop");
  await b.context().close();
  await until(a, "A got stop after B closed", (n) => window.received.filter((m) => m.command === "stop").length > n, stopsBefore);
  // The seat is free at once: a new peer joins and the waiting peer is told to start.
  const startsBefore = await countReceived(a, "start");
  b = await open(browserB, pageUrl(sb.ws("WebRTCAppEE")));
  await initialized(b);
  await b.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(b, "new B joined", () => window.events.includes("joined"));
  await until(a, "A got start for new B", (n) => window.received.filter((m) => m.command === "start").length > n, startsBefore);
  await assertVideoFlowing(b, "new B");
});

test("graceful shutdown tells every SDK client server_will_stop", async () => {
  const status = await sb.stop();
  assert.equal(status.code, 0, `exit status ${JSON.stringify(status)}\n${sb.log()}`);
  for (const [p, who] of [[a, "A"], [b, "B"]]) {
    await until(p, `${who} got server_will_stop`, () => window.events.includes("server_will_stop"));
  }
  assert.match(sb.log(), /received SIGTERM/);
  sb = null;
});
