// kernels/rmsnorm.cu's fused fp8 entries on the CPU emulator (kernels/emulation/rmsnorm_q8_run.sh, bf16 and
// fp32 at WIDTH 272 and 4096): rms_norm_q8 and add_rms_norm_q8 bit for bit the norm then quant_fp8_act
// (out, residual_out, xq, s, x̂), dynamic and static scales, the register path and the loop path; and a
// copy whose scale is each thread's own max instead of the block's fails. The other deliberately broken
// copies: rmsnorm_q8_broken.sh (minutes), and every width and dtype: rmsnorm_q8_run.sh. Needs g++ ≥ 12.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/rmsnorm_q8_run.sh");
const NORM = kernelsPath("rmsnorm.cu");

describe("rmsnorm.cu rms_norm_q8 / add_rms_norm_q8 on the CPU emulator", { skip: noGxx }, () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-norm-q8-emu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string> = {}) =>
    spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, KILN_RMSNORM_Q8_DTYPES: "BF16 F32", KILN_RMSNORM_Q8_WIDTHS: "272 4096", ...env },
    });

  test("bit for bit the norm then quant_fp8_act, every case", () => {
    const r = run();
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /FAIL/);
    const cases = r.stdout.match(/^(add_)?rms_norm_q8 WIDTH \d+ block \d+ .*: ok /gm) ?? [];
    // 2 dtypes × 2 widths × 2 blocks × 2 kernels × 3 scales × (with and without x̂)
    assert.equal(cases.length, 2 * 2 * 2 * 2 * 3 * 2, r.stdout);
    assert.match(
      r.stdout,
      /^rms_norm_q8 WIDTH 4096 block 512 static 0\.002 x̂: ok \[\d{3,} codes at ±448\]$/m,
    );
  });

  test("a scale from each thread's own max, not the block's, fails", () => {
    const src = readFileSync(NORM, "utf8");
    const good = "kiln::block_max(mine ? kiln::act8::abs_max<V>(o, 0.f) : 0.f, scratch)";
    assert.ok(src.includes(good), "the reduction this test breaks");
    const path = join(dir, "rmsnorm.cu");
    writeFileSync(path, src.replace(good, "(mine ? kiln::act8::abs_max<V>(o, 0.f) : 0.f)"));
    const r = run({ KILN_RMSNORM_SRC: path, KILN_RMSNORM_Q8_DTYPES: "BF16", KILN_RMSNORM_Q8_WIDTHS: "4096" });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout, /^rms_norm_q8 WIDTH 4096 block 512 dynamic: FAIL/m);
  });
});
