// GET /metrics after a scripted scenario in every dialect (raw Ant Media WebSockets,
// socket.io-client, raw PeerJS WebSockets): the text passes Prometheus's own `promtool check
// metrics` (format and naming lint), and every counter moved exactly as the scenario implies.
// The key, the bound on app labels and the one-render-a-second cache are checked too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { startSwitchboard, repo } from "./lib/harness.mjs";
import { sioClient, waitFor } from "./lib/sio.mjs";
import { pjRaw } from "./lib/peerjs.mjs";

const KEY = "metrics-test-key-0123456789";
let sb;
before(async () => {
  sb = await startSwitchboard(["--metrics-key", KEY, "--metrics-max-apps", "2"]);
});
after(async () => { await sb?.stop(); });

/** Prometheus's promtool: on the PATH, or taken from Debian's package by scripts/test.sh. */
function promtool() {
  for (const p of [process.env.SWITCHBOARD_PROMTOOL, join(repo, "target/promtool/usr/bin/promtool")]) {
    if (p && existsSync(p)) return p;
  }
  const which = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  if (which.status === 0) return which.stdout.trim();
  throw new Error("promtool not found (scripts/test.sh extracts it from Debian's prometheus package)");
}

/** The scrape's text, after `promtool check metrics` accepted it. */
async function scrape() {
  const res = await fetch(`${sb.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const check = spawnSync(promtool(), ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}\n${text}`);
  return text;
}

/** The value of one series, labels in any order; 0 when the series is absent. */
function value(text, name, labels = {}) {
  const want = Object.entries(labels).sort().map(([k, v]) => `${k}="${v}"`).join(",");
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.trim()) continue;
    const cut = line.lastIndexOf(" ");
    const series = line.slice(0, cut);
    const brace = series.indexOf("{");
    const n = brace < 0 ? series : series.slice(0, brace);
    if (n !== name) continue;
    const got = brace < 0 ? "" : series.slice(brace + 1, -1).split(",").sort().join(",");
    if (got === want) return Number(line.slice(cut + 1));
  }
  return 0;
}

/** A raw WebSocket whose text frames are collected; `bytes` counts their UTF-8 bytes. */
async function raw(url) {
  const ws = new WebSocket(url);
  const frames = [];
  let bytes = 0;
  ws.on("message", (data) => { bytes += data.length; frames.push(JSON.parse(data.toString())); });
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  const next = async (pred) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no frame; have ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { ws, next, send: (m) => ws.send(typeof m === "string" ? m : JSON.stringify(m)), bytes: () => bytes };
}

test("metrics: refused without the key, and counted exactly after a scenario in every dialect", async () => {
  for (const headers of [{}, { Authorization: "Bearer wrong-key-wrong-key-wrong" }]) {
    const res = await fetch(`${sb.url}/metrics`, { headers });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("www-authenticate"), "Bearer");
  }

  // Ant Media: a pair relays an offer and a candidate; a third peer finds the room full and
  // sends junk; the first leaves. Two more apps: with --metrics-max-apps 2 the second one
  // counts as _other.
  const join = (room) => ({ command: "join", streamId: room });
  const a = await raw(sb.ws("m"));
  const b = await raw(sb.ws("m"));
  const c = await raw(sb.ws("m"));
  a.send(join("room1"));
  await a.next((f) => f.definition === "joined");
  b.send(join("room1"));
  await b.next((f) => f.definition === "joined");
  await a.next((f) => f.command === "start");
  a.send({ command: "takeConfiguration", streamId: "room1", type: "offer", sdp: "v=0" });
  await b.next((f) => f.command === "takeConfiguration");
  b.send({ command: "takeCandidate", streamId: "room1", label: 0, id: "0", candidate: "c" });
  await a.next((f) => f.command === "takeCandidate");
  c.send(join("room1"));
  await c.next((f) => f.definition === "NoSpaceForNewPeer");
  c.send("{nope");
  await c.next((f) => f.definition === "invalid_message");
  a.send({ command: "leave", streamId: "room1" });
  await b.next((f) => f.command === "stop");
  await a.next((f) => f.definition === "leaved");
  const x1 = await raw(sb.ws("x1"));
  const x2 = await raw(sb.ws("x2"));
  // One after the other: the app that joins first takes the last tracked slot (two joins on
  // two connections may reach the hub in either order).
  x1.send(join("solo"));
  await x1.next((f) => f.definition === "joined");
  x2.send(join("solo"));
  await x2.next((f) => f.definition === "joined");
  const amClients = [a, b, c, x1, x2];

  // socket.io: two sockets join a room, relay an offer and an answer; an offer to nobody.
  const s1 = await sioClient(sb.url);
  const s2 = await sioClient(sb.url);
  await s1.emitWithAck("join", { room: "lobby" });
  await s2.emitWithAck("join", { room: "lobby" });
  s1.emit("offer", { target: s2.id, sdp: {} });
  await waitFor(s2, "offer");
  s2.emit("answer", { target: s1.id, sdp: {} });
  await waitFor(s1, "answer");
  const gone = await s1.emitWithAck("offer", { target: "nobody", sdp: {} });
  assert.equal(gone.error, "unknown_target");

  // PeerJS: two ids, one offer between them; a third socket asks for a taken id.
  const q = (id, token) => `key=peerjs&id=${id}&token=${token}`;
  const p1 = await pjRaw(sb.port, q("px", "t1"));
  const p2 = await pjRaw(sb.port, q("py", "t2"));
  await p1.next((f) => f.type === "OPEN");
  await p2.next((f) => f.type === "OPEN");
  p1.send({ type: "OFFER", dst: "py", payload: { sdp: "v=0" } });
  await p2.next((f) => f.type === "OFFER");
  const dup = await pjRaw(sb.port, q("px", "other"));
  await dup.next((f) => f.type === "ID-TAKEN");
  await dup.closed;

  try {
    const m = await scrape();
    const v = (name, labels) => value(m, name, labels);
    const am = { dialect: "antmedia" };
    const sio = { dialect: "socketio" };
    const pj = { dialect: "peerjs" };
    // Ant Media.
    assert.equal(v("switchboard_connections", am), 5);
    assert.equal(v("switchboard_joins_total", am), 4);
    assert.equal(v("switchboard_leaves_total", { ...am, reason: "leave" }), 1);
    assert.equal(v("switchboard_relayed_messages_total", am), 2);
    assert.equal(v("switchboard_received_messages_total", am), 9, "5 joins (one refused), 2 relays, junk, leave");
    assert.equal(v("switchboard_errors_total", { ...am, definition: "NoSpaceForNewPeer" }), 1);
    assert.equal(v("switchboard_errors_total", { ...am, definition: "invalid_message" }), 1);
    assert.equal(v("switchboard_joined_peers", { ...am, app: "m" }), 1);
    assert.equal(v("switchboard_joined_peers", { ...am, app: "x1" }), 1);
    assert.equal(v("switchboard_joined_peers", { ...am, app: "_other" }), 1);
    assert.equal(v("switchboard_joined_peers", { ...am, app: "x2" }), 0, "past the bound");
    assert.equal(v("switchboard_rooms", am), 3);
    const amBytes = amClients.reduce((n, cl) => n + cl.bytes(), 0);
    assert.equal(v("switchboard_sent_bytes_total", am), amBytes, "every byte the clients received");
    // socket.io.
    assert.equal(v("switchboard_connections", sio), 2);
    assert.equal(v("switchboard_joins_total", sio), 2);
    assert.equal(v("switchboard_relayed_messages_total", sio), 2);
    assert.equal(v("switchboard_received_messages_total", sio), 5);
    assert.equal(v("switchboard_errors_total", { ...sio, definition: "unknown_target" }), 1);
    assert.equal(v("switchboard_joined_peers", { ...sio, app: "/" }), 2);
    assert.equal(v("switchboard_rooms", sio), 1);
    // PeerJS.
    assert.equal(v("switchboard_connections", pj), 2);
    assert.equal(v("switchboard_joins_total", pj), 2);
    assert.equal(v("switchboard_relayed_messages_total", pj), 1);
    assert.equal(v("switchboard_received_messages_total", pj), 1);
    assert.equal(v("switchboard_errors_total", { ...pj, definition: "id_taken" }), 1);
    // Including the ID-TAKEN written after the hub let go of that socket.
    const pjBytes = [p1, p2, dup].reduce((n, cl) => n + cl.bytes(), 0);
    assert.equal(v("switchboard_sent_bytes_total", pj), pjBytes);
    // The rest of the process.
    assert.equal(v("switchboard_up"), 1);
    assert.ok(v("switchboard_hub_batch_seconds_count") > 0);
    assert.ok(v("process_resident_memory_bytes") > 0);
    assert.equal(v("switchboard_turn_allocations"), 0);
    assert.equal(v("switchboard_rejected_connections_total", { reason: "origin" }), 0);

    // Scrapes within a second get the same text: scraping in a loop costs the hub nothing.
    // (Each render asks the hub for its counts, which the batch histogram then counts, so
    // twenty renders would be twenty different texts.)
    const get = () => fetch(`${sb.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } }).then((r) => r.text());
    const t0 = Date.now();
    const burst = await Promise.all(Array.from({ length: 20 }, get));
    const renders = new Set(burst).size;
    // At most one render a second (a burst that spans a second boundary sees two).
    assert.ok(renders <= 2 + Math.floor((Date.now() - t0) / 1000), `${renders} renders for 20 scrapes`);
  } finally {
    for (const cl of amClients) cl.ws.close();
    for (const s of [s1, s2]) s.disconnect();
    for (const p of [p1, p2]) p.ws.close();
  }
});
