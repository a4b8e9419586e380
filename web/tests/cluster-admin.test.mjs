// The admin API in cluster mode: two Switchboard nodes on a real redis-server; either node
// answers for the whole cluster (peers, rooms, apps and nodes of both), a kick sent to one
// node reaches the node that holds the peer, closing a room closes it on every node, and a
// node that cannot answer is named in `unreachable_nodes` within the wait, not hung on.
// Contract: docs/OPERATIONS.md "Admin API".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { startSwitchboard } from "./lib/harness.mjs";
import { sioClient, waitFor } from "./lib/sio.mjs";
import { startRedis, allSeeEachOther } from "./lib/cluster.mjs";
import { rawSocket } from "./lib/peerjs.mjs";

const KEY = "cluster-admin-key-0123456789";
const APP = "ClusterAdmin";
const SECRET = "whsec_" + Buffer.from("cluster-admin-webhook-secret-32b").toString("base64");
let redis, n1, n2, hooks;

/** A webhook receiver: every verified event (Standard Webhooks), and the bodies refused. */
async function receiver() {
  const wh = new Webhook(SECRET);
  const events = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      try {
        events.push(wh.verify(body, req.headers));
        res.writeHead(204).end();
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { events, url: `http://127.0.0.1:${server.address().port}/hook`, close: () => server.close() };
}

before(async () => {
  redis = await startRedis();
  hooks = await receiver();
  [n1, n2] = await Promise.all(["node-1", "node-2"].map((id) =>
    startSwitchboard(["--redis-url", redis.url, "--node-id", id, "--admin-key", KEY, "--turn-secret", "cluster-admin-secret",
      "--webhook-url", hooks.url, "--webhook-secret", SECRET])));
  await allSeeEachOther([n1, n2]);
});

after(async () => {
  await Promise.all([n1, n2].filter(Boolean).map((n) => n.stop()));
  redis?.stop();
  hooks?.close();
});

/** Calls the admin API of `node`. */
async function call(node, method, path) {
  const res = await fetch(`${node.url}${path}`, { method, headers: { Authorization: `Bearer ${KEY}` } });
  return { status: res.status, body: await res.json() };
}

/** A raw Ant Media WebSocket on `node`. */
const amRaw = (node) => rawSocket(node.ws(APP));

test("cluster admin API: any node lists, kicks and closes across the cluster", async () => {
  // An Ant Media pair across the nodes, and a socket.io room with a member on each.
  const a = await amRaw(n1);
  a.send({ command: "join", streamId: "r1" });
  await a.next((m) => m.definition === "joined", 5000);
  const b = await amRaw(n2);
  b.send({ command: "join", streamId: "r1" });
  await b.next((m) => m.definition === "joined", 5000);
  await a.next((m) => m.command === "start", 5000);
  const s1 = await sioClient(n1.url);
  const s2 = await sioClient(n2.url);
  await s1.emitWithAck("join", { room: "lobby" });
  await s2.emitWithAck("join", { room: "lobby" });

  // Either node tells about both.
  const node = (await call(n2, "GET", "/api/v1/node")).body;
  assert.equal(node.node_id, "node-2");
  assert.equal(node.cluster_nodes, 2);
  assert.deepEqual(node.nodes.map((n) => [n.node_id, n.connections.antmedia, n.connections.socketio]),
    [["node-1", 1, 1], ["node-2", 1, 1]]);
  assert.equal(node.unreachable_nodes, undefined);

  // Peers of both nodes, by node then connection, a page of one at a time.
  const peers = [];
  let query = "limit=1";
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 10, "paging ends");
    const page = (await call(n1, "GET", `/api/v1/peers?${query}`)).body;
    assert.equal(page.peers.length, 1, JSON.stringify(page));
    peers.push(...page.peers);
    if (page.next_after === undefined) break;
    query = `limit=1&after=${page.next_after}&after_node=${page.next_after_node}`;
  }
  assert.deepEqual(peers.map((p) => [p.node, p.dialect]).sort(),
    [["node-1", "antmedia"], ["node-1", "socketio"], ["node-2", "antmedia"], ["node-2", "socketio"]]);
  const amB = peers.find((p) => p.node === "node-2" && p.dialect === "antmedia");
  const amA = peers.find((p) => p.node === "node-1" && p.dialect === "antmedia");
  assert.equal(amB.room, "r1");
  assert.deepEqual((await call(n1, "GET", `/api/v1/peers/${amB.conn}`)).body.node, "node-2");
  assert.deepEqual((await call(n1, "GET", `/api/v1/peers/${amB.conn}?node=node-2`)).body.conn, amB.conn);
  assert.equal((await call(n1, "GET", `/api/v1/peers/${amB.conn}?node=node-9`)).status, 404);

  // Rooms and apps, members counted over both nodes.
  assert.deepEqual((await call(n1, "GET", `/api/v1/rooms/antmedia/${APP}`)).body, { rooms: [{ room: "r1", members: 2 }] });
  assert.deepEqual((await call(n2, "GET", "/api/v1/rooms/socketio/%2F")).body, { rooms: [{ room: "lobby", members: 2 }] });
  assert.deepEqual((await call(n2, "GET", `/api/v1/rooms/antmedia/${APP}/r1`)).body, {
    dialect: "antmedia", app: APP, room: "r1",
    members: [{ conn: amA.conn, node: "node-1" }, { conn: amB.conn, node: "node-2" }],
  });
  const apps = (await call(n1, "GET", "/api/v1/apps")).body.apps;
  assert.deepEqual(apps.filter((x) => x.app === APP || x.dialect === "socketio"), [
    { dialect: "antmedia", app: APP, joined_peers: 2 },
    { dialect: "socketio", app: "/", joined_peers: 2 },
  ]);

  // A kick sent to node-1 for a peer of node-2: it gets stop and its close; its partner on
  // node-1 gets stop.
  const kicked = await call(n1, "DELETE", `/api/v1/peers/${amB.conn}`);
  assert.deepEqual([kicked.status, kicked.body], [200, { kicked: 1 }]);
  await b.next((m) => m.command === "stop", 5000);
  assert.equal(await b.closed, 1008);
  await a.next((m) => m.command === "stop", 5000);
  assert.equal((await call(n2, "GET", `/api/v1/peers/${amB.conn}`)).status, 404);

  // Closing the socket.io room from node-2 disconnects its members on both nodes.
  const closed = await call(n2, "DELETE", "/api/v1/rooms/socketio/%2F/lobby");
  assert.deepEqual(closed.body, { kicked: 2 });
  await Promise.all([s1, s2].map((s) => new Promise((ok) => (s.connected ? s.once("disconnect", ok) : ok()))));
  assert.equal((await call(n1, "GET", "/api/v1/rooms/socketio/%2F/lobby")).status, 404);
  a.ws.close();

  // Webhooks name the node that sends them: the Ant Media room started on each node.
  const deadline = Date.now() + 5000;
  const started = () => hooks.events.filter((e) => e.type === "room_started" && e.data.room === "r1");
  while (started().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(started().map((e) => e.node).sort(), ["node-1", "node-2"]);
  const kickedLeft = hooks.events.find((e) => e.type === "peer_left" && e.data.conn === amB.conn);
  assert.deepEqual([kickedLeft?.node, kickedLeft?.data.reason], ["node-2", "kicked"]);
});

/** Stops `pid` (SIGSTOP) and waits until every thread of it is stopped: the signal takes
 * effect later than `kill` returns, and a node still running would answer. */
async function stopped(pid) {
  process.kill(pid, "SIGSTOP");
  const deadline = Date.now() + 5000;
  for (;;) {
    const states = readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8").split(") ")[1][0]);
    if (states.every((s) => s === "T" || s === "t")) return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not stop: ${states.join("")}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("cluster admin API: a node that does not answer is named, and the answer comes anyway", async () => {
  const s = await sioClient(n1.url);
  try {
    await stopped(n2.pid);
    // Both at once: node-2 stays stopped for one wait (2 s), well within its 5 s lease.
    const started = Date.now();
    const [page, kick] = await Promise.all([
      call(n1, "GET", "/api/v1/peers"),
      call(n1, "DELETE", "/api/v1/peers/1?node=node-2"),
    ]);
    const waited = Date.now() - started;
    process.kill(n2.pid, "SIGCONT");
    assert.deepEqual(page.body.unreachable_nodes, ["node-2"], `${waited} ms: ${JSON.stringify(page.body)}`);
    assert.ok(page.body.peers.some((p) => p.node === "node-1" && p.id === s.id), JSON.stringify(page.body));
    assert.ok(waited < 4500, `answered after ${waited} ms`);
    assert.deepEqual([kick.status, kick.body.error], [503, "unavailable"]);
  } finally {
    process.kill(n2.pid, "SIGCONT");
    s.disconnect();
  }
  // Back: it answers again.
  const node = (await call(n1, "GET", "/api/v1/node")).body;
  assert.equal(node.nodes.length, 2, JSON.stringify(node));
});
