// Type declarations for the Switchboard browser SDK (switchboard.js).

/** Error codes the SDK emits; `ERROR_MESSAGES[code]` is a sentence for people. */
export type ErrorCode =
  | "room_full" | "camera_denied" | "camera_unavailable" | "insecure_context"
  | "server_unreachable" | "not_switchboard" | "server_busy" | "invalid_room" | "connection_failed"
  | "file_too_large" | "not_connected" | "screen_share_failed" | "unauthorized" | "call_time_over"
  | "room_mode_mismatch" | "server_error";

export declare const ERROR_MESSAGES: Record<ErrorCode, string>;

export declare class SwitchboardError extends Error {
  constructor(code: ErrorCode, detail?: unknown, message?: string);
  readonly code: ErrorCode;
  /** For `server_unreachable` / `not_switchboard` from join(): `{ url, reason }`. */
  readonly detail?: unknown;
}

/**
 * Call state:
 * - `idle` before `join()`; `connecting` to the server the first time;
 * - `waiting` joined, alone in the room; `calling` a peer is there, connection being set up;
 * - `connected` media and data flow directly;
 * - `reconnecting` the server or the network path was lost (media may still flow);
 * - `full` the room has two people already (mesh: `--max-mesh-peers`); `closed` after
 *   `hangup()` or a fatal error.
 *
 * In a mesh room: `waiting` alone, `calling` members are there but no connection is up yet,
 * `connected` at least one member's connection is up (see `peers` and `peerstate` for each).
 */
export type CallState = "idle" | "connecting" | "waiting" | "calling" | "connected" | "reconnecting" | "full" | "closed";

export interface SwitchboardOptions {
  /** Room name: 1–128 characters of A–Z a–z 0–9 _ . - */
  room: string;
  /** Signaling URL; default `ws(s)://<this host>/<app>/websocket`. */
  url?: string;
  /** App namespace used to build the default URL; default "WebRTCAppEE". */
  app?: string;
  /** getUserMedia constraints, or false to only receive; default `{ audio: true, video: true }`. */
  media?: { audio?: boolean | MediaTrackConstraints; video?: boolean | MediaTrackConstraints } | false;
  /** ICE servers; when absent the SDK asks the server (`getIceServerConfig`). */
  iceServers?: RTCIceServer[];
  /**
   * `"relay"` sends media only through TURN relays, so the peer never learns this device's
   * IP addresses (needs a TURN server: the built-in one is advertised by default); default `"all"`.
   */
  iceTransportPolicy?: "all" | "relay";
  /** Re-join automatically after the signaling socket drops (backoff 0.5 s → 8 s); default true. */
  reconnect?: boolean;
  /**
   * Bound on the first connection of `join()`, in ms (default 10000): without `joined` by
   * then, `join()` rejects (`server_unreachable` / `not_switchboard`, up to 2 s later while
   * the SDK tells them apart) and camera and microphone are released.
   */
  connectTimeout?: number;
  /** Largest file accepted or sent, in bytes; default 512 MiB. */
  maxFileSize?: number;
  /**
   * Room token (a JWT from your application's back end) for servers that require one, or a
   * function returning one (or a promise of one), called before every join: the first one
   * and each re-join after a reconnect, so it can fetch a fresh token. A refused token ends
   * the call with error `unauthorized` (`join()` rejects with it).
   */
  token?: string | (() => string | Promise<string>);
  /**
   * Join a mesh room (a group call of up to the server's `--max-mesh-peers`, default 8): one
   * peer connection per member, each event names the member (`peerId`). A room is 1:1 or
   * mesh by its first member; joining with the other kind fails with `room_mode_mismatch`.
   * Default false (a 1:1 call, compatible with Ant Media's SDKs).
   */
  mesh?: boolean;
  /**
   * A display name the other members see (with the microphone and camera state); made safe
   * with `safeDisplayName` on both sides. Default none.
   */
  name?: string;
  /** Log protocol events to the console. */
  debug?: boolean;
}

export interface CallStats {
  rttMs: number | null;
  inKbps: number | null;
  outKbps: number | null;
  localCandidateType: "host" | "srflx" | "prflx" | "relay" | null;
  remoteCandidateType: "host" | "srflx" | "prflx" | "relay" | null;
  framesDecoded: number;
  framesPerSecond: number;
  audioLevel: number | null;
  /** Total received audio energy; stops rising while the peer's microphone is muted. */
  audioEnergy: number | null;
}

export interface FileProgress { id: string; name: string; size: number; bytes: number; direction: "send" | "receive" }

/** A member's id in a mesh room (opaque, given by the server); null in a 1:1 call. */
export type PeerId = string | null;

/** The connection to one member: `connecting` → `connected` ⇄ `reconnecting` (ICE restart). */
export type PeerState = "connecting" | "connected" | "reconnecting";

export interface Peer {
  peerId: PeerId;
  state: PeerState;
  /** The name the member announced (see `safeDisplayName`); null until it has. */
  name: string | null;
  /** What the member announced of its microphone and camera; null until it has. */
  mic: boolean | null;
  camera: boolean | null;
  stream: MediaStream | null;
}

/** Events about the other side carry `peerId`: which member (mesh) or null (1:1). */
export interface SwitchboardEvents {
  state: { state: CallState };
  /** Joined (again, after a reconnect); in a mesh room with this page's id and the members already there. */
  joined: { room: string; peerId: PeerId; peers: string[] };
  localstream: { stream: MediaStream };
  remotestream: { stream: MediaStream | null; peerId: PeerId };
  peerjoined: { peerId: PeerId };
  peerleft: { peerId: PeerId };
  peerstate: { state: PeerState; peerId: PeerId };
  peermedia: { mic: boolean; camera: boolean; name: string | null; peerId: PeerId };
  channelopen: { peerId: PeerId };
  message: { data: string | ArrayBuffer; peerId: PeerId };
  fileprogress: FileProgress & { peerId: PeerId };
  /**
   * A whole file. `name` is made safe (see `safeFileName`); `type` is what the sender
   * announced (not trusted); `blob` is always `application/octet-stream`, so opening it
   * downloads it instead of rendering it in this page's origin.
   */
  file: { id: string; name: string; size: number; type: string; blob: Blob; peerId: PeerId };
  peermessage: { definition: unknown; data: unknown; peerId: PeerId };
  screenshare: { active: boolean; track?: MediaStreamTrack };
  error: { code: ErrorCode; message: string; detail?: unknown; fatal: boolean; error: SwitchboardError };
}

export declare class Switchboard {
  constructor(options: SwitchboardOptions);
  readonly room: string;
  readonly url: string;
  readonly state: CallState;
  readonly localStream: MediaStream;
  /** True when joined as a mesh room (`options.mesh`). */
  readonly mesh: boolean;
  /** This page's id in a mesh room (new on each join); null in a 1:1 call. */
  readonly peerId: PeerId;
  /** The other members (mesh) or the other peer (1:1) and their connections. */
  readonly peers: Peer[];
  /** The 1:1 call's remote stream (null in a mesh room: see `peers`, `remotestream`). */
  readonly remoteStream: MediaStream | null;
  readonly micEnabled: boolean;
  readonly cameraEnabled: boolean;
  /** The screen-capture track while sharing the screen, else null. */
  readonly screenTrack: MediaStreamTrack | null;
  /** The 1:1 call's RTCPeerConnection, if set up (for advanced use). */
  readonly peerConnection: RTCPeerConnection | null;
  /** The RTCPeerConnection to a mesh member (or, for null, the 1:1 call's). */
  peerConnectionOf(peerId: PeerId): RTCPeerConnection | null;
  /** Subscribes to an event; returns an unsubscribe function. */
  on<K extends keyof SwitchboardEvents>(name: K, fn: (detail: SwitchboardEvents[K]) => void): () => void;
  /**
   * Opens camera/mic, connects and joins; resolves once joined. Rejects with a
   * `SwitchboardError`: `room_full`, `invalid_room`, `server_busy`, or, when the first
   * connection fails within `connectTimeout`, `server_unreachable` (nothing answers at the
   * URL) or `not_switchboard` (something answers, but not Switchboard); the message names
   * the URL. After a successful join, drops are retried by themselves.
   */
  join(): Promise<void>;
  /** Leaves the room, closes the call, releases camera and microphone. */
  hangup(): void;
  /**
   * Sends text or binary over the data channel; in a mesh room to every member whose channel
   * is open, or to `peerId` alone. Returns how many it went to. Throws `not_connected` when
   * none is open.
   */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob, peerId?: string): number;
  /** Sends a file on its own data channel (mesh: to `peerId`); resolves when the peer has all of it. */
  sendFile(file: Blob & { name?: string }, options?: { peerId?: string; onProgress?: (p: FileProgress & { /** Alias of `bytes`. */ sent: number; peerId: PeerId }) => void }): Promise<{ id: string; name: string; size: number }>;
  /** Mutes or unmutes the microphone; returns the new state. */
  setMicrophone(enabled: boolean): boolean;
  /** Turns the camera off (released, no frames sent) or on; resolves to the new state. */
  setCamera(enabled: boolean): Promise<boolean>;
  /** Shares the screen instead of the camera. */
  shareScreen(): Promise<void>;
  /** Stops sharing and goes back to the camera. */
  stopScreenShare(): Promise<void>;
  /** Round-trip time, bitrates and candidate types of the current connection (mesh: to `peerId`). */
  stats(peerId?: string): Promise<CallStats | null>;
}

/** `ws(s)://<this host>/<app>/websocket`. */
export declare function defaultUrl(app?: string): string;
/** A received file's name, safe to show and save: last path component, no control or bidirectional characters, no leading dots, ≤ 128 characters. */
export declare function safeFileName(name: unknown): string;
/** A member's announced display name, safe to show as text: no control or bidirectional characters, ≤ 40 characters; null if empty or not a string. */
export declare function safeDisplayName(name: unknown): string | null;
/** A random room name such as "calm-river-k3jx9q2m8w4t7bzc6d0a": two words and 96 random bits. */
export declare function randomRoom(): string;
