// Test harness: a real `switchboard` process, a static server for third-party SDKs and
// test pages, and headless Chromium instances (Debian's chromium, driven by playwright-core).
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { before, after } from "node:test";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../..");

/** A loopback TCP port that was free a moment ago. */
export async function freePort() {
  const s = createNetServer();
  await new Promise((ok) => s.listen(0, "127.0.0.1", ok));
  const { port } = s.address();
  await new Promise((ok) => s.close(ok));
  return port;
}

/** Polls `fn` (sync or async) until it returns a truthy value; throws `what` after `ms`. */
export async function eventually(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms (last: ${last?.message ?? last})`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/** Path of the switchboard binary under test (SWITCHBOARD_BIN, else the debug build). */
export function switchboardBin() {
  const bin = process.env.SWITCHBOARD_BIN || join(repo, "target/debug/switchboard");
  if (!existsSync(bin)) throw new Error(`switchboard binary not found at ${bin}: run cargo build first`);
  return bin;
}

/**
 * Starts `switchboard serve` on loopback (an ephemeral port unless `port` is given, e.g. to
 * restart on the same port); resolves once it listens. `netns` runs it inside a network
 * namespace, listening on `host` (default 127.0.0.1).
 */
export async function startSwitchboard(extraArgs = [], listenPort = 0, { netns = null, host = "127.0.0.1" } = {}) {
  // The built-in STUN/TURN server takes a free loopback port unless the test says where.
  const turnArgs = extraArgs.includes("--turn-listen") || extraArgs.includes("--builtin-turn")
    ? [] : ["--turn-listen", "127.0.0.1:0"];
  const args = ["serve", "--listen", `${host}:${listenPort}`, ...turnArgs, ...extraArgs];
  const [cmd, argv] = netns ? ["ip", ["netns", "exec", netns, switchboardBin(), ...args]] : [switchboardBin(), args];
  return startServer(cmd, argv, { host });
}

/**
 * Runs `cmd argv` (a Switchboard server, however it is started: a package's unit command in
 * a chroot, a container) and resolves once it says it listens on `host`. `env` is added to
 * the environment.
 */
export async function startServer(cmd, argv, { host = "127.0.0.1", env = {} } = {}) {
  const proc = spawn(cmd, argv, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", ...env },
  });
  let log = "";
  const listening = new RegExp(`listening on ${host.replace(/\./g, "\\.")}:(\\d+)`);
  const port = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`switchboard did not start:\n${log}`)), 15000);
    const onData = (d) => {
      log += d;
      const m = log.match(listening);
      if (m) { clearTimeout(timer); ok(Number(m[1])); }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code) => { clearTimeout(timer); fail(new Error(`switchboard exited (${code}):\n${log}`)); });
  });
  const exited = new Promise((ok) => proc.on("exit", (code, signal) => ok({ code, signal })));
  const turnMatch = log.match(/STUN\/TURN on port (\d+)/);
  return {
    port,
    turnPort: turnMatch ? Number(turnMatch[1]) : null,
    url: `http://${host}:${port}`,
    pid: proc.pid,
    log: () => log,
    ws: (app) => `ws://${host}:${port}/${app}/websocket`,
    /** SIGTERM by pid; resolves with the exit status. */
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGTERM");
      return exited;
    },
    exited,
  };
}

const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json", ".css": "text/css" };

/** Serves `routes` (URL prefix -> directory) on an ephemeral loopback port. */
export async function startStatic(routes) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    for (const [prefix, dir] of Object.entries(routes)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const path = normalize(join(dir, url.pathname.slice(prefix.length)));
      if (!path.startsWith(dir)) break;
      try {
        const body = await readFile(path);
        res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" });
        res.end(body);
        return;
      } catch { break; }
    }
    res.writeHead(404).end("not found");
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((ok) => server.close(ok)) };
}

/** Chromium flags verified on these machines (shared/docs/testing.md). */
export const chromiumArgs = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];

export function chromiumPath() {
  for (const p of [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/lib/chromium/chromium"]) {
    if (p && existsSync(p)) return p;
  }
  throw new Error("Chromium not found: install Debian's chromium (scripts/test.sh does)");
}

/**
 * A separate headless Chromium instance (separate instances draw video at full rate).
 * `grantMedia: false` leaves out the flag that auto-grants camera access, so getUserMedia
 * fails with NotAllowedError as when a person blocks it.
 */
export async function launch({ grantMedia = true, executablePath = chromiumPath(), extraArgs = [] } = {}) {
  const args = grantMedia ? chromiumArgs : chromiumArgs.filter((a) => a !== "--use-fake-ui-for-media-stream");
  return chromium.launch({ executablePath, headless: true, args: [...args, ...extraArgs] });
}

/** Opens `url` in a new context of `browser`, collecting console errors. */
export async function open(browser, url, viewport) {
  const context = await browser.newContext(viewport ? { viewport } : {});
  const page = await context.newPage();
  page.consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") page.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  await page.goto(url);
  return page;
}

/**
 * Waits until `fn(arg)` is truthy in the page (async functions are awaited); fails with
 * `what` and the page's recorded state after `timeout` ms.
 * (Playwright's waitForFunction does not await an async predicate: its Promise is truthy.)
 */
export async function until(page, what, fn, arg, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      if (await page.evaluate(fn, arg)) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) break;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const state = await page
    .evaluate(() => ({
      events: window.events, errors: window.errors, received: (window.received || []).slice(-10),
      demoState: window.demo?.call?.state, demoErrors: window.demo?.errors,
      stage: document.getElementById("stage-text")?.textContent,
    }))
    .catch(() => ({}));
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ""}; page state: ${JSON.stringify(state)}`);
}

/**
 * Proves video flows into `page`: the `<video id=videoId>` has a size, and `count(arg)` (a
 * page function returning frames decoded so far) passes 10 and keeps rising.
 */
export async function assertVideoFlowing(page, who, videoId, count, arg) {
  await until(page, `${who}: remote video size`, (id) => document.getElementById(id)?.videoWidth > 0, videoId);
  const framesNow = () => page.evaluate(count, arg);
  const rising = async (above, what) => {
    const deadline = Date.now() + 20000;
    let n;
    while ((n = await framesNow()) <= above) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${who}: ${what} (frames ${n})`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    return n;
  };
  const n = await rising(10, "frames decoding");
  await rising(n + 5, "frames still decoding");
}

/**
 * The official Ant Media SDK (npm, unchanged) and the test page that drives it
 * (`pages/antmedia.html`) on a static server, and two Chromium browsers. `url(ws, room,
 * media)` is the page for a server's WebSocket URL; `close()` ends the browsers and the server.
 */
export async function antMediaPages() {
  const web = await startStatic({
    "/sdk/": join(repo, "web/tests/node_modules/@antmedia/webrtc_adaptor/dist/"),
    "/pages/": join(repo, "web/tests/pages/"),
  });
  const browsers = await Promise.all([launch(), launch()]);
  return {
    web,
    browsers,
    url: (ws, room, media = true) =>
      `${web.url}/pages/antmedia.html?ws=${encodeURIComponent(ws)}&room=${room}&media=${media ? 1 : 0}`,
    close: async () => {
      await Promise.all(browsers.map((b) => b.close()));
      await web.close();
    },
  };
}

/**
 * For the tests of one file: a switchboard started with `args`, a static server for
 * web/tests/pages/ and one browser, started before the first test and stopped after the last.
 * The returned object holds `sb`, `web` and `browser` once the tests run.
 */
export function testPages(args = []) {
  const env = {};
  before(async () => {
    env.sb = await startSwitchboard(args);
    env.web = await startStatic({ "/pages/": join(repo, "web/tests/pages/") });
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    await env.web?.close();
    await env.sb?.stop();
  });
  return env;
}
