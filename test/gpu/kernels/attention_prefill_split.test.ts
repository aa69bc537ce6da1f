// The split mode of kernels/attention_prefill.cu (attention_prefill_split, then
// attention_prefill_merge; planning in src/backends/cuda/prefill_splits.ts) at the Llama-3.1-8B head
// shape (32 query heads, 8 kv heads, head 128, KV blocks of 16), against pagedAttention
// (src/backends/cpu/kernels/attention.ts) and the unsplit kernels: the step (128 rows after
// 2,048 cached) at the planner's split count and others; and a mixed step's launch (the first sequence
// a leading decode the launch skips, metadata offset by one) with contexts of 300 and 4,100, an empty
// sequence and one of 3 tokens whose later splits are empty, windows 0 and 100. num_splits = 1 must be
// the unsplit kernel's bits; every launched row written, the skipped one untouched; sampled rows within
// prefill_reference.ts's bound (kernels/attention_README.md "Tolerance against the CPU
// reference"), which the split keeps (a different summation order in fp32).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { MERGE_THREADS } from "../../../src/backends/cuda/prefill_attention.ts";
import { prefillSplits } from "../../../src/backends/cuda/prefill_splits.ts";
import { prefillTiles } from "../../../src/backends/cuda/prefill_tiles.ts";
import { makePagedProblem, type PagedProblem, type SeqSpec } from "../paged_problem.ts";
import { assertSameBits, f32, i32, KernelHarness, noGpu, ptr } from "./harness.ts";
import { checkSampled as checkRows } from "./prefill_reference.ts";

const H = 32;
const HKV = 8;
const D = 128;
const BS = 16;
const SCALE = 1 / Math.sqrt(D);
const DEFINES = { NUM_HEADS: H, NUM_KV_HEADS: HKV, HEAD_DIM: D, BLOCK_SIZE: BS };
const SHAPE = { numHeads: H, numKvHeads: HKV, headDim: D, blockSize: BS };
const ROW = H * D;

const SHAPE8B = { H, HKV, D, BS };
/** Sampled rows of sequences [from, S) against the CPU reference (prefill_reference.ts). */
const checkSampled = (p: PagedProblem, got: Float32Array, window: number, from: number, what: string) =>
  checkRows(SHAPE8B, p, got, window, what, { from, seedBase: 700 });

describe("attention_prefill split mode at the 8B head shape", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** Prefill attention over sequences [from, S) of p, as attention_launcher.ts launches a mixed step's
   * prompts: the unsplit kernel (splits undefined) or the `_split` one with `splits`, then the merge.
   * Rows of the launched sequences must come back finite, the others untouched (NaN). */
  function prefill(p: PagedProblem, o: { window: number; from?: number; splits?: number }) {
    const from = o.from ?? 0;
    const tiles = prefillTiles(p.dtype, D);
    const mod = h.module("attention_prefill.cu", DEFINES, p.dtype);
    const seqs = p.seqs.slice(from);
    const queryStart = Int32Array.from({ length: seqs.length + 1 }, (_, i) =>
      i < seqs.length ? seqs[i].queryStart : seqs[i - 1].queryStart + seqs[i - 1].queryLen,
    );
    const rows = queryStart[seqs.length] - queryStart[0];
    const n = p.q.length;
    const out = h.filled(n, p.dtype, 0xff);
    const maxQ = Math.max(1, ...seqs.map((s) => s.queryLen));
    const splits = o.splits ?? 1;
    const qs = ptr(h.raw(queryStart));
    const partials =
      o.splits === undefined
        ? []
        : [
            ptr(h.filled(rows * H * splits * D, "fp32", 0xff)), // NaN: the merge may read only what was written
            ptr(h.filled(rows * H * splits, "fp32", 0xff)),
            ptr(h.filled(rows * H * splits, "fp32", 0xff)),
          ];
    h.run(
      mod,
      o.splits === undefined ? tiles.kernel : `${tiles.kernel}_split`,
      [Math.ceil(maxQ / tiles.blockM) * splits, H, seqs.length],
      [tiles.threads],
      [
        ptr(out),
        ptr(h.upload(p.q, p.dtype)),
        ptr(h.upload(p.kCache, p.dtype)),
        ptr(h.upload(p.vCache, p.dtype)),
        qs,
        ptr(h.raw(Int32Array.from(seqs, (s) => s.contextLen))),
        ptr(h.raw(p.tables.slice(from * p.stride))),
        i32(p.stride),
        f32(SCALE),
        i32(o.window),
        ...(o.splits === undefined ? [] : [...partials, i32(splits)]),
      ],
      tiles.sharedBytes,
    );
    if (splits > 1)
      h.run(
        mod,
        "attention_prefill_merge",
        [Math.ceil((rows * H * D) / 4 / MERGE_THREADS)],
        [MERGE_THREADS],
        [ptr(out), ...partials, qs, i32(seqs.length), i32(splits)],
      );
    const got = h.download(out, n, p.dtype);
    for (let r = 0; r < n / ROW; r++) {
      const launched = r >= queryStart[0] && r < queryStart[seqs.length];
      const row = got.subarray(r * ROW, (r + 1) * ROW);
      if (launched) assert.ok(row.every(Number.isFinite), `row ${r} not written (or not finite)`);
      else assert.ok(row.every(Number.isNaN), `row ${r} is outside the launch but was written`);
    }
    return got;
  }

  for (const dtype of ["bf16", "fp16"] as const) {
    it(`128 rows after 2,048 cached: the planner's splits, 2, 5, 16 (${dtype})`, () => {
      const p = makePagedProblem(SHAPE, dtype, [{ queryLen: 128, contextLen: 2176 }], 801);
      const planned = prefillSplits(
        { smCount: 132, heads: H, blockM: 128 },
        { numSeqs: 1, maxQueryLen: 128, maxContextLen: 2176, rows: 128 },
      );
      assert.equal(planned, 8);
      const unsplit = prefill(p, { window: 0 });
      assertSameBits(prefill(p, { window: 0, splits: 1 }), unsplit, "1 split");
      for (const splits of [planned, 2, 5, 16])
        checkSampled(p, prefill(p, { window: 0, splits }), 0, 0, `${splits} splits`);
    });
  }

  const mixed: SeqSpec[] = [
    { queryLen: 1, contextLen: 300 }, // a leading decode: not in the launch
    { queryLen: 1, contextLen: 4100 },
    { queryLen: 17, contextLen: 300 },
    { queryLen: 200, contextLen: 4100 },
    { queryLen: 0, contextLen: 64 },
    { queryLen: 3, contextLen: 3 },
  ];
  for (const window of [0, 100]) {
    it(`a mixed step's prompts (contexts 300 … 4,100, empty splits), window ${window} (bf16)`, () => {
      const p = makePagedProblem(SHAPE, "bf16", mixed, 811 + window);
      const unsplit = prefill(p, { window, from: 1 });
      assertSameBits(prefill(p, { window, from: 1, splits: 1 }), unsplit, "1 split");
      for (const splits of [2, 5, 16])
        checkSampled(p, prefill(p, { window, from: 1, splits }), window, 1, `${splits} splits`);
    });
  }
});
