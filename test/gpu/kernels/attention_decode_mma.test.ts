// kernels/attention_decode_mma.cu (decode attention on tensor cores, what steps of many sequences of a
// 16-bit engine run) against pagedAttention (src/backends/cpu/kernels/attention.ts), queryLen 1: 64 and
// 256 sequences of mixed contexts (1, block and tile sizes ± 1, a few hundred keys, every 32nd one of
// 2,100), padding rows (context 0) among them as a graph bucket pads its batch; Llama-3.1-8B's heads
// (32/8, head 128, blocks of 16), bf16 and fp16; windows 0 and 40; both table layouts. Tolerance:
// kernels/attention_README.md, "attention_decode_mma" (P rounded to the dtype before P·V). A second launch
// must give the same bits (one split: one CTA per kv head and sequence; split: the last CTA merges the
// partials in split order, whichever it is). Split launches: 8 sequences, one of 5,000 keys, 8 and 32
// splits, partials poisoned with NaN, the arrival counters zero again after each launch.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { type AttentionSequence, pagedAttention } from "../../../src/backends/cpu/kernels/attention.ts";
import { decodeMmaSharedBytes } from "../../../src/backends/cuda/decode_mma.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { maxAbs, shuffled, writeSequenceKv } from "../paged_problem.ts";
import { assertWithin, f32, i32, KernelHarness, NULL, noGpu, ptr, randn, roundTo } from "./harness.ts";

const H = 32;
const HKV = 8;
const D = 128;
const BS = 16;
const SCALE = 1 / Math.sqrt(D);
const SHAPE = { numHeads: H, numKvHeads: HKV, headDim: D, blockSize: BS };
const CONTEXTS = [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 2, 300, 47, 191, 192, 193];

interface Problem {
  seqs: AttentionSequence[]; // one per row, padding rows with context 0
  q: Float32Array; // [S, H, D]
  k: Float32Array; // [numBlocks, BS, HKV, D]; slots nothing may read are NaN
  v: Float32Array;
  tables: Int32Array; // [S, stride]; unused entries point at the last block (NaN)
  stride: number;
  maxAbsV: number;
}

/** S rows of mixed contexts, every 16th (from the 6th) a padding row; blocks from a shuffled pool. */
function makeProblem(dtype: DTypeName, S: number, seed: number, row1?: number): Problem {
  const ctxs = Array.from({ length: S }, (_, i) =>
    i === 1 && row1 !== undefined
      ? row1
      : i % 16 === 5
        ? 0
        : i % 32 === 9
          ? 2100
          : CONTEXTS[i % CONTEXTS.length],
  );
  const blocksOf = (c: number) => Math.ceil(c / BS);
  const used = ctxs.reduce((n, c) => n + blocksOf(c), 0);
  const numBlocks = used + 1; // the last: poison
  const stride = Math.max(...ctxs.map(blocksOf)) + 1;
  const order = shuffled(used, seed);
  const slotLen = HKV * D;
  const k = new Float32Array(numBlocks * BS * slotLen).fill(Number.NaN);
  const v = new Float32Array(numBlocks * BS * slotLen).fill(Number.NaN);
  const tables = new Int32Array(S * stride).fill(numBlocks - 1);
  const seqs: AttentionSequence[] = [];
  let next = 0;
  ctxs.forEach((ctx, s) => {
    const table = tables.subarray(s * stride, s * stride + blocksOf(ctx));
    for (let b = 0; b < table.length; b++) table[b] = order[next++];
    writeSequenceKv({ kCache: k, vCache: v }, table, ctx, SHAPE, dtype, seed, s);
    seqs.push({ queryStart: s, queryLen: 1, contextLen: ctx, blockTable: table });
  });
  const q = roundTo(randn(S * H * D, seed + 7), dtype);
  const maxAbsV = maxAbs(v);
  return { seqs, q, k, v, tables, stride, maxAbsV };
}

/** The README's bound: 1e-5 · max(absOut) + U · (absOut + |want|) [+ fp16: keys · 2⁻²⁵ · max|v|]. */
function check(p: Problem, dtype: DTypeName, got: Float32Array, window: number, what: string): void {
  const run = (vCache: Float32Array) => {
    const out = new Float32Array(p.q.length);
    pagedAttention({
      q: p.q,
      kCache: p.k,
      vCache,
      blockSize: BS,
      numHeads: H,
      numKvHeads: HKV,
      headDim: D,
      seqs: p.seqs.filter((s) => s.contextLen > 0),
      scale: SCALE,
      slidingWindow: window > 0 ? window : null,
      out,
    });
    return out;
  };
  const want = run(p.v);
  const absOut = run(p.v.map(Math.abs));
  const maxAbsOut = absOut.reduce((m, x) => Math.max(m, x), 0);
  const u = dtype === "fp16" ? 2 ** -11 : 2 ** -8;
  const rowLen = H * D;
  const keysOf = (i: number) => {
    const ctx = p.seqs[Math.floor(i / rowLen)].contextLen;
    return window > 0 ? Math.min(window, ctx) : ctx;
  };
  assertWithin(
    got,
    want,
    (i) =>
      1e-5 * maxAbsOut +
      1e-30 +
      u * (absOut[i] + Math.abs(want[i])) +
      (dtype === "fp16" ? keysOf(i) * 2 ** -25 * p.maxAbsV : 0),
    what,
  );
  p.seqs.forEach((s, r) => {
    if (s.contextLen === 0)
      assert.ok(
        got.subarray(r * rowLen, (r + 1) * rowLen).every((x) => x === 0),
        `${what}: padding row ${r} must be zeros`,
      );
  });
}

describe("attention_decode_mma (tensor-core decode)", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** One launch of attention_decode_mma over p's rows (tables [S, stride], or [stride, S] as decode
   * graphs lay them out), its contexts split `splits` ways. */
  function decode(
    p: Problem,
    dtype: DTypeName,
    window: number,
    transposed: boolean,
    splits = 1,
  ): Float32Array {
    const S = p.seqs.length;
    const smem = decodeMmaSharedBytes(D);
    const mod = h.module(
      "attention_decode_mma.cu",
      {
        NUM_HEADS: H,
        NUM_KV_HEADS: HKV,
        HEAD_DIM: D,
        BLOCK_SIZE: BS,
        DECODE_MMA_SMEM_BYTES: smem,
      },
      dtype,
    );
    const tables = transposed
      ? Int32Array.from(
          { length: p.tables.length },
          (_, e) => p.tables[(e % S) * p.stride + Math.floor(e / S)],
        )
      : p.tables;
    const out = h.filled(p.q.length, dtype, 0xff);
    const partials = S * H * splits;
    const counters = h.raw(new Int32Array(S * HKV));
    const split = splits > 1;
    const args = [
      ptr(out),
      split ? ptr(h.filled(partials * D, "fp32", 0xff)) : NULL,
      split ? ptr(h.filled(partials, "fp32", 0xff)) : NULL,
      split ? ptr(h.filled(partials, "fp32", 0xff)) : NULL,
      split ? ptr(counters) : NULL,
      ptr(h.upload(p.q, dtype)),
      ptr(h.upload(p.k, dtype)),
      ptr(h.upload(p.v, dtype)),
      ptr(h.raw(Int32Array.from(p.seqs, (s) => s.contextLen))),
      ptr(h.raw(tables)),
      i32(transposed ? 1 : p.stride),
      i32(transposed ? S : 1),
      i32(splits), // num_splits
      f32(SCALE),
      i32(window),
      i32(1), // trigger: after the key loop
      i32(0), // stop: the whole kernel
    ];
    h.run(mod, "attention_decode_mma", [HKV, S, splits], [128, 1, 1], args, smem);
    const left = new Int32Array(h.downloadBytes(counters, S * HKV * 4).buffer).filter((c) => c !== 0);
    assert.equal(left.length, 0, `${splits} splits: ${left.length} arrival counters left non-zero`);
    return h.download(out, p.q.length, dtype);
  }

  for (const dtype of ["bf16", "fp16"] as DTypeName[]) {
    it(`8 sequences, one of 5,000 keys, their contexts split 8 and 32 ways (${dtype})`, () => {
      const p = makeProblem(dtype, 8, 900, 5000);
      const cases: [number, number, boolean][] = [
        [8, 0, true],
        [32, 0, false],
        [32, 40, true],
      ];
      for (const [splits, window, transposed] of cases) {
        const what = `8 sequences, ${splits} splits, window ${window}`;
        const first = decode(p, dtype, window, transposed, splits);
        check(p, dtype, first, window, what);
        const again = decode(p, dtype, window, transposed, splits);
        const differ = again.findIndex((x, i) => !Object.is(x, first[i]));
        assert.equal(differ, -1, `${what}: a second launch differs at ${differ}`);
      }
    });
    for (const S of [64, 256]) {
      it(`${S} sequences of mixed contexts up to 2,100, the 8B's heads (${dtype})`, () => {
        const p = makeProblem(dtype, S, 300 + S);
        const cases: [number, boolean][] =
          S === 64
            ? [
                [0, false],
                [40, true],
              ]
            : [[0, true]];
        for (const [window, transposed] of cases) {
          const what = `${S} sequences, window ${window}`;
          const first = decode(p, dtype, window, transposed);
          check(p, dtype, first, window, what);
          const again = decode(p, dtype, window, transposed);
          const differ = again.findIndex((x, i) => !Object.is(x, first[i]));
          assert.equal(differ, -1, `${what}: a second launch differs at ${differ}`);
        }
      });
    }
  }
});
