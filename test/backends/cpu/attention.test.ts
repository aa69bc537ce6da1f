import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AttentionSequence, pagedAttention } from "../../../src/backends/cpu/kernels/attention.ts";
import { kvCacheWrite } from "../../../src/backends/cpu/kernels/paged_kv.ts";
import { assertClose, assertSame, randn } from "./helpers.ts";

interface Shape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/** One sequence's projections at every position. */
interface Seq {
  len: number;
  q: Float32Array; // [len, numHeads, headDim]
  k: Float32Array; // [len, numKvHeads, headDim]
  v: Float32Array; // [len, numKvHeads, headDim]
}

function makeSeq(len: number, shape: Shape, seed: number): Seq {
  return {
    len,
    q: randn(len * shape.numHeads * shape.headDim, seed),
    k: randn(len * shape.numKvHeads * shape.headDim, seed + 1),
    v: randn(len * shape.numKvHeads * shape.headDim, seed + 2),
  };
}

/**
 * Dense attention in double for positions [from, len) of one sequence: causal, and with a window
 * only keys j > p − window; query head h reads kv head floor(h / (numHeads / numKvHeads)).
 * Returns [len − from, numHeads, headDim] and the largest |score| seen (for the tolerance).
 */
function naive(seq: Seq, shape: Shape, scale: number, window: number | null, from = 0) {
  const { numHeads, numKvHeads, headDim } = shape;
  const group = numHeads / numKvHeads;
  const out = new Float64Array((seq.len - from) * numHeads * headDim);
  let maxScore = 0;
  for (let p = from; p < seq.len; p++) {
    for (let h = 0; h < numHeads; h++) {
      const kvh = Math.floor(h / group);
      const scores: number[] = [];
      const keys: number[] = [];
      for (let j = 0; j <= p; j++) {
        if (window !== null && j <= p - window) continue;
        let dot = 0;
        for (let d = 0; d < headDim; d++) {
          dot += seq.q[(p * numHeads + h) * headDim + d] * seq.k[(j * numKvHeads + kvh) * headDim + d];
        }
        scores.push(dot * scale);
        keys.push(j);
        maxScore = Math.max(maxScore, Math.abs(dot * scale));
      }
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        keys.forEach((j, n) => {
          acc += (e[n] / sum) * seq.v[(j * numKvHeads + kvh) * headDim + d];
        });
        out[((p - from) * numHeads + h) * headDim + d] = acc;
      }
    }
  }
  return { out, maxScore };
}

/** Writes positions [0, upTo) of each sequence into fresh pools through its block table. */
function buildCache(
  entries: { seq: Seq; blockTable: Int32Array; upTo?: number }[],
  numBlocks: number,
  blockSize: number,
  shape: Shape,
) {
  const row = shape.numKvHeads * shape.headDim;
  const kCache = new Float32Array(numBlocks * blockSize * row).fill(Number.NaN);
  const vCache = new Float32Array(numBlocks * blockSize * row).fill(Number.NaN);
  for (const { seq, blockTable, upTo = seq.len } of entries) {
    const slots = Int32Array.from(
      { length: upTo },
      (_, p) => blockTable[Math.floor(p / blockSize)] * blockSize + (p % blockSize),
    );
    kvCacheWrite(seq.k, seq.v, slots, upTo, shape.numKvHeads, shape.headDim, kCache, vCache);
  }
  return { kCache, vCache };
}

function attend(
  q: Float32Array,
  cache: { kCache: Float32Array; vCache: Float32Array },
  seqs: AttentionSequence[],
  blockSize: number,
  shape: Shape,
  slidingWindow: number | null = null,
): Float32Array {
  const rows = seqs.reduce((n, s) => Math.max(n, s.queryStart + s.queryLen), 0);
  const out = new Float32Array(rows * shape.numHeads * shape.headDim).fill(Number.NaN);
  pagedAttention({
    q,
    ...cache,
    blockSize,
    ...shape,
    seqs,
    scale: 1 / Math.sqrt(shape.headDim),
    slidingWindow,
    out,
  });
  return out;
}

/** Rows [from, to) of a [len, numHeads, headDim] array. */
const rows = (x: Float32Array, shape: Shape, from: number, to: number) =>
  x.subarray(from * shape.numHeads * shape.headDim, to * shape.numHeads * shape.headDim);

/** Rows [from, to) of a [len, numKvHeads, headDim] array. */
const kvRows = (x: Float32Array, shape: Shape, from: number, to: number) =>
  x.subarray(from * shape.numKvHeads * shape.headDim, to * shape.numKvHeads * shape.headDim);

/**
 * The kernel rounds each score to fp32 as HF does (error ≤ 2^-24 |s|, which moves a softmax weight by
 * ≤ 2 × 2^-24 |s| relative) and the output once (2^-24 relative); the reference keeps everything in
 * double. So |error| ≤ 2^-22 (1 + max|s|) max|v|; a wrong mask or head changes outputs by ~0.1.
 */
function tolerance(maxScore: number, seq: Seq): number {
  const maxV = seq.v.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
  return 2 ** -22 * (1 + maxScore) * maxV;
}

const mha: Shape = { numHeads: 4, numKvHeads: 4, headDim: 16 };
const blockSize = 4;
const table = (...blocks: number[]) => new Int32Array(blocks);

describe("pagedAttention", () => {
  it("causal prefill of one sequence equals dense attention", () => {
    const seq = makeSeq(13, mha, 100);
    const cache = buildCache([{ seq, blockTable: table(0, 1, 2, 3) }], 4, blockSize, mha);
    const out = attend(
      seq.q,
      cache,
      [{ queryStart: 0, queryLen: 13, contextLen: 13, blockTable: table(0, 1, 2, 3) }],
      blockSize,
      mha,
    );
    const ref = naive(seq, mha, 1 / Math.sqrt(16), null);
    assertClose(out, ref.out, tolerance(ref.maxScore, seq), "prefill");
  });

  it("two sequences packed in one call equal each alone (prefill and chunked prefill)", () => {
    const a = makeSeq(9, mha, 110);
    const b = makeSeq(13, mha, 120);
    const tableA = table(0, 1, 2);
    const tableB = table(3, 4, 5, 6);
    const cache = buildCache(
      [
        { seq: a, blockTable: tableA },
        { seq: b, blockTable: tableB },
      ],
      7,
      blockSize,
      mha,
    );
    // a: all 9 tokens are new; b: 10 tokens were cached before, positions 10..12 are new.
    const seqA = { queryStart: 0, queryLen: 9, contextLen: 9, blockTable: tableA };
    const seqB = { queryStart: 9, queryLen: 3, contextLen: 13, blockTable: tableB };
    const qPacked = new Float32Array(12 * 4 * 16);
    qPacked.set(a.q, 0);
    qPacked.set(rows(b.q, mha, 10, 13), 9 * 4 * 16);
    const packed = attend(qPacked, cache, [seqA, seqB], blockSize, mha);

    const aloneA = attend(a.q, cache, [seqA], blockSize, mha);
    const aloneB = attend(rows(b.q, mha, 10, 13), cache, [{ ...seqB, queryStart: 0 }], blockSize, mha);
    // Each query row is computed the same way whatever else is in the call: identical results.
    assertSame(rows(packed, mha, 0, 9), aloneA, "sequence a");
    assertSame(rows(packed, mha, 9, 12), aloneB, "sequence b");

    const refB = naive(b, mha, 1 / Math.sqrt(16), null, 10);
    assertClose(aloneB, refB.out, tolerance(refB.maxScore, b), "chunked prefill of b");
  });

  it("gives the same result with blocks scattered out of order in the pool", () => {
    const seq = makeSeq(13, mha, 130);
    const contiguous = table(0, 1, 2, 3);
    const scattered = table(6, 1, 7, 3);
    const q = seq.q;
    const outA = attend(
      q,
      buildCache([{ seq, blockTable: contiguous }], 8, blockSize, mha),
      [{ queryStart: 0, queryLen: 13, contextLen: 13, blockTable: contiguous }],
      blockSize,
      mha,
    );
    const outB = attend(
      q,
      buildCache([{ seq, blockTable: scattered }], 8, blockSize, mha),
      [{ queryStart: 0, queryLen: 13, contextLen: 13, blockTable: scattered }],
      blockSize,
      mha,
    );
    assertSame(outB, outA, "scattered vs contiguous");
  });

  for (const shape of [
    { name: "GQA", numHeads: 6, numKvHeads: 2, headDim: 8 },
    { name: "MQA", numHeads: 4, numKvHeads: 1, headDim: 8 },
  ]) {
    it(`${shape.name}: query head h reads kv head floor(h / group)`, () => {
      const seq = makeSeq(11, shape, 140);
      const blocks = table(2, 0, 1);
      const cache = buildCache([{ seq, blockTable: blocks }], 3, blockSize, shape);
      const out = attend(
        seq.q,
        cache,
        [{ queryStart: 0, queryLen: 11, contextLen: 11, blockTable: blocks }],
        blockSize,
        shape,
      );
      const ref = naive(seq, shape, 1 / Math.sqrt(shape.headDim), null);
      assertClose(out, ref.out, tolerance(ref.maxScore, seq), shape.name);
    });
  }

  it("sliding window attends to the last `window` positions, itself included", () => {
    const shape: Shape = { numHeads: 4, numKvHeads: 2, headDim: 16 };
    const window = 4;
    const seq = makeSeq(11, shape, 150);
    const blocks = table(0, 1, 2);
    const run = (s: Seq) =>
      attend(
        s.q,
        buildCache([{ seq: s, blockTable: blocks }], 3, blockSize, shape),
        [{ queryStart: 0, queryLen: 11, contextLen: 11, blockTable: blocks }],
        blockSize,
        shape,
        window,
      );
    const out = run(seq);
    const ref = naive(seq, shape, 1 / Math.sqrt(16), window);
    assertClose(out, ref.out, tolerance(ref.maxScore, seq), "window");

    // Position 8 sees keys 5..8: changing V at 4 leaves its output alone, changing V at 5 does not.
    const row = 8;
    const change = (j: number) => {
      const v = seq.v.slice();
      for (const i of kvRows(v, shape, j, j + 1).keys()) v[j * 2 * 16 + i] += 1;
      return run({ ...seq, v });
    };
    assertSame(
      rows(change(row - window), shape, row, row + 1),
      rows(out, shape, row, row + 1),
      "key p - window",
    );
    const inside = rows(change(row - window + 1), shape, row, row + 1);
    assert.ok(
      inside.some((x, i) => Math.abs(x - rows(out, shape, row, row + 1)[i]) > 1e-3),
      "key p - window + 1 must count",
    );
  });

  it("a decode step after prefill equals the last row of a full prefill", () => {
    const seq = makeSeq(11, mha, 160);
    const blocks = table(1, 2, 0);
    for (const window of [null, 5]) {
      const full = attend(
        seq.q,
        buildCache([{ seq, blockTable: blocks }], 3, blockSize, mha),
        [{ queryStart: 0, queryLen: 11, contextLen: 11, blockTable: blocks }],
        blockSize,
        mha,
        window,
      );

      // Prefill of the first 10 tokens, then the 11th token's K/V is written and it alone is queried.
      const cache = buildCache([{ seq, blockTable: blocks, upTo: 10 }], 3, blockSize, mha);
      const prefill = attend(
        rows(seq.q, mha, 0, 10),
        cache,
        [{ queryStart: 0, queryLen: 10, contextLen: 10, blockTable: blocks }],
        blockSize,
        mha,
        window,
      );
      const slot = new Int32Array([blocks[2] * blockSize + 2]); // position 10
      const { kCache, vCache } = cache;
      kvCacheWrite(kvRows(seq.k, mha, 10, 11), kvRows(seq.v, mha, 10, 11), slot, 1, 4, 16, kCache, vCache);
      const decode = attend(
        rows(seq.q, mha, 10, 11),
        cache,
        [{ queryStart: 0, queryLen: 1, contextLen: 11, blockTable: blocks }],
        blockSize,
        mha,
        window,
      );

      assertSame(prefill, rows(full, mha, 0, 10), `prefill rows, window ${window}`);
      assertSame(decode, rows(full, mha, 10, 11), `decode row, window ${window}`);
    }
  });

  it("decodes a batch of sequences of different lengths in one call", () => {
    const shape: Shape = { numHeads: 4, numKvHeads: 2, headDim: 8 };
    const seqs = [makeSeq(1, shape, 170), makeSeq(9, shape, 180), makeSeq(6, shape, 190)];
    const tables = [table(4), table(0, 3, 5), table(2, 1)];
    const cache = buildCache(
      seqs.map((seq, i) => ({ seq, blockTable: tables[i] })),
      6,
      blockSize,
      shape,
    );
    const q = new Float32Array(3 * 4 * 8);
    seqs.forEach((s, i) => {
      q.set(rows(s.q, shape, s.len - 1, s.len), i * 4 * 8);
    });
    const window = 5;
    const out = attend(
      q,
      cache,
      seqs.map((s, i) => ({ queryStart: i, queryLen: 1, contextLen: s.len, blockTable: tables[i] })),
      blockSize,
      shape,
      window,
    );
    seqs.forEach((s, i) => {
      const ref = naive(s, shape, 1 / Math.sqrt(8), window, s.len - 1);
      assertClose(rows(out, shape, i, i + 1), ref.out, tolerance(ref.maxScore, s), `sequence ${i}`);
    });
  });

  it("refuses numHeads that is not a multiple of numKvHeads", () => {
    const shape: Shape = { numHeads: 3, numKvHeads: 2, headDim: 4 };
    const seq = makeSeq(1, shape, 200);
    const cache = buildCache([{ seq, blockTable: table(0) }], 1, blockSize, shape);
    assert.throws(
      () =>
        attend(
          seq.q,
          cache,
          [{ queryStart: 0, queryLen: 1, contextLen: 1, blockTable: table(0) }],
          blockSize,
          shape,
        ),
      RangeError,
    );
  });
});
