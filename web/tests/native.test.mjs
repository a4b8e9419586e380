// The native peer (`switchboard peer`, str0m) and Chromium (the demo page and the official
// Ant Media SDK) through Switchboard, with the native side answering and offering: chat,
// files, and media both ways (Chrome decodes the native VP8 test pattern; the native side
// records Chrome's fake camera and microphone, checked with ffprobe).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSwitchboard, startStatic, switchboardBin, launch, open, until, repo, assertVideoFlowing } from "./lib/harness.mjs";

let sb, browser, amsWeb;
before(async () => {
  sb = await startSwitchboard();
  browser = await launch();
  amsWeb = await startStatic({
    "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
  });
});
after(async () => {
  await browser?.close();
  await amsWeb?.close();
  await sb?.stop();
});

/** ffprobe: codec, frames counted by decoding, size of a file's first stream. */
function probe(path) {
  const out = execFileSync("ffprobe", ["-v", "error", "-count_frames", "-show_entries",
    "stream=codec_name,nb_read_frames,width,height", "-of", "json", path]).toString();
  const s = JSON.parse(out).streams[0];
  return { codec: s.codec_name, frames: Number(s.nb_read_frames), width: s.width, height: s.height };
}

/** Decodes a whole file with ffmpeg; throws on any decoding error. */
function decodesCleanly(path) {
  const err = execFileSync("ffmpeg", ["-v", "error", "-xerror", "-i", path, "-f", "null", "-"], { stdio: ["ignore", "pipe", "pipe"] }).toString();
  assert.equal(err.trim(), "", `${path} decodes without errors`);
}

/** `switchboard peer --chat` with its stdout and stderr lines collected. */
function nativePeer(room, extra = ["--chat"]) {
  const proc = spawn(switchboardBin(), ["peer", "--server", `127.0.0.1:${sb.port}`, "--room", room, ...extra], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out = [], err = [];
  createInterface({ input: proc.stdout }).on("line", (l) => out.push(l));
  createInterface({ input: proc.stderr }).on("line", (l) => err.push(l));
  const waitFor = async (lines, text, what) => {
    const deadline = Date.now() + 20000;
    while (!lines.some((l) => l.includes(text))) {
      if (Date.now() > deadline) throw new Error(`native peer: timed out waiting for ${what}; stderr: ${err.join(" | ")}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
  };
  return { proc, out, err, waitFor, exited: new Promise((ok) => proc.on("exit", (code) => ok(code))) };
}

const chatFromNative = (text) =>
  [...document.querySelectorAll(".msg.them")].some((m) => m.textContent === text);

for (const nativeFirst of [true, false]) {
  test(`demo page ↔ native peer chat (native joins ${nativeFirst ? "first: offerer" : "second: answerer"})`, async () => {
    const room = `native-${nativeFirst ? "first" : "second"}`;
    let native, page;
    if (nativeFirst) {
      native = nativePeer(room);
      await native.waitFor(native.err, "waiting for the other peer", "joined");
      page = await open(browser, `${sb.url}/?room=${room}`);
    } else {
      page = await open(browser, `${sb.url}/?room=${room}`);
      await until(page, "page waiting", () => window.demo?.call?.state === "waiting");
      native = nativePeer(room);
    }
    try {
      await native.waitFor(native.err, "connected", "data channel open");
      await until(page, "page connected", () => window.demo.call.state === "connected");
      await page.fill("#chat-input", "hello native");
      await page.press("#chat-input", "Enter");
      await native.waitFor(native.out, "hello native", "chat from the page");
      native.proc.stdin.write("hello browser\n");
      await until(page, "chat from the native peer", chatFromNative, "hello browser");
      // End of input hangs up: the page sees the peer leave, the process exits 0.
      native.proc.stdin.end();
      assert.equal(await native.exited, 0);
      await until(page, "page told the peer left", () => window.demo.call.state === "waiting");
    } finally {
      native.proc.kill();
      await page.context().close();
    }
  });
}

test("files both ways between the demo page and the native peer", async () => {
  const dir = join(tmpdir(), `sb-native-files-${process.pid}`);
  const inbox = join(dir, "inbox");
  mkdirSync(inbox, { recursive: true });
  const fromPage = randomBytes(3 * 1024 * 1024 + 7);
  writeFileSync(join(dir, "from-page.bin"), fromPage);
  const fromNative = randomBytes(2 * 1024 * 1024 + 3);
  writeFileSync(join(dir, "from-native.bin"), fromNative);
  const sha = (b) => createHash("sha256").update(b).digest("hex");

  // Page → native (--receive): the SDK announces no SHA-256; the native side reports its own.
  const page = await open(browser, `${sb.url}/?room=native-files`);
  await until(page, "page waiting", () => window.demo?.call?.state === "waiting");
  const receiver = nativePeer("native-files", ["--receive", inbox]);
  try {
    await receiver.waitFor(receiver.err, "connected", "receiver connected");
    await until(page, "page connected", () => window.demo.call.state === "connected");
    await page.setInputFiles("#file-input", join(dir, "from-page.bin"));
    await receiver.waitFor(receiver.err, "received from-page.bin", "file from the page");
    const line = receiver.err.find((l) => l.includes("received from-page.bin"));
    assert.ok(line.includes(`sha256 ${sha(fromPage)}`), line);
    assert.deepEqual(readFileSync(join(inbox, "from-page.bin")), fromPage);
    await until(page, "page says sent", () =>
      [...document.querySelectorAll(".msg.system")].some((m) => m.textContent.includes("Sent “from-page.bin”")));
  } finally {
    receiver.proc.kill();
  }
  await until(page, "page alone again", () => window.demo.call.state === "waiting");

  // Native (--send) → page: the page offers it for download with the same bytes.
  const sender = nativePeer("native-files", ["--send", join(dir, "from-native.bin")]);
  try {
    await sender.waitFor(sender.err, "confirmed by the receiver", "page confirmed the file");
    assert.equal(await sender.exited, 0);
    const got = await page.evaluate(async () => {
      const f = window.demo.files.at(-1);
      const digest = await crypto.subtle.digest("SHA-256", await f.blob.arrayBuffer());
      return { name: f.name, size: f.size, sha: [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, "0")).join("") };
    });
    assert.deepEqual(got, { name: "from-native.bin", size: fromNative.length, sha: sha(fromNative) });
  } finally {
    sender.proc.kill();
    await page.context().close();
  }
});

/** The two kinds of Chromium page: the demo call page and the official Ant Media SDK. */
const pages = {
  demo: {
    open: async (room) => {
      const page = await open(browser, `${sb.url}/?room=${room}`);
      await until(page, "page waiting or connected", () => ["waiting", "connected"].includes(window.demo?.call?.state));
      return page;
    },
    connected: (page) => until(page, "page connected", () => window.demo.call.state === "connected"),
    send: async (page, text) => { await page.fill("#chat-input", text); await page.press("#chat-input", "Enter"); },
    received: (page, text) => until(page, "chat from the native peer", chatFromNative, text),
    videoFlowing: (page) => assertVideoFlowing(page, "demo page", "remote-video", async () => (await window.demo.call.stats())?.framesDecoded ?? 0),
    videoId: "remote-video",
  },
  antmedia: {
    open: async (room) => {
      const page = await open(browser, `${amsWeb.url}/pages/antmedia.html?ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}`);
      await until(page, "AMS initialized", () => window.events.includes("initialized"));
      await page.evaluate((r) => { window.room = r; window.adaptor.join(r); }, room);
      await until(page, "AMS joined", () => window.events.includes("joined"));
      return page;
    },
    connected: (page) => until(page, "AMS data channel open", () => window.events.includes("data_channel_opened")),
    send: (page, text) => page.evaluate((t) => window.adaptor.sendData(window.room, t), text),
    received: (page, text) => until(page, "data from the native peer", (t) => window.dataReceived.includes(t), text),
    videoFlowing: (page) => assertVideoFlowing(page, "Ant Media SDK page", "remoteVideo", () => window.framesDecoded(window.room)),
    videoId: "remoteVideo",
  },
};

for (const kind of ["demo", "antmedia"]) {
  for (const nativeFirst of [true, false]) {
    test(`${kind} page ↔ native peer: data and media both ways (native ${nativeFirst ? "offerer" : "answerer"})`, async () => {
      const room = `media-${kind}-${nativeFirst ? "first" : "second"}`;
      const dir = join(tmpdir(), `sb-native-media-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const video = join(dir, `${room}.ivf`), audio = join(dir, `${room}.ogg`);
      const args = ["--chat", "--play", "test", "--record", video, "--record", audio, "--stats"];
      const p = pages[kind];
      let native, page;
      if (nativeFirst) {
        native = nativePeer(room, args);
        await native.waitFor(native.err, "waiting for the other peer", "joined");
        page = await p.open(room);
      } else {
        page = await p.open(room);
        native = nativePeer(room, args);
      }
      try {
        await native.waitFor(native.err, "connected", "data channel open");
        await p.connected(page);
        // Data both ways.
        await p.send(page, "hello native");
        await native.waitFor(native.out, "hello native", "data from the page");
        native.proc.stdin.write("hello browser\n");
        await p.received(page, "hello browser");
        // Chrome decodes the native VP8 test pattern (320×240).
        await p.videoFlowing(page);
        assert.equal(await page.evaluate((id) => document.getElementById(id).videoWidth, p.videoId), 320);
        // The native side receives Chrome's fake camera and microphone, and records them.
        await native.waitFor(native.err, "receiving video (vp8)", "Chrome's video");
        await native.waitFor(native.err, "receiving audio (opus)", "Chrome's audio");
        await native.waitFor(native.err, "path=host", "a stats line");
        await new Promise((ok) => setTimeout(ok, 2000));
        native.proc.stdin.end();
        assert.equal(await native.exited, 0, native.err.join("\n"));
      } finally {
        native.proc.kill();
        await page.context().close();
      }
      const recorded = native.err.filter((l) => l.startsWith("recorded"));
      const v = probe(video), a = probe(audio);
      console.log(`${kind}, native ${nativeFirst ? "offerer" : "answerer"}: ${recorded.join("; ")}; ffprobe video ${JSON.stringify(v)}, audio ${JSON.stringify(a)}`);
      assert.equal(v.codec, "vp8");
      assert.ok(v.width > 0 && v.height > 0, JSON.stringify(v));
      assert.ok(v.frames >= 20, `video frames ${v.frames}`);
      assert.equal(a.codec, "opus");
      assert.ok(a.frames >= 50, `audio packets ${a.frames}`);
      decodesCleanly(video);
      decodesCleanly(audio);
    });
  }
}
