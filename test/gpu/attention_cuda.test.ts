// kernels/attention_prefill.cu and kernels/attention_decode.cu against pagedAttention
// (src/backends/cpu/kernels/attention.ts) on the paged layout of paged_kv.ts: causal prefill, packed
// sequences of odd lengths, chunked prefill with history, block tables scattered over the pool, GQA /
// MQA / MHA, sliding windows, decode over contexts of 1, 17 and 5125 tokens with 1 to 40 splits merged
// in the launch (batches padded with context-0 rows as CUDA graphs pad them, launches queued back to
// back on shared split buffers); every dtype, the tensor-core path (16-bit, head 64/128) and the
// generic one (fp32, other heads). attention_decode_batch (no splits, the path of many sequences) over
// 64 and 256 sequences of mixed contexts (1, block and tile sizes ± 1, long ones, padding rows), GQA
// groups 1, 3, 4, 8 and 12, head dims 8 to 128, windows and both table layouts.
// Launch configurations and the tolerance argument: kernels/attention_README.md.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { type AttentionSequence, pagedAttention } from "../../src/backends/cpu/kernels/attention.ts";
import {
  DECODE_SPLIT_THREADS,
  decodeBatchSharedBytes,
  decodeKernel,
  decodeSharedBytes,
} from "../../src/backends/cuda/attention_splits.ts";
import type { DevicePtr } from "../../src/backends/cuda/device/index.ts";
import { prefillTiles } from "../../src/backends/cuda/prefill_tiles.ts";
import type { DTypeName } from "../../src/dtype.ts";
import {
  assertWithin,
  DTYPES,
  f32,
  i32,
  KernelHarness,
  NULL,
  noGpu,
  ptr,
  randn,
  roundTo,
} from "./kernels/harness.ts";
import { makePagedProblem, type PagedProblem, type SeqSpec } from "./paged_problem.ts";

interface Shape {
  name: string;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

const SHAPES: Shape[] = [
  { name: "GQA 8/2, head 128, block 16", numHeads: 8, numKvHeads: 2, headDim: 128, blockSize: 16 },
  { name: "MQA 4/1, head 64, block 32", numHeads: 4, numKvHeads: 1, headDim: 64, blockSize: 32 },
  { name: "MHA 4/4, head 32, block 16", numHeads: 4, numKvHeads: 4, headDim: 32, blockSize: 16 },
  { name: "GQA 6/2, head 80, block 16", numHeads: 6, numKvHeads: 2, headDim: 80, blockSize: 16 },
  { name: "MQA 12/1, head 8, block 7", numHeads: 12, numKvHeads: 1, headDim: 8, blockSize: 7 },
];

const defines = (s: Shape) => ({
  NUM_HEADS: s.numHeads,
  NUM_KV_HEADS: s.numKvHeads,
  HEAD_DIM: s.headDim,
  BLOCK_SIZE: s.blockSize,
});

/** CTAs per kv head in decode (attention_decode.cu): ceil(group / min(group, 8)). */
function decodeHeadGroups(s: Shape): number {
  const group = s.numHeads / s.numKvHeads;
  return Math.ceil(group / Math.min(group, 8));
}

/**
 * How far the kernels may be from the fp32/double reference, which sees the same (dtype-rounded)
 * q, k, v. `absOut` is Σ_j w_j |v_j| (the reference run on |v|), `maxAbsOut` its largest value.
 *   all dtypes  fp32 dot products and softmax in another order than the reference's double: score
 *               errors of a few 2^-24 · Σ|q·k| move weights by as much relatively, and fp32 sums of
 *               w·v add ~n·2^-24; 1e-5 of the largest output magnitude covers both with room.
 *   fp16/bf16   the output is rounded to the dtype (U·|out|, U = 2^-11 fp16, 2^-8 bf16), and the
 *               tensor-core path rounds each weight p_j to the dtype before P·V while the softmax
 *               denominator keeps fp32 p_j: ≤ U · Σ_j w_j |v_j| = U · absOut. fp16 weights below 2^-14
 *               are subnormal (absolute error ≤ 2^-25 each): + keys · 2^-25 · max|v|.
 */
function bound(
  dtype: DTypeName,
  want: number,
  absOut: number,
  maxAbsOut: number,
  keys: number,
  maxAbsV: number,
): number {
  const fp32Part = 1e-5 * maxAbsOut + 1e-30;
  if (dtype === "fp32") return fp32Part;
  const u = dtype === "fp16" ? 2 ** -11 : 2 ** -8;
  const subnormal = dtype === "fp16" ? keys * 2 ** -25 * maxAbsV : 0;
  return fp32Part + u * (absOut + Math.abs(want)) + subnormal;
}

/** Host-side inputs of one call: pools, tables and queries, all rounded to the dtype (paged_problem.ts). */
interface Problem extends PagedProblem {
  shape: Shape;
}

function makeProblem(
  shape: Shape,
  dtype: DTypeName,
  specs: SeqSpec[],
  seed: number,
  layout: "scattered" | "contiguous" = "scattered",
): Problem {
  return { shape, ...makePagedProblem(shape, dtype, specs, seed, { layout }) };
}

const scaleOf = (s: Shape) => 1 / Math.sqrt(s.headDim);

/** The reference output, Σ w|v| for the bound, and each row's number of attended keys. */
function reference(p: Problem, window: number) {
  const { numHeads, numKvHeads, headDim, blockSize } = p.shape;
  const rows = p.q.length / (numHeads * headDim);
  const run = (vCache: Float32Array) => {
    const out = new Float32Array(p.q.length);
    pagedAttention({
      q: p.q,
      kCache: p.kCache,
      vCache,
      blockSize,
      numHeads,
      numKvHeads,
      headDim,
      seqs: p.seqs,
      scale: scaleOf(p.shape),
      slidingWindow: window > 0 ? window : null,
      out,
    });
    return out;
  };
  const want = run(p.vCache);
  const absOut = run(p.vCache.map(Math.abs));
  const keys = new Int32Array(rows);
  for (const s of p.seqs) {
    for (let i = 0; i < s.queryLen; i++) {
      const pos = s.contextLen - s.queryLen + i;
      keys[s.queryStart + i] = window > 0 ? Math.min(window, pos + 1) : pos + 1;
    }
  }
  return { want, absOut, keys };
}

function check(p: Problem, got: Float32Array, window: number, what: string): void {
  const { want, absOut, keys } = reference(p, window);
  const maxAbsOut = absOut.reduce((m, x) => Math.max(m, x), 0);
  const rowLen = p.shape.numHeads * p.shape.headDim;
  assertWithin(
    got,
    want,
    (i) => bound(p.dtype, want[i], absOut[i], maxAbsOut, keys[Math.floor(i / rowLen)], p.maxAbsV),
    what,
  );
}

/**
 * A decode problem (queryLen 1 everywhere) with padding rows inserted, as a CUDA-graph bucket pads
 * its batch: context 0, a random query, a table row of -1 (never read). `pattern` lists the rows in
 * order: an index into p.seqs, or "pad". Returns the padded problem and, per row, the p row or -1.
 */
function padded(
  p: Problem,
  pattern: (number | "pad")[],
  seed: number,
): { problem: Problem; rowOf: number[] } {
  const rowLen = p.shape.numHeads * p.shape.headDim;
  const noise = roundTo(randn(pattern.length * rowLen, seed), p.dtype);
  const q = new Float32Array(pattern.length * rowLen);
  const tables = new Int32Array(pattern.length * p.stride).fill(-1);
  const seqs: AttentionSequence[] = [];
  pattern.forEach((x, i) => {
    if (x === "pad") {
      q.set(noise.subarray(i * rowLen, (i + 1) * rowLen), i * rowLen);
      seqs.push({ queryStart: i, queryLen: 1, contextLen: 0, blockTable: new Int32Array(0) });
    } else {
      q.set(p.q.subarray(x * rowLen, (x + 1) * rowLen), i * rowLen);
      tables.set(p.tables.subarray(x * p.stride, (x + 1) * p.stride), i * p.stride);
      seqs.push({ ...p.seqs[x], queryStart: i });
    }
  });
  return { problem: { ...p, seqs, q, tables }, rowOf: pattern.map((x) => (x === "pad" ? -1 : x)) };
}

/** Checks the padded rows of `got` are zeros and the others match the reference of the unpadded p. */
function checkPadded(p: Problem, rowOf: number[], got: Float32Array, window: number, what: string): void {
  const rowLen = p.shape.numHeads * p.shape.headDim;
  const real = new Float32Array(p.q.length);
  rowOf.forEach((r, i) => {
    const row = got.subarray(i * rowLen, (i + 1) * rowLen);
    if (r >= 0) real.set(row, r * rowLen);
    else
      assert.ok(
        row.every((x) => x === 0),
        `${what}: padding row ${i} must be zeros`,
      );
  });
  check(p, real, window, what);
}

describe("attention kernels", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** Device copies of a problem's inputs. */
  function upload(p: Problem) {
    return {
      q: h.upload(p.q, p.dtype),
      k: h.upload(p.kCache, p.dtype),
      v: h.upload(p.vCache, p.dtype),
      tables: h.raw(p.tables),
      contextLen: h.raw(Int32Array.from(p.seqs, (s) => s.contextLen)),
    };
  }

  /** attention_prefill over all of p's sequences; gridX overrides ceil(maxQueryLen / BLOCK_M). */
  function prefill(p: Problem, window: number, gridX?: number): Float32Array {
    const mod = h.module("attention_prefill.cu", defines(p.shape), p.dtype);
    const d = upload(p);
    const queryStart = new Int32Array(p.seqs.length + 1);
    p.seqs.forEach((s, i) => {
      queryStart[i + 1] = s.queryStart + s.queryLen;
    });
    const n = p.q.length;
    const out = h.filled(n, p.dtype, 0xff);
    const maxQ = Math.max(...p.seqs.map((s) => s.queryLen));
    // attention_prefill (mma4); long sequences: kernels/attention_prefill_kernels.test.ts.
    const tiles = prefillTiles(p.dtype, p.shape.headDim);
    const x = gridX ?? Math.max(1, Math.ceil(maxQ / tiles.blockM));
    h.run(
      mod,
      tiles.kernel,
      [x, p.shape.numHeads, p.seqs.length],
      [tiles.threads],
      [
        ptr(out),
        ptr(d.q),
        ptr(d.k),
        ptr(d.v),
        ptr(h.raw(queryStart)),
        ptr(d.contextLen),
        ptr(d.tables),
        i32(p.stride),
        f32(scaleOf(p.shape)),
        i32(window),
      ],
      tiles.sharedBytes,
    );
    return h.download(out, n, p.dtype);
  }

  /** attention_decode's split buffers for S sequences: partials [S, H, splits, …] (NaN: an unwritten
   * partial read by the merge shows) and arrival counters [S, CTAs per sequence], zero. */
  function splitBuffers(shape: Shape, S: number, splits: number) {
    const rows = S * shape.numHeads * splits;
    const ctas = S * shape.numKvHeads * decodeHeadGroups(shape);
    return {
      acc: h.filled(rows * shape.headDim, "fp32", 0xff),
      m: h.filled(rows, "fp32", 0xff),
      l: h.filled(rows, "fp32", 0xff),
      counters: h.filled(ctas, "fp32", 0), // int32 zeros
      ctas,
    };
  }
  type SplitBuffers = ReturnType<typeof splitBuffers>;

  /** p's inputs on the device and an output buffer (NaN), for launchDecode. */
  function decodeInputs(p: Problem) {
    return { ...upload(p), out: h.filled(p.q.length, p.dtype, 0xff) };
  }

  /** Queues attention_decode over all of p's sequences (queryLen 1 each), allocating nothing, so that
   * launches can follow each other without a synchronization; splits > 1 needs `bufs` (sized for at
   * least as many sequences and splits). */
  function launchDecode(
    p: Problem,
    d: ReturnType<typeof decodeInputs>,
    window: number,
    splits: number,
    bufs: SplitBuffers | null,
    pdl = false,
    transposed = false,
    trigger = 0,
    cluster = false,
    batch = false,
  ): void {
    const { numHeads, numKvHeads, headDim } = p.shape;
    const splitSmem = decodeSharedBytes(numHeads / numKvHeads, headDim);
    const batchSmem = decodeBatchSharedBytes(numHeads / numKvHeads, headDim);
    const mod = h.module(
      "attention_decode.cu",
      { ...defines(p.shape), DECODE_SMEM_BYTES: splitSmem, DECODE_BATCH_SMEM_BYTES: batchSmem },
      p.dtype,
    );
    const smem = batch ? batchSmem : splitSmem;
    const opt = (x: DevicePtr | undefined) => (x === undefined ? NULL : ptr(x));
    const grid: [number, number, number] = [numKvHeads * decodeHeadGroups(p.shape), p.seqs.length, splits];
    const args = [
      ptr(d.out),
      opt(bufs?.acc),
      opt(bufs?.m),
      opt(bufs?.l),
      opt(bufs?.counters),
      ptr(d.q),
      ptr(d.k),
      ptr(d.v),
      ptr(d.contextLen),
      ptr(d.tables),
      i32(transposed ? 1 : p.stride),
      i32(transposed ? p.seqs.length : 1),
      i32(splits),
      f32(scaleOf(p.shape)),
      i32(window),
      i32(trigger),
      i32(0), // stop: the whole kernel
    ];
    mod
      .kernel(decodeKernel(splits, cluster, false, batch))
      .launch(h.stream, grid, [batch ? 128 : DECODE_SPLIT_THREADS], smem, args, { pdl });
  }

  /** The counters attention_decode must leave at zero. */
  function assertCountersZero(bufs: SplitBuffers | null, what: string): void {
    if (!bufs) return;
    const c = h.downloadI32(bufs.counters, bufs.ctas);
    assert.ok(
      c.every((x) => x === 0),
      `${what}: split counters left at ${[...new Set(c)].join(", ")}`,
    );
  }

  /** attention_decode, one launch (splits > 1: the last CTA of each sequence and head group merges).
   * `transposed`: the tables as decode graphs lay them out, [stride, S] (step_metadata.ts). `cluster`:
   * attention_decode_c<splits> (2, 4 or 8 splits merged in a thread-block cluster). `batch`:
   * attention_decode_batch (splits must be 1). */
  function decode(
    p: Problem,
    window: number,
    splits: number,
    transposed = false,
    cluster = false,
    batch = false,
  ): Float32Array {
    const bufs = splits > 1 ? splitBuffers(p.shape, p.seqs.length, splits) : null;
    const S = p.seqs.length;
    const tables = transposed
      ? Int32Array.from(
          { length: p.tables.length },
          (_, e) => p.tables[(e % S) * p.stride + Math.floor(e / S)],
        )
      : p.tables;
    const d = decodeInputs({ ...p, tables });
    launchDecode(p, d, window, splits, bufs, false, transposed, 0, cluster, batch);
    h.stream.synchronize();
    assertCountersZero(bufs, `decode, ${splits} splits`);
    return h.download(d.out, p.q.length, p.dtype);
  }

  for (const shape of SHAPES) {
    // The long cases on the main shape only; the others keep the CPU reference quick.
    const main = shape === SHAPES[0];
    const long = main ? 769 : 131;
    for (const dtype of DTYPES) {
      const tag = `${shape.name} ${dtype}`;

      it(`prefill: one sequence, causal (${tag})`, () => {
        const p = makeProblem(shape, dtype, [{ queryLen: 300, contextLen: 300 }], 101);
        check(p, prefill(p, 0), 0, "prefill");
        // Any grid.x is correct: each CTA walks its sequence's query tiles with stride grid.x.
        check(p, prefill(p, 0, 1), 0, "prefill, grid.x = 1");
      });

      it(`prefill: packed sequences of 1, 7, ${long} tokens (${tag})`, () => {
        const p = makeProblem(
          shape,
          dtype,
          [
            { queryLen: 1, contextLen: 1 },
            { queryLen: 7, contextLen: 7 },
            { queryLen: long, contextLen: long },
          ],
          102,
        );
        check(p, prefill(p, 0), 0, "packed");
      });

      it(`prefill: chunked, with history (${tag})`, () => {
        // A chunk of 69 after 700 cached tokens, a chunk of 5 after 60, one decode-like row, an empty one.
        const p = makeProblem(
          shape,
          dtype,
          [
            { queryLen: 69, contextLen: main ? 769 : 200 },
            { queryLen: 5, contextLen: 65 },
            { queryLen: 1, contextLen: 40 },
            { queryLen: 0, contextLen: 9 },
          ],
          103,
        );
        check(p, prefill(p, 0), 0, "chunked");
      });

      for (const window of [1, 16, 100]) {
        it(`prefill: sliding window ${window} (${tag})`, () => {
          const p = makeProblem(
            shape,
            dtype,
            [
              { queryLen: 150, contextLen: 150 },
              { queryLen: 33, contextLen: 190 },
            ],
            104 + window,
          );
          check(p, prefill(p, window), window, `window ${window}`);
        });
      }

      for (const splits of [1, 3, 16]) {
        it(`decode: contexts 1, 17, ${main ? 5125 : 700}, ${splits} split(s) (${tag})`, () => {
          const p = makeProblem(
            shape,
            dtype,
            [1, 17, main ? 5125 : 700].map((c) => ({ queryLen: 1, contextLen: c })),
            110 + splits,
          );
          check(p, decode(p, 0, splits), 0, `decode, ${splits} splits`);
        });
      }

      it(`decode: sliding window (${tag})`, () => {
        const p = makeProblem(
          shape,
          dtype,
          [1, 17, 300].map((c) => ({ queryLen: 1, contextLen: c })),
          120,
        );
        for (const [window, splits] of [
          [1, 1],
          [16, 3],
          [100, 4],
        ]) {
          check(p, decode(p, window, splits), window, `decode, window ${window}, ${splits} splits`);
        }
      });

      it(`decode: cluster kernels (2, 4, 8 splits) give the global merge's bits (${tag})`, () => {
        // Contexts whose splits are all full, partly empty (17 keys in 8 splits of ≥ 64) or one; a padding
        // row; windows and the graphs' [stride, S] tables. The cluster kernels merge the same partials in
        // the same order as the last-CTA merge, so the outputs are identical, not just close.
        const p = makeProblem(
          shape,
          dtype,
          [1, 17, 300, main ? 900 : 130].map((c) => ({ queryLen: 1, contextLen: c })),
          170,
        );
        const { problem, rowOf } = padded(p, [0, "pad", 1, 2, 3], 171);
        for (const splits of [2, 4, 8]) {
          for (const [window, transposed] of [
            [0, false],
            [40, true],
          ] as const) {
            const what = `${splits} splits, window ${window}${transposed ? ", [stride, S]" : ""}`;
            const global = decode(problem, window, splits, transposed);
            const clustered = decode(problem, window, splits, transposed, true);
            checkPadded(p, rowOf, clustered, window, `cluster, ${what}`);
            assert.deepEqual(clustered, global, `cluster vs global merge, ${what}`);
          }
        }
      });

      it(`decode: a padded batch of mixed contexts, 2 to 40 splits, one launch each (${tag})`, () => {
        // Contexts 1, 17, 64 and a long one, with padding rows (context 0) around and between them; every
        // split count merges in the launch's last CTA per (sequence, head group); 40 > 32 splits
        // takes the merge's second chunk.
        const p = makeProblem(
          shape,
          dtype,
          [1, 17, main ? 2000 : 300, 64].map((c) => ({ queryLen: 1, contextLen: c })),
          150,
        );
        const { problem, rowOf } = padded(p, ["pad", 0, 1, "pad", 2, 3, "pad", "pad"], 151);
        for (const splits of [1, 2, 5, 32, 40]) {
          for (const window of [0, 50]) {
            const what = `padded batch, ${splits} splits, window ${window}`;
            checkPadded(p, rowOf, decode(problem, window, splits), window, what);
          }
        }
      });

      it(`decode: consecutive launches (PDL) reuse the split buffers (${tag})`, () => {
        // Three launches queued back to back on the same partials and counters, with different batch
        // sizes and split counts: each must start from counters the previous one left at zero, and a
        // repeated launch gives the same bits (the merge's order does not depend on which CTA is last).
        const a = makeProblem(
          shape,
          dtype,
          [300, 5, main ? 1500 : 200].map((c) => ({ queryLen: 1, contextLen: c })),
          160,
        );
        const b = padded(a, [2, "pad", 0, 1, "pad"], 161);
        const bufs = splitBuffers(shape, b.problem.seqs.length, 16);
        const runs: [Problem, number][] = [
          [a, 16],
          [b.problem, 7],
          [a, 16],
        ];
        const inputs = runs.map(([p]) => decodeInputs(p));
        runs.forEach(([p, splits], i) => {
          // Each launch lets its successor start at another point (KILN_ATTN_TRIGGER: wait, keys, exit).
          launchDecode(p, inputs[i], 0, splits, bufs, true, false, i);
        });
        h.stream.synchronize();
        assertCountersZero(bufs, "consecutive launches");
        const got = runs.map(([p], i) => h.download(inputs[i].out, p.q.length, p.dtype));
        check(a, got[0], 0, "first launch");
        checkPadded(a, b.rowOf, got[1], 0, "second launch (padded, 7 splits)");
        assert.deepEqual(got[2], got[0], "a repeated launch gives the same bits");
      });
    }
  }

  it("scattered and contiguous block tables give identical results", () => {
    const shape = SHAPES[0];
    for (const dtype of DTYPES) {
      const specs = [
        { queryLen: 40, contextLen: 100 },
        { queryLen: 77, contextLen: 77 },
      ];
      const a = makeProblem(shape, dtype, specs, 130, "scattered");
      const b = makeProblem(shape, dtype, specs, 130, "contiguous");
      assert.notDeepEqual(a.tables, b.tables);
      assert.deepEqual(prefill(a, 0), prefill(b, 0), `prefill ${dtype}`);
      const da = makeProblem(shape, dtype, [{ queryLen: 1, contextLen: 333 }], 131, "scattered");
      const db = makeProblem(shape, dtype, [{ queryLen: 1, contextLen: 333 }], 131, "contiguous");
      assert.deepEqual(decode(da, 0, 3), decode(db, 0, 3), `decode ${dtype}`);
    }
  });

  it("decode reads [stride, S] block tables (decode graphs' layout) as it reads [S, stride] ones", () => {
    const shape = SHAPES[0];
    for (const dtype of DTYPES) {
      const specs = [
        { queryLen: 1, contextLen: 333 },
        { queryLen: 1, contextLen: 17 },
        { queryLen: 1, contextLen: 130 },
      ];
      const p = makeProblem(shape, dtype, specs, 135, "scattered");
      for (const splits of [1, 4]) {
        const rowMajor = decode(p, 0, splits);
        check(p, rowMajor, 0, `row-major, ${splits} splits`);
        assert.deepEqual(decode(p, 0, splits, true), rowMajor, `${dtype}, ${splits} splits`);
      }
    }
  });

  it("decode gives zeros for a padding sequence of context 0", () => {
    const shape = SHAPES[0];
    const dtype: DTypeName = "bf16";
    const p = makeProblem(shape, dtype, [{ queryLen: 1, contextLen: 20 }], 140);
    // A second row with contextLen 0 (a graph bucket's padding), sharing the first one's table row.
    const padded: Problem = {
      ...p,
      seqs: [...p.seqs, { queryStart: 1, queryLen: 1, contextLen: 0, blockTable: p.seqs[0].blockTable }],
      q: Float32Array.from([...p.q, ...p.q]),
      tables: Int32Array.from([...p.tables, ...p.tables]),
    };
    for (const splits of [1, 2]) {
      const got = decode(padded, 0, splits);
      const row = shape.numHeads * shape.headDim;
      assert.ok(
        got.subarray(row).every((x) => x === 0),
        `padding row must be zeros (${splits} splits)`,
      );
      check(p, got.subarray(0, row), 0, `real row next to padding (${splits} splits)`);
    }
  });

  // attention_decode_batch: what steps of many sequences run (attention_splits.ts useBatchKernel: from
  // 33 sequences of the 8B on an H200). The contexts cycle through 1, block sizes ± 1, tile sizes ± 1
  // (32 bf16 / 16 fp32 keys of head 128), a few hundred keys and one long context per batch; padding
  // rows (context 0) sit among them, as a graph bucket pads its batch.
  const BATCH_SHAPES: Shape[] = [
    {
      name: "Llama-3.1-8B 32/8 (G 4), head 128, block 16",
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      blockSize: 16,
    },
    { name: "GQA 8/1 (G 8), head 64, block 32", numHeads: 8, numKvHeads: 1, headDim: 64, blockSize: 32 },
    { name: "MHA 4/4 (G 1), head 128, block 16", numHeads: 4, numKvHeads: 4, headDim: 128, blockSize: 16 },
    ...SHAPES.slice(1),
  ];
  const BATCH_CONTEXTS = [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 2, 300, 47];
  function batchProblem(shape: Shape, dtype: DTypeName, S: number, long: number, seed: number) {
    const contexts = Array.from({ length: S }, (_, i) =>
      i === S - 3 ? long : BATCH_CONTEXTS[i % BATCH_CONTEXTS.length],
    );
    const p = makeProblem(
      shape,
      dtype,
      contexts.map((c) => ({ queryLen: 1, contextLen: c })),
      seed,
    );
    // One padding row in every 16 sequences.
    const pattern: (number | "pad")[] = [];
    contexts.forEach((_, i) => {
      pattern.push(i);
      if (i % 16 === 5) pattern.push("pad");
    });
    return { p, ...padded(p, pattern, seed + 1) };
  }

  for (const shape of BATCH_SHAPES) {
    const eightB = shape === BATCH_SHAPES[0];
    for (const dtype of DTYPES) {
      const tag = `${shape.name} ${dtype}`;
      for (const S of eightB ? [64] : [64, 256]) {
        it(`decode batch kernel: ${S} sequences of mixed contexts (${tag})`, () => {
          const { p, problem, rowOf } = batchProblem(shape, dtype, S, eightB ? 1100 : 700, 190 + S);
          for (const [window, transposed] of [
            [0, false],
            [0, true],
            [40, false],
            [1, true],
          ] as const) {
            const what = `batch kernel, ${S} sequences, window ${window}${transposed ? ", [stride, S]" : ""}`;
            checkPadded(p, rowOf, decode(problem, window, 1, transposed, false, true), window, what);
          }
        });
      }
    }
  }

  it("decode batch kernel: 256 sequences of the 8B shape, and launches back to back with PDL", () => {
    const shape = BATCH_SHAPES[0];
    for (const dtype of DTYPES) {
      const { p, problem, rowOf } = batchProblem(shape, dtype, 256, 400, 230);
      const single = decode(problem, 0, 1, true, false, true);
      checkPadded(p, rowOf, single, 0, `batch kernel, 256 sequences (${dtype})`);
      // Three launches queued with PDL, each letting the next start at another point (trigger 0, 1, 2):
      // the same bits each time (no state carries between launches; the order of sums is fixed).
      const inputs = [0, 1, 2].map(() => decodeInputs(problem));
      inputs.forEach((d, i) => {
        launchDecode(problem, d, 0, 1, null, true, false, i, false, true);
      });
      h.stream.synchronize();
      const rowMajor = decode(problem, 0, 1, false, false, true);
      assert.deepEqual(rowMajor, single, `[S, stride] and [stride, S] tables give the same bits (${dtype})`);
      for (const [i, d] of inputs.entries())
        assert.deepEqual(h.download(d.out, problem.q.length, dtype), single, `PDL launch ${i} (${dtype})`);
    }
  });
});
