// kernels/gemv_fp8.cu on the CPU emulator (kernels/emulation/gemv_fp8_run.sh, bf16): the activation
// quantization bit for bit, the CUDA-core GEMVs within their fp32 bound, and the tensor-core
// gemv_fp8_mma (on mma_fp8_emu.h's m16n8k32 stand-in) within the stand-in's roundings, bit for bit on
// integer codes for m = 1 … 8, its gated kernel bit for bit the plain one's outputs activated; the
// conversion-free gemv_fp8_bits (plain linears' decode GEMV) bit for bit gemv_fp8's, m = 1 … 8,
// its integer decoding exact over every code, quant_fp8_act's x̂ bit for bit e4m3(xq). A copy of
// gemv_fp8_mma.cuh whose A fragment puts row g + 8 where k + 16 belongs fails it, and a copy of
// fp8_act.cuh (its E4M3 decoding) whose mask keeps a copy of the sign in the exponent. The deliberately
// broken copies of every kernel: gemv_fp8_broken.sh (minutes). Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/gemv_fp8_run.sh");
const MMA = kernelsPath("gemv_fp8_mma.cuh");
const ACT = kernelsPath("fp8_act.cuh");

describe("gemv_fp8.cu on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-fp8-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_GEMV_FP8_DTYPES: "BF16", ...env },
    });
  let unbroken: ReturnType<typeof run> | undefined;
  const good = () => {
    unbroken ??= run(); // the unbroken kernels' run, shared by the tests that read it
    return unbroken;
  };

  test("every check passes; gemv_fp8_mma on integer codes for m = 1 … 8, and its gated kernel", () => {
    const r = good();
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

  test("gemv_fp8_bits gives gemv_fp8's bits for m = 1 … 8; x̂ is e4m3(xq)", () => {
    const r = good();
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^e4m3 by integer ops: 254 codes \(14 fp32 subnormals\) and 1000 vectors: ok$/m);
    const codes = r.stdout.match(/^gemv_fp8_bits codes m (\d) n \d+ k \d+: ok$/gm) ?? [];
    assert.equal(codes.length, 5 * 2 * 8, r.stdout);
    for (let m = 1; m <= 8; m++)
      assert.ok(
        codes.some((l) => l.includes(` m ${m} `)),
        `m ${m}`,
      );
    assert.equal(r.stdout.match(/^gemv_fp8_bits (dynamic|static) m \d n \d+ k \d+: ok$/gm)?.length, 60);
    const total = r.stdout.match(/^gemv_fp8_bits outputs bit for bit gemv_fp8's: (\d+);/m);
    assert.ok(total && Number(total[1]) > 0, r.stdout);
    assert.ok(Number(r.stdout.match(/^x̂ values bit for bit e4m3\(xq\): (\d+)$/m)?.[1]) > 0, r.stdout);
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

  test("a bits decoding mask that keeps a sign copy in the exponent (0x8FF00000) fails", () => {
    const src = readFileSync(ACT, "utf8");
    const good = "kE4m3Mask = 0x87F00000u";
    assert.ok(src.includes(good), "the mask this test breaks");
    const path = join(dir, "fp8_act.cuh");
    writeFileSync(path, src.replace(good, "kE4m3Mask = 0x8FF00000u"));
    const r = run({ KILN_FP8_ACT_SRC: path });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^e4m3 by integer ops: .*: FAIL$/m);
    assert.match(r.stdout, /^gemv_fp8_bits codes m \d n \d+ k \d+: FAIL/m);
  });
});
