// Mesh-room helpers for pages running the browser SDK's `mesh: true` (pages/sdk-mesh.html).
import assert from "node:assert/strict";

/** The member id of a joined page. */
export const idOf = (p) => p.evaluate(() => window.call.peerId);

/** `p` decodes more and more frames from `peer`. */
export async function decodes(p, peer, who) {
  const frames = () => p.evaluate((id) => window.framesFrom(id), peer);
  const floor = (await frames()) + 5;
  const deadline = Date.now() + 25000;
  while ((await frames()) <= floor) {
    if (Date.now() > deadline) assert.fail(`${who}: no new frames from ${peer} (${await frames()})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every page decodes every other member and shows one video tile per member. */
export async function allPairsDecode(pages) {
  const ids = await Promise.all(pages.map(idOf));
  for (const [i, p] of pages.entries()) {
    for (const [j, id] of ids.entries()) if (i !== j) await decodes(p, id, `member ${i}`);
    assert.deepEqual(await p.evaluate(() => window.tiles()), ids.filter((_, j) => j !== i).sort(), `member ${i}'s videos`);
  }
}
