// Mesh rooms (docs/PROTOCOLS.md "Mesh rooms") with real WebRTC: three Chromium pages run a
// minimal client of the protocol (`pages/mesh.html`: a raw WebSocket and one
// RTCPeerConnection per member). Every ordered pair decodes the other's video; one member
// leaves and the two others keep their call; a newcomer joins and every pair is up again;
// a member beyond --max-mesh-peers is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { testPages, open, until } from "./lib/harness.mjs";

const env = testPages(["--max-mesh-peers", "3"]);

const page = async (room) => {
  const p = await open(env.browser, `${env.web.url}/pages/mesh.html?ws=${encodeURIComponent(env.sb.ws("MeshApp"))}&room=${room}`);
  await until(p, "joined", () => window.state.me !== null);
  return p;
};

const me = (p) => p.evaluate(() => window.state.me);

/** `p` decodes more and more frames from `peer`. */
async function decodes(p, peer, who) {
  const frames = () => p.evaluate((id) => window.framesFrom(id), peer);
  for (const above of [5, null]) {
    const floor = above ?? (await frames()) + 5;
    const deadline = Date.now() + 20000;
    while ((await frames()) <= floor) {
      if (Date.now() > deadline) assert.fail(`${who}: no frames from ${peer} (${await frames()})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Every ordered pair of `pages` decodes the other's video. */
async function allPairsDecode(pages) {
  const ids = await Promise.all(pages.map(me));
  for (const [i, p] of pages.entries()) {
    for (const [j, id] of ids.entries()) {
      if (i !== j) await decodes(p, id, `page ${i}`);
    }
  }
}

test("mesh: three pages in one room, every pair decodes the other; leave and rejoin", async () => {
  const [a, b, c] = [await page("g"), await page("g"), await page("g")];
  assert.deepEqual(await c.evaluate(() => window.state.roster), [await me(a), await me(b)]);
  await allPairsDecode([a, b, c]);
  // One offer per pair, made by the member that was there first.
  assert.deepEqual(await a.evaluate(() => window.offersMade()), { [await me(b)]: 1, [await me(c)]: 1 });
  assert.deepEqual(await b.evaluate(() => window.offersMade()), { [await me(c)]: 1 });
  assert.deepEqual(await c.evaluate(() => window.offersMade()), {});

  // A fourth is refused: the room holds --max-mesh-peers (3).
  const d = await open(env.browser, `${env.web.url}/pages/mesh.html?ws=${encodeURIComponent(env.sb.ws("MeshApp"))}&room=g`);
  await until(d, "refused", () => window.state.errors.some((e) => e.definition === "NoSpaceForNewPeer"));

  // b leaves (its page closes): a and c drop it and keep their call.
  const bId = await me(b);
  await b.context().close();
  for (const p of [a, c]) {
    await until(p, "peerLeft", (id) => window.state.left.includes(id) && !window.members().includes(id), bId);
  }
  await decodes(a, await me(c), "a after b left");
  await decodes(c, await me(a), "c after b left");

  // A newcomer fills the seat: every pair of the three is up.
  const e = await page("g");
  assert.deepEqual(await e.evaluate(() => window.state.roster), [await me(a), await me(c)]);
  await allPairsDecode([a, c, e]);
  for (const p of [a, c, e]) assert.deepEqual(await p.evaluate(() => window.state.errors), []);
  await Promise.all([a, c, d, e].map((p) => p.context().close()));
});
