# Switchboard's container image (docs/OPERATIONS.md, "Container image"):
#
#   podman build --format docker -t switchboard .      (or: docker build -t switchboard .)
#   podman run --network host switchboard
#
# Build arguments:
#   BUILDER_IMAGE        the build stage: Debian with Rust (cargo on PATH) and a C compiler
#   RUNTIME_IMAGE        the runtime stage: Debian (glibc) of the builder's release or newer
#   CARGO_PROFILE        release (default); the test suite builds `dev`, to reuse its build
#   SWITCHBOARD_GIT_REV  the revision `switchboard --version` names (.git is not copied in)
#   SRC_DIR              where the sources are built (the test suite: its checkout's path)
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
ARG CARGO_PROFILE=release
ARG SWITCHBOARD_GIT_REV=unknown
ARG SRC_DIR=/src
WORKDIR ${SRC_DIR}
COPY . .
RUN SWITCHBOARD_GIT_REV="${SWITCHBOARD_GIT_REV}" \
      cargo build --locked --profile "${CARGO_PROFILE}" -p switchboard --bin switchboard \
 && dir=$(if [ "${CARGO_PROFILE}" = dev ]; then echo debug; else echo "${CARGO_PROFILE}"; fi) \
 && install -D -m 0755 "target/${dir}/switchboard" /out/usr/bin/switchboard \
 && strip --strip-debug /out/usr/bin/switchboard \
 && install -D -m 0644 deploy/switchboard.toml /out/etc/switchboard/switchboard.toml \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

FROM ${RUNTIME_IMAGE}
# The binary (without its debug sections: the release profile keeps line tables), the
# commented configuration file (every setting at its default), and CA certificates for HTTPS
# webhooks.
COPY --from=build /out/ /
# Not root; the user needs no home and no entry in /etc/passwd.
USER 10001:10001
# Settings: SWITCHBOARD_* variables (e.g. SWITCHBOARD_TURN_SECRET, SWITCHBOARD_REDIS_URL),
# or a file mounted over /etc/switchboard/switchboard.toml.
ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml
# HTTP and WebSocket (the demo page, all three dialects, /healthz, /metrics); STUN/TURN over
# UDP and TCP; TURN over TLS; the TURN relay ports (SWITCHBOARD_TURN_RELAY_PORTS).
EXPOSE 5080/tcp 3478/udp 3478/tcp 5349/tcp 49152-65535/udp
# `switchboard health` asks /healthz on the port and scheme the settings give.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["/usr/bin/switchboard", "health"]
# SIGTERM: stop accepting, tell clients, wait SWITCHBOARD_SHUTDOWN_GRACE_SECS (5 s); the
# default 10 s stop timeout of podman and docker covers it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/switchboard"]
CMD ["serve"]
