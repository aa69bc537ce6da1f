// kernels/awq_search.cu on the CPU emulator (kernels/emulation/awq_search_run.sh): its error energies
// are the TypeScript reference's arithmetic bit for bit (the C++ reading of it in awq_search_check.cpp),
// on odd shapes, exact rounding ties and an all-zero group. Needs g++ ≥ 12 (skipped without one).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../kernels/emulation/awq_search_run.sh", import.meta.url));
const gxx = spawnSync("g++", ["--version"], { encoding: "utf8" });

test("awq_search.cu on the emulator: the reference's energies, bit for bit", {
  skip: gxx.status !== 0 ? "g++ not found" : false,
}, () => {
  const r = spawnSync("bash", [SCRIPT], { encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^ok {3}clip .*$/m);
  assert.match(r.stdout, /^ok {3}scale .*$/m);
  assert.doesNotMatch(r.stdout, /FAIL/);
});
