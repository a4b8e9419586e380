// Cluster mode (`--redis-url`) with real clients in headless Chromium: three Switchboard
// nodes share a real redis-server (started and stopped here); pages connected to different
// nodes call each other. Contract: docs/OPERATIONS.md "Cluster", docs/PROTOCOLS.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pjRaw } from "./lib/peerjs.mjs";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";
import { sioClient as connectSio, waitFor, seedCall } from "./lib/sio.mjs";
import { startRedis, startRedisOn, allSeeEachOther } from "./lib/cluster.mjs";
import { idOf, decodes, allPairsDecode } from "./lib/mesh.mjs";

let redis, nodes, web, browserA, browserB;

before(async () => {
  redis = await startRedis();
  nodes = await Promise.all(["node-1", "node-2", "node-3"].map((id) =>
    startSwitchboard(["--redis-url", redis.url, "--node-id", id, "--turn-secret", "cluster-test-secret"])));
  await allSeeEachOther(nodes);
  web = await startStatic({
    "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
    "/sio/": join(repo, "web/tests/node_modules/socket.io-client/dist/"),
    "/peerjs/": join(repo, "web/tests/node_modules/peerjs/dist/"),
  });
  [browserA, browserB] = await Promise.all([launch(), launch()]);
});

/** A connected socket.io-client of `node`; every event it receives is kept in `got`. */
const sioClient = (node, transports) => connectSio(node.url, transports);

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

test("cluster: a mesh room of SDK pages on three nodes: every pair decodes, chat reaches all, a leave is seen everywhere", async () => {
  const room = "cluster-mesh";
  const pageUrl = (node) =>
    `${web.url}/pages/sdk-mesh.html?sdk=${encodeURIComponent(node.url + "/sdk/switchboard.js")}&ws=${encodeURIComponent(node.ws("GroupApp"))}&room=${room}`;
  const pages = [];
  try {
    for (const [i, node] of nodes.entries()) {
      const p = await open(i % 2 ? browserB : browserA, pageUrl(node));
      await until(p, `member on ${i} joined`, () => window.call?.peerId != null);
      pages.push(p);
    }
    const ids = await Promise.all(pages.map(idOf));
    assert.equal(new Set(ids).size, 3, `member ids are unique across nodes: ${ids}`);
    await allPairsDecode(pages);
    // Each pair was offered once, by the member there first, whatever node holds it.
    const offers = await Promise.all(pages.map((p) => p.evaluate(() => window.offersMade())));
    assert.deepEqual(offers, [{ [ids[1]]: 1, [ids[2]]: 1 }, { [ids[2]]: 1 }, {}]);
    await pages[2].evaluate(() => window.call.send("hello from node-3"));
    for (const p of pages.slice(0, 2)) {
      await until(p, "chat from node-3", (id) => window.seen.messages.some((m) => m.from === id && m.data === "hello from node-3"), ids[2]);
    }
    // The member on node-2 leaves: the others see it and keep their call.
    await pages[1].evaluate(() => window.call.hangup());
    for (const p of [pages[0], pages[2]]) await until(p, "peer left", (id) => window.seen.left.includes(id), ids[1]);
    await decodes(pages[0], ids[2], "node-1 from node-3 after node-2 left");
    await decodes(pages[2], ids[0], "node-3 from node-1 after node-2 left");
  } finally {
    await Promise.all(pages.map((p) => p.context().close()));
  }
});

test("cluster: socket.io-client targets, rooms and rosters span nodes", async () => {
  const a = await sioClient(nodes[0]);
  const b = await sioClient(nodes[1], ["polling"]);
  const c = await sioClient(nodes[2]);
  try {
    assert.deepEqual(await a.emitWithAck("join", { room: "sio-r" }), { ok: true, room: "sio-r", peers: [] });
    assert.deepEqual(await b.emitWithAck("join", { room: "sio-r" }), { ok: true, room: "sio-r", peers: [a.id] });
    await waitFor(a, "peer-joined", (p) => p.id === b.id && p.room === "sio-r");
    assert.deepEqual(await c.emitWithAck("join", { room: "sio-r" }), { ok: true, room: "sio-r", peers: [a.id, b.id] });
    await waitFor(a, "peer-joined", (p) => p.id === c.id);
    await waitFor(b, "peer-joined", (p) => p.id === c.id);
    // Relays to a socket id on another node, acked once the cluster has handed them over.
    assert.deepEqual(await a.emitWithAck("offer", { target: c.id, sdp: { type: "offer", sdp: "v=0" } }), { ok: true });
    const offer = await waitFor(c, "offer");
    assert.equal(offer.from, a.id);
    assert.deepEqual(offer.sdp, { type: "offer", sdp: "v=0" });
    // Order per pair across nodes: a burst arrives as sent (to a polling client, so fewer
    // than its 256-packet buffer: more unread would drop it as a slow consumer, as on one
    // node).
    for (let i = 0; i < 150; i++) c.emit("ice-candidate", { target: b.id, candidate: { n: i } });
    assert.deepEqual(await c.emitWithAck("answer", { target: b.id, sdp: "done" }), { ok: true });
    await waitFor(b, "answer", () => true, 10000);
    const seen = b.got.filter((g) => g.event === "ice-candidate").map((g) => g.args[0].candidate.n);
    assert.deepEqual(seen, Array.from({ length: 150 }, (_, i) => i));
    // A socket's id reaches it from another node as soon as its client knows it (the id is
    // in the cluster's registry before socket.io tells the client).
    for (let i = 0; i < 20; i++) {
      const fresh = await sioClient(nodes[2]);
      const r = await a.emitWithAck("offer", { target: fresh.id, sdp: { n: i } });
      fresh.disconnect();
      assert.deepEqual(r, { ok: true }, `fresh socket ${i}`);
    }
    // An id connected nowhere is unknown_target.
    const unknown = await a.emitWithAck("offer", { target: "no-such-socket", sdp: {} });
    assert.equal(unknown.ok, false);
    assert.equal(unknown.error, "unknown_target");
    // Leaving and disconnecting are heard on every node; the id is then unknown everywhere.
    assert.deepEqual(await b.emitWithAck("leave"), { ok: true });
    await waitFor(a, "peer-left", (p) => p.id === b.id);
    await waitFor(c, "peer-left", (p) => p.id === b.id);
    // The registry told c's node where b is: relays without an ack now go straight to
    // b's node (not through a script each), in order.
    const stats = async (n) => (await (await fetch(`${n.url}/api/v1/stats`)).json()).cluster;
    const direct = (await stats(nodes[2])).routed_direct;
    for (let i = 0; i < 20; i++) c.emit("ice-candidate", { target: b.id, candidate: { m: i } });
    await waitFor(b, "ice-candidate", (p) => p.candidate.m === 19);
    const straight = b.got.filter((g) => g.event === "ice-candidate" && "m" in g.args[0].candidate);
    assert.deepEqual(straight.map((g) => g.args[0].candidate.m), Array.from({ length: 20 }, (_, i) => i));
    assert.equal((await stats(nodes[2])).routed_direct, direct + 20);
    // a learns where c is; then c disconnects. A relay a sends straight there misses and a
    // hears unknown_target (an `error` event: it asked no ack), as if c had been gone when
    // it sent; the next relay asks the registry again.
    assert.deepEqual(await a.emitWithAck("offer", { target: c.id, sdp: {} }), { ok: true });
    const cId = c.id;
    c.disconnect();
    await waitFor(a, "peer-left", (p) => p.id === cId);
    const misses = (await stats(nodes[0])).route_misses;
    a.emit("ice-candidate", { target: cId, candidate: { n: "late" } });
    const missed = await waitFor(a, "error", (e) => e.error === "unknown_target");
    assert.equal(missed.event, "ice-candidate");
    assert.equal((await stats(nodes[0])).route_misses, misses + 1);
    const gone = await a.emitWithAck("offer", { target: cId, sdp: {} });
    assert.equal(gone.error, "unknown_target", JSON.stringify(gone));
  } finally {
    for (const s of [a, b, c]) s.disconnect();
  }
});

test("cluster: the seed call page (socket.io-client in Chromium) on two nodes makes a call", async () => {
  const url = (node) => `${web.url}/pages/seed.html?server=${encodeURIComponent(node.url)}`;
  const a = await open(browserA, url(nodes[1]));
  const b = await open(browserB, url(nodes[2]));
  try {
    await seedCall(a, b);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("cluster: a killed node's sockets leave their rooms on the other nodes within 10 s", async () => {
  const doomed = await startSwitchboard(["--redis-url", redis.url, "--node-id", "doomed", "--turn-secret", "cluster-test-secret"]);
  const a = await sioClient(nodes[0]);
  try {
    await allSeeEachOther([...nodes, doomed]);
    const x = await sioClient(doomed);
    await a.emitWithAck("join", { room: "sio-kill" });
    await x.emitWithAck("join", { room: "sio-kill" });
    await waitFor(a, "peer-joined", (p) => p.id === x.id);
    const xId = x.id;
    process.kill(doomed.pid, "SIGKILL");
    const killed = Date.now();
    await waitFor(a, "peer-left", (p) => p.id === xId && p.room === "sio-kill", 10000);
    console.log(`peer-left ${Date.now() - killed} ms after the SIGKILL`);
    const gone = await a.emitWithAck("offer", { target: xId, sdp: {} });
    assert.equal(gone.error, "unknown_target", JSON.stringify(gone));
    x.disconnect();
  } finally {
    a.disconnect();
    await doomed.stop();
  }
});

test("cluster: socket.io during a Redis restart: errors across nodes, local relays go on, then recovery", async () => {
  const own = await startRedis();
  const [n1, n2] = await Promise.all(["r-1", "r-2"].map((id) =>
    startSwitchboard(["--redis-url", own.url, "--node-id", id, "--turn-secret", "cluster-test-secret"])));
  const clients = [];
  let back = null;
  try {
    await allSeeEachOther([n1, n2]);
    const a = await sioClient(n1);
    const a2 = await sioClient(n1);
    const b = await sioClient(n2);
    clients.push(a, a2, b);
    await a.emitWithAck("join", { room: "outage" });
    await b.emitWithAck("join", { room: "outage" });
    own.stop();
    // Across nodes: a documented error, not silence.
    const e = await a.emitWithAck("offer", { target: b.id, sdp: {} });
    assert.equal(e.error, "cluster_unavailable", JSON.stringify(e));
    // On one node: unaffected.
    assert.deepEqual(await a.emitWithAck("offer", { target: a2.id, sdp: {} }), { ok: true });
    const j = await a2.emitWithAck("join", { room: "elsewhere" });
    assert.equal(j.error, "cluster_unavailable", JSON.stringify(j));
    // Redis comes back (empty): within 5 s relays across nodes work again and rosters hold.
    back = await startRedisOn(own.port);
    const t0 = Date.now();
    for (;;) {
      const r = await a.emitWithAck("offer", { target: b.id, sdp: {} });
      if (r.ok) break;
      assert.ok(Date.now() - t0 < 5000, `no recovery within 5 s: ${JSON.stringify(r)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`socket.io across nodes again ${Date.now() - t0} ms after Redis came back`);
    // Joins wait while the nodes take back what they hold (one lease after Redis came back
    // empty): cluster_unavailable meanwhile, then the full roster.
    let roster;
    for (;;) {
      roster = await a2.emitWithAck("join", { room: "outage" });
      if (roster.ok) break;
      assert.equal(roster.error, "cluster_unavailable", JSON.stringify(roster));
      assert.ok(Date.now() - t0 < 9000, "joins refused for too long");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(roster.peers.sort(), [a.id, b.id].sort());
  } finally {
    for (const c of clients) c.disconnect();
    await Promise.all([n1.stop(), n2.stop()]);
    own.stop();
    back?.stop();
  }
});

const pjPage = (browser, node) => open(browser, `${web.url}/pages/peerjs.html?host=127.0.0.1&port=${node.port}`);

test("cluster: the official peerjs client on two nodes: data both ways and a media call", async () => {
  const [a, b] = [await pjPage(browserA, nodes[0]), await pjPage(browserB, nodes[1])];
  try {
    assert.equal(await a.evaluate((id) => window.makePeer(id), "pj-alice"), "pj-alice");
    assert.equal(await b.evaluate((id) => window.makePeer(id), "pj-bob"), "pj-bob");
    assert.equal(await a.evaluate((id) => window.connect(id), "pj-bob"), "echo:hello");
    assert.deepEqual(await b.evaluate(() => window.received), ["hello"]);
    await a.evaluate((id) => window.startCall(id), "pj-bob");
    await assertVideoFlowing(a, "caller", "remote", () => window.framesDecoded());
    await assertVideoFlowing(b, "callee", "remote", () => window.framesDecoded());
    // The id is taken on every node: a third page on the third node is refused.
    const c = await pjPage(browserA, nodes[2]);
    assert.equal(await c.evaluate((id) => window.makePeer(id), "pj-alice"), null);
    assert.deepEqual(await c.evaluate(() => window.errors), ["unavailable-id"]);
    await c.context().close();
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

test("cluster: PeerJS ids across nodes: ID-TAKEN, take-over by the same token, a queued message delivered on another node, EXPIRE", async () => {
  const q = (id, token) => `key=peerjs&id=${id}&token=${token}`;
  const a = await pjRaw(nodes[0].port, q("raw-a", "ta"));
  assert.equal((await a.next()).type, "OPEN");
  // Another token on another node: ID-TAKEN.
  const intruder = await pjRaw(nodes[1].port, q("raw-a", "other"));
  assert.equal((await intruder.next()).type, "ID-TAKEN");
  await intruder.closed;
  // Messages to an id nobody holds yet wait, in order, and are delivered when it connects
  // on another node.
  for (let n = 0; n < 5; n++) a.send({ type: "OFFER", dst: "raw-late", payload: { n } });
  await new Promise((r) => setTimeout(r, 300));
  const late = await pjRaw(nodes[2].port, q("raw-late", "tl"));
  assert.equal((await late.next()).type, "OPEN");
  for (let n = 0; n < 5; n++) {
    const m = await late.next();
    assert.deepEqual(m, { type: "OFFER", src: "raw-a", dst: "raw-late", payload: { n } });
  }
  // The same token on another node takes the id over: the old socket is closed, and
  // messages reach the new one.
  const again = await pjRaw(nodes[1].port, q("raw-a", "ta"));
  assert.equal((await again.next()).type, "OPEN");
  await a.closed;
  late.send({ type: "ANSWER", dst: "raw-a", payload: { ok: 1 } });
  assert.deepEqual(await again.next(), { type: "ANSWER", src: "raw-late", dst: "raw-a", payload: { ok: 1 } });
  // An id that never connects: EXPIRE once, after the 5 s expire timeout.
  again.send({ type: "OFFER", dst: "raw-ghost", payload: {} });
  again.send({ type: "CANDIDATE", dst: "raw-ghost", payload: {} });
  assert.deepEqual(await again.next((m) => m.type === "EXPIRE", 9000), { type: "EXPIRE", src: "raw-ghost", dst: "raw-a" });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(again.frames.filter((m) => m.type === "EXPIRE").length, 0);
  // late's node learnt where raw-a is (its ANSWER above): what follows goes straight to
  // raw-a's node, in order.
  const stats = async (n) => (await (await fetch(`${n.url}/api/v1/stats`)).json()).cluster;
  const direct = (await stats(nodes[2])).routed_direct;
  for (let n = 0; n < 3; n++) late.send({ type: "CANDIDATE", dst: "raw-a", payload: { n } });
  for (let n = 0; n < 3; n++) {
    assert.deepEqual(await again.next(), { type: "CANDIDATE", src: "raw-late", dst: "raw-a", payload: { n } });
  }
  assert.equal((await stats(nodes[2])).routed_direct, direct + 3);
  // raw-a goes away: a message sent straight to its former node misses, and its sender
  // gets EXPIRE at once (not after the expire timeout).
  again.ws.close();
  await again.closed;
  await new Promise((r) => setTimeout(r, 200)); // its node has let the id go
  const misses = (await stats(nodes[2])).route_misses;
  const sent = Date.now();
  late.send({ type: "OFFER", dst: "raw-a", payload: {} });
  assert.deepEqual(await late.next((m) => m.type === "EXPIRE", 3000), { type: "EXPIRE", src: "raw-a", dst: "raw-late" });
  assert.ok(Date.now() - sent < 3000);
  assert.equal((await stats(nodes[2])).route_misses, misses + 1);
  late.ws.close();
});
