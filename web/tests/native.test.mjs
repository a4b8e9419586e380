// The native peer (`switchboard peer --chat`, str0m) and the demo page in headless Chromium
// chat through Switchboard, with the native side answering and offering.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSwitchboard, switchboardBin, launch, open, until } from "./lib/harness.mjs";

let sb, browser;
before(async () => {
  sb = await startSwitchboard();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await sb?.stop();
});

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
