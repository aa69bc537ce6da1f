// Prefill attention's launch shape (src/backends/cuda/prefill_tiles.ts) on the CPU: the export, rows and
// threads per CTA and the dynamic shared memory the runtime passes must be what
// kernels/attention_prefill.cu declares (its kBlockM, kBlockN, row stride kLds of each path and
// kPrefillThreads), or CTAs would skip rows, run with missing warps or overrun shared memory.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { prefillTiles } from "../../../src/backends/cuda/prefill_tiles.ts";

const source = readFileSync(join(import.meta.dirname, "../../../kernels/attention_prefill.cu"), "utf8");

/** The kernel's constexpr `name` in the tensor-core branch (first definition) or the generic one. */
function constant(name: string, branch: "tensor" | "generic"): string {
  const all = [...source.matchAll(new RegExp(`constexpr int ${name} = ([^;]+);`, "g"))].map((m) =>
    m[1].trim(),
  );
  assert.ok(all.length > 0, `${name} not found in attention_prefill.cu`);
  return branch === "tensor" ? all[0] : all[all.length - 1];
}

/** The exports launched with kPrefillThreads threads: `__launch_bounds__(attn::kPrefillThreads, 2) name(`. */
const entries = [...source.matchAll(/__launch_bounds__\(attn::kPrefillThreads, 2\)\s+(\w+)\(/g)].map(
  (m) => m[1],
);

describe("prefillTiles mirrors attention_prefill.cu", () => {
  test("the source exports attention_prefill, its _kv8 and _split twins, all of 4 warps", () => {
    assert.deepEqual(entries, [
      "attention_prefill",
      "attention_prefill_kv8",
      "attention_prefill_split",
      "attention_prefill_split_kv8",
    ]);
    // One thread count for both paths: 4 warps of 32.
    assert.equal(constant("kPrefillThreads", "tensor"), "4 * kWarp");
    assert.equal(constant("kPrefillThreads", "generic"), "4 * kWarp");
  });

  test("tensor-core path (fp16/bf16, head 64 and 128): export, rows, threads and shared memory", () => {
    const blockM = Number(constant("kBlockM", "tensor"));
    const blockN = Number(constant("kBlockN", "tensor"));
    assert.equal(constant("kLds", "tensor"), "HEAD_DIM + 8");
    assert.match(constant("kSmemElems", "tensor"), /^\(kBlockM \+ 4 \* kBlockN\) \* kLds$/);
    for (const dtype of ["bf16", "fp16"] as const) {
      for (const headDim of [64, 128]) {
        const what = `${dtype} head ${headDim}`;
        const t = prefillTiles(dtype, headDim);
        assert.ok(entries.includes(t.kernel), what);
        assert.equal(t.kernel, "attention_prefill", what);
        assert.equal(t.blockM, blockM, what);
        assert.equal(t.threads, 4 * 32, what);
        assert.equal(t.sharedBytes, (blockM + 4 * blockN) * (headDim + 8) * 2, what);
        assert.ok(t.sharedBytes <= 227 * 1024, "fits one CTA's shared memory on sm_90");
      }
    }
  });

  test("generic path (fp32, other heads): rows per CTA, 128 threads, static shared memory only", () => {
    // constexpr int kBlockM = HEAD_DIM <= 128 ? 16 : 8;
    const [small, large] = /HEAD_DIM <= 128 \? (\d+) : (\d+)/
      .exec(constant("kBlockM", "generic"))
      ?.slice(1)
      .map(Number) ?? [NaN, NaN];
    for (const [dtype, headDim, rows] of [
      ["fp32", 128, small],
      ["fp32", 64, small],
      ["fp32", 256, large],
      ["bf16", 80, small],
      ["fp16", 256, large],
    ] as const) {
      assert.deepEqual(
        prefillTiles(dtype, headDim),
        { kernel: "attention_prefill", blockM: rows, threads: 128, sharedBytes: 0 },
        `${dtype} head ${headDim}`,
      );
    }
  });
});
