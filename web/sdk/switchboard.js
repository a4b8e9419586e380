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
import { defaultUrl, randomRoom, safeFileName } from "./names.js";
import { FILE_LABEL, receiveFile, sendFile } from "./files.js";
import { readStats } from "./stats.js";

export { ERROR_MESSAGES, SwitchboardError, defaultUrl, randomRoom, safeFileName };

const PING_MS = 3000;
const ICE_CONFIG_WAIT_MS = 2000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const ICE_DISCONNECTED_RESTART_MS = 3000;
const MAX_PENDING_CANDIDATES = 200;
const CONNECT_TIMEOUT_MS = 10000;
const PROBE_TIMEOUT_MS = 2000;
const CONTROL = "sb:media";

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
    this.remoteStream = null;
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
    this._pc = null;
    this._polite = true;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._pendingCandidates = [];
    this._channel = null;
    this._disconnectTimer = null;
    this._videoSender = null;
    this._stats = null;
    this._fileSeq = 0;
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
    this._closePeer();
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
          if (!this._pc || !this._isPeerConnected()) this._setState(this._pc ? "calling" : "waiting");
          else this._setState("connected");
          this._emit("joined", { room: this.room });
        } else if (msg.definition === "server_will_stop") {
          this._setState("reconnecting");
        }
        return;
      case "iceServerConfig":
        this.iceServers = iceServersFrom(msg);
        // After a re-join the existing connection gets the fresh TURN credentials, so its
        // next ICE restart does not use expired ones.
        if (this._pc && this.askIce) {
          try {
            this._pc.setConfiguration({ ...this._pc.getConfiguration(), iceServers: this.iceServers });
          } catch (e) {
            this.log("cannot update ICE servers", e);
          }
        }
        for (const w of this._iceWaiters.splice(0)) w();
        return;
      case "start":
        return this._onStart();
      case "takeConfiguration":
        return this._onDescription({ type: msg.type, sdp: msg.sdp });
      case "takeCandidate":
        return this._onCandidate(msg);
      case "stop":
        this._closePeer();
        this._emit("peerleft", {});
        if (!this._closed) this._setState(this._joined ? "waiting" : "reconnecting");
        return;
      case "peerMessageCommand":
        if (msg.definition === CONTROL && msg.data && typeof msg.data === "object") {
          this._emit("peermedia", { mic: !!msg.data.mic, camera: !!msg.data.camera });
        } else {
          this._emit("peermessage", { definition: msg.definition, data: msg.data });
        }
        return;
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
        this._error("room_full", msg, true);
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
    this._closePeer();
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

  // ---- peer connection ----------------------------------------------------------------

  _isPeerConnected() {
    const s = this._pc?.iceConnectionState;
    return s === "connected" || s === "completed";
  }

  async _onStart() {
    this._emit("peerjoined", {});
    if (this._pc && this._pc.connectionState !== "failed" && this._pc.connectionState !== "closed") {
      // The other side re-joined after a signaling outage while our media kept flowing:
      // renegotiate on the same connection with fresh ICE credentials.
      this._polite = false;
      this._pc.restartIce();
      return;
    }
    await this._startFresh();
  }

  /** A new connection on which we are the offerer. */
  async _startFresh() {
    this._closePeer();
    this._polite = false;
    const pc = await this._createPeer();
    // Label = room, as the Ant Media SDK does, so its pages accept our channel.
    this._channel = this._setupChannel(pc.createDataChannel(this.room, { ordered: true }));
    this._addLocalTracks(pc, true);
    this._setState("calling");
  }

  async _createPeer() {
    const iceServers = await this._iceServers();
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: this.iceTransportPolicy });
    this._pc = pc;
    this._pendingCandidates = [];
    this._makingOffer = false;
    this._ignoreOffer = false;
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) {
        this._send({ command: "takeCandidate", streamId: this.room, label: candidate.sdpMLineIndex, id: candidate.sdpMid, candidate: candidate.candidate });
      }
    };
    pc.onnegotiationneeded = async () => {
      if (this._pc !== pc) return;
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        this._send({ command: "takeConfiguration", streamId: this.room, type: pc.localDescription.type, sdp: pc.localDescription.sdp });
      } catch (e) {
        this.log("offer failed", e);
      } finally {
        this._makingOffer = false;
      }
    };
    pc.ontrack = (e) => {
      const stream = e.streams[0] || this.remoteStream || new MediaStream();
      if (!e.streams[0]) stream.addTrack(e.track);
      if (stream !== this.remoteStream) {
        this.remoteStream = stream;
        this._emit("remotestream", { stream });
      }
    };
    pc.ondatachannel = (e) => {
      if (e.channel.label.startsWith(FILE_LABEL)) receiveFile(e.channel, { maxFileSize: this.maxFileSize, emit: (name, detail) => this._emit(name, detail) });
      else this._channel = this._setupChannel(e.channel);
    };
    pc.oniceconnectionstatechange = () => this._onIceState(pc);
    return pc;
  }

  _onIceState(pc) {
    if (this._pc !== pc) return;
    const s = pc.iceConnectionState;
    clearTimeout(this._disconnectTimer);
    if (s === "connected" || s === "completed") {
      // Media flows; the state says "reconnecting" while only the signaling socket is down.
      this._setState(this._joined ? "connected" : "reconnecting");
      this._sendMediaState();
    } else if (s === "disconnected") {
      this._setState("reconnecting");
      this._disconnectTimer = setTimeout(() => { if (this._pc === pc) pc.restartIce(); }, ICE_DISCONNECTED_RESTART_MS);
    } else if (s === "failed") {
      this._setState("reconnecting");
      this._error("connection_failed");
      pc.restartIce();
    }
  }

  _addLocalTracks(pc, offerer) {
    const tracks = this.localStream.getTracks();
    for (const t of tracks) {
      const sender = pc.addTrack(t, this.localStream);
      if (t.kind === "video") this._videoSender = sender;
    }
    if (offerer) {
      // Receive media even when we send none of that kind.
      for (const kind of ["audio", "video"]) {
        if (!tracks.some((t) => t.kind === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  async _onDescription(desc) {
    if (!desc.sdp || (desc.type !== "offer" && desc.type !== "answer")) return;
    let pc = this._pc;
    if (!pc) {
      if (desc.type !== "offer") return;
      this._emit("peerjoined", {});
      this._polite = true;
      pc = await this._createPeer();
      this._setState("calling");
    }
    const collision = desc.type === "offer" && (this._makingOffer || pc.signalingState !== "stable");
    this._ignoreOffer = !this._polite && collision;
    if (this._ignoreOffer) return;
    try {
      await pc.setRemoteDescription(desc);
    } catch (e) {
      if (desc.type !== "offer") {
        // Our offer went to a peer that replaced the one this connection knew: start over.
        this.log("answer rejected", e);
        await this._startFresh();
        return;
      }
      // A new peer took the seat while we missed the signal: start afresh.
      this._closePeer();
      this._polite = true;
      pc = await this._createPeer();
      await pc.setRemoteDescription(desc);
    }
    if (desc.type === "offer") {
      if (!pc.getSenders().some((s) => s.track)) this._addLocalTracks(pc, false);
      await pc.setLocalDescription();
      this._send({ command: "takeConfiguration", streamId: this.room, type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    }
    for (const c of this._pendingCandidates.splice(0)) await this._addCandidate(pc, c);
  }

  async _onCandidate(msg) {
    if (typeof msg.candidate !== "string" || !msg.candidate) return;
    const c = { candidate: msg.candidate, sdpMLineIndex: typeof msg.label === "number" ? msg.label : null, sdpMid: msg.id != null ? String(msg.id) : null };
    if (!this._pc || !this._pc.remoteDescription) {
      if (this._pendingCandidates.length < MAX_PENDING_CANDIDATES) this._pendingCandidates.push(c);
      return;
    }
    await this._addCandidate(this._pc, c);
  }

  async _addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c);
    } catch (e) {
      if (!this._ignoreOffer) this.log("candidate rejected", e);
    }
  }

  _closePeer() {
    clearTimeout(this._disconnectTimer);
    const pc = this._pc;
    this._pc = null;
    this._videoSender = null;
    this._channel = null;
    this._pendingCandidates = [];
    this._stats = null;
    if (pc) {
      pc.onicecandidate = pc.ontrack = pc.onnegotiationneeded = pc.oniceconnectionstatechange = pc.ondatachannel = null;
      pc.close();
    }
    if (this.remoteStream) {
      this.remoteStream = null;
      this._emit("remotestream", { stream: null });
    }
  }

  // ---- data ---------------------------------------------------------------------------

  _setupChannel(ch) {
    ch.binaryType = "arraybuffer";
    ch.onmessage = (e) => this._emit("message", { data: e.data });
    ch.onopen = () => this._emit("channelopen", {});
    return ch;
  }

  /** Sends text or binary (ArrayBuffer, typed array, Blob) over the data channel. */
  send(data) {
    if (!this._channel || this._channel.readyState !== "open") throw new SwitchboardError("not_connected");
    this._channel.send(data);
  }

  /**
   * Sends a File or Blob on its own data channel. `onProgress(p)` is called as it goes with
   * the same object as the `fileprogress` event (`{ id, name, size, bytes, direction }`, plus
   * `sent`, an alias of `bytes` kept for older pages); resolves when the other side confirms
   * it has every byte.
   */
  sendFile(file, { onProgress } = {}) {
    const pc = this._pc;
    if (!pc || !this._isPeerConnected()) return Promise.reject(new SwitchboardError("not_connected"));
    if (file.size > this.maxFileSize) return Promise.reject(new SwitchboardError("file_too_large"));
    const id = `${Date.now().toString(36)}-${++this._fileSeq}`;
    return sendFile(pc, file, id, { onProgress, emit: (name, detail) => this._emit(name, detail) });
  }

  // ---- media controls -----------------------------------------------------------------

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
    const sender = this._videoSender || this._pc?.getSenders().find((s) => s.track?.kind === "video");
    if (!enabled) {
      for (const t of this.localStream.getVideoTracks()) { t.stop(); this.localStream.removeTrack(t); }
      if (sender && !this.screenTrack) { this._videoSender = sender; await sender.replaceTrack(null); }
      this.cameraEnabled = false;
    } else if (!this.cameraEnabled) {
      if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw new SwitchboardError("insecure_context");
      const s = await navigator.mediaDevices.getUserMedia({ video: (this.media && this.media.video) || true });
      const track = s.getVideoTracks()[0];
      this.localStream.addTrack(track);
      if (this.screenTrack) { /* keep sharing; the camera returns when sharing stops */ }
      else if (sender) await sender.replaceTrack(track);
      else if (this._pc) this._videoSender = this._pc.addTrack(track, this.localStream);
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
    const sender = this._videoSender || this._pc?.getSenders().find((s) => s.track?.kind === "video");
    if (sender) { this._videoSender = sender; await sender.replaceTrack(track); }
    else if (this._pc) this._videoSender = this._pc.addTrack(track, this.localStream);
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
    const camera = this.localStream.getVideoTracks()[0] || null;
    if (this._videoSender) await this._videoSender.replaceTrack(camera);
    this._emit("screenshare", { active: false });
  }

  _sendMediaState() {
    if (!this._joined) return;
    this._send({ command: "peerMessageCommand", streamId: this.room, definition: CONTROL, data: { mic: this.micEnabled, camera: this.cameraEnabled || !!this.screenTrack } });
  }

  // ---- stats --------------------------------------------------------------------------

  /**
   * Connection statistics: round-trip time (ms), bitrates (kbit/s, since the last call),
   * the selected candidate types (host / srflx / prflx / relay), video frames decoded and
   * received audio level and total energy (both stop rising while the peer is muted).
   */
  async stats() {
    const pc = this._pc;
    if (!pc) return null;
    const { stats, sample } = await readStats(pc, this._stats);
    if (this._pc === pc) this._stats = sample;
    return stats;
  }

  /** The underlying RTCPeerConnection, if a call is set up (for advanced use). */
  get peerConnection() {
    return this._pc;
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
