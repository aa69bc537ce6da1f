// The tensor-core prefill kernel attention_prefill (kernels/attention_prefill.cu, 4 warps × 32 rows,
// mma4) against pagedAttention (src/backends/cpu/kernels/attention.ts) at the Llama-3.1-8B heads (32
// query heads, 8 kv heads, head 128, KV blocks of 16; bf16 and fp16). Problems: 1, 3 and 4 packed
// sequences of 17 … 2,100 tokens (chunks with cached prefixes, an empty one), full causal and windows 1,
// 100 and 1,000, blocks scattered over the pool, unwritten slots NaN. Every row must be written (the
// output starts NaN); sampled rows (each sequence's first and last, both sides of every 128-row tile edge
// and of the 16-row m-tile edges — so the 32-row warp edges too — in its first and last tiles, some at
// random) are compared with the reference, computed for those rows only so the file stays short.
// Bound: attention_cuda.test.ts's (kernels/attention_README.md "Tolerance against the CPU reference").
// The other shapes: attention_cuda.test.ts.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { prefillTiles } from "../../../src/backends/cuda/prefill_tiles.ts";
import type { DTypeName } from "../../../src/dtype.ts";
import { makePagedProblem, type PagedProblem, type SeqSpec } from "../paged_problem.ts";
import { f32, i32, KernelHarness, noGpu, ptr } from "./harness.ts";
import { checkSampled, type PrefillShape } from "./prefill_reference.ts";

type Shape = PrefillShape;
const LLAMA_8B: Shape = { H: 32, HKV: 8, D: 128, BS: 16 };

const problem = (sh: Shape, dtype: DTypeName, specs: SeqSpec[], seed: number): PagedProblem =>
  makePagedProblem(
    { numHeads: sh.H, numKvHeads: sh.HKV, headDim: sh.D, blockSize: sh.BS },
    dtype,
    specs,
    seed,
  );

const SHAPES: [string, Shape][] = [["8B heads", LLAMA_8B]];

describe("attention_prefill", { skip: noGpu }, () => {
  let h: KernelHarness;
  before(() => {
    h = KernelHarness.open();
  });
  afterEach(() => h.freeAll());
  after(() => h?.dispose());

  /** The kernel over all of p's sequences; every output row must come back finite. */
  function prefill(sh: Shape, p: PagedProblem, window: number, gridX?: number): Float32Array {
    const { H, HKV, D, BS } = sh;
    const tiles = prefillTiles(p.dtype, D);
    assert.equal(tiles.kernel, "attention_prefill");
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

  for (const [shapeName, sh] of SHAPES) {
    for (const dtype of ["bf16", "fp16"] as const) {
      it(`${shapeName}: one sequence of 2,100 tokens, causal, and grid.x = 1 (${dtype})`, () => {
        const p = problem(sh, dtype, [{ queryLen: 2100, contextLen: 2100 }], 601);
        checkSampled(sh, p, prefill(sh, p, 0), 0, "1 × 2100");
        // Any grid.x is correct: each CTA walks its sequence's query tiles with stride grid.x.
        checkSampled(sh, p, prefill(sh, p, 0, 1), 0, "1 × 2100, grid.x = 1");
      });
    }

    it(`${shapeName}: three sequences: 17 tokens, 300 after 700 cached, 2,100 tokens (bf16)`, () => {
      const specs = [
        { queryLen: 17, contextLen: 17 },
        { queryLen: 300, contextLen: 1000 },
        { queryLen: 2100, contextLen: 2100 },
      ];
      const p = problem(sh, "bf16", specs, 602);
      checkSampled(sh, p, prefill(sh, p, 0), 0, "3 sequences");
    });

    for (const window of [1, 100, 1000]) {
      it(`${shapeName}: four sequences (17, 129 after 171 cached, none after 9, 2,048), window ${window} (bf16)`, () => {
        const specs = [
          { queryLen: 17, contextLen: 17 },
          { queryLen: 129, contextLen: 300 },
          { queryLen: 0, contextLen: 9 },
          { queryLen: 2048, contextLen: 2048 },
        ];
        const p = problem(sh, "bf16", specs, 603 + window);
        checkSampled(sh, p, prefill(sh, p, window), window, `4 sequences, window ${window}`);
      });
    }
  }
});
