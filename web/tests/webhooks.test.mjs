// Webhooks of a real call (the official Ant Media SDK in two headless Chromium pages), received
// by a server here that checks every request with the npm `standardwebhooks` package (an
// implementation of the Standard Webhooks scheme independent of Switchboard's). Events arrive
// in order; a receiver that is down and comes back gets the retried events; a forged or stale
// signature is refused by the verifier.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
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
