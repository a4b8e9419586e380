// The admin API (/api/v1/...): its OpenAPI 3.1 document validates (@apidevtools/swagger-parser)
// and every operation in it is exercised here, against peers of every dialect: the official
// Ant Media SDK in two headless Chromium pages, socket.io-client, a raw PeerJS socket. A
// kicked SDK client sees its connection closed and its partner gets `stop`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import SwaggerParser from "@apidevtools/swagger-parser";
import { startSwitchboard, antMediaPages, open, until } from "./lib/harness.mjs";
import { sioClient, waitFor } from "./lib/sio.mjs";
import { pjRaw } from "./lib/peerjs.mjs";

const KEY = "admin-test-key-0123456789";
const APP = "AdminApp";
const ROOM = "adm";
let sb, pages;

before(async () => {
  sb = await startSwitchboard(["--admin-key", KEY]);
  pages = await antMediaPages();
});

after(async () => {
  await pages?.close();
  await sb?.stop();
});

/** Every operation called, as "METHOD /templated/path", to compare with the document. */
const exercised = new Set();

/** Calls the admin API; `route` is the documented path, `path` the one requested. */
async function call(method, route, path = route, key = KEY) {
  exercised.add(`${method} ${route}`);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const res = await fetch(`${sb.url}${path}`, { method, headers });
  const body = await res.json();
  return { status: res.status, body, res };
}

const page = (browser) => open(browser, pages.url(sb.ws(APP), ROOM, false));

test("admin API: the OpenAPI document validates, and every operation works on every dialect", async () => {
  const doc = await (await fetch(`${sb.url}/api/v1/openapi.json`)).json();
  const api = await SwaggerParser.validate(structuredClone(doc));
  assert.equal(api.openapi, "3.1.0");
  const documented = new Set();
  for (const [path, item] of Object.entries(api.paths)) {
    for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`);
  }
  assert.ok(documented.size >= 7, [...documented].join(", "));

  // Without the key, or with another one: 401, said in JSON.
  for (const key of [null, "not-the-key-not-the-key"]) {
    const { status, body, res } = await call("GET", "/api/v1/node", "/api/v1/node", key);
    assert.equal(status, 401);
    assert.equal(body.error, "unauthorized");
    assert.equal(res.headers.get("www-authenticate"), "Bearer");
  }

  // Peers of every dialect: an Ant Media pair (the official SDK), a socket.io socket in a
  // room, a PeerJS id.
  const [a, b] = [await page(pages.browsers[0]), await page(pages.browsers[1])];
  await until(a, "A initialized", () => window.events.includes("initialized"));
  await until(b, "B initialized", () => window.events.includes("initialized"));
  await a.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(a, "A joined", () => window.events.includes("joined"));
  await b.evaluate((room) => window.adaptor.join(room), ROOM);
  await until(b, "B joined", () => window.events.includes("joined"));
  const s = await sioClient(sb.url);
  await s.emitWithAck("join", { room: "lobby" });
  const pj = await pjRaw(sb.port, "key=peerjs&id=pz&token=tz");
  await pj.next((f) => f.type === "OPEN");

  const node = (await call("GET", "/api/v1/node")).body;
  assert.equal(node.version.length > 0, true);
  assert.deepEqual(node.connections, { antmedia: 2, socketio: 1, peerjs: 1 });
  assert.deepEqual(node.rooms, { antmedia: 1, socketio: 1, peerjs: 0 });
  assert.equal(node.node_id, null);

  const apps = (await call("GET", "/api/v1/apps")).body;
  assert.deepEqual(apps, { apps: [
    { dialect: "antmedia", app: APP, joined_peers: 2 },
    { dialect: "peerjs", app: "peerjs", joined_peers: 1 },
    { dialect: "socketio", app: "/", joined_peers: 1 },
  ] });

  // Two pages of two.
  const first = (await call("GET", "/api/v1/peers", "/api/v1/peers?limit=2")).body;
  assert.equal(first.peers.length, 2);
  assert.ok(first.next_after);
  const second = (await call("GET", "/api/v1/peers", `/api/v1/peers?limit=2&after=${first.next_after}`)).body;
  assert.equal(second.peers.length, 2);
  assert.equal(second.next_after ?? null, null);
  const all = [...first.peers, ...second.peers];
  const am = all.filter((p) => p.dialect === "antmedia").sort((x, y) => x.conn - y.conn);
  assert.equal(am.length, 2);
  for (const p of am) {
    assert.equal(p.app, APP);
    assert.equal(p.room, ROOM);
    assert.equal(p.remote_address, "127.0.0.1");
    assert.ok(p.messages_in >= 2, JSON.stringify(p)); // getIceServerConfig, join
    assert.ok(p.messages_out >= 2, JSON.stringify(p)); // iceServerConfig, joined
    assert.ok(Math.abs(p.connected_at - Date.now() / 1000) < 120, JSON.stringify(p));
  }
  const sio = all.find((p) => p.dialect === "socketio");
  assert.deepEqual([sio.app, sio.room, sio.id, sio.remote_address], ["/", "lobby", s.id, "127.0.0.1"]);
  const pjPeer = all.find((p) => p.dialect === "peerjs");
  assert.deepEqual([pjPeer.app, pjPeer.room, pjPeer.id], ["peerjs", "pz", "pz"]);

  const [pa, pb] = am;
  const one = await call("GET", "/api/v1/peers/{conn}", `/api/v1/peers/${pa.conn}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.conn, pa.conn);
  for (const p of am) assert.ok(Math.abs(p.joined_at - Date.now() / 1000) < 120, JSON.stringify(p));
  assert.ok(sio.joined_at > 0, JSON.stringify(sio));
  const list = await call("GET", "/api/v1/rooms/{dialect}/{app}", `/api/v1/rooms/antmedia/${APP}`);
  assert.deepEqual(list.body, { rooms: [{ room: ROOM, members: 2 }] });
  const sioRooms = await call("GET", "/api/v1/rooms/{dialect}/{app}", "/api/v1/rooms/socketio/%2F?limit=1");
  assert.deepEqual(sioRooms.body.rooms, [{ room: "lobby", members: 1 }]);
  const room = await call("GET", "/api/v1/rooms/{dialect}/{app}/{room}", `/api/v1/rooms/antmedia/${APP}/${ROOM}`);
  assert.deepEqual(room.body, { dialect: "antmedia", app: APP, room: ROOM, members: [{ conn: pa.conn }, { conn: pb.conn }] });

  // Kick the first SDK client: its connection is closed, its partner gets stop.
  const stopsB = await b.evaluate(() => window.received.filter((m) => m.command === "stop").length);
  const kicked = await call("DELETE", "/api/v1/peers/{conn}", `/api/v1/peers/${pa.conn}`);
  assert.deepEqual([kicked.status, kicked.body], [200, { kicked: 1 }]);
  await until(a, "A's connection closed", () => window.events.includes("closed"));
  assert.ok(await a.evaluate(() => window.received.some((m) => m.command === "stop")), "A got stop");
  await until(b, "B got stop", (n) => window.received.filter((m) => m.command === "stop").length > n, stopsB);
  assert.equal((await call("GET", "/api/v1/peers/{conn}", `/api/v1/peers/${pa.conn}`)).status, 404);
  assert.equal((await call("DELETE", "/api/v1/peers/{conn}", `/api/v1/peers/${pa.conn}`)).body.error, "not_found");

  // Close rooms: socket.io's (app "/") and PeerJS's (the room is the id).
  const closedSio = await call("DELETE", "/api/v1/rooms/{dialect}/{app}/{room}", "/api/v1/rooms/socketio/%2F/lobby");
  assert.deepEqual(closedSio.body, { kicked: 1 });
  await new Promise((ok) => (s.connected ? s.once("disconnect", ok) : ok()));
  const closedPj = await call("DELETE", "/api/v1/rooms/{dialect}/{app}/{room}", "/api/v1/rooms/peerjs/peerjs/pz");
  assert.deepEqual(closedPj.body, { kicked: 1 });
  assert.equal(await pj.closed, 1008);
  const none = await call("GET", "/api/v1/rooms/{dialect}/{app}/{room}", "/api/v1/rooms/socketio/%2F/lobby");
  assert.deepEqual([none.status, none.body.error], [404, "not_found"]);
  const bad = await call("GET", "/api/v1/rooms/{dialect}/{app}/{room}", "/api/v1/rooms/sip/x/y");
  assert.deepEqual([bad.status, bad.body.error], [400, "bad_request"]);
  // Parameters that do not parse are JSON errors too.
  const notANumber = await call("GET", "/api/v1/peers/{conn}", "/api/v1/peers/abc");
  assert.deepEqual([notANumber.status, notANumber.body.error], [400, "bad_request"]);
  const badLimit = await call("GET", "/api/v1/peers", "/api/v1/peers?limit=-1");
  assert.deepEqual([badLimit.status, badLimit.body.error], [400, "bad_request"]);
  assert.equal((await call("GET", "/api/v1/node")).body.connections.antmedia, 1);

  assert.deepEqual([...documented].filter((op) => !exercised.has(op)), [], "every documented operation was called");
  await Promise.all([a.context().close(), b.context().close()]);
});

test("admin API: off without --admin-key, and said so", async () => {
  const plain = await startSwitchboard();
  try {
    for (const path of ["/api/v1/node", "/api/v1/peers"]) {
      const res = await fetch(`${plain.url}${path}`, { headers: { Authorization: `Bearer ${KEY}` } });
      assert.equal(res.status, 403);
      assert.equal((await res.json()).error, "admin_api_off");
    }
  } finally {
    await plain.stop();
  }
});
