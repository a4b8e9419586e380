#!/usr/bin/env bash
# Switchboard side by side with the signaling servers people use, measured by one load tool
# (`switchboard bench`). Installs the reference servers into a scratch directory (never into
# the repository), then runs bench/compare.py, which starts each server pinned to one core,
# runs the load pinned to the other, three runs per scenario, and writes the median table and
# chart into docs/BENCHMARKS.md and docs/compare.svg.
#
#   bench/compare.sh                 # everything (~20 minutes on 2 cores)
#   RUNS=1 DURATION=3 bench/compare.sh --servers switchboard-antmedia,matchbox
#
# Reference servers (versions pinned here):
#   - the socket.io seed relay: the ten-line Node relay of docs/PROTOCOLS.md on npm socket.io
#   - peerjs-server: npm `peer`
#   - matchbox_server: the Rust crate, built with `cargo install` into the scratch directory
# Needs: cargo, node + npm, python3, taskset (util-linux).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/switchboard-bench}
SOCKETIO_VERSION=4.8.1
PEER_VERSION=1.0.2
MATCHBOX_VERSION=0.15.0
export MATCHBOX_VERSION

mkdir -p "$WORK/node"
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p switchboard

if [ ! -x "$WORK/matchbox/bin/matchbox_server" ]; then
  cargo install --locked "matchbox_server@$MATCHBOX_VERSION" --root "$WORK/matchbox"
fi

if [ ! -f "$WORK/node/.installed-$SOCKETIO_VERSION-$PEER_VERSION" ]; then
  (
    cd "$WORK/node"
    [ -f package.json ] || npm init -y >/dev/null
    npm install --no-audit --no-fund "socket.io@$SOCKETIO_VERSION" "peer@$PEER_VERSION"
    touch ".installed-$SOCKETIO_VERSION-$PEER_VERSION"
  )
fi

# The seed relay, as the socket.io contract quotes it (port from the environment).
cat > "$WORK/node/relay.js" <<'EOF'
const io = require("socket.io")(Number(process.env.PORT));
io.on("connection", (socket) => {
  socket.on("offer", (data) => socket.to(data.target).emit("offer", data));
  socket.on("answer", (data) => socket.to(data.target).emit("answer", data));
  socket.on("ice-candidate", (data) => socket.to(data.target).emit("ice-candidate", data));
});
EOF

exec python3 "$ROOT/bench/compare.py" --work "$WORK" "$@"
