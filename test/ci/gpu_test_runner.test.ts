// `npm run test:gpu` (scripts/test.mjs gpu) must not pass when no GPU test ran: every GPU suite skips
// itself without a device, so a run on a machine without a GPU or driver would otherwise exit 0 with
// zero tests. Runs the script on two stand-in test files: one whose suite skips as the GPU suites do,
// one whose test runs.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "kiln-gpu-runner-"));
const skipped = join(dir, "skipped.test.ts");
const ran = join(dir, "ran.test.ts");
writeFileSync(
  skipped,
  `import { describe, it } from "node:test";\ndescribe("kernels", { skip: "no CUDA device: stand-in" }, () => { it("k", () => {}); });\n`,
);
writeFileSync(
  ran,
  `import { describe, it } from "node:test";\ndescribe("kernels", () => { it("k", () => {}); });\n`,
);

function runGpuSuite(args: string[], env: Record<string, string> = {}) {
  const { KILN_ALLOW_NO_GPU: _, ...base } = process.env;
  const r = spawnSync(process.execPath, ["scripts/test.mjs", "gpu", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...base, ...env },
  });
  return { status: r.status, stderr: r.stderr.trim() };
}

describe("scripts/test.mjs gpu", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("fails with one line naming the skip reason when every GPU test was skipped", () => {
    const r = runGpuSuite([skipped]);
    assert.equal(r.status, 1);
    const lines = r.stderr.split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^test:gpu ran no GPU test \(skipped: no CUDA device: stand-in\)/);
    assert.match(lines[0], /--allow-no-gpu or KILN_ALLOW_NO_GPU=1/);
  });

  test("--allow-no-gpu and KILN_ALLOW_NO_GPU=1 allow a run without a GPU test", () => {
    assert.equal(runGpuSuite(["--allow-no-gpu", skipped]).status, 0);
    assert.equal(runGpuSuite([skipped], { KILN_ALLOW_NO_GPU: "1" }).status, 0);
  });

  test("passes when a GPU test ran", () => {
    const r = runGpuSuite([ran, skipped]);
    assert.equal(r.status, 0, r.stderr);
  });

  test("--allow-no-gpu is refused outside the GPU suite", () => {
    const r = spawnSync(process.execPath, ["scripts/test.mjs", "--allow-no-gpu", ran], {
      cwd: ROOT,
      encoding: "utf8",
    });
    assert.equal(r.status, 2);
  });
});
