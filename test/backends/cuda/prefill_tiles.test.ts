// attention_prefill's launch shape (src/backends/cuda/prefill_tiles.ts) on the CPU: the rows per CTA and
// the dynamic shared memory the runtime passes must be what kernels/attention_prefill.cu declares (its
// kBlockM, kBlockN and row stride kLds of each path), or CTAs would skip rows or overrun shared memory.
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

describe("prefillTiles mirrors attention_prefill.cu", () => {
  test("tensor-core path (fp16/bf16, head 64 and 128): rows per CTA and shared memory", () => {
    const blockM = Number(constant("kBlockM", "tensor"));
    const blockN = Number(constant("kBlockN", "tensor"));
    assert.equal(constant("kLds", "tensor"), "HEAD_DIM + 8");
    assert.match(constant("kSmemElems", "tensor"), /^\(kBlockM \+ 4 \* kBlockN\) \* kLds$/);
    for (const dtype of ["bf16", "fp16"] as const) {
      for (const headDim of [64, 128]) {
        const t = prefillTiles(dtype, headDim);
        assert.equal(t.blockM, blockM, `${dtype} head ${headDim}`);
        assert.equal(t.sharedBytes, (blockM + 4 * blockN) * (headDim + 8) * 2, `${dtype} head ${headDim}`);
        assert.ok(t.sharedBytes <= 227 * 1024, "fits one CTA's shared memory on sm_90");
      }
    }
  });

  test("generic path (fp32, other heads): rows per CTA, static shared memory only", () => {
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
        { blockM: rows, sharedBytes: 0 },
        `${dtype} head ${headDim}`,
      );
    }
  });
});
