// The socket.io relay: the official `socket.io-client` v4 (npm) from Node against a real
// `switchboard serve`, once per transport, and the classic seed page in two headless
// Chromium instances. Contract: shared/docs/protocols/socketio.md; docs/PROTOCOLS.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { io } from "socket.io-client";
import { startSwitchboard, startStatic, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";
import { recording, sioClient, waitFor, seedCall } from "./lib/sio.mjs";

let sb;
before(async () => { sb = await startSwitchboard(); });
after(async () => { await sb?.stop(); });

const TRANSPORTS = { websocket: ["websocket"], polling: ["polling"], "default (upgrade)": undefined };

/** A connected client (of `url`, by default the shared server); every event it receives is
 * recorded in `got`. */
const client = (transports, url = sb.url) => sioClient(url, transports);
const settle = () => new Promise((r) => setTimeout(r, 300));

for (const [name, transports] of Object.entries(TRANSPORTS)) {
  test(`socket.io-client v4 (${name}): offer, answer and candidates reach the target only`, async () => {
    const [a, b, c] = [await client(transports), await client(transports), await client(transports)];
    try {
      if (transports === undefined) {
        // The default starts on polling and upgrades to websocket.
        const deadline = Date.now() + 5000;
        while (a.io.engine.transport.name !== "websocket") {
          if (Date.now() > deadline) throw new Error("no upgrade to websocket");
          await new Promise((r) => setTimeout(r, 20));
        }
      } else {
        assert.equal(a.io.engine.transport.name, transports[0]);
      }
      const sdp = { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" };
      // Seed semantics: the payload arrives unchanged at the target, with `from` stamped
      // by the server (a forged one is overwritten).
      a.emit("offer", { target: b.id, sdp, from: "forged", extra: [1, 2.5, null, "x"] });
      assert.deepEqual(await waitFor(b, "offer"), { target: b.id, sdp, from: a.id, extra: [1, 2.5, null, "x"] });
      b.emit("answer", { target: a.id, sdp: { type: "answer", sdp: "v=0\r\n" } });
      assert.deepEqual(await waitFor(a, "answer"), { target: a.id, sdp: { type: "answer", sdp: "v=0\r\n" }, from: b.id });
      const candidate = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
      a.emit("ice-candidate", { target: b.id, candidate });
      assert.deepEqual(await waitFor(b, "ice-candidate"), { target: b.id, candidate, from: a.id });
      // Acks when asked for.
      assert.deepEqual(await a.emitWithAck("ice-candidate", { target: b.id, candidate }), { ok: true });
      assert.deepEqual(await a.timeout(5000).emitWithAck("offer", { target: "no-such-socket", sdp }),
        { ok: false, error: "unknown_target", reason: "no connected socket has this id" });
      await settle();
      assert.deepEqual(c.got, [], "the third client saw nothing");
      assert.ok(!a.got.some((g) => g.event === "offer"), "the sender does not get its own offer back");
    } finally {
      for (const s of [a, b, c]) s.disconnect();
    }
  });
}

test("socket.io: a message sent the moment its target learns its id is delivered", async () => {
  // The hub knows a socket before socket.io's CONNECT tells the client its id: a peer told
  // the id at once must never get unknown_target (under CPU contention a socket registered
  // only by the connect handler, which runs after CONNECT is sent, lost such messages).
  const a = await client(["websocket"]);
  const round = async (i) => {
    const b = recording(io(sb.url, { transports: ["websocket"], reconnection: false, forceNew: true, autoConnect: false }));
    try {
      const acked = new Promise((ok) => b.once("connect", () => {
        a.timeout(5000).emitWithAck("offer", { target: b.id, sdp: { i } }).then(ok, ok);
      }));
      b.connect();
      assert.deepEqual(await acked, { ok: true }, `round ${i}`);
      assert.deepEqual((await waitFor(b, "offer")).sdp, { i });
    } finally {
      b.disconnect();
    }
  };
  try {
    for (let i = 0; i < 100; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, k) => round(i + k)));
    }
  } finally {
    a.disconnect();
  }
});

test("socket.io: join gives the roster; peer-joined and peer-left tell the others", async () => {
  const a = await client(["websocket"]);
  const b = await client(["polling"]);
  try {
    assert.deepEqual(await a.emitWithAck("join", { room: "lobby" }), { ok: true, room: "lobby", peers: [] });
    assert.deepEqual(await b.emitWithAck("join", { room: "lobby" }), { ok: true, room: "lobby", peers: [a.id] });
    assert.deepEqual(await waitFor(a, "peer-joined"), { room: "lobby", id: b.id });
    // A room name is not a relay target (no fan-out).
    assert.equal((await a.emitWithAck("offer", { target: "lobby", sdp: {} })).error, "unknown_target");
    const bId = b.id;
    b.disconnect();
    assert.deepEqual(await waitFor(a, "peer-left"), { room: "lobby", id: bId });
    assert.deepEqual(await a.emitWithAck("leave"), { ok: true });
    assert.equal((await a.emitWithAck("leave")).error, "not_in_room");
  } finally {
    a.disconnect();
    b.disconnect();
  }
});

test("socket.io: malformed payloads get errors; other clients are not affected", async () => {
  const [a, b] = [await client(["websocket"]), await client(["websocket"])];
  try {
    for (const bad of ["just a string", 42, null, { sdp: "no target" }, { target: 7 }, { target: "" }]) {
      const r = await a.emitWithAck("offer", bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
      assert.equal(r.error, "invalid_payload", JSON.stringify(r));
    }
    // Without an ack the failure arrives as an `error` event.
    a.emit("answer", "not an object");
    const e = await waitFor(a, "error");
    assert.equal(e.event, "answer");
    assert.equal(e.error, "invalid_payload");
    // Over the 1,000,000-byte max payload the sender is disconnected (as Node's socket.io
    // does); the other client carries on.
    const gone = new Promise((ok) => a.once("disconnect", ok));
    a.emit("offer", { target: b.id, sdp: "x".repeat(1_100_000) });
    await gone;
    await settle();
    assert.ok(!b.got.some((g) => g.event === "offer"), "the huge offer was not delivered");
    const c = await client(["websocket"]);
    assert.deepEqual(await c.emitWithAck("offer", { target: b.id, sdp: {} }), { ok: true });
    await waitFor(b, "offer", (p) => p.from === c.id);
    c.disconnect();
  } finally {
    a.disconnect();
    b.disconnect();
  }
});

test("the seed call page (socket.io-client in Chromium): a call with video both ways", async () => {
  const web = await startStatic({
    "/sio/": join(repo, "web/tests/node_modules/socket.io-client/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
  });
  const [ba, bb] = [await launch(), await launch()];
  try {
    const url = `${web.url}/pages/seed.html?server=${encodeURIComponent(sb.url)}`;
    const a = await open(ba, url);
    const b = await open(bb, url);
    await seedCall(a, b);
  } finally {
    await Promise.all([ba.close(), bb.close()]);
    await web.close();
  }
});

test("socket.io: Engine.IO handshake carries Node's defaults; polling is allowed cross-origin", async () => {
  const res = await fetch(`${sb.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: "http://elsewhere.example" } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  const body = await res.text();
  assert.equal(body[0], "0", body);
  const open = JSON.parse(body.slice(1));
  assert.equal(open.pingInterval, 25000);
  assert.equal(open.pingTimeout, 20000);
  assert.equal(open.maxPayload, 1000000);
  assert.deepEqual(open.upgrades, ["websocket"]);
  assert.ok(typeof open.sid === "string" && open.sid.length > 0);
  // Other routes get no CORS header.
  const health = await fetch(`${sb.url}/healthz`, { headers: { Origin: "http://elsewhere.example" } });
  assert.equal(health.headers.get("access-control-allow-origin"), null);
});

test("socket.io: the server's connection limit applies (server_busy, then disconnected)", async () => {
  const small = await startSwitchboard(["--max-connections", "2"]);
  const connect = () => {
    return recording(io(small.url, { transports: ["websocket"], reconnection: false, forceNew: true }));
  };
  const connected = (s) => new Promise((ok) => s.once("connect", () => ok(s)));
  const a = await connected(connect());
  const b = await connected(connect());
  const c = connect();
  try {
    await new Promise((ok) => c.once("disconnect", ok));
    const err = c.got.find((g) => g.event === "error")?.args[0];
    assert.equal(err?.error, "server_busy", JSON.stringify(c.got));
    // The two admitted clients still relay.
    assert.deepEqual(await a.emitWithAck("offer", { target: b.id, sdp: {} }), { ok: true });
  } finally {
    for (const s of [a, b, c]) s.disconnect();
    await small.stop();
  }
});

/** A socket.io client spoken by hand over Engine.IO long-polling, so a test decides when it
 * reads: `read()` makes one GET and returns the socket.io packets it carried. */
async function rawPoller(url) {
  const base = `${url}/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(base)).text();
  assert.equal(open[0], "0", open);
  const { sid } = JSON.parse(open.slice(1));
  const at = `${base}&sid=${encodeURIComponent(sid)}`;
  const post = async (packet) => {
    const r = await fetch(at, { method: "POST", body: packet });
    const body = await r.text();
    assert.equal(r.status, 200, body);
  };
  const read = async () => {
    const r = await fetch(at);
    const body = await r.text();
    return r.status === 200 ? body.split("\x1e") : [`http ${r.status}: ${body}`];
  };
  /** Reads until a packet matching `pred` arrives; returns it. */
  const readUntil = async (pred, ms = 5000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = (await read()).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) assert.fail("no matching packet in time");
    }
  };
  await post("40");
  await readUntil((p) => p.startsWith("40"));
  return { post, read, readUntil };
}

test("socket.io: clients dropped for not reading are told and closed, not left as zombies", async () => {
  // Issue 15 finding 6: polling clients flooded with peer-joined/peer-left faster than they
  // poll fill their 256-packet buffer; the server drops them, and the DISCONNECT used to be
  // lost in the full buffer, so they stayed `connected` while offers to them got
  // unknown_target. Now every dropped client gets its disconnect once its buffer drains.
  // Two kinds of watchers: five that stop reading altogether (Engine.IO spoken by hand, no
  // GET during the flood), which the flood must drop, and thirty official clients that poll
  // as fast as they can, which may or may not keep up but must never become zombies.
  // Join limits off: one toggling socket stands for many (the per-address join budget
  // still lets a thousand joins through at once).
  const own = await startSwitchboard(["--max-joins-per-sec", "0", "--max-joins-per-ip-per-sec", "0"]);
  const watchers = await Promise.all(Array.from({ length: 30 }, () => client(["polling"], own.url)));
  const toggler = await client(["websocket"], own.url);
  const sender = await client(["websocket"], own.url);
  const stalled = [];
  try {
    for (const w of watchers) {
      w.reason = null;
      w.on("disconnect", (reason) => { w.reason = reason; });
      await w.emitWithAck("join", { room: "flood" });
    }
    for (let i = 0; i < 5; i++) {
      const s = await rawPoller(own.url);
      await s.post('421["join",{"room":"flood"}]');
      await s.readUntil((p) => p.startsWith("431"));
      stalled.push(s);
    }
    for (let i = 0; i < 2000; i++) {
      toggler.emit("join", { room: "flood" });
      toggler.emit("leave");
    }
    await toggler.emitWithAck("leave");
    const stats = async () => (await (await fetch(`${own.url}/api/v1/stats`)).json()).hub;
    const dropped = (await stats()).slow_consumers;
    assert.ok(dropped >= stalled.length, `the flood dropped ${dropped} clients, fewer than the ${stalled.length} that did not read`);
    // A client that did not read gets, once it reads again, what was queued and then its
    // DISCONNECT packet: it is told, not left connected.
    for (const s of stalled) await s.readUntil((p) => p === "41", 10000);
    // Within a few seconds every official watcher is either known to the hub (an offer to
    // it is accepted) or disconnected by the server.
    const deadline = Date.now() + 15000;
    for (;;) {
      const zombies = [];
      for (const w of watchers.filter((w) => w.connected)) {
        const r = await sender.emitWithAck("offer", { target: w.id, sdp: {} });
        if (!r.ok) zombies.push(w.id);
      }
      if (zombies.length === 0) break;
      if (Date.now() > deadline) assert.fail(`${zombies.length} zombies: connected but unknown to the hub`);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const w of watchers.filter((w) => !w.connected)) assert.equal(w.reason, "io server disconnect");
    // Dropped sockets whose DISCONNECT waited for room in their buffer are all closed now.
    const closing = Date.now() + 5000;
    while ((await stats()).sio_closing !== 0) {
      if (Date.now() > closing) assert.fail("dropped sockets still waiting to be closed");
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    for (const s of [...watchers, toggler, sender]) s.disconnect();
    await own.stop();
  }
});

test("socket.io: Engine.IO handshakes are bounded per address and in total", async () => {
  // Issue 15 finding 7: 20,000 polling handshakes over four keep-alive connections took
  // 267 MB and counted against no limit. Now one address holds at most 100 sessions (429
  // beyond), the server at most --max-socketio-sessions (503 beyond), counted in the stats.
  const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
  const own = await startSwitchboard([]);
  const handshake = () => fetch(`${own.url}/socket.io/?EIO=4&transport=polling`);
  try {
    const before = rss(own.pid);
    const statuses = [];
    for (let i = 0; i < 2000; i++) {
      const r = await handshake();
      statuses.push(r.status);
      if (r.status !== 200) {
        assert.deepEqual(await r.json(), { code: 4, message: "too many socket.io sessions from this address" });
      } else {
        await r.text();
      }
    }
    assert.equal(statuses.filter((s) => s === 200).length, 100);
    assert.equal(statuses.filter((s) => s === 429).length, 1900);
    const stats = (await (await fetch(`${own.url}/api/v1/stats`)).json()).socketio;
    assert.deepEqual(stats, { sessions: 100, refused_total: 0, refused_per_ip: 1900 });
    const grown = rss(own.pid) - before;
    assert.ok(grown < 16 * 1024, `RSS grew by ${grown} KiB`);
    // A websocket client (one TCP connection, bounded by the per-address connection limit)
    // still connects and relays.
    const a = io(own.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    await new Promise((ok, fail) => { a.once("connect", ok); a.once("connect_error", fail); });
    assert.deepEqual(await a.emitWithAck("join", { room: "r" }), { ok: true, room: "r", peers: [] });
    a.disconnect();
  } finally {
    await own.stop();
  }
  // The total bound.
  const small = await startSwitchboard(["--max-socketio-sessions", "30", "--max-socketio-sessions-per-ip", "0"]);
  try {
    const statuses = [];
    for (let i = 0; i < 40; i++) {
      const r = await fetch(`${small.url}/socket.io/?EIO=4&transport=polling`);
      statuses.push(r.status);
      await r.text();
    }
    assert.equal(statuses.filter((s) => s === 503).length, 10);
  } finally {
    await small.stop();
  }
});
