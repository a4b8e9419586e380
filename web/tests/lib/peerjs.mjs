// Raw WebSockets for the test files (PeerJS's server protocol, or any JSON one): the frames
// they receive are collected (and their bytes counted), and `next` takes the first that matches.
import WebSocket from "ws";

/** A raw PeerJS WebSocket to the server on `port` with `query`, its frames collected. */
export async function pjRaw(port, query) {
  return rawSocket(`ws://127.0.0.1:${port}/peerjs/peerjs?${query}`);
}

/** `n` raw members of the mesh room `room` at the Ant Media WebSocket `url`, joined (they
 * never answer: a page's connections to them stay "connecting"). */
export async function rawMeshMembers(url, room, n) {
  const members = [];
  for (let i = 0; i < n; i++) {
    const s = await rawSocket(url);
    s.send({ command: "join", streamId: room, mesh: true });
    await s.next((m) => m.definition === "joined");
    members.push(s);
  }
  return members;
}

/** A raw WebSocket to `url` whose JSON text frames are collected: `next` takes the first that
 * matches (waiting up to `ms`), `closed` resolves with the close code. */
export async function rawSocket(url) {
  const ws = new WebSocket(url);
  const frames = [];
  let bytes = 0;
  ws.addEventListener("message", (e) => {
    bytes += Buffer.byteLength(e.data);
    frames.push(JSON.parse(e.data));
  });
  const closed = new Promise((ok) => ws.addEventListener("close", (e) => ok(e.code)));
  await new Promise((ok, fail) => { ws.addEventListener("open", ok); ws.addEventListener("error", fail); });
  const next = async (pred = () => true, ms = 3000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no frame; have ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const send = (m) => ws.send(typeof m === "string" ? m : JSON.stringify(m));
  // `bytes`: the UTF-8 bytes of every text frame received so far.
  return { ws, frames, closed, next, send, bytes: () => bytes };
}
