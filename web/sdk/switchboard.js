// Switchboard browser SDK: a peer-to-peer call over Switchboard (or Ant Media Server) P2P
// signaling. Plain ES modules, no build step, no dependencies.
//
//   import { Switchboard } from "/sdk/switchboard.js";
//   const call = new Switchboard({ room: "demo" });
//   call.on("remotestream", ({ stream }) => (remoteVideo.srcObject = stream));
//   await call.join();
//
// Protocol: Ant Media P2P (join / start / takeConfiguration / takeCandidate / leave). The peer
// told to `start` makes the offer. Negotiation follows the "perfect negotiation" pattern, so
// either side may renegotiate (ICE restart, adding a camera) without glare.
//
// The SDK is split into modules beside this one (errors.js, names.js, files.js, stats.js),
// loaded by relative imports; this entry re-exports what they make public, so importing
// /sdk/switchboard.js is all a page needs.

import { ERROR_MESSAGES, SwitchboardError } from "./errors.js";
import { defaultUrl, randomRoom, safeDisplayName, safeFileName } from "./names.js";
import { CONTROL, PeerLink } from "./link.js";

export { ERROR_MESSAGES, SwitchboardError, defaultUrl, randomRoom, safeDisplayName, safeFileName };

const PING_MS = 3000;
const ICE_CONFIG_WAIT_MS = 2000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const CONNECT_TIMEOUT_MS = 10000;
/** Most members a mesh room's page connects to (the server allows at most 32 in a room). */
const MAX_MESH_LINKS = 31;
const PROBE_TIMEOUT_MS = 2000;

/**
 * A call in one room. Events (listen with `on(name, fn)`, which returns an unsubscribe
 * function): `state`, `joined`, `localstream`, `remotestream`, `peerjoined`, `peerleft`,
 * `peermedia`, `message`, `fileprogress`, `file`, `peermessage`, `error`.
 */
export class Switchboard {
  /**
   * @param {object} options see switchboard.d.ts
   */
  constructor(options = {}) {
    if (!options.room) throw new TypeError("Switchboard: options.room is required");
    this.room = String(options.room);
    this.url = options.url || defaultUrl(options.app);
    this.media = options.media === undefined ? { audio: true, video: true } : options.media;
    this.reconnect = options.reconnect !== false;
    this.connectTimeout = options.connectTimeout > 0 ? options.connectTimeout : CONNECT_TIMEOUT_MS;
    this.maxFileSize = options.maxFileSize || 512 * 1024 * 1024;
    this.log = options.debug ? (...a) => console.debug("[switchboard]", ...a) : () => {};
    this.iceServers = options.iceServers || null;
    this.askIce = !options.iceServers;
    this.iceTransportPolicy = options.iceTransportPolicy === "relay" ? "relay" : "all";
    // A room token (string), or a function returning one (or a promise of one), called
    // before every join: the first and each re-join after a reconnect.
    this.token = options.token || null;

    this.state = "idle";
    this.localStream = new MediaStream();
    this.micEnabled = false;
    this.cameraEnabled = false;
    this.screenTrack = null;

    this._listeners = new Map();
    this._ws = null;
    this._attempt = 0;
    this._closed = false;
    this._joined = false;
    this._everOpened = false;
    // Set by join() until the first `joined`: failures then end the join instead of retrying.
    this._firstConnect = null;
    this._pingTimer = null;
    this._retryTimer = null;
    this._iceWaiters = [];
    // Mesh room (a group call): one link per other member, keyed by its peerId; a 1:1 call
    // has one link, keyed by null.
    this.mesh = !!options.mesh;
    /** The display name told to the other members with the microphone and camera state. */
    this.name = safeDisplayName(options.name);
    /** This page's id in a mesh room (given by the server on each join), else null. */
    this.peerId = null;
    this._links = new Map();
  }

  // ---- events -------------------------------------------------------------------------

  /** Subscribes `fn(detail)` to event `name`; returns an unsubscribe function. */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this._listeners.get(name)?.delete(fn);
  }

  _emit(name, detail = {}) {
    this.log("event", name, detail);
    for (const fn of this._listeners.get(name) || []) {
      try { fn(detail); } catch (e) { console.error(e); }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state });
  }

  _error(code, detail, fatal = false, message = undefined) {
    const error = new SwitchboardError(code, detail, message);
    this._emit("error", { code, message: error.message, detail, fatal, error });
    return error;
  }

  // ---- lifecycle ----------------------------------------------------------------------

  /**
   * Opens the camera/microphone (per `media`), connects to the server and joins the room.
   * Resolves once joined; keeps reconnecting in the background afterwards.
   */
  async join() {
    this._closed = false;
    await this._openMedia();
    return new Promise((resolve, reject) => {
      const done = (error) => {
        offJoined();
        offFatal();
        clearTimeout(timer);
        this._firstConnect = null;
        if (error) reject(error);
        else resolve();
      };
      const offJoined = this.on("joined", () => done());
      const offFatal = this.on("error", (e) => { if (e.fatal) done(e.error); });
      // The first connection is bounded: no `joined` within connectTimeout ends the join.
      const timer = setTimeout(() => this._firstConnectFailed("no answer within " + this.connectTimeout + " ms"), this.connectTimeout);
      // opened: the WebSocket upgrade succeeded; spoke: a Switchboard message arrived.
      this._firstConnect = { opened: false, spoke: false, busy: false };
      this._connect();
    });
  }

  /**
   * The first connection of a join() failed: release camera and microphone, and reject the
   * join with `server_busy`, `not_switchboard` (something answers HTTP at that address, but
   * not Switchboard's WebSocket) or `server_unreachable` (nothing answers), naming the URL.
   */
  async _firstConnectFailed(why) {
    const first = this._firstConnect;
    if (!first || this._closed) return;
    this._firstConnect = null;
    this._closed = true;
    clearTimeout(this._retryTimer);
    this._stopSocket();
    this._releaseMedia();
    this._setState("closed");
    let code;
    if (first.busy) code = "server_busy";
    else if (first.spoke) code = "server_unreachable";
    else if (first.opened) code = "not_switchboard";
    else code = (await this._answersHttp()) ? "not_switchboard" : "server_unreachable";
    const text = code === "server_busy" ? "The server is busy (at its connection limit); try again later."
      : code === "not_switchboard" ? `${this.url} is not a Switchboard endpoint: something answers there, but not Switchboard's WebSocket (check the host, port and /<app>/websocket path).`
        : `Cannot reach the Switchboard server at ${this.url} (${why}).`;
    this._error(code, { url: this.url, reason: why }, true, text);
  }

  /** Whether anything answers HTTP at the signaling URL's address (an opaque answer is enough). */
  async _answersHttp() {
    try {
      const http = this.url.replace(/^ws(s?):/, "http$1:");
      await fetch(http, { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      return true;
    } catch {
      return false;
    }
  }

  /** Leaves the room, closes the call and stops the camera and microphone. */
  hangup() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    if (this._ws && this._ws.readyState === WebSocket.OPEN && this._joined) {
      this._send({ command: "leave", streamId: this.room });
    }
    this._closePeers();
    this._releaseMedia();
    this._stopSocket();
    this._setState("closed");
  }

  /** Stops the camera, microphone and screen capture (their indicators go off). */
  _releaseMedia() {
    for (const t of this.localStream.getTracks()) { t.stop(); this.localStream.removeTrack(t); }
    this.screenTrack?.stop();
    this.screenTrack = null;
    this.micEnabled = false;
    this.cameraEnabled = false;
    this._emit("localstream", { stream: this.localStream });
  }

  async _openMedia() {
    const want = this.media || {};
    if (!want.audio && !want.video) return;
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      this._error("insecure_context");
      this.micEnabled = false;
      this.cameraEnabled = false;
      this._emit("localstream", { stream: this.localStream });
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: !!want.audio, video: want.video || false });
      for (const t of stream.getTracks()) this.localStream.addTrack(t);
    } catch (e) {
      // Try audio alone when the camera is the problem.
      if (want.video && want.audio && e.name !== "NotAllowedError") {
        try {
          const s = await navigator.mediaDevices.getUserMedia({ audio: true });
          for (const t of s.getTracks()) this.localStream.addTrack(t);
        } catch { /* reported below */ }
      }
      this._error(e.name === "NotAllowedError" || e.name === "SecurityError" ? "camera_denied" : "camera_unavailable", e.message);
    }
    this.micEnabled = this.localStream.getAudioTracks().length > 0;
    this.cameraEnabled = this.localStream.getVideoTracks().length > 0;
    this._emit("localstream", { stream: this.localStream });
  }

  // ---- signaling ----------------------------------------------------------------------

  _connect() {
    if (this._closed) return;
    this._setState(this._everOpened ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      // A malformed URL, or ws:// from an https:// page (mixed content).
      if (this._firstConnect) {
        this._firstConnect.opened = false;
        this._firstConnectFailed(e.message);
      } else {
        this._error("server_unreachable", e.message, true, `Cannot connect to ${this.url}: ${e.message}`);
      }
      return;
    }
    this._ws = ws;
    ws.onopen = async () => {
      this._attempt = 0;
      this._everOpened = true;
      if (this._firstConnect) this._firstConnect.opened = true;
      this._pingTimer = setInterval(() => this._send({ command: "ping" }), PING_MS);
      const join = { command: "join", streamId: this.room, multiPeer: false, mode: "both" };
      if (this.mesh) join.mesh = true;
      if (this.token) {
        try {
          const token = typeof this.token === "function" ? await this.token() : this.token;
          if (token) join.token = String(token);
        } catch (e) {
          this._fail("unauthorized", { reason: `the token function failed: ${e?.message || e}` });
          return;
        }
        if (this._ws !== ws) return; // closed while the token was fetched
      }
      this._send(join);
      // After the join: the server hands TURN credentials to the token the join carried.
      if (this.askIce) this._send({ command: "getIceServerConfig" });
    };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (this._firstConnect && typeof msg?.command === "string") this._firstConnect.spoke = true;
      this._onSignal(msg).catch((err) => this.log("signal handling failed", err));
    };
    ws.onclose = () => {
      clearInterval(this._pingTimer);
      this._joined = false;
      if (this._ws !== ws || this._closed) return;
      this._ws = null;
      if (this._firstConnect) {
        // Never joined: a refused port, a 404, or a close before `joined`. Say so now.
        this._firstConnectFailed("the connection closed before joining");
        return;
      }
      if (!this.reconnect) { this._setState("closed"); return; }
      this._setState("reconnecting");
      const delay = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
      this._attempt++;
      this._retryTimer = setTimeout(() => this._connect(), delay);
    };
  }

  _stopSocket() {
    clearInterval(this._pingTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) { ws.onclose = null; ws.close(1000); }
  }

  _send(msg) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  async _onSignal(msg) {
    switch (msg.command) {
      case "notification":
        if (msg.definition === "joined") {
          this._joined = true;
          if (this.mesh) await this._onRoster(msg);
          this._setState(this._callState());
          this._emit("joined", { room: this.room, peerId: this.peerId, peers: this.mesh ? [...this._links.keys()] : [] });
        } else if (msg.definition === "peerJoined" && this.mesh && msg.peerId != null && String(msg.peerId) !== this.peerId) {
          this._dropLink(msg.peerId); // a stale link under a reused id
          if (this._linkFor(msg.peerId)) this._emit("peerjoined", { peerId: String(msg.peerId) });
        } else if (msg.definition === "peerLeft" && this.mesh && msg.peerId != null) {
          if (this._dropLink(msg.peerId)) this._emit("peerleft", { peerId: String(msg.peerId) });
          this._linkChanged();
        } else if (msg.definition === "server_will_stop") {
          this._setState("reconnecting");
        }
        return;
      case "iceServerConfig":
        this.iceServers = iceServersFrom(msg);
        // After a re-join the existing connections get the fresh TURN credentials, so their
        // next ICE restart does not use expired ones.
        if (this.askIce) for (const link of this._links.values()) link.setIceServers(this.iceServers);
        for (const w of this._iceWaiters.splice(0)) w();
        return;
      case "start": {
        const link = this._linkOf(msg);
        if (!link) return;
        if (!this.mesh) this._emit("peerjoined", { peerId: null });
        return link.onStart();
      }
      case "takeConfiguration": {
        const link = this._linkOf(msg);
        if (!link) return;
        if (!this.mesh && !link.pc && msg.type === "offer") this._emit("peerjoined", { peerId: null });
        return link.onDescription({ type: msg.type, sdp: msg.sdp });
      }
      case "takeCandidate":
        return this._linkOf(msg)?.onCandidate(msg);
      case "stop":
        if (this.mesh) return;
        this._dropLink(null);
        this._emit("peerleft", { peerId: null });
        if (!this._closed) this._setState(this._joined ? "waiting" : "reconnecting");
        return;
      case "peerMessageCommand": {
        const peerId = this.mesh ? (msg.peerId == null ? null : String(msg.peerId)) : null;
        if (msg.definition === CONTROL && msg.data && typeof msg.data === "object") {
          const media = { mic: !!msg.data.mic, camera: !!msg.data.camera, name: safeDisplayName(msg.data.name) };
          const link = this._links.get(peerId);
          if (link) link.media = media;
          this._emit("peermedia", { ...media, peerId });
        } else {
          this._emit("peermessage", { definition: msg.definition, data: msg.data, peerId });
        }
        return;
      }
      case "error":
        return this._onServerError(msg);
      default:
        return;
    }
  }

  _onServerError(msg) {
    switch (msg.definition) {
      case "NoSpaceForNewPeer":
        // Nobody can join until someone leaves: stop here instead of retrying.
        this._closed = true;
        this._stopSocket();
        this._releaseMedia();
        this._setState("full");
        this._error("room_full", msg, true, this.mesh ? "This group call is full." : undefined);
        return;
      case "invalidStreamName":
      case "noStreamNameSpecified":
        this._closed = true;
        this._stopSocket();
        this._setState("closed");
        this._error("invalid_room", msg, true);
        return;
      case "unauthorized_access":
        // A missing, expired or wrong token: retrying with the same one cannot help.
        this._fail("unauthorized", msg);
        return;
      case "max_call_reached":
        this._fail("call_time_over", msg);
        return;
      case "highResourceUsage":
        if (this._firstConnect) this._firstConnect.busy = true;
        this._error("server_busy", msg);
        return;
      case "room_mode_mismatch":
        // A group call joined as 1:1, or the other way round (or no mesh rooms here).
        this._fail("room_mode_mismatch", msg);
        return;
      case "no_peer_associated_before":
        return; // a relay raced with the peer leaving
      default:
        this._error("server_error", msg);
    }
  }

  /** Ends the call for good with error `code` (fatal: a pending join() rejects with it). */
  _fail(code, msg) {
    this._closed = true;
    this._firstConnect = null;
    this._stopSocket();
    this._closePeers();
    this._releaseMedia();
    this._setState("closed");
    this._error(code, msg, true);
  }

  async _iceServers() {
    if (this.iceServers) return this.iceServers;
    await new Promise((resolve) => {
      this._iceWaiters.push(resolve);
      setTimeout(resolve, ICE_CONFIG_WAIT_MS);
    });
    return this.iceServers || [];
  }

  // ---- peer connections ---------------------------------------------------------------

  /**
   * The link to `peerId` (mesh), or the one link of a 1:1 call (created on first use); null
   * when a mesh room would need more than MAX_MESH_LINKS (whatever a server says).
   */
  _linkFor(peerId) {
    const key = this.mesh ? String(peerId) : null;
    let link = this._links.get(key);
    if (!link) {
      if (this._links.size >= MAX_MESH_LINKS) return null;
      link = new PeerLink(this, key);
      this._links.set(key, link);
    }
    return link;
  }

  /** The link a relayed message is about, or null (mesh: from an unknown member). */
  _linkOf(msg) {
    if (!this.mesh) return this._linkFor(null);
    if (msg.peerId == null || String(msg.peerId) === this.peerId) return null;
    return this._linkFor(msg.peerId);
  }

  /** Sends a relay to the link's member (mesh: addressed by `peerId`). */
  _signal(msg, peerId) {
    const full = { ...msg, streamId: this.room };
    if (peerId != null) full.peerId = peerId;
    this._send(full);
  }

  _dropLink(peerId) {
    const key = this.mesh ? String(peerId) : null;
    const link = this._links.get(key);
    if (!link) return false;
    link.close();
    this._links.delete(key);
    return true;
  }

  _closePeers() {
    for (const link of this._links.values()) link.close();
    this._links.clear();
  }

  /** A link changed state: the call's state follows (1:1: the link's; mesh: the best one's). */
  _linkChanged() {
    if (this._closed) return;
    this._setState(this._callState());
  }

  _callState() {
    const links = [...this._links.values()];
    if (!this._joined) return "reconnecting";
    if (links.some((l) => l.state === "connected")) return "connected";
    if (!this.mesh && links.some((l) => l.state === "reconnecting")) return "reconnecting";
    const calling = this.mesh ? links.length > 0 : links.some((l) => l.pc);
    return calling ? "calling" : "waiting";
  }

  async _onRoster(msg) {
    // Joined (again): members drop a link to a member that left, so every link this page
    // had is gone on the other side; the members there now offer afresh (they were first).
    for (const peerId of [...this._links.keys()]) {
      this._dropLink(peerId);
      this._emit("peerleft", { peerId });
    }
    this.peerId = msg.peerId == null ? null : String(msg.peerId);
    for (const p of Array.isArray(msg.peers) ? msg.peers : []) {
      if (p == null || String(p) === this.peerId || !this._linkFor(p)) continue;
      this._emit("peerjoined", { peerId: String(p) });
    }
  }

  // ---- data ---------------------------------------------------------------------------

  /**
   * Sends text or binary (ArrayBuffer, typed array, Blob) over the data channel: in a mesh
   * room to every member whose channel is open, or to `peerId` alone.
   */
  send(data, peerId) {
    if (!this.mesh || peerId != null) {
      const link = this._links.get(this.mesh ? String(peerId) : null);
      if (!link) throw new SwitchboardError("not_connected");
      link.send(data);
      return 1;
    }
    const open = [...this._links.values()].filter((l) => l.channelOpen);
    if (!open.length) throw new SwitchboardError("not_connected");
    for (const link of open) link.send(data);
    return open.length;
  }

  /**
   * Sends a File or Blob on its own data channel (in a mesh room to `options.peerId`).
   * `onProgress(p)` is called as it goes with the same object as the `fileprogress` event
   * (`{ id, name, size, bytes, direction }`, plus `sent`, an alias of `bytes` kept for older
   * pages); resolves when the other side confirms it has every byte.
   */
  sendFile(file, { onProgress, peerId } = {}) {
    const link = this._links.get(this.mesh ? String(peerId) : null);
    if (!link) return Promise.reject(new SwitchboardError("not_connected"));
    return link.sendFile(file, onProgress);
  }

  // ---- media controls -----------------------------------------------------------------

  _sendMediaState() {
    for (const link of this._links.values()) link.sendMediaState();
  }

  async _replaceVideo(track) {
    await Promise.all([...this._links.values()].map((l) => l.replaceVideo(track)));
  }

  /** Mutes (false) or unmutes (true) the microphone. */
  setMicrophone(enabled) {
    for (const t of this.localStream.getAudioTracks()) t.enabled = !!enabled;
    this.micEnabled = !!enabled && this.localStream.getAudioTracks().length > 0;
    this._sendMediaState();
    return this.micEnabled;
  }

  /**
   * Turns the camera off (the camera is released and no frames are sent) or on again.
   */
  async setCamera(enabled) {
    if (!enabled) {
      for (const t of this.localStream.getVideoTracks()) { t.stop(); this.localStream.removeTrack(t); }
      if (!this.screenTrack) await this._replaceVideo(null);
      this.cameraEnabled = false;
    } else if (!this.cameraEnabled) {
      if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw new SwitchboardError("insecure_context");
      const s = await navigator.mediaDevices.getUserMedia({ video: (this.media && this.media.video) || true });
      const track = s.getVideoTracks()[0];
      this.localStream.addTrack(track);
      // While sharing the screen, keep sharing; the camera returns when sharing stops.
      if (!this.screenTrack) await this._replaceVideo(track);
      this.cameraEnabled = true;
    }
    this._emit("localstream", { stream: this.localStream });
    this._sendMediaState();
    return this.cameraEnabled;
  }

  /** Shares the screen in place of the camera; resolves when sharing starts. */
  async shareScreen() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      throw this._error("screen_share_failed", e.message);
    }
    const track = stream.getVideoTracks()[0];
    this.screenTrack = track;
    await this._replaceVideo(track);
    track.onended = () => this.stopScreenShare();
    this._emit("screenshare", { active: true, track });
  }

  /** Stops sharing the screen and goes back to the camera (if it is on). */
  async stopScreenShare() {
    if (!this.screenTrack) return;
    const track = this.screenTrack;
    this.screenTrack = null;
    track.onended = null;
    track.stop();
    await this._replaceVideo(this.localStream.getVideoTracks()[0] || null);
    this._emit("screenshare", { active: false });
  }

  // ---- stats --------------------------------------------------------------------------

  /**
   * Connection statistics: round-trip time (ms), bitrates (kbit/s, since the last call),
   * the selected candidate types (host / srflx / prflx / relay), video frames decoded and
   * received audio level and total energy (both stop rising while the peer is muted).
   * In a mesh room, of the connection to `peerId`.
   */
  async stats(peerId) {
    const link = this._links.get(this.mesh ? String(peerId) : null);
    return link ? link.stats() : null;
  }

  /** The members of a mesh room (or the one peer of a 1:1 call) and their connections. */
  get peers() {
    return [...this._links.values()].map((l) => ({ peerId: l.peerId, state: l.state, name: l.media?.name ?? null, mic: l.media?.mic ?? null, camera: l.media?.camera ?? null, stream: l.remoteStream }));
  }

  /** The remote stream of a 1:1 call (in a mesh room, see `peers` or `remotestream`). */
  get remoteStream() {
    return this.mesh ? null : this._links.get(null)?.remoteStream || null;
  }

  /** The underlying RTCPeerConnection (to `peerId` in a mesh room), if set up (for advanced use). */
  peerConnectionOf(peerId) {
    return this._links.get(this.mesh ? String(peerId) : null)?.pc || null;
  }

  /** The underlying RTCPeerConnection of a 1:1 call, if set up (for advanced use). */
  get peerConnection() {
    return this.peerConnectionOf(null);
  }
}

/** RTCIceServer list from an Ant Media `iceServerConfig` reply. */
function iceServersFrom(msg) {
  if (Array.isArray(msg.iceServers) && msg.iceServers.length) return msg.iceServers;
  const uri = msg.stunServerUri;
  if (typeof uri !== "string" || !uri) return [];
  if (uri.startsWith("turn:") || uri.startsWith("turns:")) {
    return [{ urls: uri, username: msg.turnServerUsername || "", credential: msg.turnServerCredential || "" }];
  }
  return uri.startsWith("stun:") ? [{ urls: uri }] : [];
}
