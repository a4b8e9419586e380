// Connection statistics from RTCPeerConnection.getStats() (part of /sdk/switchboard.js).

/**
 * Reads `pc`'s statistics. `prev` is the sample the last call returned (or null); rates are
 * computed since then. Returns `{ stats, sample }`: `stats` as documented on
 * `Switchboard.stats()`, `sample` to pass as `prev` next time.
 */
export async function readStats(pc, prev) {
  const report = await pc.getStats();
  let pair = null;
  let inBytes = 0, outBytes = 0, framesDecoded = 0, fps = 0, audioLevel = null, audioEnergy = null;
  report.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId) || pair;
    if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded" && !pair) pair = r;
    if (r.type === "inbound-rtp") {
      inBytes += r.bytesReceived || 0;
      if (r.kind === "video") { framesDecoded += r.framesDecoded || 0; fps = r.framesPerSecond || fps; }
      if (r.kind === "audio" && typeof r.audioLevel === "number") audioLevel = r.audioLevel;
      if (r.kind === "audio" && typeof r.totalAudioEnergy === "number") audioEnergy = r.totalAudioEnergy;
    }
    if (r.type === "outbound-rtp") outBytes += r.bytesSent || 0;
  });
  const now = performance.now();
  const sample = { now, inBytes, outBytes };
  const rate = (b, pb) => (prev && now > prev.now ? Math.max(0, ((b - pb) * 8) / (now - prev.now)) : null);
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  const stats = {
    rttMs: pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null,
    inKbps: rate(inBytes, prev?.inBytes),
    outKbps: rate(outBytes, prev?.outBytes),
    localCandidateType: local?.candidateType || null,
    remoteCandidateType: remote?.candidateType || null,
    framesDecoded,
    framesPerSecond: fps,
    audioLevel,
    audioEnergy,
  };
  return { stats, sample };
}
