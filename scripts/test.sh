#!/usr/bin/env bash
# Switchboard's whole test suite, from a fresh clone: installs what it needs, then runs
# formatting and lint checks, the Rust tests, and the browser end-to-end tests.
#
#   scripts/test.sh            everything
#   SKIP_BROWSER=1 scripts/test.sh   Rust only (no Chromium)
#
# System packages (Debian's chromium, coturn's test clients, ffmpeg/ffprobe to check the
# native peer's recordings, iproute2 and nftables for the NAT matrix, podman, runc,
# debootstrap and docker-compose for the packaging tests) are installed with apt-get when
# running as root; promtool is extracted from Debian's prometheus package; cargo-deb and
# podman-compose are installed under target/tools; npm packages are installed locally under
# web/tests/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# ---- system packages -------------------------------------------------------------------
need_apt=()
if [ -z "${SKIP_BROWSER:-}" ] && [ ! -x /usr/bin/chromium ] && [ ! -x /usr/lib/chromium/chromium ]; then
  need_apt+=(chromium)
fi
if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
  need_apt+=(coturn)
fi
# The native peer's media tests make IVF/Ogg inputs and check recordings with ffmpeg/ffprobe.
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  need_apt+=(ffmpeg)
fi
# Cluster tests run a real redis-server (and redis-cli, from the same package's dependencies).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  need_apt+=(redis-server)
fi
# Room-token tests make RSA, EC and Ed25519 key pairs with the openssl command.
command -v openssl >/dev/null || need_apt+=(openssl)
# The NAT matrix builds network namespaces (iproute2) with NAT rules (nftables); as root.
if [ -z "${SKIP_BROWSER:-}" ] && [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null || need_apt+=(iproute2)
  command -v nft >/dev/null || need_apt+=(nftables)
  # The packaging tests: the .deb under systemd and the container image, in podman (runc:
  # crun refuses hosts with both cgroup versions mounted) on a base image made with
  # debootstrap; Docker Compose (Debian's docker-compose) checks deploy/compose.yaml.
  command -v podman >/dev/null || need_apt+=(podman)
  command -v runc >/dev/null || need_apt+=(runc)
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  command -v docker-compose >/dev/null || need_apt+=(docker-compose)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages: ${need_apt[*]} (run as root to install them with apt-get)" >&2
    exit 1
  fi
fi

# ---- Rust ------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the hub crate does no IO and no JWT (no tokio, axum, redis or jsonwebtoken in its dependency tree)"
if cargo tree -p switchboard-core -e normal --prefix none | grep -E '^(tokio|axum|hyper|redis|mio|jsonwebtoken|aws-lc-rs) '; then
  echo "switchboard-core must not depend on IO crates" >&2
  exit 1
fi

step "cargo build"
cargo build --workspace --locked

step "Rust tests"
# coturn (installed above) checks Switchboard's TURN credentials: a missing coturn fails.
export SWITCHBOARD_REQUIRE_COTURN=1
export SWITCHBOARD_REQUIRE_FFMPEG=1
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --locked --doc

# ---- browser end-to-end -----------------------------------------------------------------
if [ -z "${SKIP_BROWSER:-}" ]; then
  step "npm install (web/tests)"
  (cd web/tests && npm ci --no-audit --no-fund --loglevel=error)
  # PyJWT, for the Python example of docs/OPERATIONS.md ("Authentication"), run as written.
  step "pip install PyJWT (web/tests/.pydeps)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target web/tests/.pydeps 'PyJWT==2.10.1'
  # Prometheus's promtool checks /metrics; taken out of Debian's prometheus package into
  # target/ (not installed: no Prometheus service is set up on this machine).
  if ! command -v promtool >/dev/null && [ ! -x target/promtool/usr/bin/promtool ]; then
    step "promtool (from Debian's prometheus package, into target/promtool)"
    mkdir -p target/promtool
    (
      cd target/promtool
      apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }
      dpkg-deb -x prometheus_*.deb .
      rm -f prometheus_*.deb
    )
  fi
  if [ "$(id -u)" = 0 ]; then
    # The Debian package of the debug build (the package's layout and scripts are those of a
    # release; a release build would add minutes): cargo-deb, pinned, under target/tools.
    if [ ! -x target/tools/bin/cargo-deb ]; then
      step "cargo install cargo-deb (into target/tools)"
      cargo install --quiet --locked cargo-deb --version 3.7.0 --root target/tools
    fi
    step "cargo deb (target/debian)"
    rm -f target/debian/switchboard_*.deb
    target/tools/bin/cargo-deb --quiet -p switchboard --profile dev --no-build --no-dbgsym -o target/debian/
    step "base image for the packaging tests (debootstrap, podman import)"
    scripts/test-images.sh
    # podman-compose runs deploy/compose.yaml: from PyPI, pinned (Debian's 1.0.3 cannot run
    # services with host networking), into target/tools/podman-compose.
    if [ ! -f target/tools/podman-compose/podman_compose.py ]; then
      step "pip install podman-compose (target/tools/podman-compose)"
      python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target target/tools/podman-compose 'podman-compose==1.5.0'
    fi
  fi
  step "browser tests: official SDKs in headless Chromium, NAT matrix, packages"
  # As root the NAT matrix (network namespaces) and the packaging tests must run; otherwise
  # they say they skip.
  if [ "$(id -u)" = 0 ]; then export SWITCHBOARD_REQUIRE_NAT=1 SWITCHBOARD_REQUIRE_PACKAGING=1; fi
  (cd web/tests && SWITCHBOARD_BIN="$root/target/debug/switchboard" node --test --test-concurrency=1 ./*.test.mjs)
fi

step "all tests passed"
