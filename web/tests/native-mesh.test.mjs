// The native peer in a mesh room (`switchboard peer --mesh`) with two Chromium pages running
// the browser SDK (`mesh: true`): the native peer answers the member that was there first and
// offers to the one that comes after it; chat goes both ways (to everyone, named by member);
// a page sends a file to the native peer alone; the native peer's --send reaches each page;
// both pages decode its test pattern and it records each page's camera to its own file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { switchboardBin, testPages, open, until } from "./lib/harness.mjs";

const env = testPages([]);

const pageUrl = (room) =>
  `${env.web.url}/pages/sdk-mesh.html?sdk=${encodeURIComponent(env.sb.url + "/sdk/switchboard.js")}&ws=${encodeURIComponent(env.sb.ws("WebRTCAppEE"))}&room=${room}`;

async function member(room) {
  const p = await open(env.browser, pageUrl(room));
  await until(p, "joined", () => window.call?.peerId != null);
  return p;
}

test("native peer in a mesh room with two SDK pages: chat both ways, files, media to and from each", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sb-native-mesh-"));
  const gift = join(dir, "gift.txt");
  writeFileSync(gift, "for every member\n");
  const inbox = join(dir, "inbox");
  const a = await member("trio");
  const aId = await a.evaluate(() => window.call.peerId);

  const proc = spawn(switchboardBin(), ["peer", "--server", `127.0.0.1:${env.sb.port}`, "--room", "trio", "--mesh", "--chat",
    "--no-turn", "--stats", "--play", "testsrc", "--record", join(dir, "rec.ivf"), "--receive", inbox, "--send", gift], { stdio: ["pipe", "pipe", "pipe"] });
  const out = [], err = [];
  createInterface({ input: proc.stdout }).on("line", (l) => out.push(l));
  createInterface({ input: proc.stderr }).on("line", (l) => err.push(l));
  const exited = new Promise((ok) => proc.on("exit", (code) => ok(code)));
  const waitFor = async (lines, pred, what) => {
    const deadline = Date.now() + 25000;
    while (!lines.some(pred)) {
      if (Date.now() > deadline) throw new Error(`native peer: timed out waiting for ${what}; stderr: ${err.join(" | ")}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
  };
  try {
    await waitFor(err, (l) => /joined mesh room "trio" as \d+; 1 other/.test(l), "joined");
    const nativeId = err.find((l) => l.includes("joined mesh room")).match(/ as (\d+);/)[1];
    await waitFor(err, (l) => l === `connected to ${aId}`, "connected to a (it answered a's offer)");
    const b = await member("trio");
    const bId = await b.evaluate(() => window.call.peerId);
    await waitFor(err, (l) => l === `connected to ${bId}`, "connected to b (it offered)");
    // a, there first, offered to both; the native peer offered to b (b's SDK may then
    // renegotiate to add its microphone, which the native offer had no m-line for).
    assert.deepEqual(await a.evaluate(() => window.offersMade()), { [nativeId]: 1, [bId]: 1 });

    // Media: both pages decode the native test pattern.
    for (const [p, who] of [[a, "a"], [b, "b"]]) {
      await until(p, `${who} decodes the native video`, (id) => window.framesFrom(id).then((n) => n > 10), nativeId, 25000);
    }
    // Chat: native → both pages; each page → the native peer, named.
    proc.stdin.write("hello from native\n");
    for (const p of [a, b]) {
      await until(p, "native chat", (id) => window.seen.messages.some((m) => m.from === id && m.data === "hello from native"), nativeId);
    }
    await a.evaluate(() => window.call.send("hi all, a here"));
    await b.evaluate(() => window.call.send("b here"));
    await waitFor(out, (l) => l === `${aId}: hi all, a here`, "a's chat");
    await waitFor(out, (l) => l === `${bId}: b here`, "b's chat");
    // Files: --send reached each page; a sends one to the native peer alone.
    for (const p of [a, b]) {
      await until(p, "the native's file", (id) => window.seen.files.some((f) => f.from === id && f.name === "gift.txt" && f.size === 17), nativeId);
    }
    assert.equal(await a.evaluate((id) => window.sendFileTo(id, "only for native"), nativeId), 15);
    await waitFor(err, (l) => l.startsWith(`received note.txt from ${aId}`), "a's file");
    assert.equal(readFileSync(join(inbox, "note.txt"), "utf8"), "only for native");
    assert.deepEqual(await b.evaluate(() => window.seen.files.filter((f) => f.name === "note.txt")), []);

    // The native peer records each page's camera: wait (its --stats lines) until it has
    // received enough of b's video, b being the one about to leave.
    const videoFrom = (id) => Math.max(0, ...err.map((l) => l.match(new RegExp(`^${id} stats: .* video \\d+ sent/(\\d+) received`))).filter(Boolean).map((m) => Number(m[1])));
    for (const id of [aId, bId]) await waitFor(err, () => videoFrom(id) > 30, `30 video frames from ${id}`);

    // b leaves: the native peer says so and keeps its call with a.
    await b.evaluate(() => window.call.hangup());
    await waitFor(err, (l) => l === `${bId} left`, "b left");
    await until(a, "a still decodes the native video", async (id) => {
      const n = await window.framesFrom(id);
      await new Promise((r) => setTimeout(r, 500));
      return (await window.framesFrom(id)) > n;
    }, nativeId);

    // End of stdin: the native peer leaves; a hears it; the recordings are one per member.
    proc.stdin.end();
    assert.equal(await exited, 0, err.join("\n"));
    await until(a, "native left", (id) => window.seen.left.includes(id), nativeId);
    const recs = readdirSync(dir).filter((f) => f.startsWith("rec-")).sort();
    assert.deepEqual(recs, [`rec-${aId}.ivf`, `rec-${bId}.ivf`].sort());
    for (const f of recs) {
      const s = JSON.parse(execFileSync("ffprobe", ["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", join(dir, f)]).toString()).streams[0];
      assert.equal(s.codec_name, "vp8", f);
      assert.ok(Number(s.nb_read_frames) > 10, `${f}: ${s.nb_read_frames} frames`);
    }
    await Promise.all([a, b].map((p) => p.context().close()));
  } finally {
    if (proc.exitCode === null) proc.kill("SIGTERM");
  }
});
