// Prefill attention's launch shape (src/backends/cuda/prefill_tiles.ts) on the CPU: the export, rows and
// threads per CTA and the dynamic shared memory the runtime passes must be what
// kernels/attention_prefill.cu declares (its kBlockM, kBlockN, row stride kLds of each path and
// kPrefillThreads) and kernels/attention_prefill_wgmma.cu (kBlockM, kBlockN, kThreads, kStages,
// kSmemElems), or CTAs would skip rows, run with missing warps or overrun shared memory. And the
// routing of KILN_PREFILL_KERNEL: wgmma only where it applies, else (and in older engines) mma4.
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
        const t = prefillTiles(dtype, headDim, "mma4");
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
    for (const kernel of ["mma4", "wgmma"] as const) {
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
  test("the source exports attention_prefill_wgmma with 384 threads: a producer and two consumer warpgroups", () => {
    assert.match(wgSource, /__launch_bounds__\(384, 1\)\s+attention_prefill_wgmma\(/);
    assert.equal(wgConstant("kThreads"), "kProducerThreads + kConsumerThreads");
    assert.equal(Number(wgConstant("kProducerThreads")) + Number(wgConstant("kConsumerThreads")), 384);
    // setmaxnreg: the producer's and consumers' registers fit the SM's 65,536
    const regs = 128 * Number(wgConstant("kProducerRegs")) + 256 * Number(wgConstant("kConsumerRegs"));
    assert.ok(regs <= 65536, `${regs} registers`);
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
          threads: 384,
          sharedBytes: (blockM * headDim + 2 * stages * blockN * headDim) * 2,
        });
        assert.ok(t.sharedBytes <= 227 * 1024, "fits one CTA's shared memory on sm_90");
      }
    }
  });
});

describe("KILN_PREFILL_KERNEL", () => {
  test("unset or mma4: attention_prefill; wgmma by name", () => {
    assert.equal(parsePrefillKernel(undefined), "mma4");
    assert.equal(parsePrefillKernel(""), "mma4");
    assert.equal(parsePrefillKernel("mma4"), "mma4");
    assert.equal(parsePrefillKernel("wgmma"), "wgmma");
  });

  test("anything else is an InvalidEnvironmentError naming the switch and its values", () => {
    for (const v of ["4", "8", "w8", "mma8", " mma4", "WGMMA", "fa3"])
      assert.throws(
        () => parsePrefillKernel(v),
        (e: unknown) =>
          e instanceof InvalidEnvironmentError &&
          /KILN_PREFILL_KERNEL must be mma4 or wgmma; got/.test(e.message),
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

  test("not on other GPUs, fp32, other heads or an fp8 KV cache: mma4 instead", () => {
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
      assert.equal(prefillKernelFor("wgmma", t, all), "mma4", JSON.stringify(t));
    }
  });

  test("asked for and applying: wgmma; mma4 whenever asked", () => {
    assert.equal(prefillKernelFor("wgmma", H100, all), "wgmma");
    assert.equal(prefillKernelFor("mma4", H100, all), "mma4");
  });
});

test("an engine compiled before attention_prefill_wgmma existed falls back to mma4", () => {
  const before = (name: string) => name === "attention_prefill";
  assert.equal(prefillKernelFor("wgmma", H100, before), "mma4");
  assert.equal(prefillKernelFor("mma4", H100, before), "mma4");
});

test("an engine that still exports the removed attention_prefill_w8 runs mma4 (or wgmma) all the same", () => {
  const older = (name: string) => name === "attention_prefill" || name === "attention_prefill_w8";
  assert.equal(prefillKernelFor("mma4", H100, older), "mma4");
  assert.equal(prefillKernelFor("wgmma", H100, older), "mma4");
  const withW8 = (name: string) => older(name) || name === "attention_prefill_wgmma";
  assert.equal(prefillKernelFor("wgmma", H100, withW8), "wgmma");
});
