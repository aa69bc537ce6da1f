// kernels/gemv_zp.cu on the CPU emulator (kernels/emulation/gemv_zp_run.sh, bf16): the CUDA-core int4-zp
// GEMVs (grouped and any-group, act-order) within their fp32 bound, and the tensor-core gemv_zp_mma (G 128
// and 256, k not a multiple of 128 too) within the bound of its roundings with its gated kernel bit for bit
// the plain one's outputs activated; dequant_zp bit for bit. A copy of gemv_wo_mma.cuh that drops the zero
// point from (q − z) fails it. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/gemv_zp_run.sh");
const MMA = kernelsPath("gemv_wo_mma.cuh");

describe("gemv_zp.cu on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-zp-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_GEMV_ZP_DTYPES: "BF16", ...env },
    });

  test("every check passes, gemv_zp_mma and its gated kernel among them", () => {
    const r = run();
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /FAIL/);
    const mma = r.stdout.match(/^gemv_zp_mma m \d n \d+ k \d+ G \d+: ok; gated inter \d+: ok$/gm) ?? [];
    assert.ok(mma.length >= 20, r.stdout);
    assert.match(r.stdout, /^gemv_zp_mma m 8 n 37 k 1056 G 128: ok; gated inter 18: ok$/m);
    assert.match(r.stdout, /^gemv_zp_mma m 1 n 37 k 512 G 256: ok; gated inter 18: ok$/m);
    assert.match(r.stdout, /^PASS$/m);
  });

  test("a (q − z) without the zero point fails", () => {
    const src = readFileSync(MMA, "utf8");
    const good = "return add2(add2(((w >> (4 * j)) & 0x000f000fu) | kM, kMinusM), negz);";
    assert.ok(src.includes(good), "the text this test breaks");
    const path = join(dir, "gemv_wo_mma.cuh");
    writeFileSync(path, src.replace(good, "return add2(((w >> (4 * j)) & 0x000f000fu) | kM, kMinusM);"));
    const r = run({ KILN_GEMV_WO_MMA_SRC: path });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^gemv_zp_mma m \d n \d+ k \d+ G \d+: FAIL/m);
  });
});
