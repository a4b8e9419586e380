// Group calls with the browser SDK (`new Switchboard({ room, mesh: true })`, docs/PROTOCOLS.md
// "Mesh rooms"): four Chromium pages, each with the SDK and a fake camera, in one room.
// Every ordered pair decodes the other's video; chat from one reaches the three others; a
// file goes to one member only; one member leaves and the three others drop its video and
// keep their calls; it joins again and every pair recovers; the ninth member of a full room
// (default --max-mesh-peers 8) is refused with `room_full`. Members joining at the same
// instant make one offer per pair (no glare).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startSwitchboard, testPages, open, until } from "./lib/harness.mjs";
import { rawMeshMembers } from "./lib/peerjs.mjs";
import { idOf, decodes, allPairsDecode } from "./lib/mesh.mjs";

const env = testPages([]);

const pageUrl = (room, extra = "") =>
  `${env.web.url}/pages/sdk-mesh.html?sdk=${encodeURIComponent(env.sb.url + "/sdk/switchboard.js")}&ws=${encodeURIComponent(env.sb.ws("GroupApp"))}&room=${room}${extra}`;

/** A member page that has joined `room`. */
async function member(room) {
  const p = await open(env.browser, pageUrl(room));
  await until(p, "joined", () => window.call?.peerId != null);
  return p;
}

test("mesh SDK: four pages, every pair decodes; chat to all, a file to one; leave, rejoin; the ninth is refused", async () => {
  const pages = [];
  for (let i = 0; i < 4; i++) pages.push(await member("family"));
  const [a, b, c, d] = pages;
  const ids = await Promise.all(pages.map(idOf));
  // Each newcomer learnt the members already there, in join order.
  assert.deepEqual(await d.evaluate(() => window.seen.joined), ids.slice(0, 3));
  await allPairsDecode(pages);
  // One offer per pair, from the member that was there first.
  for (const [i, p] of pages.entries()) {
    const expected = Object.fromEntries(ids.slice(i + 1).map((id) => [id, 1]));
    assert.deepEqual(await p.evaluate(() => window.offersMade()), expected, `offers of member ${i}`);
  }

  // Chat from a reaches the three others, once each, named as from a.
  await until(a, "every channel open", () => window.call.peers.every((m) => m.state === "connected"));
  assert.equal(await a.evaluate(() => window.call.send("hello all")), 3);
  for (const p of [b, c, d]) {
    await until(p, "chat", (from) => window.seen.messages.some((m) => m.from === from && m.data === "hello all"), ids[0]);
  }
  // To one: only c hears it.
  await a.evaluate((id) => window.call.send("just c", id), ids[2]);
  await until(c, "direct message", () => window.seen.messages.some((m) => m.data === "just c"));
  // A file to b alone.
  assert.equal(await a.evaluate((id) => window.sendFileTo(id, "for b only"), ids[1]), 10);
  assert.deepEqual(await b.evaluate(() => window.seen.files), [{ from: ids[0], name: "note.txt", size: 10 }]);
  for (const p of [b, d]) assert.ok(!(await p.evaluate(() => window.seen.messages.some((m) => m.data === "just c"))));
  for (const p of [c, d]) assert.deepEqual(await p.evaluate(() => window.seen.files), []);
  // Microphone state reaches everyone, per member.
  await b.evaluate(() => window.call.setMicrophone(false));
  for (const p of [a, c, d]) {
    await until(p, "b muted", (from) => window.call.peers.find((m) => m.peerId === from)?.mic === false, ids[1]);
  }

  // b hangs up: the others drop its video and keep their calls.
  await b.evaluate(() => window.call.hangup());
  for (const p of [a, c, d]) {
    await until(p, "b left", (gone) => window.seen.left.includes(gone) && !window.tiles().includes(gone), ids[1]);
  }
  await decodes(a, ids[2], "a from c after b left");
  await decodes(d, ids[0], "d from a after b left");
  // b joins again (a new id): every pair of the four is up again.
  await b.evaluate(() => window.call.join());
  const again = [a, c, d, b];
  assert.notEqual(await idOf(b), ids[1]);
  await allPairsDecode(again);

  // Four more members fill the room to eight; the ninth is refused.
  const raw = await rawMeshMembers(env.sb.ws("GroupApp"), "family", 4);
  const ninth = await open(env.browser, pageUrl("family"));
  await until(ninth, "refused", () => window.call.state === "full" && window.seen.errors.includes("room_full"));
  // The eight members never heard of it.
  for (const p of again) assert.equal(await p.evaluate(() => window.seen.errors.length), 0);
  for (const s of raw) s.ws.close();
  await Promise.all([...again, ninth].map((p) => p.context().close()));
});

test("mesh SDK: members joining at the same instant make one offer per pair (no glare)", async () => {
  for (let round = 0; round < 3; round++) {
    const room = `glare-${round}`;
    const pages = await Promise.all([0, 1, 2].map(() => open(env.browser, pageUrl(room, "&wait=1"))));
    await Promise.all(pages.map((p) => until(p, "loaded", () => window.ready)));
    await Promise.all(pages.map((p) => p.evaluate(() => window.call.join())));
    await allPairsDecode(pages);
    const ids = await Promise.all(pages.map(idOf));
    const offers = await Promise.all(pages.map((p) => p.evaluate(() => window.offersMade())));
    for (const [i, x] of ids.entries()) {
      for (const [j, y] of ids.entries()) {
        if (i >= j) continue;
        const made = (offers[i][y] || 0) + (offers[j][x] || 0);
        assert.equal(made, 1, `round ${round}: offers between ${x} and ${y}: ${JSON.stringify(offers)}`);
      }
    }
    await Promise.all(pages.map((p) => p.context().close()));
  }
});

test("mesh SDK: the server restarts mid-call; every page re-joins (new ids) and every pair recovers", async () => {
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await member("restart"));
  await allPairsDecode(pages);
  const port = env.sb.port;
  assert.equal((await env.sb.stop()).code, 0);
  for (const p of pages) await until(p, "reconnecting", () => window.call.state === "reconnecting");
  env.sb = await startSwitchboard([], port);
  // Each page re-joins (the new server gives new ids) and the pairs are negotiated afresh.
  for (const p of pages) {
    await until(p, "re-joined, two members", () => window.call.peers.length === 2 && window.seen.left.length >= 2, null, 30000);
  }
  assert.equal(new Set(await Promise.all(pages.map(idOf))).size, 3);
  await allPairsDecode(pages);
  await Promise.all(pages.map((p) => p.context().close()));
});
