// The demo page's group-call view (`/?room=x&mesh=1`): a grid of tiles on the stage, one per
// member plus this page's own camera, laid out for the stage's shape (2 to 9 tiles, desktop
// or phone), each with the member's name (or a short id), its connection state, microphone
// and camera badges, and a highlight on whoever is speaking (from received audio levels).

const STATE_TEXT = { connecting: "Connecting…", connected: "", reconnecting: "Reconnecting…" };
/** Received audio level (0..1) above which a member counts as speaking. */
const SPEAKING_LEVEL = 0.02;
const SPEAKER_POLL_MS = 500;
const GAP = 8;

/** The name shown for a member: its own (sanitized by the SDK) or "Guest" and its id. */
export function memberLabel(call, peerId) {
  const m = call.peers.find((p) => p.peerId === peerId);
  return m?.name || `Guest ${String(peerId).slice(-4)}`;
}

/**
 * Turns `stage` into a grid for `call` (a mesh-mode Switchboard); `local` is this page's own
 * tile, moved into the grid. Returns `{ tiles }`: the member tiles by peerId.
 */
export function meshGrid(call, { stage, local }) {
  const grid = document.createElement("div");
  grid.className = "tiles";
  grid.id = "tiles";
  stage.classList.add("mesh");
  stage.prepend(grid);
  local.classList.add("tile", "self");
  grid.append(local);
  const tiles = new Map();

  const tileFor = (peerId) => {
    let t = tiles.get(peerId);
    if (t) return t;
    const el = document.createElement("div");
    el.className = "tile";
    el.dataset.peer = peerId;
    el.dataset.state = "connecting";
    const video = Object.assign(document.createElement("video"), { autoplay: true, playsInline: true });
    const off = document.createElement("div");
    off.className = "tile-off";
    off.hidden = true;
    off.textContent = "Camera off";
    const label = document.createElement("span");
    label.className = "tile-label";
    const state = document.createElement("span");
    state.className = "tile-state";
    state.textContent = STATE_TEXT.connecting;
    el.append(video, off, state, label);
    grid.append(el);
    t = { el, video, off, label, state };
    tiles.set(peerId, t);
    relabel(peerId);
    layout();
    return t;
  };

  const relabel = (peerId) => {
    const t = tiles.get(peerId);
    if (!t) return;
    const m = call.peers.find((p) => p.peerId === peerId);
    t.label.textContent = (m?.mic === false ? "🔇 " : "") + memberLabel(call, peerId);
    t.label.title = t.label.textContent;
  };

  call.on("peerjoined", ({ peerId }) => tileFor(peerId));
  call.on("peerleft", ({ peerId }) => {
    tiles.get(peerId)?.el.remove();
    tiles.delete(peerId);
    layout();
  });
  call.on("remotestream", ({ peerId, stream }) => {
    if (peerId == null || (!tiles.has(peerId) && !stream)) return;
    tileFor(peerId).video.srcObject = stream;
  });
  call.on("peerstate", ({ peerId, state }) => {
    const t = tiles.get(peerId);
    if (!t) return;
    t.el.dataset.state = state;
    t.state.textContent = STATE_TEXT[state] ?? "";
  });
  call.on("peermedia", ({ peerId, camera }) => {
    const t = tiles.get(peerId);
    if (!t) return;
    // Their last frame would stay frozen on the tile: show a placeholder instead.
    t.off.hidden = camera;
    relabel(peerId);
  });

  /** Columns that give the largest 16:9 tiles for the stage's shape. */
  function layout() {
    const n = tiles.size + 1;
    const { width, height } = stage.getBoundingClientRect();
    let best = { cols: 1, size: -1 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = (width - GAP * (cols + 1)) / cols;
      const h = (height - GAP * (rows + 1)) / rows;
      const size = Math.min(w, (h * 16) / 9);
      if (size > best.size) best = { cols, size };
    }
    grid.style.gridTemplateColumns = `repeat(${best.cols}, minmax(0, 1fr))`;
    grid.style.gridTemplateRows = `repeat(${Math.ceil(n / best.cols)}, minmax(0, 1fr))`;
    grid.dataset.count = String(n);
  }
  new ResizeObserver(layout).observe(stage);
  layout();

  // The active speaker: the loudest member above the threshold.
  setInterval(async () => {
    let loudest = null;
    let level = SPEAKING_LEVEL;
    for (const peerId of tiles.keys()) {
      const s = await call.stats(peerId).catch(() => null);
      if (s?.audioLevel != null && s.audioLevel > level) { level = s.audioLevel; loudest = peerId; }
    }
    for (const [peerId, t] of tiles) t.el.classList.toggle("speaking", peerId === loudest);
  }, SPEAKER_POLL_MS);

  return { tiles };
}
