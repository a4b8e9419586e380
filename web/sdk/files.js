// File transfer over data channels (part of /sdk/switchboard.js): each file on its own ordered
// channel labelled `sb-file:<id>`. The sender sends a JSON header `{ name, size, type }`, then
// the bytes in 16 KiB chunks, pausing while more than 4 MiB is buffered; the receiver answers
// "done" once it has every byte, or "reject" (too large, or more bytes than announced).

import { SwitchboardError } from "./errors.js";
import { safeFileName } from "./names.js";

const FILE_CHUNK = 16 * 1024;
const FILE_HIGH_WATER = 4 * 1024 * 1024;
const FILE_LOW_WATER = 1024 * 1024;

/** The label prefix of a file channel. */
export const FILE_LABEL = "sb-file:";

/**
 * Sends `file` (a File or Blob) on a new channel of `pc` under `id`. `emit(name, detail)` gets
 * the `fileprogress` events; `onProgress` the same objects plus `sent` (an alias of `bytes`
 * kept for older pages). Resolves with `{ id, name, size }` when the receiver confirms.
 */
export function sendFile(pc, file, id, { onProgress, emit }) {
  const name = file.name || "file";
  const size = file.size;
  const report = (bytes) => {
    const progress = { id, name, size, bytes, direction: "send" };
    onProgress?.({ ...progress, sent: bytes });
    emit("fileprogress", progress);
  };
  const ch = pc.createDataChannel(`${FILE_LABEL}${id}`, { ordered: true });
  ch.binaryType = "arraybuffer";
  ch.bufferedAmountLowThreshold = FILE_LOW_WATER;
  return new Promise((resolve, reject) => {
    ch.onmessage = (e) => {
      if (e.data === "done") { report(size); ch.close(); resolve({ id, name, size }); }
      else if (e.data === "reject") { ch.close(); reject(new SwitchboardError("file_too_large")); }
    };
    ch.onclose = () => reject(new SwitchboardError("not_connected"));
    ch.onopen = async () => {
      ch.send(JSON.stringify({ name, size, type: file.type || "application/octet-stream" }));
      let offset = 0;
      report(0);
      while (offset < size) {
        if (ch.readyState !== "open") return;
        if (ch.bufferedAmount > FILE_HIGH_WATER) {
          await new Promise((r) => { ch.onbufferedamountlow = r; });
          report(offset - ch.bufferedAmount);
          continue;
        }
        const buf = await file.slice(offset, offset + FILE_CHUNK).arrayBuffer();
        ch.send(buf);
        offset += buf.byteLength;
        report(offset - ch.bufferedAmount);
      }
      report(Math.max(0, size - ch.bufferedAmount));
    };
  });
}

/**
 * Receives the file announced on channel `ch` (opened by the other side's `sendFile`): at most
 * `maxFileSize` bytes, held in memory until complete, then `emit("file", { id, name, size,
 * type, blob })`. The name is made safe (`safeFileName`) and the blob is always
 * `application/octet-stream`.
 */
export function receiveFile(ch, { maxFileSize, emit }) {
  ch.binaryType = "arraybuffer";
  let meta = null;
  const parts = [];
  let received = 0;
  const id = ch.label.slice(FILE_LABEL.length);
  let done = false;
  ch.onmessage = (e) => {
    if (done) { ch.close(); return; } // more than announced: not kept
    if (!meta) {
      try { meta = JSON.parse(e.data); } catch { ch.close(); return; }
      if (!meta || typeof meta !== "object" || !Number.isSafeInteger(meta.size) || meta.size < 0 || meta.size > maxFileSize) {
        ch.send("reject");
        ch.close();
        return;
      }
      meta = { name: safeFileName(meta.name), size: meta.size, type: String(meta.type ?? "").slice(0, 128) };
      emit("fileprogress", { id, name: meta.name, size: meta.size, bytes: 0, direction: "receive" });
      if (meta.size === 0) finish();
      return;
    }
    if (typeof e.data === "string") return;
    received += e.data.byteLength;
    if (received > meta.size) { done = true; parts.length = 0; ch.send("reject"); ch.close(); return; }
    parts.push(e.data);
    emit("fileprogress", { id, name: meta.name, size: meta.size, bytes: received, direction: "receive" });
    if (received === meta.size) finish();
  };
  const finish = () => {
    done = true;
    // Never the type the sender announced: a "text/html" blob opened from this page would
    // run the sender's script in this origin (which holds camera permission).
    const blob = new Blob(parts, { type: "application/octet-stream" });
    parts.length = 0;
    ch.send("done");
    emit("file", { id, name: meta.name, size: meta.size, type: meta.type, blob });
  };
}
