// kernels/gemv_fp8.cu on the CPU emulator (kernels/emulation/gemv_fp8_run.sh, bf16): the activation
// quantization bit for bit, the CUDA-core GEMVs within their fp32 bound, and the tensor-core
// gemv_fp8_mma (on mma_fp8_emu.h's m16n8k32 stand-in) within the stand-in's roundings, bit for bit on
// integer codes for m = 1 … 8, its gated kernel bit for bit the plain one's outputs activated. A copy of
// gemv_fp8_mma.cuh whose A fragment puts row g + 8 where k + 16 belongs fails it. The deliberately
// broken copies of every kernel: gemv_fp8_broken.sh (minutes). Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../kernels/emulation/gemv_fp8_run.sh", import.meta.url));
const MMA = fileURLToPath(new URL("../../../kernels/gemv_fp8_mma.cuh", import.meta.url));
const gxx = spawnSync("g++", ["--version"], { encoding: "utf8" });
const skip = gxx.status !== 0 ? "g++ not found" : false;

describe("gemv_fp8.cu on the CPU emulator", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-fp8-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_GEMV_FP8_DTYPES: "BF16", ...env },
    });

  test("every check passes; gemv_fp8_mma on integer codes for m = 1 … 8, and its gated kernel", () => {
    const r = run();
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /FAIL/);
    const exact = r.stdout.match(/^gemv_fp8_mma integer codes m (\d) n \d+ k \d+: ok$/gm) ?? [];
    assert.equal(exact.length, 4 * 2 * 8, r.stdout);
    for (let m = 1; m <= 8; m++)
      assert.ok(
        exact.some((l) => l.includes(` m ${m} `)),
        `m ${m}`,
      );
    assert.ok(/^gemv_fp8_mma dynamic m 8 n 37 k 8208: ok$/m.test(r.stdout), r.stdout);
    assert.equal(r.stdout.match(/^gemv_fp8_mma_gated_silu m \d inter 18 k \d+: ok$/gm)?.length, 15);
  });

  test("a wrong A fragment (a[1] and a[2] swapped) fails", () => {
    const src = readFileSync(MMA, "utf8");
    const good = "{w[i][0][u].x, w[i][1][u].x, w[i][0][u].y, w[i][1][u].y}";
    assert.ok(src.includes(good), "the fragment this test breaks");
    const path = join(dir, "gemv_fp8_mma.cuh");
    writeFileSync(path, src.replace(good, "{w[i][0][u].x, w[i][0][u].y, w[i][1][u].x, w[i][1][u].y}"));
    const r = run({ KILN_GEMV_FP8_MMA_SRC: path });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^gemv_fp8_mma integer codes m \d n \d+ k \d+: FAIL$/m);
  });
});
