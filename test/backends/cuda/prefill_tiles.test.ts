// attention_prefill's launch shape (src/backends/cuda/prefill_tiles.ts) on the CPU: the export, rows and
// threads per CTA and the dynamic shared memory the runtime passes must be what
// kernels/attention_prefill.cu declares (its kBlockM, kBlockN, row stride kLds and kPrefillThreads of
// each path and variant), or CTAs would skip rows, run with missing warps or overrun shared memory.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  parsePrefillWarps,
  prefillTiles,
  prefillWarpsFor,
} from "../../../src/backends/cuda/prefill_tiles.ts";
import { InvalidEnvironmentError } from "../../../src/errors.ts";

const source = readFileSync(join(import.meta.dirname, "../../../kernels/attention_prefill.cu"), "utf8");

/** The kernel's constexpr `name` in the tensor-core branch (first definition) or the generic one. */
function constant(name: string, branch: "tensor" | "generic"): string {
  const all = [...source.matchAll(new RegExp(`constexpr int ${name} = ([^;]+);`, "g"))].map((m) =>
    m[1].trim(),
  );
  assert.ok(all.length > 0, `${name} not found in attention_prefill.cu`);
  return branch === "tensor" ? all[0] : all[all.length - 1];
}

/** The warps of each ATTN_PREFILL_ENTRIES(name, warps) line: the exports and their variants. */
const entries = new Map(
  [...source.matchAll(/^ATTN_PREFILL_ENTRIES\((\w+), (\d+)\)$/gm)].map((m) => [m[1], Number(m[2])]),
);

describe("prefillTiles mirrors attention_prefill.cu", () => {
  test("the source exports attention_prefill (4 warps) and attention_prefill_w8 (8 warps)", () => {
    assert.deepEqual(
      [...entries],
      [
        ["attention_prefill", 4],
        ["attention_prefill_w8", 8],
      ],
    );
    // kPrefillThreads<kWarps>: kWarps warps on the tensor-core path, 128 threads on the generic one.
    assert.equal(constant("kPrefillThreads", "tensor"), "ATTN_PREFILL_TENSOR_CORES ? kWarps * kWarp : 128");
  });

  test("tensor-core path (fp16/bf16, head 64 and 128): export, rows, threads and shared memory", () => {
    const blockM = Number(constant("kBlockM", "tensor"));
    const blockN = Number(constant("kBlockN", "tensor"));
    assert.equal(constant("kLds", "tensor"), "HEAD_DIM + 8");
    assert.match(constant("kSmemElems", "tensor"), /^\(kBlockM \+ 4 \* kBlockN\) \* kLds$/);
    for (const warps of [4, 8] as const) {
      for (const dtype of ["bf16", "fp16"] as const) {
        for (const headDim of [64, 128]) {
          const what = `${dtype} head ${headDim}, ${warps} warps`;
          const t = prefillTiles(dtype, headDim, warps);
          assert.equal(entries.get(t.kernel), warps, what);
          assert.equal(t.blockM, blockM, what);
          assert.equal(t.threads, warps * 32, what);
          assert.equal(t.sharedBytes, (blockM + 4 * blockN) * (headDim + 8) * 2, what);
          assert.ok(t.sharedBytes <= 227 * 1024, "fits one CTA's shared memory on sm_90");
        }
      }
    }
  });

  test("generic path (fp32, other heads): rows per CTA, 128 threads, static shared memory only", () => {
    // constexpr int kBlockM = HEAD_DIM <= 128 ? 16 : 8;
    const [small, large] = /HEAD_DIM <= 128 \? (\d+) : (\d+)/
      .exec(constant("kBlockM", "generic"))
      ?.slice(1)
      .map(Number) ?? [NaN, NaN];
    for (const warps of [4, 8] as const) {
      for (const [dtype, headDim, rows] of [
        ["fp32", 128, small],
        ["fp32", 64, small],
        ["fp32", 256, large],
        ["bf16", 80, small],
        ["fp16", 256, large],
      ] as const) {
        assert.deepEqual(
          prefillTiles(dtype, headDim, warps),
          { kernel: "attention_prefill", blockM: rows, threads: 128, sharedBytes: 0 },
          `${dtype} head ${headDim}, ${warps} warps`,
        );
      }
    }
  });
});

describe("KILN_PREFILL_WARPS", () => {
  test("unset or 8: the 8-warp variant; 4: the 4-warp one", () => {
    assert.equal(parsePrefillWarps(undefined), 8);
    assert.equal(parsePrefillWarps(""), 8);
    assert.equal(parsePrefillWarps("8"), 8);
    assert.equal(parsePrefillWarps("4"), 4);
  });

  test("anything else is an InvalidEnvironmentError naming the switch and its values", () => {
    for (const v of ["2", "16", "w8", " 8"])
      assert.throws(
        () => parsePrefillWarps(v),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError && /KILN_PREFILL_WARPS must be 4 or 8/.test(e.message),
        v,
      );
  });
});

test("an engine compiled before attention_prefill_w8 existed runs the 4-warp kernel, whatever asked", () => {
  const old = (name: string) => name === "attention_prefill";
  const now = (name: string) => name === "attention_prefill" || name === "attention_prefill_w8";
  assert.equal(prefillWarpsFor(8, old), 4);
  assert.equal(prefillWarpsFor(8, now), 8);
  assert.equal(prefillWarpsFor(4, now), 4);
  assert.equal(prefillWarpsFor(4, old), 4);
});
