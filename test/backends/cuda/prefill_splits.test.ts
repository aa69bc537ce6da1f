// Prefill attention split planning (src/backends/cuda/prefill_splits.ts) on the CPU: a launch of few
// rows over a long context splits until the GPU is filled FILL_WAVES times over (the 128 rows
// over 2,176 keys on 132 SMs: 8 splits), a launch that fills the GPU or has a short context does not
// split, the partial scratch bound holds for every launch, and the key ranges mirror the kernel's
// split_keys: whole key tiles, in order, covering the keys any row may see exactly once.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { FILL_WAVES } from "../../../src/backends/cuda/attention_splits.ts";
import {
  KEY_TILE,
  MAX_PARTIAL_ROWS,
  MAX_PREFILL_SPLITS,
  MIN_SPLIT_TILES,
  prefillSplitKeys,
  prefillSplits,
  splitsPay,
} from "../../../src/backends/cuda/prefill_splits.ts";

const H200_8B = { smCount: 132, heads: 32, blockM: 128 }; // Llama-3.1-8B: 32 query heads
const nonEmpty = (r: [number, number][]) => r.filter(([a, b]) => a < b);

describe("prefill attention splits", () => {
  test("128 rows over a 2,176-key context (2,048 cached): 8 splits, 256 CTAs ≤ 2 waves", () => {
    const splits = prefillSplits(H200_8B, { numSeqs: 1, maxQueryLen: 128, maxContextLen: 2176, rows: 128 });
    assert.equal(splits, 8);
    assert.ok(32 * splits <= FILL_WAVES * 132);
  });

  test("no split: a cold prompt, a short context, or a launch that fills the GPU", () => {
    // 128 rows, no cache: 128 keys is under MIN_SPLIT_TILES tiles.
    assert.equal(prefillSplits(H200_8B, { numSeqs: 1, maxQueryLen: 128, maxContextLen: 128, rows: 128 }), 1);
    // 2,048 rows: 16 tiles × 32 heads = 512 CTAs, already ≥ 2 waves.
    assert.equal(
      prefillSplits(H200_8B, { numSeqs: 1, maxQueryLen: 2048, maxContextLen: 4096, rows: 2048 }),
      1,
    );
    // 9 sequences of 128 rows: 288 CTAs.
    assert.equal(
      prefillSplits(H200_8B, { numSeqs: 9, maxQueryLen: 128, maxContextLen: 8192, rows: 1152 }),
      1,
    );
    assert.equal(prefillSplits(H200_8B, { numSeqs: 0, maxQueryLen: 0, maxContextLen: 0, rows: 0 }), 1);
  });

  test("capped by MAX_PREFILL_SPLITS, by keys per split and by the scratch's rows", () => {
    // One row over 100k keys on 8 heads: the fill would give 33 splits.
    const one = { numSeqs: 1, maxQueryLen: 1, maxContextLen: 100_000, rows: 1 };
    assert.equal(prefillSplits({ ...H200_8B, heads: 8 }, one), MAX_PREFILL_SPLITS);
    // 600 keys: 2 splits of ≥ 4 tiles.
    assert.equal(prefillSplits(H200_8B, { ...one, maxContextLen: 600 }), 2);
    // 400 rows in 4 sequences of 100: 128 CTAs → fill 2; 300 rows × 2 ≤ 1024, but 600 rows would not.
    const four = { numSeqs: 4, maxQueryLen: 100, maxContextLen: 8192, rows: 400 };
    assert.equal(prefillSplits({ ...H200_8B, heads: 8 }, four), 2);
    assert.equal(prefillSplits({ ...H200_8B, heads: 8 }, { ...four, rows: 600 }), 1);
  });

  test("every launch's rows × splits fits the scratch; every split has ≥ MIN_SPLIT_TILES tiles", () => {
    for (const heads of [4, 8, 32, 64])
      for (const numSeqs of [1, 2, 3, 7])
        for (const maxQueryLen of [1, 17, 128, 200, 512])
          for (const maxContextLen of [maxQueryLen, 300, 2176, 4100, 131072]) {
            const rows = numSeqs * maxQueryLen;
            const splits = prefillSplits(
              { smCount: 132, heads, blockM: 128 },
              { numSeqs, maxQueryLen, maxContextLen, rows },
            );
            const what = `H ${heads} S ${numSeqs} q ${maxQueryLen} ctx ${maxContextLen}`;
            assert.ok(splits >= 1 && splits <= MAX_PREFILL_SPLITS, what);
            if (splits > 1) {
              assert.ok(rows * splits <= MAX_PARTIAL_ROWS, what);
              assert.ok(maxContextLen / splits >= MIN_SPLIT_TILES * KEY_TILE, what);
              assert.ok(Math.ceil(maxQueryLen / 128) * heads * numSeqs * splits <= FILL_WAVES * 132, what);
            }
          }
  });

  test("key ranges: whole tiles from the first visible tile, in order, covering every visible key once", () => {
    for (const ctx of [1, 3, 64, 65, 300, 2176, 4100])
      for (const qlen of [1, 17, 128, 200])
        for (const splits of [1, 2, 5, 16])
          for (const window of [0, 1, 100, 4096]) {
            if (qlen > ctx) continue;
            const r = prefillSplitKeys(ctx, qlen, splits, window);
            const what = `ctx ${ctx} q ${qlen} splits ${splits} window ${window}`;
            assert.equal(r.length, splits);
            const firstSeen = window > 0 ? Math.max(0, ctx - qlen - window + 1) : 0;
            const ne = nonEmpty(r);
            assert.ok(ne[0][0] <= firstSeen && firstSeen - ne[0][0] < KEY_TILE, what);
            assert.equal(ne[0][0] % KEY_TILE, 0, what);
            assert.equal(ne[ne.length - 1][1], ctx, what);
            for (let i = 1; i < ne.length; i++) {
              assert.equal(ne[i][0], ne[i - 1][1], what);
              assert.equal(ne[i][0] % KEY_TILE, 0, what);
            }
            // Empty splits come last: a split past the end never precedes one with keys.
            assert.deepEqual(r.slice(0, ne.length), ne, what);
          }
  });

  test("the kernel's split_keys formula: 2,176 keys over 8 splits of 5 tiles, 1,000 over 5 with a window", () => {
    assert.deepEqual(prefillSplitKeys(2176, 128, 8), [
      [0, 320],
      [320, 640],
      [640, 960],
      [960, 1280],
      [1280, 1600],
      [1600, 1920],
      [1920, 2176],
      [2240, 2176],
    ]);
    // Window 100 over rows at 990..999: the first key seen is 891, in the tile from 832; 3 tiles, 1 a split.
    assert.deepEqual(prefillSplitKeys(1000, 10, 5, 100), [
      [832, 896],
      [896, 960],
      [960, 1000],
      [1024, 1000],
      [1088, 1000],
    ]);
  });

  test("attention_prefill.cu's split_keys is the formula mirrored here", () => {
    const src = readFileSync(join(import.meta.dirname, "../../../kernels/attention_prefill.cu"), "utf8");
    const body = src.slice(
      src.indexOf("split_keys(int ctx"),
      src.indexOf("#if ATTN_PREFILL_TENSOR_CORES\n\nconstexpr int kLds"),
    );
    assert.match(
      body,
      /const int first = window > 0 \? max\(0, ctx - qlen - window \+ 1\) \/ kBlockN \* kBlockN : 0;/,
    );
    assert.match(body, /const int tiles = \(ctx - first \+ kBlockN - 1\) \/ kBlockN;/);
    assert.match(body, /const int per = \(tiles \+ num_splits - 1\) \/ num_splits \* kBlockN;/);
    assert.match(body, /r\.x = first \+ z \* per;\s*r\.y = min\(ctx, r\.x \+ per\);/);
  });
});

test("only models of head dim ≥ 128 split their prefill launches (head 64 measured faster unsplit)", () => {
  assert.equal(splitsPay(128), true);
  assert.equal(splitsPay(256), true);
  assert.equal(splitsPay(64), false);
  assert.equal(splitsPay(96), false);
});
