// Decode attention split planning (src/backends/cuda/attention_splits.ts) on the CPU: the key ranges
// mirror attention_decode.cu's formula and cover every context exactly once; a graph's split count is a
// power of two that leaves no key uncovered; and where the GPU-fill cap does not bind (batch 1 and
// power-of-two batches on an H100 with Llama-3.1-8B's heads), an eager step and the graph that replays
// it cut a context into the same non-empty ranges, so they sum in the same order. Steps of many
// sequences take attention_decode_batch, chosen from the batch and the GPU alone, at one split.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  decodeBatchSharedBytes,
  decodeKernel,
  decodeSharedBytes,
  decodeSplits,
  graphSplits,
  MAX_SPLITS,
  MIN_SPLIT_KEYS,
  parseAttentionStop,
  parseAttentionTrigger,
  parseRopeTrigger,
  splitRanges,
  useBatchKernel,
} from "../../../src/backends/cuda/attention_splits.ts";

const H100_8B = { smCount: 132, ctasPerSeq: 8 }; // 8 kv heads, groups of 4 query heads
const H200_8B = H100_8B; // the H200 has the H100's 132 SMs
const nonEmpty = (r: [number, number][]) => r.filter(([a, b]) => a < b);

describe("decode attention splits", () => {
  test("ranges cover [lo, ctx) once, in order, at least MIN_SPLIT_KEYS keys each but the last", () => {
    for (const ctx of [1, 15, 64, 65, 300, 2047, 2048, 5000, 131072])
      for (const splits of [1, 2, 3, 5, 8, 32])
        for (const window of [0, 50, 4096]) {
          const r = nonEmpty(splitRanges(ctx, splits, window));
          const lo = window > 0 ? Math.max(0, ctx - window) : 0;
          assert.equal(r[0][0], lo, `ctx ${ctx} splits ${splits} window ${window}`);
          assert.equal(r[r.length - 1][1], ctx);
          for (let i = 1; i < r.length; i++) assert.equal(r[i][0], r[i - 1][1]);
          for (const [a, b] of r.slice(0, -1)) assert.ok(b - a >= MIN_SPLIT_KEYS && (b - a) % 16 === 0);
        }
  });

  test("the kernel's formula: 300 keys over 8 splits is 4 full ranges of 64, a tail, and 3 empty", () => {
    assert.deepEqual(splitRanges(300, 8), [
      [0, 64],
      [64, 128],
      [128, 192],
      [192, 256],
      [256, 300],
      [320, 300],
      [384, 300],
      [448, 300],
    ]);
  });

  test("graph split counts: powers of two up to the cap, never fewer than the context needs", () => {
    const seen = new Set<number>();
    for (let ctx = 1; ctx <= 8192; ctx++) {
      const g = graphSplits(H100_8B, 1, ctx);
      seen.add(g);
      assert.ok(g <= MAX_SPLITS);
      assert.ok(g === MAX_SPLITS || Math.ceil(ctx / MIN_SPLIT_KEYS) <= g, `ctx ${ctx}: ${g}`);
      const r = nonEmpty(splitRanges(ctx, g));
      assert.equal(r[r.length - 1][1], ctx, `ctx ${ctx}: the graph's ${g} splits cover every key`);
      if (ctx <= MIN_SPLIT_KEYS * MAX_SPLITS) assert.equal(r.length, Math.ceil(ctx / MIN_SPLIT_KEYS));
    }
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      [1, 2, 4, 8, 16, 32],
      "at most six graphs per bucket",
    );
  });

  test("eager and graph steps cut a context alike where the fill cap does not bind", () => {
    for (const bucket of [1, 2, 4]) {
      for (let ctx = 1; ctx <= 4096; ctx += 7) {
        const eager = decodeSplits(H100_8B, bucket, ctx);
        const graph = graphSplits(H100_8B, bucket, ctx);
        assert.deepEqual(
          nonEmpty(splitRanges(ctx, graph)),
          nonEmpty(splitRanges(ctx, eager)),
          `bucket ${bucket} ctx ${ctx}: ${eager} vs ${graph} splits`,
        );
      }
    }
  });

  test("enough CTAs to fill the GPU twice, fewer splits for larger batches", () => {
    assert.equal(decodeSplits(H100_8B, 1), 32); // ⌈264 / 8⌉ = 33, capped
    assert.equal(decodeSplits(H100_8B, 4), 9);
    assert.equal(decodeSplits(H100_8B, 64), 1);
    assert.equal(decodeSplits(H100_8B, 1, 100), 2);
  });

  test("KILN_ATTN_TRIGGER: keys by default, wait or exit on request, anything else named in the error", () => {
    assert.equal(parseAttentionTrigger(undefined), "keys");
    assert.equal(parseAttentionTrigger(""), "keys");
    assert.equal(parseAttentionTrigger("wait"), "wait");
    assert.equal(parseAttentionTrigger("keys"), "keys");
    assert.equal(parseAttentionTrigger("exit"), "exit");
    assert.throws(
      () => parseAttentionTrigger("late"),
      /KILN_ATTN_TRIGGER must be wait, keys or exit; got late/,
    );
  });

  test("cluster kernels for 2, 4 and 8 splits where clusters exist; KILN_ATTN_CLUSTER=0 turns them off", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 8, 16, 32].map((n) => decodeKernel(n, true)),
      [
        "attention_decode",
        "attention_decode_c2",
        "attention_decode",
        "attention_decode_c4",
        "attention_decode",
        "attention_decode_c8",
        "attention_decode",
        "attention_decode",
      ],
    );
    for (const n of [2, 4, 8]) assert.equal(decodeKernel(n, false), "attention_decode");
    assert.equal(decodeKernel(4, true, true), "attention_decode_rope_c4");
    assert.equal(decodeKernel(3, true, true), "attention_decode_rope");
    assert.equal(decodeKernel(8, false, true), "attention_decode_rope");
  });

  // The nvcc compile test (kernels_compile.test.ts) builds each testDefines set, and the kernel
  // static_asserts sizeof(attn::DecodeSmem) == DECODE_SMEM_BYTES: so the host's formula is checked
  // against the struct through these numbers.
  test("decodeSharedBytes gives the DECODE_SMEM_BYTES of every compile-matrix set of attention_decode.cu", () => {
    const matrix = JSON.parse(
      readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
    );
    const sets: Record<string, number>[] = matrix.files["attention_decode.cu"].testDefines;
    assert.ok(sets.length >= 3);
    for (const d of sets) {
      assert.equal(
        decodeSharedBytes(d.NUM_HEADS / d.NUM_KV_HEADS, d.HEAD_DIM),
        d.DECODE_SMEM_BYTES,
        JSON.stringify(d),
      );
    }
    assert.equal(decodeSharedBytes(4, 128), 22032); // Llama-3.1-8B: 4 query heads per kv head of 128
  });

  test("KILN_ROPE_TRIGGER: wait by default, early on request, anything else named in the error", () => {
    assert.equal(parseRopeTrigger(undefined), false);
    assert.equal(parseRopeTrigger("wait"), false);
    assert.equal(parseRopeTrigger("early"), true);
    assert.throws(() => parseRopeTrigger("soon"), /KILN_ROPE_TRIGGER must be early or wait; got soon/);
  });

  test("KILN_ATTN_STOP (profiling): unset runs the whole kernel; wait, keys, partials; anything else named", () => {
    assert.equal(parseAttentionStop(undefined), "");
    assert.equal(parseAttentionStop(""), "");
    assert.equal(parseAttentionStop("keys"), "keys");
    assert.equal(parseAttentionStop("partials"), "partials");
    assert.throws(
      () => parseAttentionStop("merge"),
      /KILN_ATTN_STOP must be wait, keys or partials; got merge/,
    );
  });

  test("many sequences take attention_decode_batch: S · ctasPerSeq ≥ 2 · SMs, whatever the contexts", () => {
    // The 8B on an H200: 8 CTAs per sequence, 264 wanted: from 33 sequences on.
    assert.deepEqual(
      [1, 2, 8, 16, 32, 33, 64, 128, 256].map((s) => useBatchKernel(H200_8B, s)),
      [false, false, false, false, false, true, true, true, true],
    );
    // MHA with 32 kv heads fills it from 9; MQA (1 kv head, one CTA per sequence) from 264; G = 16 takes
    // two CTAs per kv head.
    assert.equal(useBatchKernel({ smCount: 132, ctasPerSeq: 32 }, 8), false);
    assert.equal(useBatchKernel({ smCount: 132, ctasPerSeq: 32 }, 9), true);
    assert.equal(useBatchKernel({ smCount: 132, ctasPerSeq: 1 }, 256), false);
    assert.equal(useBatchKernel({ smCount: 132, ctasPerSeq: 1 }, 264), true);
    assert.equal(useBatchKernel({ smCount: 80, ctasPerSeq: 2 }, 80), true);
  });

  test("where the batch kernel is chosen, eager and graph steps launch one split for every context", () => {
    for (const t of [H200_8B, { smCount: 132, ctasPerSeq: 32 }, { smCount: 78, ctasPerSeq: 2 }])
      for (const bucket of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) {
        if (!useBatchKernel(t, bucket)) {
          // below the threshold the fill term wants more than one split: the split kernel's case
          assert.ok(decodeSplits(t, bucket) > 1, `${JSON.stringify(t)} bucket ${bucket}`);
          continue;
        }
        for (const ctx of [1, 15, 16, 17, 63, 64, 65, 2048, 32768, 131072]) {
          assert.equal(decodeSplits(t, bucket, ctx), 1, `${JSON.stringify(t)} bucket ${bucket} ctx ${ctx}`);
          assert.equal(graphSplits(t, bucket, ctx), 1, `${JSON.stringify(t)} bucket ${bucket} ctx ${ctx}`);
        }
        assert.equal(decodeSplits(t, bucket), 1);
      }
  });

  test("attention_decode_batch (and its RoPE twin) takes one split; the split kernels are unchanged", () => {
    assert.equal(decodeKernel(1, true, false, true), "attention_decode_batch");
    assert.equal(decodeKernel(1, false, true, true), "attention_decode_batch_rope");
    assert.equal(decodeKernel(1, true, true, false), "attention_decode_rope");
    assert.throws(() => decodeKernel(2, true, false, true), /attention_decode_batch takes 1 split, not 2/);
  });

  // As for decodeSharedBytes: the nvcc compile test static_asserts sizeof(attn::BatchSmem) ==
  // DECODE_BATCH_SMEM_BYTES for every compile-matrix set, so these numbers check the host's mirror.
  test("decodeBatchSharedBytes gives the DECODE_BATCH_SMEM_BYTES of every compile-matrix set", () => {
    const matrix = JSON.parse(
      readFileSync(new URL("../../../kernels/compile_matrix.json", import.meta.url), "utf8"),
    );
    const sets: Record<string, number>[] = matrix.files["attention_decode.cu"].testDefines;
    for (const d of sets) {
      assert.equal(
        decodeBatchSharedBytes(d.NUM_HEADS / d.NUM_KV_HEADS, d.HEAD_DIM),
        d.DECODE_BATCH_SMEM_BYTES,
        JSON.stringify(d),
      );
    }
    // Llama-3.1-8B: new K/V rows 1 KiB, 3 stages × (16 fp32-sized = 32 bf16 keys) × 2 tiles × 512 B,
    // q 2 KiB, m and l 128 B: four CTAs fit an H100/H200 SM's 228 KiB (1 KiB reserved each).
    assert.equal(decodeBatchSharedBytes(4, 128), 52352);
    assert.ok(4 * (decodeBatchSharedBytes(4, 128) + 1024) <= 228 * 1024);
    // Every shape the kernel compiles for stays under the 227 KiB a CTA may have.
    for (const d of [8, 12, 16, 18, 32, 64, 80, 96, 128, 256])
      for (const g of [1, 2, 4, 7, 8, 16])
        assert.ok(decodeBatchSharedBytes(g, d) <= 227 * 1024, `D ${d} G ${g}`);
  });
});
