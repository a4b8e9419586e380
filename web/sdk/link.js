// One peer connection of a call (part of /sdk/switchboard.js): the RTCPeerConnection to one
// other member, its data channel, its files, its ICE restarts and its statistics. A 1:1 call
// has one link; a mesh room has one per other member.
//
// Negotiation follows the "perfect negotiation" pattern: the side told to `start` offers and
// is impolite, the other is polite, so either may renegotiate later (ICE restart, a camera
// turned on) without glare.

import { FILE_LABEL, receiveFile, sendFile } from "./files.js";
import { readStats } from "./stats.js";
import { SwitchboardError } from "./errors.js";

const ICE_DISCONNECTED_RESTART_MS = 3000;
const MAX_PENDING_CANDIDATES = 200;
/** `peerMessageCommand` definition carrying a member's microphone and camera state. */
export const CONTROL = "sb:media";

export class PeerLink {
  /**
   * @param {object} call the Switchboard that owns this link: it gives the ICE servers, local
   *   media and signaling, and hears of state changes (`_linkChanged`) and events (`_emit`).
   * @param {string|null} peerId the member's id in a mesh room; null in a 1:1 room.
   */
  constructor(call, peerId) {
    this.call = call;
    this.peerId = peerId;
    this.pc = null;
    this.polite = true;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pendingCandidates = [];
    this.channel = null;
    this.videoSender = null;
    this.remoteStream = null;
    /** The member's announced `{ mic, camera }`, once it has said. */
    this.media = null;
    /** `connecting` → `connected` ⇄ `reconnecting`; `closed` once dropped. */
    this.state = "connecting";
    this.closed = false;
    this._disconnectTimer = null;
    this._statsSample = null;
    this._fileSeq = 0;
  }

  get connected() {
    const s = this.pc?.iceConnectionState;
    return s === "connected" || s === "completed";
  }

  _emit(name, detail = {}) {
    this.call._emit(name, { ...detail, peerId: this.peerId });
  }

  _signal(msg) {
    this.call._signal(msg, this.peerId);
  }

  _setState(state) {
    if (this.closed) return;
    if (this.state !== state) {
      this.state = state;
      this._emit("peerstate", { state });
    }
    this.call._linkChanged(this);
  }

  // ---- negotiation --------------------------------------------------------------------

  /** Told to `start`: offer on a fresh connection, or restart ICE on a live one. */
  async onStart() {
    if (this.pc && this.pc.connectionState !== "failed" && this.pc.connectionState !== "closed") {
      // The other side re-joined after a signaling outage while our media kept flowing:
      // renegotiate on the same connection with fresh ICE credentials.
      this.polite = false;
      this.pc.restartIce();
      return;
    }
    await this.startFresh();
  }

  /** A new connection on which we are the offerer. */
  async startFresh() {
    this._closePc();
    this.polite = false;
    const pc = await this._open();
    if (!pc) return;
    // Label = room, as the Ant Media SDK does, so its pages accept our channel.
    this.channel = this._setupChannel(pc.createDataChannel(this.call.room, { ordered: true }));
    this._addLocalTracks(pc, true);
    this._setState("connecting");
  }

  async _open() {
    const iceServers = await this.call._iceServers();
    if (this.closed) return null;
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: this.call.iceTransportPolicy });
    this.pc = pc;
    this.makingOffer = false;
    this.ignoreOffer = false;
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) {
        this._signal({ command: "takeCandidate", label: candidate.sdpMLineIndex, id: candidate.sdpMid, candidate: candidate.candidate });
      }
    };
    pc.onnegotiationneeded = async () => {
      if (this.pc !== pc) return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this._signal({ command: "takeConfiguration", type: pc.localDescription.type, sdp: pc.localDescription.sdp });
      } catch (e) {
        this.call.log("offer failed", e);
      } finally {
        this.makingOffer = false;
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
      if (e.channel.label.startsWith(FILE_LABEL)) receiveFile(e.channel, { maxFileSize: this.call.maxFileSize, emit: (name, detail) => this._emit(name, detail) });
      else this.channel = this._setupChannel(e.channel);
    };
    pc.oniceconnectionstatechange = () => this._onIceState(pc);
    return pc;
  }

  _onIceState(pc) {
    if (this.pc !== pc) return;
    const s = pc.iceConnectionState;
    clearTimeout(this._disconnectTimer);
    if (s === "connected" || s === "completed") {
      this._setState("connected");
      this.sendMediaState();
    } else if (s === "disconnected") {
      this._setState("reconnecting");
      this._disconnectTimer = setTimeout(() => { if (this.pc === pc) pc.restartIce(); }, ICE_DISCONNECTED_RESTART_MS);
    } else if (s === "failed") {
      this._setState("reconnecting");
      this.call._error("connection_failed", this.peerId == null ? undefined : { peerId: this.peerId });
      pc.restartIce();
    }
  }

  _addLocalTracks(pc, offerer) {
    const local = this.call.localStream;
    const tracks = local.getTracks();
    for (const t of tracks) {
      const sender = pc.addTrack(t, local);
      if (t.kind === "video") this.videoSender = sender;
    }
    // While sharing the screen, a new member sees the screen, not the camera.
    if (this.call.screenTrack) {
      if (this.videoSender) this.videoSender.replaceTrack(this.call.screenTrack);
      else this.videoSender = pc.addTrack(this.call.screenTrack, local);
    }
    if (offerer) {
      // Receive media even when we send none of that kind.
      const sent = pc.getSenders().map((s) => s.track?.kind);
      for (const kind of ["audio", "video"]) {
        if (!sent.includes(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  /** A `takeConfiguration` from the member: an offer (answer it) or the answer to ours. */
  async onDescription(desc) {
    if (!desc.sdp || (desc.type !== "offer" && desc.type !== "answer")) return;
    let pc = this.pc;
    if (!pc) {
      if (desc.type !== "offer") return;
      this.polite = true;
      pc = await this._open();
      if (!pc) return;
      this._setState("connecting");
    }
    const collision = desc.type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    try {
      await pc.setRemoteDescription(desc);
    } catch (e) {
      if (desc.type !== "offer") {
        // Our offer went to a peer that replaced the one this connection knew: start over.
        this.call.log("answer rejected", e);
        await this.startFresh();
        return;
      }
      // A new peer took the seat while we missed the signal: start afresh.
      this._closePc();
      this.polite = true;
      pc = await this._open();
      if (!pc) return;
      await pc.setRemoteDescription(desc);
    }
    if (desc.type === "offer") {
      if (!pc.getSenders().some((s) => s.track)) this._addLocalTracks(pc, false);
      await pc.setLocalDescription();
      this._signal({ command: "takeConfiguration", type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    }
    for (const c of this.pendingCandidates.splice(0)) await this._addCandidate(pc, c);
  }

  /** A `takeCandidate` from the member; kept until the connection has its remote description. */
  async onCandidate(msg) {
    if (typeof msg.candidate !== "string" || !msg.candidate) return;
    const c = { candidate: msg.candidate, sdpMLineIndex: typeof msg.label === "number" ? msg.label : null, sdpMid: msg.id != null ? String(msg.id) : null };
    if (!this.pc || !this.pc.remoteDescription) {
      if (this.pendingCandidates.length < MAX_PENDING_CANDIDATES) this.pendingCandidates.push(c);
      return;
    }
    await this._addCandidate(this.pc, c);
  }

  async _addCandidate(pc, c) {
    try {
      await pc.addIceCandidate(c);
    } catch (e) {
      if (!this.ignoreOffer) this.call.log("candidate rejected", e);
    }
  }

  /** New ICE servers (fresh TURN credentials) for this connection's next ICE restart. */
  setIceServers(iceServers) {
    if (!this.pc) return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    } catch (e) {
      this.call.log("cannot update ICE servers", e);
    }
  }

  _closePc() {
    clearTimeout(this._disconnectTimer);
    const pc = this.pc;
    this.pc = null;
    this.videoSender = null;
    this.channel = null;
    this.pendingCandidates = [];
    this._statsSample = null;
    if (pc) {
      pc.onicecandidate = pc.ontrack = pc.onnegotiationneeded = pc.oniceconnectionstatechange = pc.ondatachannel = null;
      pc.close();
    }
    if (this.remoteStream) {
      this.remoteStream = null;
      this._emit("remotestream", { stream: null });
    }
  }

  /** Drops the connection for good (the member left, or the call ended). */
  close() {
    this._closePc();
    this.state = "closed";
    this.closed = true;
  }

  // ---- data, files, media state, stats ------------------------------------------------

  _setupChannel(ch) {
    ch.binaryType = "arraybuffer";
    ch.onmessage = (e) => this._emit("message", { data: e.data });
    ch.onopen = () => this._emit("channelopen", {});
    return ch;
  }

  get channelOpen() {
    return this.channel?.readyState === "open";
  }

  send(data) {
    if (!this.channelOpen) throw new SwitchboardError("not_connected");
    this.channel.send(data);
  }

  sendFile(file, onProgress) {
    const pc = this.pc;
    if (!pc || !this.connected) return Promise.reject(new SwitchboardError("not_connected"));
    if (file.size > this.call.maxFileSize) return Promise.reject(new SwitchboardError("file_too_large"));
    const id = `${Date.now().toString(36)}-${++this._fileSeq}`;
    const progress = onProgress && ((p) => onProgress({ ...p, peerId: this.peerId }));
    return sendFile(pc, file, id, { onProgress: progress, emit: (name, detail) => this._emit(name, detail) });
  }

  /** Tells the member whether our microphone and camera are on. */
  sendMediaState() {
    const call = this.call;
    if (!call._joined || !this.connected) return;
    const data = { mic: call.micEnabled, camera: call.cameraEnabled || !!call.screenTrack };
    if (call.name) data.name = call.name;
    this._signal({ command: "peerMessageCommand", definition: CONTROL, data });
  }

  /** The video sender of this connection, if any. */
  get video() {
    return this.videoSender || this.pc?.getSenders().find((s) => s.track?.kind === "video") || null;
  }

  /** Sends `track` (or nothing, for null) as this connection's video. */
  async replaceVideo(track) {
    const sender = this.video;
    if (sender) {
      this.videoSender = sender;
      await sender.replaceTrack(track);
    } else if (track && this.pc) {
      this.videoSender = this.pc.addTrack(track, this.call.localStream);
    }
  }

  async stats() {
    const pc = this.pc;
    if (!pc) return null;
    const { stats, sample } = await readStats(pc, this._statsSample);
    if (this.pc === pc) this._statsSample = sample;
    return stats;
  }
}
