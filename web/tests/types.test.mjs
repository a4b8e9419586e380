// The SDK's TypeScript declarations compile, strictly, against a usage file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

test("switchboard.d.ts type-checks against its documented usage", () => {
  const tsc = join(dirname(fileURLToPath(import.meta.url)), "node_modules/typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "es2022",
    "--moduleResolution", "bundler", "--lib", "es2022,dom", "--allowJs", "false", "types/usage.ts"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
