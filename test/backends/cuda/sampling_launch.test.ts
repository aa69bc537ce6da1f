// sample_topk_topp's CTAs per row and workspace (src/backends/cuda/sampling_launch.ts) on the CPU: the
// slice count of real vocabularies, its clamps, the workspace layout, and that SLICE_STATS_BYTES is the
// size kernels/sampling.cu asserts for its SliceStats.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  MAX_SLICES,
  SLICE_STATS_BYTES,
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
