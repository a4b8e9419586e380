// Podman for the packaging tests: containers of the locally made base image
// (scripts/test-images.sh), run as root.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { repo } from "./harness.mjs";

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

/**
 * Builds the Dockerfile into `tag` with the test base image for both stages and the dev
 * profile, reusing this checkout's target/ and this machine's Rust toolchain (mounted at the
 * paths the base image's environment names).
 */
export function buildImage(tag) {
  const cargoHome = process.env.CARGO_HOME || join(homedir(), ".cargo");
  const rustupHome = process.env.RUSTUP_HOME || join(homedir(), ".rustup");
  const rev = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: repo, encoding: "utf8" }).stdout.trim() || "unknown";
  podman(["build", "--format", "docker", "--layers=false", "--network", "host", ...ulimitArgs(),
    "--build-arg", `BUILDER_IMAGE=${TEST_IMAGE}`, "--build-arg", `RUNTIME_IMAGE=${TEST_IMAGE}`,
    "--build-arg", "CARGO_PROFILE=dev", "--build-arg", `SWITCHBOARD_GIT_REV=${rev}`,
    "--build-arg", `SRC_DIR=${repo}`,
    "-v", `${join(repo, "target")}:${join(repo, "target")}`, "-v", `${cargoHome}:${cargoHome}`,
    "-v", `${rustupHome}:${rustupHome}:ro`, "-t", tag, repo]);
  return rev;
}

/** Where scripts/test.sh installs podman-compose (PyPI; Debian's 1.0.3 breaks host networking). */
export const PODMAN_COMPOSE_DIR = join(repo, "target/tools/podman-compose");

/**
 * `podman-compose args` (PODMAN_COMPOSE_DIR's, else the one on PATH) with extra `env`, and a
 * containers.conf giving podman this module's runtime and limits; throws on failure unless
 * `check` is false.
 */
export function podmanCompose(args, { env = {}, check = true, timeout = 300_000 } = {}) {
  const local = existsSync(join(PODMAN_COMPOSE_DIR, "podman_compose.py"));
  const [cmd, argv] = local ? ["python3", ["-m", "podman_compose", ...args]] : ["podman-compose", args];
  const r = spawnSync(cmd, argv, {
    encoding: "utf8", timeout, maxBuffer: 64 << 20,
    env: { ...process.env, ...(local ? { PYTHONPATH: PODMAN_COMPOSE_DIR } : {}), CONTAINERS_CONF: containersConf(), ...env },
  });
  if (check && r.status !== 0) throw new Error(`podman-compose ${args.join(" ")} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

let conf;
/** A containers.conf with the runtime and limits `podman()` passes as flags. */
function containersConf() {
  if (conf) return conf;
  const [, files, , procs] = ulimitArgs().map((a) => a.split("=")[1]);
  conf = join(mkdtempSync(join(tmpdir(), "sb-containers-")), "containers.conf");
  writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=${files}", "nproc=${procs}"]\n`
    + (runtime ? `[engine]\nruntime = "${runtime}"\n` : ""));
  return conf;
}
