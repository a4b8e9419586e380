// --allowed-origins with real pages: Switchboard's SDK on a page of an allowed origin joins,
// the same page from another origin is refused (403 at the WebSocket handshake, counted), and
// the demo page on the server's own origin keeps working.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startSwitchboard, startStatic, launch, open, until, repo } from "./lib/harness.mjs";

let sb, allowed, refused, browser;

before(async () => {
  const routes = { "/pages/": join(repo, "web/tests/pages/") };
  [allowed, refused] = [await startStatic(routes), await startStatic(routes)];
  sb = await startSwitchboard(["--allowed-origins", `${allowed.url},https://*.example.org`]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await Promise.all([allowed?.close(), refused?.close()]);
  if (sb) await sb.stop();
});

const sdkPage = (web, room) => `${web.url}/pages/sdk.html?sdk=${encodeURIComponent(sb.url + "/sdk/switchboard.js")}` +
  `&ws=${encodeURIComponent(sb.ws("WebRTCAppEE"))}&room=${room}`;

const refusedCount = async () => (await (await fetch(`${sb.url}/api/v1/stats`)).json()).http.refused_origin;

test("a page of an allowed origin joins; the same page elsewhere is refused; the demo page works", async () => {
  const ok = await open(browser, sdkPage(allowed, "origin-ok"));
  await until(ok, "joined from the allowed origin", () => window.sbStates.includes("waiting"));
  assert.equal(await refusedCount(), 0);

  const bad = await open(browser, sdkPage(refused, "origin-bad"));
  await until(bad, "refused", () => window.sbErrors.length > 0 && window.call.state === "closed");
  assert.ok(!(await bad.evaluate(() => window.sbStates.includes("waiting"))));
  assert.ok((await refusedCount()) >= 1);

  const demo = await open(browser, `${sb.url}/?room=origin-demo`);
  await until(demo, "demo page joined", (w) => window.demo.call?.state === w, "waiting");
  await Promise.all([ok.close(), bad.close(), demo.close()]);
});
