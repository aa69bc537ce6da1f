// kernels/gemv_wo.cu on the CPU emulator (kernels/emulation/gemv_wo_run.sh, bf16): the CUDA-core GEMVs
// within their fp32 bound and each variant the other's bits; the tensor-core gemv_wo4_mma (on
// attention_ptx_emu.h's mma.sync stand-in) within the bound of its roundings for m = 1, 2, 8 over k with
// partial groups and vectors, and its gated kernel bit for bit the plain one's outputs activated;
// dequant_wo8/4 bit for bit; gemv_wo4_mma_p bit for bit gemv_wo4_mma. A copy of gemv_wo_mma.cuh whose A
// fragment puts row g + 8 where k + 8 belongs fails it, one whose magic number drops the sign flip (q + 8
// read as q), and one whose pipeline leaves a round unloaded. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/gemv_wo_run.sh");
const MMA = kernelsPath("gemv_wo_mma.cuh");

describe("gemv_wo.cu on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-wo-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_GEMV_WO_DTYPES: "BF16", ...env },
    });
  /** A copy of gemv_wo_mma.cuh with `good` (which must be in it) replaced by `bad`, run through the check. */
  const broken = (good: string, bad: string) => {
    const src = readFileSync(MMA, "utf8");
    assert.ok(src.includes(good), `the text this test breaks: ${good}`);
    const path = join(dir, "gemv_wo_mma.cuh");
    writeFileSync(path, src.replace(good, bad));
    return run({ KILN_GEMV_WO_MMA_SRC: path });
  };

  test("every check passes: the CUDA-core GEMVs, gemv_wo4_mma and its gated kernel, dequantization", () => {
    const r = run();
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /FAIL/);
    const mma =
      r.stdout.match(/^gemv_wo4_mma m (\d) n (\d+) k (\d+): ok; _p ok; gated inter (\d+): ok$/gm) ?? [];
    // n 1, 37, 50 × k 8 … 14336 × m 1, 2, 8, and the gated kernel over inter 1,031 (its sums the plain
    // kernel's bits only if both give a warp the same chunks); gemv_wo4_mma_p the plain kernel's bits
    assert.equal(mma.length, 3 * 7 * 3 + 1, r.stdout);
    assert.ok(/^gemv_wo4_mma m 8 n 50 k 8200: ok; _p ok; gated inter 25: ok$/m.test(r.stdout), r.stdout);
    assert.ok(/^gemv_wo4_mma m 8 n 50 k 14336: ok; _p ok; gated inter 25: ok$/m.test(r.stdout), r.stdout);
    assert.ok(/^gemv_wo4_mma m 8 n 2062 k 1032: ok; _p ok; gated inter 1031: ok$/m.test(r.stdout), r.stdout);
    assert.match(r.stdout, /^PASS$/m);
  });

  test("a wrong A fragment (row g + 8 and k + 8 swapped) fails", () => {
    const r = broken(
      "F::pair(wa[q], 0, za), F::pair(wb[q], 0, zb), F::pair(wa[q], 1, za)",
      "F::pair(wa[q], 0, za), F::pair(wa[q], 1, za), F::pair(wb[q], 0, zb)",
    );
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^gemv_wo4_mma m \d n \d+ k \d+: FAIL/m);
  });

  test("a pipeline that leaves a round's registers stale (its last odd round not loaded) fails", () => {
    const r = broken("if (r + 3 < rounds) load(b1, r + 3);", "if (r + 3 < rounds - 1) load(b1, r + 3);");
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^gemv_wo4_mma m \d n \d+ k 14336: ok; _p FAIL/m);
  });

  test("a magic number without the sign flip (q + 8 read as q) fails", () => {
    const r = broken("^ (kM | 0x00080008u)", "^ kM");
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^gemv_wo4_mma m \d n \d+ k \d+: FAIL/m);
  });
});
