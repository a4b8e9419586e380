// Names and addresses: the default signaling URL, room names, received file names (part of
// /sdk/switchboard.js, which re-exports everything here).

/** The Ant Media application Switchboard's demo and SDK use unless told otherwise. */
export const DEFAULT_APP = "WebRTCAppEE";

/**
 * The default signaling URL: the server this module was loaded from (a page that imports
 * `http://calls.example.com:5080/sdk/switchboard.js` talks to that server), or the page's
 * own host when the SDK is bundled into the page.
 */
export function defaultUrl(app = DEFAULT_APP) {
  let origin = new URL(location.href);
  try {
    const mine = new URL(import.meta.url);
    if (mine.protocol === "http:" || mine.protocol === "https:") origin = mine;
  } catch { /* not loaded from a URL: use the page's host */ }
  const proto = origin.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${origin.host}/${app}/websocket`;
}

/**
 * A received file's name made safe to show and to save: the last path component, without
 * control and bidirectional-override characters (which can disguise "exe.txt" as
 * "txt.exe"), without leading dots, at most 128 characters; "file" if nothing is left.
 */
export function safeFileName(name) {
  const base = String(name ?? "").split(/[\\/]/).pop();
  const clean = base
    .replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "")
    .replace(/^[.\s]+/, "")
    .trim()
    .slice(0, 128);
  return clean || "file";
}

/**
 * A member's display name as announced by the member itself (untrusted), made safe to show:
 * no control or bidirectional characters, spaces collapsed, at most 40 characters; null if
 * nothing is left. Show it as text (textContent), never as HTML.
 */
export function safeDisplayName(name) {
  if (typeof name !== "string") return null;
  const clean = name
    .slice(0, 200)
    .replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g, "")
    .replace(/\s+/g, " ")
    .trim();
  return clean ? Array.from(clean).slice(0, 40).join("") : null;
}

/**
 * A random room name such as "calm-river-k3jx9q2m8w4t7bzc6d0a": two words to read it out,
 * then 96 random bits (20 base-32 characters), so nobody finds the room by guessing. Until
 * rooms need tokens, a room is only as private as its name.
 */
export function randomRoom() {
  const a = ["calm", "bright", "swift", "quiet", "bold", "warm", "clear", "brave", "lucky", "gentle"];
  const b = ["river", "forest", "harbor", "meadow", "comet", "canyon", "island", "garden", "summit", "valley"];
  const words = crypto.getRandomValues(new Uint8Array(2));
  const bits = crypto.getRandomValues(new Uint8Array(12));
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let tail = "";
  let acc = 0;
  let n = 0;
  for (const byte of bits) {
    acc = (acc << 8) | byte;
    n += 8;
    while (n >= 5) {
      n -= 5;
      tail += alphabet[(acc >> n) & 31];
    }
  }
  // 96 bits = 19 full characters and 1 bit left: pad it to a 20th.
  if (n > 0) tail += alphabet[(acc << (5 - n)) & 31];
  return `${a[words[0] % a.length]}-${b[words[1] % b.length]}-${tail}`;
}
