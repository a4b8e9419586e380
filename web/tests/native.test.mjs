// The native peer (`switchboard peer --chat`, str0m) and the demo page in headless Chromium
// chat through Switchboard, with the native side answering and offering.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
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
function nativePeer(room) {
  const proc = spawn(switchboardBin(), ["peer", "--server", `127.0.0.1:${sb.port}`, "--room", room, "--chat"], {
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
