// Webhooks of a real call (the official Ant Media SDK in two headless Chromium pages), received
// by a server here that checks every request with the npm `standardwebhooks` package (an
// implementation of the Standard Webhooks scheme independent of Switchboard's). Events arrive
// in order; a receiver that is down and comes back gets the retried events; a forged or stale
// signature is refused by the verifier. TURN allocations (coturn's test client) when asked for.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { spawnSync } from "node:child_process";
import WebSocket from "ws";
import { Webhook } from "standardwebhooks";
import { startSwitchboard, antMediaPages, open, until } from "./lib/harness.mjs";

const SECRET = "whsec_" + Buffer.from("switchboard-webhook-test-secret-32b!").toString("base64");
const APP = "HookApp";
let sb, pages, receiver;

/** A webhook receiver on `port` (0: any): verifies each request, keeps what it got. */
function startReceiver(port = 0) {
  const got = [];
  const refused = [];
  const wh = new Webhook(SECRET);
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      try {
        const payload = wh.verify(body, req.headers);
        got.push({ payload, body, headers: { ...req.headers } });
        res.writeHead(204).end();
      } catch (e) {
        refused.push(String(e));
        res.writeHead(400).end();
      }
    });
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok({
    server, got, refused, port: server.address().port,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  })));
}

async function waitEvents(r, n, ms = 20000) {
  const deadline = Date.now() + ms;
  while (r.got.length < n) {
    if (Date.now() > deadline) throw new Error(`${r.got.length} of ${n} events: ${JSON.stringify(r.got.map((g) => g.payload))}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return r.got.map((g) => g.payload);
}

before(async () => {
  receiver = await startReceiver();
  sb = await startSwitchboard(["--webhook-url", `http://127.0.0.1:${receiver.port}/hook`, "--webhook-secret", SECRET]);
  pages = await antMediaPages();
});

after(async () => {
  await pages?.close();
  await sb?.stop();
  await receiver?.close();
});

test("webhooks: a call's events arrive signed and in order; forged or stale ones are refused", async () => {
  const url = pages.url(sb.ws(APP), "call", false);
  const [a, b] = [await open(pages.browsers[0], url), await open(pages.browsers[1], url)];
  await until(a, "A initialized", () => window.events.includes("initialized"));
  await until(b, "B initialized", () => window.events.includes("initialized"));
  await a.evaluate(() => window.adaptor.join("call"));
  await until(a, "A joined", () => window.events.includes("joined"));
  await b.evaluate(() => window.adaptor.join("call"));
  await until(b, "B joined", () => window.events.includes("joined"));
  await a.evaluate(() => window.adaptor.leave("call"));
  // A's leave is on the server before B's page closes (two sockets: no order otherwise).
  await until(a, "A leaved", () => window.events.includes("leaved"));
  await b.context().close();
  const events = await waitEvents(receiver, 6);
  const room = { dialect: "antmedia", app: APP, room: "call" };
  assert.deepEqual(events.map((e) => e.type),
    ["room_started", "peer_joined", "peer_joined", "peer_left", "peer_left", "room_finished"]);
  for (const e of events) {
    assert.equal(e.data.dialect, room.dialect);
    assert.equal(e.data.app, room.app);
    assert.equal(e.data.room, room.room);
    assert.ok(!Number.isNaN(Date.parse(e.timestamp)), e.timestamp);
  }
  const [ja, jb, la, lb] = events.slice(1, 5);
  assert.equal(la.data.conn, ja.data.conn, "A left first");
  assert.equal(lb.data.conn, jb.data.conn);
  assert.equal(la.data.reason, "leave");
  assert.equal(lb.data.reason, "disconnect");
  const ids = receiver.got.map((g) => g.headers["webhook-id"]);
  assert.equal(new Set(ids).size, ids.length, "a unique id per event");
  assert.deepEqual(receiver.refused, []);

  // The verifier refuses a changed body, a stale timestamp and another secret.
  const sample = receiver.got[0];
  const wh = new Webhook(SECRET);
  assert.throws(() => wh.verify(sample.body.replace("room_started", "room_finished"), sample.headers));
  assert.throws(() => wh.verify(sample.body, { ...sample.headers, "webhook-timestamp": String(Math.floor(Date.now() / 1000) - 3600) }));
  const other = new Webhook("whsec_" + Buffer.from("another-secret-another-secret-32").toString("base64"));
  assert.throws(() => other.verify(sample.body, sample.headers));
  await a.context().close();
});

test("webhooks: a receiver that is down, then back, gets the retried events in order", async () => {
  const port = receiver.port;
  const delivered = (await (await fetch(`${sb.url}/api/v1/stats`)).json()).webhooks.delivered;
  await receiver.close();
  // A join and a leave while nobody listens.
  const ws = new WebSocket(sb.ws(APP));
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  const frames = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
  ws.send(JSON.stringify({ command: "join", streamId: "later" }));
  const deadline = Date.now() + 5000;
  while (!frames.some((f) => f.definition === "joined") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  ws.send(JSON.stringify({ command: "leave", streamId: "later" }));
  await new Promise((r) => setTimeout(r, 1500));
  const stats = await (await fetch(`${sb.url}/api/v1/stats`)).json();
  assert.ok(stats.webhooks.retried >= 1, JSON.stringify(stats.webhooks));
  // Back on the same port: the retries get through.
  receiver = await startReceiver(port);
  const events = await waitEvents(receiver, 4);
  assert.deepEqual(events.map((e) => [e.type, e.data.room]),
    [["room_started", "later"], ["peer_joined", "later"], ["peer_left", "later"], ["room_finished", "later"]]);
  assert.equal(events[2].data.reason, "leave");
  const after = await (await fetch(`${sb.url}/api/v1/stats`)).json();
  assert.equal(after.webhooks.delivered, delivered + 4);
  assert.equal(after.webhooks.failed, 0);
  assert.equal(after.webhooks.dropped, 0);
  ws.close();
});

test("webhooks: the built-in TURN server's allocations, when asked for", async () => {
  const r = await startReceiver();
  const turnSb = await startSwitchboard([
    "--webhook-url", `http://127.0.0.1:${r.port}/hook`, "--webhook-secret", SECRET,
    "--webhook-turn-events", "true",
  ]);
  try {
    const ice = await (await fetch(`${turnSb.url}/api/v1/ice-servers`)).json();
    const turn = ice.iceServers.find((s) => s.urls[0].startsWith("turn:"));
    // coturn's test client: two TCP allocations that send to each other, closed at the end.
    const run = spawnSync("timeout", ["30", "turnutils_uclient", "-t", "-y", "-u", turn.username, "-w", turn.credential,
      "-p", String(turnSb.turnPort), "-n", "5", "-m", "1", "-X", "127.0.0.1"], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    await waitEvents(r, 4);
    await new Promise((ok) => setTimeout(ok, 1000));
    const events = r.got.map((g) => g.payload);
    const created = events.filter((e) => e.type === "allocation_created");
    const ended = events.filter((e) => e.type === "allocation_ended");
    // The client opens a few allocations (two that talk, and its own checks); the TCP ones
    // end when it closes their connections.
    assert.ok(created.length >= 2 && ended.length >= 2, JSON.stringify(events));
    const user = turn.username.split(":").slice(1).join(":");
    for (const e of events) {
      assert.equal(e.data.user, user);
      assert.match(e.data.client, /^127\.0\.0\.1:\d+$/);
    }
    // Each allocation ends once, after it was created, with the same addresses.
    const key = (e) => `${e.data.client}>${e.data.relay}`;
    assert.equal(new Set(ended.map(key)).size, ended.length);
    for (const e of ended) {
      const c = events.findIndex((x) => x.type === "allocation_created" && key(x) === key(e));
      assert.ok(c >= 0 && c < events.indexOf(e), JSON.stringify(e));
    }
    assert.deepEqual(r.refused, []);
  } finally {
    await turnSb.stop();
    await r.close();
  }
});
