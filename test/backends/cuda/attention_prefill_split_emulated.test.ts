// The split mode of kernels/attention_prefill.cu (attention_prefill_split and attention_prefill_merge)
// on the CPU emulator (kernels/emulation/attention_split_run.sh, which builds attention_split_check.cpp):
// a mixed step's launch over contexts ≤ 300 with an empty sequence and one whose later splits are empty,
// windows 0 and 100, splits 1, 2, 5 and 16, against the double reference within attention_README.md's
// bound, 1 split the unsplit kernel's bits, the `_kv8` twins the plain split kernel's bits over the cache
// they read; the tensor-core path (bf16, D 128, H 4/1) and the generic path (fp32). The long contexts
// (2,176 and 4,100 keys) and the other shapes are the script's default run, minutes each on 2 cores.
// Needs g++ ≥ 12 (skipped without one).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { kernelsPath, noGxx } from "./emulation.ts";

const SCRIPT = kernelsPath("emulation/attention_split_run.sh");

describe("attention_prefill.cu's split mode on the CPU emulator", { skip: noGxx }, () => {
  test("attention_prefill_split (bf16, D 128; the generic path: fp32) + attention_prefill_merge", () => {
    const r = spawnSync("bash", [SCRIPT], {
      encoding: "utf8",
      timeout: 600_000,
      env: { ...process.env, CONFIGS: "BF16 128 16 4 1 1;F32 128 16 4 1 1" },
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    for (const head of ["bf16 D=128 BLOCK_SIZE=16 H=4/1 pack=1", "f32 D=128 BLOCK_SIZE=16 H=4/1 pack=1"])
      assert.ok(r.stdout.includes(head), `${head} ran`);
    // Every run of both configurations: 2 windows × 4 split counts, 1 split the unsplit kernel's bits.
    assert.equal(r.stdout.match(/^ {2}w=\d+ splits=\d+: max err\/bound [\d.]+/gm)?.length, 16);
    assert.equal(r.stdout.match(/splits=1: .*\(= unsplit bits\)/g)?.length, 4);
    // The _kv8 twins (1 and 16 splits × 2 windows each): the plain split kernel's bits over their cache.
    assert.equal(r.stdout.match(/^ {2}kv8 w=\d+ splits=\d+: = the plain split kernel's bits/gm)?.length, 8);
    assert.doesNotMatch(r.stdout, /FAIL/);
    assert.match(r.stdout, /^PASS$/m);
  });
});
