// Prefill attention's launch shape (src/backends/cuda/prefill_tiles.ts) on the CPU: the export, rows and
// threads per CTA and the dynamic shared memory the runtime passes must be what
// kernels/attention_prefill.cu declares (its kBlockM, kBlockN, row stride kLds and kPrefillThreads of
// each path and variant) and kernels/attention_prefill_wgmma.cu (kBlockM, kBlockN, kThreads, kStages,
// kSmemElems), or CTAs would skip rows, run with missing warps or overrun shared memory. And the
// routing of KILN_PREFILL_KERNEL: wgmma only where it applies, older engines falling back.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  type PrefillTarget,
  parsePrefillKernel,
  prefillKernelFor,
  prefillTiles,
  wgmmaPrefillApplies,
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
    for (const [kernel, warps] of [
      ["mma4", 4],
      ["mma8", 8],
    ] as const) {
      for (const dtype of ["bf16", "fp16"] as const) {
        for (const headDim of [64, 128]) {
          const what = `${dtype} head ${headDim}, ${warps} warps`;
          const t = prefillTiles(dtype, headDim, kernel);
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
    for (const kernel of ["mma4", "mma8", "wgmma"] as const) {
      for (const [dtype, headDim, rows] of [
        ["fp32", 128, small],
        ["fp32", 64, small],
        ["fp32", 256, large],
        ["bf16", 80, small],
        ["fp16", 256, large],
      ] as const) {
        assert.deepEqual(
          prefillTiles(dtype, headDim, kernel),
          { kernel: "attention_prefill", blockM: rows, threads: 128, sharedBytes: 0 },
          `${dtype} head ${headDim}, ${kernel}`,
        );
      }
    }
  });
});

const wgSource = readFileSync(
  join(import.meta.dirname, "../../../kernels/attention_prefill_wgmma.cu"),
  "utf8",
);

/** attention_prefill_wgmma.cu's constexpr `name` (its one definition). */
function wgConstant(name: string): string {
  const m = new RegExp(`constexpr (?:int|unsigned) ${name} = ([^;]+);`).exec(wgSource);
  assert.ok(m, `${name} not found in attention_prefill_wgmma.cu`);
  return m[1].trim();
}

describe("prefillTiles mirrors attention_prefill_wgmma.cu", () => {
  test("the source exports attention_prefill_wgmma with 256 threads", () => {
    assert.match(wgSource, /__launch_bounds__\(256, 1\)\s+attention_prefill_wgmma\(/);
    assert.equal(wgConstant("kThreads"), "256");
  });

  test("fp16/bf16, head 64 and 128: export, rows, threads and shared memory", () => {
    const blockM = Number(wgConstant("kBlockM"));
    const blockN = Number(wgConstant("kBlockN"));
    // constexpr int kStages = HEAD_DIM == 128 ? 2 : 3;
    const [at128, other] = /^HEAD_DIM == 128 \? (\d+) : (\d+)$/
      .exec(wgConstant("kStages"))
      ?.slice(1)
      .map(Number) ?? [NaN, NaN];
    assert.equal(wgConstant("kSmemElems"), "kBlockM * HEAD_DIM + 2 * kStages * kTileElems");
    assert.equal(wgConstant("kTileElems"), "kBlockN * HEAD_DIM");
    for (const dtype of ["bf16", "fp16"] as const) {
      for (const headDim of [64, 128]) {
        const stages = headDim === 128 ? at128 : other;
        const t = prefillTiles(dtype, headDim, "wgmma");
        assert.deepEqual(t, {
          kernel: "attention_prefill_wgmma",
          blockM,
          threads: 256,
          sharedBytes: (blockM * headDim + 2 * stages * blockN * headDim) * 2,
        });
        assert.ok(t.sharedBytes <= 227 * 1024, "fits one CTA's shared memory on sm_90");
      }
    }
  });
});

describe("KILN_PREFILL_KERNEL", () => {
  test("unset or mma8: attention_prefill_w8; mma4 and wgmma by name", () => {
    assert.equal(parsePrefillKernel(undefined), "mma8");
    assert.equal(parsePrefillKernel(""), "mma8");
    assert.equal(parsePrefillKernel("mma8"), "mma8");
    assert.equal(parsePrefillKernel("mma4"), "mma4");
    assert.equal(parsePrefillKernel("wgmma"), "wgmma");
  });

  test("anything else is an InvalidEnvironmentError naming the switch and its values", () => {
    for (const v of ["4", "8", "w8", " mma8", "WGMMA", "fa3"])
      assert.throws(
        () => parsePrefillKernel(v),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError &&
          /KILN_PREFILL_KERNEL must be mma4, mma8 or wgmma; got/.test(e.message),
        v,
      );
  });
});

const H100: PrefillTarget = { dtype: "bf16", headDim: 128, kvCacheDtype: "auto", computeCapability: [9, 0] };
const all = () => true;

describe("where the wgmma kernel applies", () => {
  test("sm_90, fp16/bf16, head 64 or 128, a 16-bit KV cache", () => {
    assert.ok(wgmmaPrefillApplies(H100));
    assert.ok(wgmmaPrefillApplies({ ...H100, dtype: "fp16", headDim: 64 }));
  });

  test("not on other GPUs, fp32, other heads or an fp8 KV cache: mma8 instead", () => {
    for (const t of [
      { ...H100, computeCapability: [8, 0] },
      { ...H100, computeCapability: [8, 9] },
      { ...H100, computeCapability: [10, 0] },
      { ...H100, computeCapability: [12, 0] },
      { ...H100, dtype: "fp32" },
      { ...H100, headDim: 80 },
      { ...H100, headDim: 256 },
      { ...H100, kvCacheDtype: "fp8" },
    ] as PrefillTarget[]) {
      assert.equal(wgmmaPrefillApplies(t), false, JSON.stringify(t));
      assert.equal(prefillKernelFor("wgmma", t, all), "mma8", JSON.stringify(t));
    }
  });

  test("asked for and applying: wgmma; mma4 and mma8 whenever asked", () => {
    assert.equal(prefillKernelFor("wgmma", H100, all), "wgmma");
    assert.equal(prefillKernelFor("mma8", H100, all), "mma8");
    assert.equal(prefillKernelFor("mma4", H100, all), "mma4");
  });
});

test("an engine compiled before a kernel existed falls back to one it has", () => {
  const w4 = (name: string) => name === "attention_prefill";
  const w8 = (name: string) => name === "attention_prefill" || name === "attention_prefill_w8";
  assert.equal(prefillKernelFor("wgmma", H100, w8), "mma8");
  assert.equal(prefillKernelFor("wgmma", H100, w4), "mma4");
  assert.equal(prefillKernelFor("mma8", H100, w4), "mma4");
  assert.equal(prefillKernelFor("mma8", H100, w8), "mma8");
  assert.equal(prefillKernelFor("mma4", H100, w8), "mma4");
  assert.equal(prefillKernelFor("mma4", H100, w4), "mma4");
});
