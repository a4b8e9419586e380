#!/usr/bin/env bash
# The base image of the packaging tests (web/tests/package.test.mjs, container.test.mjs,
# compose.test.mjs), made here from Debian's packages with debootstrap and `podman import`:
# nothing in the test suite pulls from a container registry. One image serves every role:
# systemd (the .deb's unit runs under it), a C toolchain (the Dockerfile's build stage, with
# this machine's Rust toolchain mounted), redis-server and nginx (the compose file's Redis
# and TLS load balancer). Made once; `podman rmi` it to make it again.
#
#   scripts/test-images.sh            make localhost/switchboard-test/debian:bookworm if missing
set -euo pipefail
cd "$(dirname "$0")/.."
image=localhost/switchboard-test/debian:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if podman image exists "$image"; then
  echo "$image: already made"
  exit 0
fi
mkdir -p target
rootfs=$(mktemp -d target/test-image-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,procps,ca-certificates,gcc,libc6-dev,redis-server,nginx \
  bookworm "$rootfs" "$mirror" > target/test-image-debootstrap.log 2>&1 \
  || { tail -20 target/test-image-debootstrap.log >&2; exit 1; }
# Redis and nginx run only where a test starts them, not at every boot of the image.
rm -f "$rootfs"/etc/systemd/system/multi-user.target.wants/{nginx,redis-server}.service
# As the Dockerfile's build stage, it finds cargo on PATH: this machine's Rust toolchain,
# which the container tests mount at the same paths (so the build there reuses target/).
tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/sbin/init"]' \
  --change "ENV CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
  --change "ENV RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
  --change "ENV PATH=${CARGO_HOME:-$HOME/.cargo}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  - "$image" > /dev/null
echo "$image: made"
