// The Debian package (cargo-deb, built by scripts/test.sh into target/debian/) as an operator
// installs it: `dpkg -i` in a Debian container booted with systemd (the base image of
// scripts/test-images.sh, host networking), so the packaged unit runs under a real systemd
// with all its hardening; a call through it with the demo page in Chromium; reload and stop;
// `dpkg -r` and `dpkg -P` leave the system as it was.
//
// Needs root, podman and the base image; scripts/test.sh sets SWITCHBOARD_REQUIRE_PACKAGING=1
// when it runs as root, which turns a skip into a failure.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { dirname, basename, join } from "node:path";
import { launch, freePort, repo, eventually } from "./lib/harness.mjs";
import { demoCall } from "./lib/demo.mjs";
import { TEST_IMAGE, packagingUnavailable, podman, inContainer, ulimitArgs } from "./lib/podman.mjs";

const REQUIRE = process.env.SWITCHBOARD_REQUIRE_PACKAGING === "1";
const debDir = join(repo, "target/debian");
const deb = process.env.SWITCHBOARD_DEB
  || (existsSync(debDir) ? readdirSync(debDir).find((n) => /^switchboard_.*\.deb$/.test(n)) : null);
const skipReason = packagingUnavailable() ?? (deb ? null : `no package in ${debDir} (scripts/test.sh builds it)`);
if (skipReason) {
  if (REQUIRE) throw new Error(`packaging tests required (SWITCHBOARD_REQUIRE_PACKAGING=1) but cannot run: ${skipReason}`);
  console.log(`SKIPPED: Debian package: ${skipReason}`);
}
const debPath = deb && (deb.includes("/") ? deb : join(debDir, deb));

const name = `sb-deb-test-${process.pid}`;
const sh = (script, opts) => inContainer(name, script, opts);
let port, turnPort, browsers = [];

/** Files of the container's root file system, but for what dpkg, systemd and logs change. */
const fileList = () => sh(
  "find / -xdev \\( -path /proc -o -path /sys -o -path /run -o -path /tmp -o -path /var/lib/dpkg " +
  "-o -path /var/log -o -path /var/cache -o -path /var/lib/systemd -o -path /var/tmp -o -path /pk \\) -prune " +
  "-o -print | sort");

const health = async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;

let before_files;

before(async () => {
  if (skipReason) return;
  [port, turnPort] = [await freePort(), await freePort()];
  podman(["rm", "-f", name], { check: false });
  podman(["run", "-d", "--name", name, "--systemd=always", "--network", "host", ...ulimitArgs(),
    "-v", `${dirname(debPath)}:/pk:ro`, TEST_IMAGE, "/sbin/init"]);
  await eventually("systemd in the container is up", () =>
    /^(running|degraded)/.test(sh("systemctl is-system-running || true")));
  before_files = fileList();
  browsers = await Promise.all([launch(), launch()]);
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  if (!skipReason) podman(["rm", "-f", "-t", "0", name], { check: false });
});

test("dpkg -i installs the binary, the hardened unit and the conffiles, and starts the service", { skip: !!skipReason }, async () => {
  // An operator's drop-in (`systemctl edit switchboard`): this test's free ports, so the
  // service cannot collide with anything on this machine's 5080 and 3478.
  sh(`mkdir -p /etc/systemd/system/switchboard.service.d && printf '%s\\n' '[Service]' ` +
    `'Environment=SWITCHBOARD_LISTEN=127.0.0.1:${port} SWITCHBOARD_TURN_LISTEN=127.0.0.1:${turnPort}' ` +
    "> /etc/systemd/system/switchboard.service.d/test-ports.conf");
  const out = sh(`dpkg -i /pk/${basename(debPath)} 2>&1`);
  assert.match(out, /Setting up switchboard/);
  await eventually("the service answers /healthz", health);
  assert.equal(sh("systemctl is-enabled switchboard").trim(), "enabled");
  assert.equal(sh("systemctl is-active switchboard").trim(), "active");
  assert.match(sh("/usr/bin/switchboard --version"), /^switchboard \d+\.\d+\.\d+ \(/);

  // Started by the unit as written, with the packaged configuration file.
  const pid = sh("systemctl show -p MainPID --value switchboard").trim();
  assert.match(sh(`tr '\\0' ' ' < /proc/${pid}/cmdline`), /^\/usr\/bin\/switchboard serve --config \/etc\/switchboard\/switchboard\.toml\s*$/);
  // Hardening in effect: a dynamic non-root user, no capabilities, no new privileges, a
  // system call filter.
  const status = sh(`cat /proc/${pid}/status`);
  const field = (k) => status.match(new RegExp(`^${k}:\\s*(.*)$`, "m"))[1].trim();
  assert.notEqual(field("Uid").split(/\s+/)[0], "0");
  assert.equal(field("CapEff"), "0000000000000000");
  assert.equal(field("NoNewPrivs"), "1");
  assert.equal(field("Seccomp"), "2");
  assert.match(sh("systemd-analyze security switchboard --no-pager 2>&1"), /Overall exposure level for switchboard\.service: [0-1]\.\d OK/);
  assert.equal(sh("systemd-analyze verify switchboard.service 2>&1"), "");

  // Conffiles: the commented configuration, and the secrets file readable by root only.
  const conffiles = sh("dpkg-query -W -f='${Conffiles}' switchboard");
  assert.match(conffiles, /\/etc\/switchboard\/switchboard\.toml [0-9a-f]{32}/);
  assert.match(conffiles, /\/etc\/switchboard\/switchboard\.env [0-9a-f]{32}/);
  assert.equal(sh("stat -c '%a %U' /etc/switchboard/switchboard.env").trim(), "600 root");
  assert.match(sh("journalctl -u switchboard --no-pager"), new RegExp(`listening on 127\\.0\\.0\\.1:${port}`));
  // The sandbox leaves what the server reads about itself: its process metrics and limits.
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /^process_open_fds \d+/m);
  assert.match(metrics, /^process_max_fds \d+/m);
  assert.doesNotMatch(sh("journalctl -u switchboard --no-pager"), /WARN|ERROR/);
});

test("a call through the installed service with the demo page", { skip: !!skipReason }, async () => {
  const url = `http://127.0.0.1:${port}/?room=from-the-package`;
  const pages = await demoCall(browsers[0], url, browsers[1], url);
  await Promise.all(pages.map((p) => p.context().close()));
});

test("an upgrade keeps the operator's configuration and restarts the service", { skip: !!skipReason }, async () => {
  // The operator changed a setting.
  sh("sed -i 's/^#idle_timeout_secs = 20$/idle_timeout_secs = 30/' /etc/switchboard/switchboard.toml && systemctl restart switchboard");
  await eventually("the service answers /healthz", health);
  const before = sh("systemctl show -p MainPID --value switchboard").trim();
  // A newer package: the same one with the next Debian revision.
  sh(`rm -rf /tmp/up && dpkg-deb -R /pk/${basename(debPath)} /tmp/up && ` +
    "sed -i 's/^Version: \\(.*\\)-1$/Version: \\1-2/' /tmp/up/DEBIAN/control && dpkg-deb -Znone -b /tmp/up /tmp/switchboard-up.deb >/dev/null");
  const out = sh("dpkg -i /tmp/switchboard-up.deb 2>&1");
  assert.match(out, /Unpacking switchboard \(\S+-2\) over \(\S+-1\)/);
  assert.match(sh("dpkg-query -W -f='${Version}' switchboard"), /-2$/);
  assert.match(sh("grep idle_timeout_secs /etc/switchboard/switchboard.toml"), /^idle_timeout_secs = 30$/m);
  await eventually("the upgraded service answers /healthz", health);
  const after = sh("systemctl show -p MainPID --value switchboard").trim();
  assert.notEqual(after, before, "not restarted");
  assert.notEqual(after, "0");
  assert.equal(sh("systemctl is-enabled switchboard").trim(), "enabled");
});

test("reload keeps it running; stop is quick; dpkg -r and dpkg -P leave the system as it was", { skip: !!skipReason }, async () => {
  const pid = sh("systemctl show -p MainPID --value switchboard").trim();
  sh("systemctl reload switchboard");
  assert.equal(sh("systemctl show -p MainPID --value switchboard").trim(), pid);
  assert.ok(await health());
  const t0 = Date.now();
  sh("systemctl stop switchboard");
  // The unit gives shutdown_grace_secs (5 s) to clients; with none connected it is at once.
  assert.ok(Date.now() - t0 < 5000, `stop took ${Date.now() - t0} ms`);
  assert.equal(sh("systemctl is-active switchboard || true").trim(), "inactive");
  assert.match(sh("journalctl -u switchboard --no-pager"), /stopped/);

  sh("dpkg -r switchboard");
  assert.equal(sh("test -e /usr/bin/switchboard || echo gone").trim(), "gone");
  assert.equal(sh("test -e /lib/systemd/system/switchboard.service || test -e /usr/lib/systemd/system/switchboard.service || echo gone").trim(), "gone");
  // Removed, not purged: the configuration stays, as Debian's policy wants.
  assert.match(sh("dpkg-query -W -f='${db:Status-Abbrev}' switchboard"), /^rc/);
  assert.match(sh("ls /etc/switchboard"), /switchboard\.toml/);
  sh("dpkg -P switchboard && rm -r /etc/systemd/system/switchboard.service.d");
  assert.equal(sh("dpkg-query -W switchboard 2>&1 || true").includes("no packages found matching switchboard"), true);
  assert.equal(fileList(), before_files);
});
