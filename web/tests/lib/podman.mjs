// Podman for the packaging tests: containers of the locally made base image
// (scripts/test-images.sh), run as root.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** The base image scripts/test-images.sh makes from Debian's packages. */
export const TEST_IMAGE = "localhost/switchboard-test/debian:bookworm";

// crun refuses hosts with cgroups v1 and v2 mounted together ("hybrid"), as on the CI
// machines; runc runs there. SWITCHBOARD_PODMAN_RUNTIME picks another.
const runtime = process.env.SWITCHBOARD_PODMAN_RUNTIME || (existsSync("/usr/sbin/runc") || existsSync("/usr/bin/runc") ? "runc" : "");
const globals = runtime ? ["--runtime", runtime] : [];

/** Why the packaging tests cannot run here, or null. */
export function packagingUnavailable() {
  if (process.getuid?.() !== 0) return "not root";
  if (spawnSync("podman", ["--version"]).status !== 0) return "podman is not installed";
  if (podman(["image", "exists", TEST_IMAGE], { check: false }).status !== 0) {
    return `no ${TEST_IMAGE} (scripts/test-images.sh makes it)`;
  }
  return null;
}

/**
 * Root podman sets each container's open-file and process limits above this machine's hard
 * limits, which the kernel refuses: these flags keep them within. (The container's first
 * process starts under conmon, whose process limit podman sets to 32768.)
 */
export function ulimitArgs() {
  const hard = (flag) => Number(spawnSync("bash", ["-c", `ulimit -H${flag}`], { encoding: "utf8" }).stdout.trim()) || 1024;
  const [files, procs] = [hard("n"), Math.min(hard("u"), 32768)];
  return ["--ulimit", `nofile=${files}:${files}`, "--ulimit", `nproc=${procs}:${procs}`];
}

/** Runs `podman args`; throws on failure unless `check` is false. */
export function podman(args, { check = true, input, timeout = 600_000 } = {}) {
  const r = spawnSync("podman", [...globals, ...args], { encoding: "utf8", input, timeout, maxBuffer: 64 << 20 });
  if (check && r.status !== 0) {
    throw new Error(`podman ${args.join(" ")} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

/** `sh -c script` in the container; its stdout (throws on failure unless `check` is false). */
export function inContainer(name, script, opts = {}) {
  return podman(["exec", name, "sh", "-c", script], opts).stdout;
}

/** Polls `fn` (sync or async) until it returns a truthy value; throws `what` after `ms`. */
export async function eventually(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms (last: ${last?.message ?? last})`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}
