// TLS in the binary with real browsers: a test CA made here with openssl signs the server's
// certificate; Chromium trusts exactly the server's keys (--ignore-certificate-errors-spki-list);
// the demo page calls over https:// and wss://, and the certificate is replaced during the
// call: new connections get the new one, the call goes on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, renameSync, copyFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { startSwitchboard, launch, open, until, assertVideoFlowing } from "./lib/harness.mjs";

const dir = mkdtempSync(join(tmpdir(), "sb-tls-"));
const ssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });

/** A P-256 leaf for localhost/127.0.0.1 signed by the test CA; returns its SPKI SHA-256 (base64). */
function leaf(name) {
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`,
    "-out", `${name}.csr`, "-subj", "/CN=localhost");
  writeFileSync(join(dir, "san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", `${name}.pem`, "-days", "2", "-extfile", "san.ext");
  const pub = ssl("x509", "-in", `${name}.pem`, "-pubkey", "-noout");
  const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: pub });
  return execFileSync("openssl", ["dgst", "-sha256", "-binary"], { input: der }).toString("base64");
}

/** Installs leaf `name` as the served certificate, the way an ACME client does (rename). */
function install(name) {
  for (const [from, to] of [[`${name}.pem`, "cert.pem"], [`${name}.key`, "key.pem"]]) {
    copyFileSync(join(dir, from), join(dir, `${to}.tmp`));
    renameSync(join(dir, `${to}.tmp`), join(dir, to));
  }
}

/** The certificate a new TLS connection to the server is shown (its fingerprint). */
const shown = (port) => new Promise((ok, fail) => {
  const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: readFileSync(join(dir, "ca.pem")) }, () => {
    ok(s.getPeerCertificate().fingerprint256);
    s.end();
  });
  s.on("error", fail);
});
const fingerprint = (name) => new crypto.X509Certificate(readFileSync(join(dir, `${name}.pem`))).fingerprint256;

let sb, browserA, browserB, spki;

before(async () => {
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
    "-out", "ca.pem", "-days", "2", "-subj", "/CN=Switchboard test CA");
  spki = [leaf("one"), leaf("two")];
  install("one");
  sb = await startSwitchboard(["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem"),
    "--tls-reload-secs", "1", "--turn-tls-listen", "127.0.0.1:0"]);
  const extraArgs = [`--ignore-certificate-errors-spki-list=${spki.join(",")}`];
  [browserA, browserB] = await Promise.all([launch({ extraArgs }), launch({ extraArgs })]);
});

after(async () => {
  await Promise.all([browserA?.close(), browserB?.close()]);
  if (sb) await sb.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the demo page calls over https and wss; a replaced certificate reaches new connections and the call goes on", async () => {
  const url = `https://localhost:${sb.port}/?room=tls-call`;
  assert.equal(await shown(sb.port), fingerprint("one"));
  const a = await open(browserA, url);
  const b = await open(browserB, url);
  const state = (p, who, want) => until(p, `${who} ${want}`, (w) => window.demo.call?.state === w, want);
  await Promise.all([state(a, "A", "connected"), state(b, "B", "connected")]);
  assert.equal(await a.evaluate(() => window.demo.call.url), `wss://localhost:${sb.port}/WebRTCAppEE/websocket`);
  const frames = () => window.demo.call.stats().then((s) => s?.framesDecoded ?? 0);
  await assertVideoFlowing(b, "B", "remote-video", frames);

  install("two");
  const deadline = Date.now() + 15000;
  while ((await shown(sb.port)) !== fingerprint("two")) {
    assert.ok(Date.now() < deadline, "the new certificate never reached new connections");
    await new Promise((r) => setTimeout(r, 200));
  }
  // The call is untouched: same signaling sockets, frames still decoding both ways.
  await assertVideoFlowing(a, "A after the reload", "remote-video", frames);
  assert.equal(await a.evaluate(() => window.demo.call.state), "connected");
  // A new page loads over the new certificate and joins another room.
  const c = await open(browserA, `https://localhost:${sb.port}/?room=tls-after`);
  await state(c, "C", "waiting");
  await Promise.all([a.close(), b.close(), c.close()]);
});
