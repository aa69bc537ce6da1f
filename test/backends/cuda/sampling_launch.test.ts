// sample_topk_topp's slices and CTAs per row and workspace (src/backends/cuda/sampling_launch.ts) on the
// CPU: the slice count of real vocabularies, its clamps, how many CTAs a row gets as the batch grows, the
// workspace layout, and that SLICE_STATS_BYTES is the size kernels/sampling.cu asserts for its SliceStats.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  MAX_SLICES,
  MAX_SLICES_PER_CTA,
  SLICE_STATS_BYTES,
  samplingCtas,
  samplingSlices,
  samplingWorkspace,
} from "../../../src/backends/cuda/sampling_launch.ts";

describe("samplingSlices", () => {
  test("one CTA per 4096 logits, rounded up", () => {
    const cases: [number, number][] = [
      [4097, 2],
      [8192, 2],
      [32000, 8], // Llama 2
      [50257, 13], // GPT-2
      [128256, 32], // Llama 3
      [151936, 38], // Qwen 2
    ];
    for (const [vocab, slices] of cases) assert.equal(samplingSlices(vocab), slices, `vocab ${vocab}`);
  });

  test("at least 1 for small vocabularies, at most MAX_SLICES for huge ones", () => {
    for (const vocab of [1, 7, 769, 4096]) assert.equal(samplingSlices(vocab), 1, `vocab ${vocab}`);
    assert.equal(MAX_SLICES, 64);
    for (const vocab of [262144, 262145, 1_000_000])
      assert.equal(samplingSlices(vocab), 64, `vocab ${vocab}`);
  });

  test("rejects a vocabulary that is not a positive integer", () => {
    for (const vocab of [0, -5, 1.5, Number.NaN]) assert.throws(() => samplingSlices(vocab), RangeError);
  });
});

describe("samplingCtas", () => {
  test("a CTA a slice while the rows fit one wave of the SMs, then 2, 4, … 32 slices a CTA", () => {
    const sms = 132; // H100 SXM
    const cases: [number, number, number][] = [
      // slices, rows, CTAs per row
      [32, 1, 32], // Llama 3 at batch 1: the row over 32 SMs
      [32, 4, 32], // 128 CTAs ≤ 132
      [32, 5, 16], // 160 > 132: 2 slices a CTA
      [32, 8, 16],
      [32, 9, 8],
      [32, 64, 2],
      [32, 132, 1],
      [32, 256, 1], // a warp a slice: 256 CTAs, more can't merge
      [64, 256, 2], // 64 slices: 32 a CTA at most
      [38, 1, 38], // Qwen 2
      [38, 4, 19], // 152 > 132
      [1, 1, 1],
      [1, 1024, 1],
    ];
    for (const [slices, rows, ctas] of cases)
      assert.equal(samplingCtas(slices, rows, sms), ctas, `${slices} slices, ${rows} rows`);
  });

  test("at most 32 slices a CTA; fewer CTAs than slices only past a wave; past it only at the fewest", () => {
    for (const slices of [1, 2, 3, 7, 13, 32, 38, 63, 64])
      for (const rows of [1, 2, 3, 17, 100, 256, 1000])
        for (const sms of [1, 8, 78, 132]) {
          const q = samplingCtas(slices, rows, sms);
          const at = `${slices} slices, ${rows} rows, ${sms} SMs: ${q} CTAs`;
          assert.ok(q >= 1 && q <= slices, at);
          assert.ok(Math.ceil(slices / q) <= MAX_SLICES_PER_CTA, at);
          if (q < slices) assert.ok(slices * rows > sms, at);
          if (q * rows > sms) assert.equal(q, Math.ceil(slices / MAX_SLICES_PER_CTA), at);
        }
  });

  test("rejects counts that are not positive integers", () => {
    for (const [s, r, m] of [
      [0, 1, 1],
      [32, 0, 1],
      [32, 1, 0],
      [32, 1.5, 132],
    ])
      assert.throws(() => samplingCtas(s, r, m), RangeError);
  });
});

describe("samplingWorkspace", () => {
  test("SliceStats [rows, slices], then a u32 counter per row", () => {
    assert.deepEqual(samplingWorkspace(64, 32), {
      countersOffset: 24 * 64 * 32,
      bytes: 24 * 64 * 32 + 4 * 64,
    });
    assert.deepEqual(samplingWorkspace(1, 1), { countersOffset: 24, bytes: 28 });
  });

  test("SLICE_STATS_BYTES is sizeof(SliceStats) in kernels/sampling.cu", () => {
    const src = readFileSync(new URL("../../../kernels/sampling.cu", import.meta.url), "utf8");
    const m = /static_assert\(sizeof\(SliceStats\) == (\d+)/.exec(src);
    assert.ok(m, "sampling.cu asserts sizeof(SliceStats)");
    assert.equal(SLICE_STATS_BYTES, Number(m[1]));
  });
});
