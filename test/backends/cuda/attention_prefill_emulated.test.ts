// kernels/attention_prefill.cu on the CPU emulator (kernels/emulation/attention_run.sh, which builds
// attention_check.cpp): attention_prefill's tensor-core path (4 warps, 128 threads) and its `_kv8` twin,
// at the Llama-3 8B head shape scaled down to 8/2 heads (bf16, D 128, BLOCK_SIZE 16), against the check's double reference: packed
// sequences with cached prefixes, an empty one, windows 0 and 40, grid.x 1, poisoned slots the kernel
// must not read. The whole matrix (dtypes, D 64, BLOCK_SIZE 7, MHA) is the script's default run, too long
// for CI on 2 cores. Needs g++ ≥ 12 (skipped without one).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/attention_run.sh");

describe("attention_prefill.cu on the CPU emulator", { skip: noGxx }, () => {
  test("attention_prefill (and _kv8): bf16, D 128, H 8/2, BLOCK_SIZE 16", () => {
    const r = spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 600_000,
      env: {
        ...process.env,
        PREFILL_CFG: "BF16 128 16 8 2",
        DECODE: "0",
        ROPE: "0",
      },
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^bf16 D=128 BLOCK_SIZE=16 H=8\/2 BLOCK_M=128 threads=128 .* PASS$/m);
    assert.match(r.stdout, /^PASS$/m);
  });
});
