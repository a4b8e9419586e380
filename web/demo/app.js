// The demo call page served at `/` by `switchboard serve`, built on the browser SDK.
import { Switchboard, randomRoom, ERROR_MESSAGES } from "/sdk/switchboard.js";
import { meshGrid, memberLabel } from "/grid.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ROOM_RE = /^[A-Za-z0-9_.-]{1,128}$/;
/** `?mesh=1`: a group call (a mesh room of up to 8), shown as a grid of tiles. */
const MESH = params.get("mesh") === "1";

/** Exposed for tests and for curious developers (open the console). */
const demo = (window.demo = { call: null, files: [], transfers: {}, errors: [] });

/** The other person left (the stage says so instead of "waiting"). */
let peerLeft = false;
/** Why the join failed (server unreachable, not a Switchboard server), shown on the stage. */
let failure = null;
/** Why there is no camera or microphone (insecure page, blocked, none), shown all call long. */
let mediaProblem = null;

const STATE_TEXT = {
  idle: "Ready",
  connecting: "Connecting…",
  waiting: "Waiting for someone",
  calling: "Connecting to peer…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  full: "Room full",
  closed: "Left the call",
};

// ---- lobby --------------------------------------------------------------------------
const room = params.get("room");
if (room && ROOM_RE.test(room)) {
  startCall(room);
} else {
  setupLobby(room);
}

/**
 * A valid room name close to `raw`: accents dropped (café → cafe), every run of other
 * characters (spaces, emoji, ...) one "-", no leading or trailing "-"; empty if nothing is left.
 */
export function suggestRoom(raw) {
  return String(raw)
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/-*[^A-Za-z0-9_.-]+-*/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 128);
}

/** The lobby's hint line: the rule, or why a name was refused and what was put instead. */
function hint(text, bad) {
  $("room-hint").textContent = text;
  $("room-hint").classList.toggle("bad", bad);
  $("room-input").setAttribute("aria-invalid", String(bad));
}

const HINT = "Letters, digits, “-”, “_” and “.”. Two people per room.";

/** `name` is not a room name: put the closest valid one in the field and say so. */
function refuse(name) {
  const suggestion = suggestRoom(name) || randomRoom();
  $("room-input").value = suggestion;
  hint(`“${name}” can’t be a room name: use letters, digits, “-”, “_” and “.”. Suggested instead: “${suggestion}”.`, true);
}

function setupLobby(badRoom) {
  $("room-input").value = randomRoom();
  if (badRoom) refuse(badRoom);
  $("generate").onclick = () => { $("room-input").value = randomRoom(); hint(HINT, false); $("room-input").focus(); };
  $("room-input").oninput = () => hint(HINT, false);
  $("mesh-input").onchange = () => { $("name-row").hidden = !$("mesh-input").checked; };
  $("join-form").onsubmit = (e) => {
    e.preventDefault();
    const name = $("room-input").value.trim();
    if (!ROOM_RE.test(name)) {
      refuse(name);
      $("room-input").focus();
      return;
    }
    const group = $("mesh-input").checked;
    const who = $("name-input").value.trim();
    location.search = `?room=${encodeURIComponent(name)}` + (group ? "&mesh=1" : "") + (group && who ? `&name=${encodeURIComponent(who)}` : "");
  };
}

// ---- call ---------------------------------------------------------------------------
function startCall(name) {
  $("lobby").hidden = true;
  $("call").hidden = false;
  $("side").hidden = false;
  $("room-info").hidden = false;
  $("room-name").textContent = name;
  $("room-name").title = name;
  document.title = `${name} — Switchboard`;

  // `?relay=1`: media only through the TURN relay (hides this device's IP from the peer).
  const call = new Switchboard({
    room: name,
    app: params.get("app") || undefined,
    iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all",
    // `?token=`: a room token, for servers that require one (`switchboard token` prints such
    // a link).
    token: params.get("token") || undefined,
    mesh: MESH,
    name: params.get("name") || undefined,
  });
  demo.call = call;
  if (MESH) {
    demo.grid = meshGrid(call, { stage: $("stage"), local: $("local") });
    $("file-to").hidden = false;
    $("messages-empty").textContent = "Messages go to everyone in the call; files to the person you pick.";
  }

  call.on("state", ({ state }) => render(state));
  call.on("localstream", ({ stream }) => {
    // An empty stream on a <video> would hold the page's load event forever.
    $("local-video").srcObject = stream.getTracks().length ? stream : null;
    showLocalMedia();
  });
  call.on("remotestream", ({ stream }) => { if (!MESH) $("remote-video").srcObject = stream; render(call.state); });
  call.on("peerjoined", ({ peerId }) => {
    peerLeft = false;
    // In a group call the member is named once it has said its name (when connected).
    if (MESH) fileTargets();
    else systemMessage("Someone joined the call.");
  });
  call.on("peerleft", ({ peerId }) => {
    if (MESH) {
      systemMessage(`${demo.names?.[peerId] || memberLabel(call, peerId)} left the call.`);
      fileTargets();
      render(call.state);
      return;
    }
    peerLeft = true;
    $("peer-badges").replaceChildren();
    $("remote-off").hidden = true;
    systemMessage("The other person left the call.");
    render(call.state);
  });
  call.on("peermedia", ({ peerId, mic, camera, name }) => {
    if (MESH) {
      const names = (demo.names ||= {});
      if (!(peerId in names)) systemMessage(`${name || memberLabel(call, peerId)} is in the call.`);
      names[peerId] = name || memberLabel(call, peerId);
      fileTargets();
      return;
    }
    const badges = [];
    if (!mic) badges.push(badge("🔇 Muted", "peer-muted"));
    if (!camera) badges.push(badge("Camera off", "peer-camera-off"));
    $("peer-badges").replaceChildren(...badges);
    // Their last frame would stay frozen on the video: show a placeholder instead.
    $("remote-off").hidden = camera;
  });
  call.on("message", ({ data, peerId }) => {
    if (typeof data === "string") chatMessage(data, "them", MESH ? memberLabel(call, peerId) : null);
    else systemMessage(`Received ${data.byteLength} bytes of binary data.`);
  });
  call.on("fileprogress", (p) => transferProgress(p));
  call.on("file", (f) => fileReceived(f));
  call.on("error", ({ code, message, fatal }) => {
    demo.errors.push(code);
    if (code === "room_full" || code === "invalid_room") return; // shown on the stage
    if (fatal) { failure = message; render(call.state); return; } // the join failed: on the stage
    if (code === "insecure_context" || code === "camera_denied" || code === "camera_unavailable") {
      // Stays visible for the whole call: it explains the black tile and the controls.
      mediaProblem = message;
      showMediaProblem();
      return;
    }
    showBanner(message, code !== "connection_failed");
  });

  $("copy-link").onclick = async () => {
    try { await navigator.clipboard.writeText(location.href); flash("copy-label", "Copied!"); $("copy-link").title = "Copied!"; }
    catch { prompt("Copy this link:", location.href); }
  };
  $("mic-btn").onclick = () => {
    const on = call.setMicrophone(!call.micEnabled);
    setPressed("mic-btn", on);
  };
  $("cam-btn").onclick = async () => {
    $("cam-btn").disabled = true;
    try {
      await call.setCamera(!call.cameraEnabled);
    } catch (e) { showBanner(e.code ? e.message : ERROR_MESSAGES.camera_unavailable, true); }
    finally { showLocalMedia(); }
  };
  $("screen-btn").onclick = async () => {
    if (call.screenTrack) { await call.stopScreenShare(); return; }
    try { await call.shareScreen(); } catch { /* reported via the error event */ }
  };
  call.on("screenshare", ({ active }) => setPressed("screen-btn", active));
  $("stats-btn").onclick = () => {
    const show = $("stats").hidden;
    $("stats").hidden = !show;
    setPressed("stats-btn", show);
  };
  $("hangup-btn").onclick = () => { call.hangup(); };
  $("rejoin").onclick = () => location.reload();

  $("chat-form").onsubmit = (e) => {
    e.preventDefault();
    const text = $("chat-input").value;
    if (!text.trim()) return;
    try {
      call.send(text);
      chatMessage(text, "me");
      $("chat-input").value = "";
    } catch {
      showBanner(MESH ? "Messages can be sent once someone is connected." : "Messages can be sent once the other person is connected.", false);
    }
  };
  $("file-input").onchange = async () => {
    const file = $("file-input").files[0];
    $("file-input").value = "";
    if (!file) return;
    try {
      const peerId = MESH ? $("file-to").value : undefined;
      await call.sendFile(file, { peerId });
      systemMessage(MESH ? `Sent “${file.name}” to ${memberLabel(call, peerId)}.` : `Sent “${file.name}”.`);
    } catch (e) {
      showBanner(e.message || "The file could not be sent.", true);
    }
  };

  setInterval(updateStats, 1000);
  render("connecting");
  call.join().catch(() => {});
}


function showMediaProblem() {
  const p = $("media-problem");
  p.textContent = mediaProblem ? `${mediaProblem} You can still see, hear and chat with the other person.` : "";
  p.hidden = !mediaProblem;
  showLocalMedia();
}

/** Mic and camera buttons and the local tile as they really are. */
function showLocalMedia() {
  const call = demo.call;
  if (!call) return;
  setPressed("mic-btn", call.micEnabled);
  setPressed("cam-btn", call.cameraEnabled);
  const noDevices = !window.isSecureContext || !navigator.mediaDevices?.getUserMedia;
  const ended = call.state === "closed" || call.state === "full";
  for (const id of ["mic-btn", "cam-btn", "screen-btn"]) {
    $(id).disabled = ended || noDevices;
    if (noDevices) $(id).title = ERROR_MESSAGES.insecure_context;
  }
  // The microphone can only be muted if there is one.
  if (!call.localStream.getAudioTracks().length) $("mic-btn").disabled = true;
  $("local-off").hidden = call.cameraEnabled;
  $("local-off").textContent = noDevices ? "No camera (needs HTTPS)" : "Camera off";
}

function render(state) {
  const call = demo.call;
  $("status").dataset.state = state;
  $("status-text").textContent = STATE_TEXT[state] || state;
  const hasVideo = !!call?.remoteStream && call.remoteStream.getVideoTracks().length > 0;
  let text = "", sub = "", still = false, rejoin = false;
  switch (state) {
    case "connecting": text = "Connecting to the server…"; break;
    case "waiting":
      text = peerLeft ? "The other person left the call." : MESH ? "Waiting for others to join…" : "Waiting for someone to join…";
      sub = `Share this link: ${location.href}`;
      still = peerLeft;
      break;
    case "calling": text = "Connecting to your peer…"; break;
    case "connected": break;
    case "reconnecting": text = "Reconnecting…"; sub = "The call continues if your network allows it."; break;
    case "full":
      text = MESH ? "This group call is full." : "This room is full.";
      sub = MESH ? "It has as many people as a group call can hold. Try another room name." : "Two people are already in it. Try another room name.";
      still = true;
      rejoin = true;
      break;
    case "closed":
      text = failure ? "Could not join the call." : "You left the call.";
      sub = failure || "";
      still = true;
      rejoin = true;
      break;
    default: text = "";
  }
  if (MESH && (state === "calling" || state === "connected" || (state === "reconnecting" && call.peers.length))) {
    // The tiles say how each member's connection is doing.
    $("stage-message").hidden = true;
    if (state === "reconnecting") showBanner("Connection to the server lost. Reconnecting…", false);
  } else if (state === "connected" || (state === "reconnecting" && hasVideo)) {
    $("stage-message").hidden = state === "connected";
    if (state === "reconnecting") { $("stage-message").hidden = true; showBanner("Connection to the server lost. Reconnecting… the call continues.", false); }
  } else {
    $("stage-message").hidden = false;
  }
  if (state === "connected") hideBanner();
  $("stage-text").textContent = text;
  $("stage-sub").textContent = sub;
  $("stage-message").classList.toggle("still", still);
  $("rejoin").hidden = !rejoin;
  $("rejoin").textContent = state === "full" || failure ? "Try again" : "Rejoin";
  $("other-room").hidden = state !== "full";
  $("hangup-btn").disabled = state === "closed" || state === "full";
  showLocalMedia();
}

async function updateStats() {
  const call = demo.call;
  if (!call || $("stats").hidden) return;
  const fmt = (v, unit) => (v == null ? "–" : `${Math.round(v)} ${unit}`);
  if (MESH) {
    // One line per member; names are the members' own words: text, never HTML.
    const lines = [];
    for (const { peerId } of call.peers) {
      const s = await call.stats(peerId);
      const line = document.createElement("div");
      const who = document.createElement("b");
      who.textContent = memberLabel(call, peerId);
      line.append(who, ` RTT ${fmt(s?.rttMs, "ms")} · ↓ ${fmt(s?.inKbps, "kbit/s")} · ${s?.localCandidateType || "–"}↔${s?.remoteCandidateType || "–"}`);
      lines.push(line);
    }
    if (lines.length) $("stats").replaceChildren(...lines);
    else $("stats").textContent = "No connection yet";
    return;
  }
  const s = await call.stats();
  if (!s) { $("stats").textContent = "No connection yet"; return; }
  $("stats").innerHTML =
    `RTT <b>${fmt(s.rttMs, "ms")}</b><br>` +
    `↓ <b>${fmt(s.inKbps, "kbit/s")}</b> · ↑ <b>${fmt(s.outKbps, "kbit/s")}</b><br>` +
    `path <b>${s.localCandidateType || "–"}</b> ↔ <b>${s.remoteCandidateType || "–"}</b>` +
    (s.framesPerSecond ? ` · <b>${Math.round(s.framesPerSecond)}</b> fps` : "");
  demo.lastStats = s;
}

// ---- chat and files -------------------------------------------------------------------
function appendMessage(li) {
  $("messages-empty")?.remove();
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

function chatMessage(text, who, from = null) {
  const li = document.createElement("li");
  li.className = `msg ${who}`;
  if (from) {
    const name = document.createElement("span");
    name.className = "from";
    name.textContent = from;
    li.append(name, document.createTextNode(text));
  } else {
    li.textContent = text;
  }
  appendMessage(li);
}

function systemMessage(text) {
  const li = document.createElement("li");
  li.className = "msg system";
  li.textContent = text;
  appendMessage(li);
}

function transferProgress({ id, name, size, bytes, direction }) {
  let t = demo.transfers[id];
  if (!t) {
    const el = document.createElement("div");
    el.className = "transfer";
    el.dataset.direction = direction;
    el.innerHTML = `<div class="name"><span></span><span class="pct">0%</span></div><progress max="100" value="0"></progress>`;
    el.querySelector(".name span").textContent = `${direction === "send" ? "Sending" : "Receiving"} ${name}`;
    $("transfers").append(el);
    t = demo.transfers[id] = { el, history: [] };
  }
  const pct = size ? Math.min(100, Math.floor((bytes / size) * 100)) : 100;
  t.history.push(pct);
  t.el.querySelector("progress").value = pct;
  t.el.querySelector(".pct").textContent = `${pct}%`;
  if (pct >= 100) setTimeout(() => t.el.remove(), 1500);
}

/** The group call's "send files to" choice: every member, by name. */
function fileTargets() {
  const call = demo.call;
  const select = $("file-to");
  const chosen = select.value;
  select.replaceChildren(...call.peers.map(({ peerId }) => {
    const o = document.createElement("option");
    o.value = peerId;
    o.textContent = memberLabel(call, peerId);
    return o;
  }));
  if (call.peers.some((p) => p.peerId === chosen)) select.value = chosen;
}

function fileReceived({ name, size, blob }) {
  demo.files.push({ name, size, blob });
  const li = document.createElement("li");
  li.className = "msg them";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name; // a download (the blob is application/octet-stream), never a page
  a.rel = "noopener";
  a.textContent = `📎 ${name}`;
  li.append(a, document.createTextNode(` (${formatSize(size)})`));
  appendMessage(li);
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---- small helpers --------------------------------------------------------------------
function setPressed(id, on) { $(id).setAttribute("aria-pressed", String(!!on)); }
function badge(text, id) { const b = document.createElement("span"); b.className = "badge"; b.id = id; b.textContent = text; return b; }
function showBanner(text, error) { const b = $("banner"); b.textContent = text; b.classList.toggle("error", !!error); b.hidden = false; }
function hideBanner() { $("banner").hidden = true; }
function flash(id, text) { const el = $(id); const old = el.textContent; el.textContent = text; setTimeout(() => (el.textContent = old), 1500); }
