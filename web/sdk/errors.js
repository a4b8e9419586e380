// Error codes of the Switchboard browser SDK (part of /sdk/switchboard.js, which re-exports
// everything here).

/** Human-readable messages for every error code the SDK emits. */
export const ERROR_MESSAGES = {
  room_full: "This room already has two people in it.",
  camera_denied: "Camera or microphone access was blocked. Allow it in the browser and try again.",
  camera_unavailable: "No camera or microphone could be opened.",
  insecure_context: "Camera access needs HTTPS (or localhost).",
  server_unreachable: "Cannot reach the Switchboard server.",
  not_switchboard: "The server answered, but that address is not a Switchboard endpoint (check the host, port and /<app>/websocket path).",
  server_busy: "The server is busy. Retrying…",
  invalid_room: "Room names may only use letters, digits, '-', '_' and '.' (up to 128).",
  connection_failed: "The direct connection to the other person failed. Retrying…",
  file_too_large: "That file is too large to send.",
  not_connected: "Not connected to anyone yet.",
  screen_share_failed: "Screen sharing was cancelled or is not available.",
  unauthorized: "This room needs a valid invitation (room token). Ask for a new link.",
  call_time_over: "The time allowed for this call is over.",
  room_mode_mismatch: "This room is a call of the other kind (a group call joined as a 1:1 call, or the other way round), or this server has no group calls.",
  server_error: "The server reported an error.",
};

/** Error with a stable `code` (see ERROR_MESSAGES) and a readable message. */
export class SwitchboardError extends Error {
  constructor(code, detail, message) {
    super(message || ERROR_MESSAGES[code] || code);
    this.name = "SwitchboardError";
    this.code = code;
    this.detail = detail;
  }
}
