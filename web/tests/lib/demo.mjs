// The demo call page (served at `/`) as a user opens it: two pages in one room, in a call.
import { open, until, assertVideoFlowing } from "./harness.mjs";

/** Waits until the demo page's call is in `want` ("waiting", "connected", ...). */
export const waitDemoState = (page, who, want) =>
  until(page, `${who} state ${want}`, (w) => window.demo.call?.state === w, want);

/** The remote video of the demo page has a size and its frames keep decoding. */
export const assertDemoVideoFlowing = (page, who) =>
  assertVideoFlowing(page, who, "remote-video", async () => (await window.demo.call.stats())?.framesDecoded ?? 0);

/**
 * Opens `urlA` in `browserA` and `urlB` in `browserB` (demo page links to one room, maybe on
 * different servers), and waits until both are connected with video decoding both ways.
 * Returns the two pages.
 */
export async function demoCall(browserA, urlA, browserB, urlB, viewports = []) {
  const a = await open(browserA, urlA, viewports[0]);
  const b = await open(browserB, urlB, viewports[1]);
  await Promise.all([waitDemoState(a, "A", "connected"), waitDemoState(b, "B", "connected")]);
  await Promise.all([assertDemoVideoFlowing(a, "A"), assertDemoVideoFlowing(b, "B")]);
  return [a, b];
}
