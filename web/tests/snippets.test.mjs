// The README's and the SDK README's code, run as written: each `<!-- tested: NAME -->` block
// is extracted from the Markdown, saved as a page on another origin (a static server on
// 127.0.0.1, while Switchboard is reached as localhost), and opened in two headless Chromium
// instances. The only change made is the port: the snippets say localhost:5080, the test's
// Switchboard listens on an ephemeral port.
// Also: join() on a wrong URL rejects within its documented bound, with a typed error.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSwitchboard, startStatic, launch, open, until, repo } from "./lib/harness.mjs";

let sb, web, dir, browserA, browserB;

/** The ```html block after `<!-- tested: name -->` in `file`, de-indented. */
function snippet(file, name) {
  const md = readFileSync(join(repo, file), "utf8");
  const at = md.indexOf(`<!-- tested: ${name}`);
  assert.ok(at >= 0, `${file} has no snippet ${name}`);
  const m = md.slice(at).match(/\n([ \t]*)```html\n([\s\S]*?)\n[ \t]*```/);
  assert.ok(m, `${file}: no html block after ${name}`);
  const indent = m[1];
  return m[2].split("\n").map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join("\n");
}

/** Saves snippet `name` of `file` as a page; returns its URL (on the static server's origin). */
function page(file, name) {
  const html = snippet(file, name).replaceAll("localhost:5080", `localhost:${sb.port}`);
  assert.ok(html.includes(`localhost:${sb.port}`), `${name} names the server`);
  writeFileSync(join(dir, `${name}.html`), html);
  return `${web.url}/snip/${name}.html`;
}

/** `<video id=id>` shows frames: it has a size and its playback position advances. */
async function playing(p, who, id) {
  await until(p, `${who}: #${id} has a picture`, (i) => document.getElementById(i)?.videoWidth > 0, id);
  const t0 = await p.evaluate((i) => document.getElementById(i).currentTime, id);
  await until(p, `${who}: #${id} plays (autoplay)`, ([i, t]) => document.getElementById(i).currentTime > t + 0.5, [id, t0]);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sb-snippets-"));
  sb = await startSwitchboard();
  web = await startStatic({ "/snip/node_modules/": join(repo, "web/tests/node_modules/"), "/snip/": dir });
  [browserA, browserB] = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all([browserA?.close(), browserB?.close()]);
  await web?.close();
  if (sb) await sb.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("README quick start step 3: two tabs of the page are in a call, video plays", async () => {
  const url = page("README.md", "readme-quickstart");
  const [a, b] = await Promise.all([open(browserA, url), open(browserB, url)]);
  try {
    await Promise.all([playing(a, "A", "them"), playing(b, "B", "them"), playing(a, "A", "me")]);
    // (The browser's own favicon request gets the static server's 404: not the snippet's.)
    const errors = [...a.consoleErrors, ...b.consoleErrors].filter((e) => !/^Failed to load resource: .* 404/.test(e));
    assert.deepEqual(errors, []);
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

test("README step 4: the official Ant Media SDK snippet, two tabs in a call", async () => {
  const url = page("README.md", "readme-antmedia");
  const [a, b] = await Promise.all([open(browserA, url), open(browserB, url)]);
  try {
    await Promise.all([playing(a, "A", "remoteVideo"), playing(b, "B", "remoteVideo")]);
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

test("SDK README complete call page: video both ways and chat, from another origin", async () => {
  const url = `${page("web/sdk/README.md", "sdk-call-page")}?room=sdk-readme`;
  const [a, b] = await Promise.all([open(browserA, url), open(browserB, url)]);
  try {
    await Promise.all([playing(a, "A", "them"), playing(b, "B", "them")]);
    await until(a, "A connected", () => document.getElementById("state").textContent === "connected");
    await until(a, "A channel open", () => /connected: chat/.test(document.getElementById("log").textContent));
    await a.fill("#text", "hello from the README page");
    await a.click("#send");
    await until(b, "B got the chat", () => /them: hello from the README page/.test(document.getElementById("log").textContent));
  } finally {
    await Promise.all([a.context().close(), b.context().close()]);
  }
});

/**
 * join() against `wsUrl` from a page on the static server's origin: resolves to the error's
 * code, message and URL, the elapsed time, the final state and whether every camera and
 * microphone track was stopped.
 */
async function failedJoin(browser, wsUrl, connectTimeout) {
  const p = await open(browser, `${web.url}/snip/blank.html`);
  try {
    return await p.evaluate(async ([sdk, url, connectTimeout]) => {
      const { Switchboard } = await import(sdk);
      const call = new Switchboard({ room: "wrong-url", url, connectTimeout });
      const tracks = [];
      call.on("localstream", ({ stream }) => tracks.push(...stream.getTracks()));
      const started = performance.now();
      // The first connection starts once the camera is open: time from there.
      let connecting = started;
      call.on("state", ({ state }) => { if (state === "connecting") connecting = performance.now(); });
      try {
        await call.join();
        return { joined: true };
      } catch (e) {
        return {
          name: e.name, code: e.code, message: e.message, detailUrl: e.detail?.url,
          elapsed: performance.now() - connecting, state: call.state, hadTracks: tracks.length,
          stopped: tracks.every((t) => t.readyState === "ended"),
        };
      }
    }, [`${sb.url.replace("127.0.0.1", "localhost")}/sdk/switchboard.js`, wsUrl, connectTimeout]);
  } finally {
    await p.context().close();
  }
}

test("join() on a wrong port rejects with server_unreachable naming the URL, camera released", async () => {
  writeFileSync(join(dir, "blank.html"), "<!doctype html><title>blank</title>");
  // A port with nothing listening (taken from the OS, then released).
  const port = await new Promise((ok) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const url = `ws://127.0.0.1:${port}/WebRTCAppEE/websocket`;
  const r = await failedJoin(browserA, url);
  assert.equal(r.name, "SwitchboardError", JSON.stringify(r));
  assert.equal(r.code, "server_unreachable");
  assert.ok(r.message.includes(url), r.message);
  assert.equal(r.detailUrl, url);
  // Documented bound: connectTimeout (10 s) + 2 s. A refused port fails at once.
  assert.ok(r.elapsed < 12000, `rejected after ${r.elapsed} ms`);
  assert.equal(r.state, "closed");
  assert.ok(r.hadTracks > 0 && r.stopped, `camera and microphone released: ${JSON.stringify(r)}`);
});

test("join() on an HTTP server that is not Switchboard rejects with not_switchboard", async () => {
  writeFileSync(join(dir, "blank.html"), "<!doctype html><title>blank</title>");
  // The static server answers 404 to the WebSocket upgrade.
  const url = `${web.url.replace("http:", "ws:")}/WebRTCAppEE/websocket`;
  const r = await failedJoin(browserA, url);
  assert.equal(r.code, "not_switchboard", JSON.stringify(r));
  assert.ok(r.message.includes(url) && /not a Switchboard endpoint/.test(r.message), r.message);
  assert.equal(r.state, "closed");
  assert.ok(r.stopped);
});

test("join() on a server that never answers rejects after connectTimeout", async () => {
  writeFileSync(join(dir, "blank.html"), "<!doctype html><title>blank</title>");
  // Accepts TCP connections and never says a word.
  const held = [];
  const silent = createServer((s) => held.push(s));
  await new Promise((ok) => silent.listen(0, "127.0.0.1", ok));
  try {
    const url = `ws://127.0.0.1:${silent.address().port}/WebRTCAppEE/websocket`;
    const r = await failedJoin(browserA, url, 1500);
    assert.equal(r.code, "server_unreachable", JSON.stringify(r));
    assert.ok(/no answer within 1500 ms/.test(r.message) && r.message.includes(url), r.message);
    // connectTimeout, then at most 2 s telling "unreachable" from "not Switchboard".
    assert.ok(r.elapsed >= 1400 && r.elapsed < 1500 + 2000 + 1000, `rejected after ${r.elapsed} ms`);
    assert.ok(r.stopped);
  } finally {
    for (const s of held) s.destroy();
    await new Promise((ok) => silent.close(ok));
  }
});
