// Compile-only check that switchboard.d.ts describes the SDK as its README uses it.
import { Switchboard, ERROR_MESSAGES, SwitchboardError, randomRoom, defaultUrl } from "../../sdk/switchboard.js";
import type { CallState, CallStats, ErrorCode, Peer, PeerState } from "../../sdk/switchboard.js";

const call = new Switchboard({ room: randomRoom(), url: defaultUrl("LiveApp"), media: { audio: true, video: { width: 640 } } });
const off: () => void = call.on("remotestream", ({ stream }) => {
  const v: MediaStream | null = stream;
  void v;
});
off();
call.on("state", ({ state }) => {
  const s: CallState = state;
  void s;
});
call.on("error", ({ code, message, fatal, error }) => {
  const c: ErrorCode = code;
  const m: string = ERROR_MESSAGES[c] + message;
  const e: SwitchboardError = error;
  void [m, fatal, e.code];
});
call.on("fileprogress", (p) => void (p.bytes / p.size));
call.on("file", ({ blob, name }) => void [blob.size, name.length]);
async function run(): Promise<void> {
  await call.join();
  call.send("hi");
  call.send(new Uint8Array([1, 2, 3]));
  const sent = await call.sendFile(new Blob(["x"]), { onProgress: ({ bytes, sent, size, direction }) => void [bytes / size, sent, direction] });
  const sharing: MediaStreamTrack | null = call.screenTrack;
  void sharing;
  void sent.id;
  const mic: boolean = call.setMicrophone(false);
  const cam: boolean = await call.setCamera(false);
  await call.shareScreen();
  await call.stopScreenShare();
  const stats: CallStats | null = await call.stats();
  void [mic, cam, stats?.rttMs, stats?.localCandidateType, call.peerConnection?.iceConnectionState];
  call.hangup();
}
void run;
new Switchboard({ room: "r", iceTransportPolicy: "relay", connectTimeout: 5000 });
call.join().catch((e: SwitchboardError) => {
  const wrongUrl: boolean = e.code === "server_unreachable" || e.code === "not_switchboard";
  void wrongUrl;
});
// @ts-expect-error only "all" or "relay"
new Switchboard({ room: "r", iceTransportPolicy: "none" });
// @ts-expect-error room is required
new Switchboard({});
// A mesh room (group call): events name the member; data to all or one, files to one.
const group = new Switchboard({ room: "family", mesh: true });
group.on("peerjoined", ({ peerId }) => void (peerId ?? "").length);
group.on("remotestream", ({ stream, peerId }) => void [stream?.id, peerId]);
group.on("peerstate", ({ state, peerId }) => {
  const s: PeerState = state;
  void [s, peerId];
});
group.on("message", ({ data, peerId }) => void [data, peerId]);
group.on("joined", ({ peerId, peers }) => void [peerId, peers.length]);
async function groupCall(): Promise<void> {
  await group.join();
  const reached: number = group.send("hello everyone");
  const members: Peer[] = group.peers;
  const first = members[0]?.peerId;
  if (first) {
    group.send("just you", first);
    await group.sendFile(new Blob(["x"]), { peerId: first, onProgress: ({ peerId }) => void peerId });
    const s: CallStats | null = await group.stats(first);
    void [s?.framesDecoded, group.peerConnectionOf(first)?.connectionState];
  }
  void [reached, group.mesh, group.peerId];
}
void groupCall;
