// socket.io-client helpers shared by the test files: a client that records every event it
// receives, and a wait for one of them.
import { io } from "socket.io-client";
import { until, assertVideoFlowing } from "./harness.mjs";

/** Records every event `socket` receives in `socket.got` ({event, args}); returns it. */
export function recording(socket) {
  socket.got = [];
  socket.onAny((event, ...args) => socket.got.push({ event, args }));
  return socket;
}

/** A connected, recording socket.io client of `url` (no reconnection, a new Manager). */
export async function sioClient(url, transports = ["websocket"]) {
  const socket = recording(io(url, { transports, reconnection: false, forceNew: true }));
  await new Promise((ok, fail) => {
    socket.once("connect", ok);
    socket.once("connect_error", fail);
  });
  return socket;
}

/** The first argument of the first `event` received by a recording socket that satisfies
 * `pred`, waiting up to `ms`. */
export async function waitFor(socket, event, pred = () => true, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = socket.got.find((g) => g.event === event && pred(g.args[0]));
    if (hit) return hit.args[0];
    if (Date.now() > deadline) throw new Error(`no ${event} within ${ms} ms; got ${JSON.stringify(socket.got)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Two pages of the seed call page (`pages/seed.html`, socket.io-client in Chromium): `a` calls
 * `b` by its socket id; both connect and decode the other's video.
 */
export async function seedCall(a, b) {
  await a.evaluate(() => window.ready);
  await b.evaluate(() => window.ready);
  const bId = await b.evaluate(() => window.socket.id);
  await a.evaluate((id) => window.call(id), bId);
  await until(a, "A connected", () => window.pc.connectionState === "connected");
  await until(b, "B connected", () => window.pc.connectionState === "connected");
  await assertVideoFlowing(a, "seed page A", "remote", () => window.framesDecoded());
  await assertVideoFlowing(b, "seed page B", "remote", () => window.framesDecoded());
}
