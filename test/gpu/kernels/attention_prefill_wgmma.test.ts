// attention_prefill_wgmma (kernels/attention_prefill_wgmma.cu, exported by attention_prefill.cu's module:
// sm_90a warpgroup MMA, KILN_PREFILL_KERNEL=wgmma) against pagedAttention (src/backends/cpu/kernels/
// attention.ts), on sm_90 devices only (skipped elsewhere, where the export traps): at the
// Llama-3.1-8B head shape (32 query heads, 8 kv heads, head 128, KV blocks of 16; bf16 and fp16) and at
// head 64 with blocks of 32 and 8 query heads on one kv head (GQA 8; 3 K/V stages): 1, 3 and 4 packed
// sequences of 17 … 2,100 tokens (chunks with cached prefixes, an empty one), full causal and windows 1,
// 100 and 1,000, blocks scattered over the pool, unwritten slots NaN. Every row must be written (the
// output starts NaN); sampled rows (each sequence's first and last, both sides of every 128-row tile
// edge, of the 64-row warpgroup edges and the 16-row warp edges in its first and last tiles, some at
// random) are compared with the reference, computed for those rows only. Bound: attention_cuda.test.ts's
// (kernels/attention_README.md "Tolerance against the CPU reference"), as attention_prefill_w8.test.ts.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { type AttentionSequence, pagedAttention } from "../../../src/backends/cpu/kernels/attention.ts";
import { CudaDevice } from "../../../src/backends/cuda/device/index.ts";
import { prefillTiles } from "../../../src/backends/cuda/prefill_tiles.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { makePagedProblem, type PagedProblem, type SeqSpec } from "../paged_problem.ts";
import { assertWithin, f32, i32, KernelHarness, noGpu, ptr, randn } from "./harness.ts";

/** The kernel is sm_90a's: skipped on other GPUs. */
function notSm90(): string | false {
  if (noGpu) return noGpu;
  const d = CudaDevice.open();
  try {
    const [major, minor] = d.properties.computeCapability;
    return major === 9 && minor === 0 ? false : `sm_${major}${minor}: attention_prefill_wgmma needs sm_90`;
  } finally {
    d.dispose();
  }
}
const skip = notSm90();

interface Shape {
  H: number;
  HKV: number;
  D: number;
  BS: number;
}
const LLAMA_8B: Shape = { H: 32, HKV: 8, D: 128, BS: 16 };
const HEAD_64: Shape = { H: 8, HKV: 1, D: 64, BS: 32 };

/** The rows of sequence s to compare: its ends, both sides of each 128-row tile edge, of each 16-row
 * warp (and so each 64-row warpgroup) edge in the first and last tiles, and 8 at random. */
function sampleRows(s: AttentionSequence, seed: number): number[] {
  const rows = new Set<number>([0, 1, s.queryLen - 2, s.queryLen - 1]);
  const lastTile = Math.floor((s.queryLen - 1) / 128) * 128;
  for (let e = 16; e < s.queryLen; e += 16)
    if (e % 128 === 0 || e < 128 || e > lastTile) rows.add(e - 1).add(e);
  const r = randn(8, seed);
  for (const x of r) rows.add(Math.floor(Math.abs(x * 1e4)) % Math.max(1, s.queryLen));
  return [...rows].filter((i) => i >= 0 && i < s.queryLen).sort((x, y) => x - y);
}

/** attention_cuda.test.ts's bound: fp32 part + U · (Σ w|v| + |out|) (+ fp16 subnormal weights). */
function bound(
  dtype: DTypeName,
  want: number,
  absOut: number,
  maxAbsOut: number,
  keys: number,
  maxAbsV: number,
) {
  const u = dtype === "fp16" ? 2 ** -11 : 2 ** -8;
  const subnormal = dtype === "fp16" ? keys * 2 ** -25 * maxAbsV : 0;
  return 1e-5 * maxAbsOut + 1e-30 + u * (absOut + Math.abs(want)) + subnormal;
}

/** Checks the sampled rows of `got` [T, H, D] against pagedAttention run on those rows alone. */
function checkSampled(sh: Shape, p: PagedProblem, got: Float32Array, window: number, what: string): void {
  const { H, HKV, D, BS } = sh;
  const rowLen = H * D;
  const picked: { row: number; seq: AttentionSequence }[] = [];
  p.seqs.forEach((s, si) => {
    for (const i of sampleRows(s, 300 + si)) {
      // Row i as a one-row sequence at its position: the same keys, the same table.
      const pos = s.contextLen - s.queryLen + i;
      picked.push({
        row: s.queryStart + i,
        seq: { queryStart: picked.length, queryLen: 1, contextLen: pos + 1, blockTable: s.blockTable },
      });
    }
  });
  const q = new Float32Array(picked.length * rowLen);
  picked.forEach((x, j) => q.set(p.q.subarray(x.row * rowLen, (x.row + 1) * rowLen), j * rowLen));
  const run = (vCache: Float32Array) => {
    const out = new Float32Array(q.length);
    pagedAttention({
      q,
      kCache: p.kCache,
      vCache,
      blockSize: BS,
      numHeads: H,
      numKvHeads: HKV,
      headDim: D,
      seqs: picked.map((x) => x.seq),
      scale: 1 / Math.sqrt(D),
      slidingWindow: window > 0 ? window : null,
      out,
    });
    return out;
  };
  const want = run(p.vCache);
  const absOut = run(p.vCache.map(Math.abs));
  const maxAbsOut = absOut.reduce((m, x) => Math.max(m, x), 0);
  const mine = new Float32Array(q.length);
  picked.forEach((x, j) => mine.set(got.subarray(x.row * rowLen, (x.row + 1) * rowLen), j * rowLen));
  const keys = picked.map((x) => (window > 0 ? Math.min(window, x.seq.contextLen) : x.seq.contextLen));
  assertWithin(
    mine,
    want,
    (i) => bound(p.dtype, want[i], absOut[i], maxAbsOut, keys[Math.floor(i / rowLen)], p.maxAbsV),
    `${what} (rows ${picked.map((x) => x.row).join(",")})`,
  );
}

describe("attention_prefill_wgmma", { skip }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** attention_prefill_wgmma over all of p's sequences; every output row must come back finite. */
  function prefill(sh: Shape, p: PagedProblem, window: number, gridX?: number): Float32Array {
    const { H, HKV, D, BS } = sh;
    const tiles = prefillTiles(p.dtype, D, "wgmma");
    assert.equal(tiles.kernel, "attention_prefill_wgmma");
    const defines = { NUM_HEADS: H, NUM_KV_HEADS: HKV, HEAD_DIM: D, BLOCK_SIZE: BS };
    const mod = h.module("attention_prefill.cu", defines, p.dtype);
    const queryStart = Int32Array.from({ length: p.seqs.length + 1 }, (_, i) =>
      i === 0 ? 0 : p.seqs[i - 1].queryStart + p.seqs[i - 1].queryLen,
    );
    const n = p.q.length;
    const out = h.filled(n, p.dtype, 0xff); // NaN: an unwritten row shows
    const maxQ = Math.max(...p.seqs.map((s) => s.queryLen));
    h.run(
      mod,
      tiles.kernel,
      [gridX ?? Math.max(1, Math.ceil(maxQ / tiles.blockM)), H, p.seqs.length],
      [tiles.threads],
      [
        ptr(out),
        ptr(h.upload(p.q, p.dtype)),
        ptr(h.upload(p.kCache, p.dtype)),
        ptr(h.upload(p.vCache, p.dtype)),
        ptr(h.raw(queryStart)),
        ptr(h.raw(Int32Array.from(p.seqs, (s) => s.contextLen))),
        ptr(h.raw(p.tables)),
        i32(p.stride),
        f32(1 / Math.sqrt(D)),
        i32(window),
      ],
      tiles.sharedBytes,
    );
    const got = h.download(out, n, p.dtype);
    const bad = got.findIndex((x) => !Number.isFinite(x));
    assert.equal(bad, -1, `row ${Math.floor(bad / (H * D))} not written (or not finite)`);
    return got;
  }

  const problem = (sh: Shape, dtype: DTypeName, specs: SeqSpec[], seed: number): PagedProblem =>
    makePagedProblem(
      { numHeads: sh.H, numKvHeads: sh.HKV, headDim: sh.D, blockSize: sh.BS },
      dtype,
      specs,
      seed,
    );

  for (const [name, sh] of [
    ["8B heads", LLAMA_8B],
    ["head 64, GQA 8, blocks of 32", HEAD_64],
  ] as const) {
    for (const dtype of ["bf16", "fp16"] as const) {
      it(`${name}: one sequence of 2,100 tokens, causal, and grid.x = 1 (${dtype})`, () => {
        const p = problem(sh, dtype, [{ queryLen: 2100, contextLen: 2100 }], 601);
        checkSampled(sh, p, prefill(sh, p, 0), 0, "1 × 2100");
        // Any grid.x is correct: each CTA walks its sequence's query tiles with stride grid.x.
        checkSampled(sh, p, prefill(sh, p, 0, 1), 0, "1 × 2100, grid.x = 1");
      });
    }

    it(`${name}: three sequences: 17 tokens, 300 after 700 cached, 2,100 tokens (bf16)`, () => {
      const p = problem(
        sh,
        "bf16",
        [
          { queryLen: 17, contextLen: 17 },
          { queryLen: 300, contextLen: 1000 },
          { queryLen: 2100, contextLen: 2100 },
        ],
        602,
      );
      checkSampled(sh, p, prefill(sh, p, 0), 0, "3 sequences");
    });

    for (const window of [1, 100, 1000]) {
      it(`${name}: four sequences (17, 129 after 171 cached, none after 9, 2,048), window ${window} (bf16)`, () => {
        const p = problem(
          sh,
          "bf16",
          [
            { queryLen: 17, contextLen: 17 },
            { queryLen: 129, contextLen: 300 },
            { queryLen: 0, contextLen: 9 },
            { queryLen: 2048, contextLen: 2048 },
          ],
          603 + window,
        );
        checkSampled(sh, p, prefill(sh, p, window), window, `4 sequences, window ${window}`);
      });
    }
  }
});
