// The demo page's group calls (`/?room=x&mesh=1`): a grid of tiles that adapts from 2 to 8
// tiles on desktop and phone, each member's name on its tile, per-tile connection state, an
// active-speaker highlight from audio levels, chat to everyone and files to one member.
// Layout screenshots land in web/tests/artifacts/ (demo-mesh-*.png) and are checked: every
// tile inside the stage, no two tiles overlapping, nothing overflowing the page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { startSwitchboard, launch, open, until, repo } from "./lib/harness.mjs";
import { rawMeshMembers } from "./lib/peerjs.mjs";

const DESKTOP = { width: 1280, height: 720 };
const PHONE = { width: 390, height: 844 };
const artifacts = join(repo, "web/tests/artifacts");
let sb, browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  sb = await startSwitchboard([]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await sb?.stop();
});

const groupPage = (room, name, vp = DESKTOP) => open(browser, `${sb.url}/?room=${room}&mesh=1&name=${encodeURIComponent(name)}`, vp);

/** Tiles of page `p`: label, state, whether its video shows frames. */
const tilesOf = (p) => p.evaluate(() => [...document.querySelectorAll("#tiles .tile:not(.self)")].map((t) => ({
  label: t.querySelector(".tile-label").textContent,
  state: t.dataset.state,
  video: t.querySelector("video").videoWidth > 0,
})));

/** Screenshot `p` as `name` and check the grid: `count` tiles, inside the stage, none overlapping. */
async function checkGrid(p, name, count) {
  await until(p, `${name}: ${count} tiles`, (n) => document.querySelectorAll("#tiles .tile").length === n, count);
  await new Promise((r) => setTimeout(r, 400)); // the layout follows a ResizeObserver
  await p.screenshot({ path: join(artifacts, `demo-mesh-${name}.png`) });
  const g = await p.evaluate(() => {
    const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
    return {
      stage: box(document.getElementById("stage")),
      tiles: [...document.querySelectorAll("#tiles .tile")].map(box),
      labels: [...document.querySelectorAll("#tiles .tile-label")].map(box),
      scrollW: document.documentElement.scrollWidth,
      scrollH: document.documentElement.scrollHeight,
      vw: innerWidth,
      vh: innerHeight,
    };
  });
  assert.ok(g.scrollW <= g.vw && g.scrollH <= g.vh, `${name}: the page does not overflow (${JSON.stringify(g)})`);
  const inside = (r, o) => r.x >= o.x - 0.5 && r.y >= o.y - 0.5 && r.x + r.w <= o.x + o.w + 0.5 && r.y + r.h <= o.y + o.h + 0.5;
  const overlap = (p, q) => p.x < q.x + q.w - 1 && q.x < p.x + p.w - 1 && p.y < q.y + q.h - 1 && q.y < p.y + p.h - 1;
  // Tiles share the stage: each gets a fair part of it (at least half its equal share).
  const share = (g.stage.w * g.stage.h) / count;
  for (const [i, t] of g.tiles.entries()) {
    assert.ok(inside(t, g.stage), `${name}: tile ${i} inside the stage (${JSON.stringify(t)} in ${JSON.stringify(g.stage)})`);
    assert.ok(t.w * t.h >= share * 0.35, `${name}: tile ${i} is big enough (${Math.round(t.w)}x${Math.round(t.h)})`);
    for (const u of g.tiles.slice(i + 1)) assert.ok(!overlap(t, u), `${name}: tiles overlap (${JSON.stringify([t, u])})`);
  }
  for (const [i, l] of g.labels.entries()) assert.ok(inside(l, g.tiles[i + 1]), `${name}: label ${i} inside its tile`);
}

test("demo group call: two, then four people see each other's named tiles; chat to all, a file to one; phone layout", async () => {
  const names = ["Ann", "Bo", "Cy", "Di"];
  const pages = [await groupPage("gc", names[0])];
  await until(pages[0], "waiting", () => document.getElementById("stage-text").textContent.includes("Waiting for others"));
  pages.push(await groupPage("gc", names[1]));
  for (const [i, p] of pages.entries()) {
    await until(p, `${names[i]}: the other's tile live`, async () => {
      const t = [...document.querySelectorAll("#tiles .tile:not(.self)")];
      return t.length === 1 && t[0].dataset.state === "connected" && t[0].querySelector("video").videoWidth > 0;
    });
  }
  await until(pages[0], "Bo's name", () => document.querySelector("#tiles .tile:not(.self) .tile-label").textContent.includes("Bo"));
  await until(pages[0], "Bo named in the chat", () => [...document.querySelectorAll(".msg.system")].some((m) => m.textContent === "Bo is in the call."));
  await checkGrid(pages[0], "2-desktop", 2);

  for (const n of names.slice(2)) pages.push(await groupPage("gc", n));
  for (const [i, p] of pages.entries()) {
    await until(p, `${names[i]}: three live tiles with names`, (others) => {
      const t = [...document.querySelectorAll("#tiles .tile:not(.self)")];
      const labels = t.map((x) => x.querySelector(".tile-label").textContent).sort();
      return t.length === 3 && t.every((x) => x.dataset.state === "connected" && x.querySelector("video").videoWidth > 0) &&
        JSON.stringify(labels) === JSON.stringify(others);
    }, names.filter((_, j) => j !== i).sort(), 30000);
    assert.ok(await p.evaluate(() => document.getElementById("stage-message").hidden), `${names[i]}: no placeholder over the grid`);
  }
  await checkGrid(pages[0], "4-desktop", 4);
  await pages[1].setViewportSize(PHONE);
  await checkGrid(pages[1], "4-phone", 4);

  // Somebody is speaking (Chromium's fake microphone beeps): a tile lights up.
  await until(pages[0], "active speaker", () => document.querySelectorAll("#tiles .tile.speaking").length === 1, null, 20000);

  // Chat from Ann reaches the three others, under her name.
  await pages[0].fill("#chat-input", "hello group");
  await pages[0].click("#chat-send");
  for (const p of pages.slice(1)) {
    await until(p, "chat under Ann's name", () => [...document.querySelectorAll(".msg.them")].some((m) => m.querySelector(".from")?.textContent === "Ann" && m.textContent.endsWith("hello group")));
  }
  // A file from Ann to Cy only.
  const cy = await pages[0].evaluate(() => [...document.querySelectorAll("#file-to option")].find((o) => o.textContent === "Cy")?.value);
  assert.ok(cy, "Cy can be picked as the file's recipient");
  await pages[0].selectOption("#file-to", cy);
  await pages[0].setInputFiles("#file-input", { name: "plan.txt", mimeType: "text/plain", buffer: Buffer.from("the plan") });
  await until(pages[2], "Cy got the file", () => window.demo.files.some((f) => f.name === "plan.txt" && f.size === 8));
  await until(pages[0], "Ann sees it sent", () => [...document.querySelectorAll(".msg.system")].some((m) => m.textContent === "Sent “plan.txt” to Cy."));
  for (const i of [1, 3]) assert.equal(await pages[i].evaluate(() => window.demo.files.length), 0);

  // Four more members (raw WebSockets) make eight tiles; they never answer, so their tiles
  // say they are connecting.
  const raw = await rawMeshMembers(sb.ws("WebRTCAppEE"), "gc", 4);
  await checkGrid(pages[0], "8-desktop", 8);
  assert.equal((await tilesOf(pages[0])).filter((t) => t.state === "connecting").length, 4);
  await checkGrid(pages[1], "8-phone", 8);

  // Di leaves: the others drop her tile and say so; their calls go on.
  await pages[3].click("#hangup-btn");
  for (const p of pages.slice(0, 3)) {
    await until(p, "Di's tile gone", () => ![...document.querySelectorAll(".tile-label")].some((l) => l.textContent.includes("Di")) &&
      [...document.querySelectorAll(".msg.system")].some((m) => m.textContent === "Di left the call."));
  }
  assert.equal((await tilesOf(pages[0])).filter((t) => t.video && t.state === "connected").length, 2);
  for (const s of raw) s.ws.close();
  await Promise.all(pages.map((p) => p.context().close()));
});

test("demo: the lobby's group-call choice opens a group call with the name given", async () => {
  const p = await open(browser, `${sb.url}/`, DESKTOP);
  assert.ok(await p.evaluate(() => document.getElementById("name-row").hidden));
  await p.check("#mesh-input");
  await p.fill("#room-input", "lobby-group");
  await p.fill("#name-input", "Eve");
  await p.click("button[type=submit]");
  await p.waitForURL(/\?room=lobby-group&mesh=1&name=Eve$/);
  await until(p, "a group call, alone", () => document.getElementById("tiles") && window.demo.call.mesh && window.demo.call.state === "waiting");
  await p.context().close();
});
