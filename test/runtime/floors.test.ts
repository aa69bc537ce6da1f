// The floors' attention terms (src/runtime/floors.ts) against hand-computed values for a small config,
// and the figure for the 8B shape at 32,768 prompt tokens; the bytes a decode step and a
// prefill must move for the 8B shape, plain, weight-only quantized and with an FP8 KV cache.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ModelConfig } from "../../src/checkpoint/model_config.ts";
import { quantizedByteLength } from "../../src/engine/weight_format.ts";
import {
  causalKeys,
  decodeAttentionFlops,
  decodeKvBytes,
  decodeStepWork,
  floorMs,
  prefillAttentionFlops,
  prefillFlops,
  prefillWork,
} from "../../src/runtime/floors.ts";

// 2 layers, 4 query heads over 2 kv heads of 8 dims.
const small = { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, slidingWindow: null };
const windowed = (w: number) => ({ ...small, slidingWindow: w });

describe("bench floors: attention", () => {
  test("a causal prompt of L tokens has L(L+1)/2 row-key pairs; a window caps each row's keys", () => {
    assert.equal(causalKeys(small, 5), 15); // 1 + 2 + 3 + 4 + 5
    assert.equal(causalKeys(windowed(3), 5), 12); // 1 + 2 + 3 + 3 + 3
    assert.equal(causalKeys(windowed(8), 5), 15); // the window longer than the prompt
    assert.equal(causalKeys(small, 1), 1);
  });

  test("prefill attention FLOPs: layers · prompts · 2·2·heads·headDim · pairs", () => {
    // 2 layers · 3 prompts · (2 · 2 · 4 heads · 8 dims = 128) · 15 pairs = 11,520
    assert.equal(prefillAttentionFlops(small, 3, 5), 11520);
    assert.equal(prefillAttentionFlops(windowed(3), 3, 5), 9216); // 6 · 128 · 12
  });

  test("the 8B shape at 32,768 tokens: about 2.8·10¹⁴ FLOPs of attention (issue 17)", () => {
    const llama8b = { numLayers: 32, numHeads: 32, numKvHeads: 8, headDim: 128, slidingWindow: null };
    const flops = prefillAttentionFlops(llama8b, 1, 32768);
    assert.equal(flops, 32 * 4 * 32 * 128 * ((32768 * 32769) / 2));
    assert.ok(flops > 2.8e14 && flops < 2.82e14, `${flops}`);
  });

  test("decode KV bytes: every sequence's keys at its context, K and V, per kv head", () => {
    // (1 + 10 + 100) keys · 2 (K, V) · 2 layers · 2 kv heads · 8 dims · 2 bytes = 111 · 128
    assert.equal(decodeKvBytes(small, [1, 10, 100], 2), 14208);
    assert.equal(decodeKvBytes(small, [1, 10, 100], 4), 28416);
    // a window of 16 reads 1 + 10 + 16 keys
    assert.equal(decodeKvBytes(windowed(16), [1, 10, 100], 2), 27 * 128);
    assert.equal(decodeKvBytes(small, [], 2), 0);
  });

  test("decode attention FLOPs: keys · layers · 2·2·heads·headDim", () => {
    assert.equal(decodeAttentionFlops(small, [1, 10, 100]), 111 * 2 * 128); // 28,416
    assert.equal(decodeAttentionFlops(windowed(16), [1, 10, 100]), 27 * 2 * 128);
  });

  test("a step's floor is the slower of its bytes and its FLOPs", () => {
    assert.equal(floorMs(2e9, 1e12, 1e12, 1e15), 2); // 2 ms of bytes, 1 ms of FLOPs
    assert.equal(floorMs(1e9, 5e12, 1e12, 1e15), 5); // 1 ms of bytes, 5 ms of FLOPs
    assert.equal(floorMs(0, 3e12, 1e12, 1e15), 3);
  });
});

describe("bench floors: weight bytes of a decode step", () => {
  // Llama 3.1 8B's shape: untied embeddings (not read by a decode step, only the batch's rows).
  const m = {
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 128,
    slidingWindow: null,
    hiddenSize: 4096,
    intermediateSize: 14336,
    vocabSize: 128256,
    tieWordEmbeddings: false,
  } as unknown as ModelConfig;
  const linears = [
    [6144, 4096],
    [4096, 4096],
    [28672, 4096],
    [4096, 14336],
  ];
  const blockParams = 32 * linears.reduce((a, [o, i]) => a + o * i, 0);
  const head = 128256 * 4096;
  const norms = 65 * 4096;
  const params = blockParams + 2 * head + norms;

  test("unquantized: every weight but the embedding table, in the engine dtype", () => {
    const { bytes } = decodeStepWork(m, params, 2, []);
    assert.equal(bytes, (blockParams + head + norms) * 2);
    assert.deepEqual(decodeStepWork(m, params, 2, [5]), decodeStepWork(m, params, 2, [5], params * 2));
  });

  for (const [format, ratio] of [
    ["int8-wo", 1 + 4 / 128],
    ["int4-wo", 0.5 + 4 / 128],
  ] as const) {
    test(`${format}: the quantized linears' stored bytes (q and fp32 scales), the rest in bf16`, () => {
      const stored =
        32 * linears.reduce((a, [o, i]) => a + quantizedByteLength([o, i], format), 0) +
        (2 * head + norms) * 2;
      const { bytes, flops } = decodeStepWork(m, params, 2, [], stored);
      assert.equal(bytes, blockParams * ratio + (head + norms) * 2);
      assert.equal(flops, decodeStepWork(m, params, 2, []).flops, "the same FLOPs: weight-only");
    });
  }

  test("an FP8 KV cache: a byte an element of K and V", () => {
    const bf16 = decodeStepWork(m, params, 2, [100, 300]);
    const fp8 = decodeStepWork(m, params, 2, [100, 300], params * 2, 1);
    // 400 keys · 2 (K, V) · 32 layers · 8 kv heads · 128 dims: 2 bytes each, then 1
    assert.equal(bf16.bytes - fp8.bytes, 400 * 2 * 32 * 8 * 128);
    assert.equal(fp8.flops, bf16.flops);
  });

  test("a prefill: the weights once and the prompts' K and V written once; its FLOPs with attention", () => {
    const kv = 3 * 128 * 2 * 32 * 8 * 128; // 3 prompts of 128 tokens
    const { bytes, flops } = prefillWork(m, params, 2, 3, 128);
    assert.equal(bytes, (blockParams + head + norms) * 2 + kv * 2);
    assert.equal(flops, prefillFlops(m, params, 3, 128) + prefillAttentionFlops(m, 3, 128));
    assert.equal(prefillWork(m, params, 2, 3, 128, params * 2, 1).bytes, bytes - kv, "an FP8 KV cache");
    const stored = 1e9;
    assert.equal(prefillWork(m, params, 2, 1, 128, stored).bytes, stored - head * 2 + (kv * 2) / 3);
    // The 8B at 3 TB/s and 900 TFLOP/s: 128 tokens are bound by the weights' bytes, 32,768 by the FLOPs.
    const ms = (L: number) => {
      const w = prefillWork(m, params, 2, 1, L);
      return [w.bytes / 3e12, w.flops / 9e14].map((x) => x * 1000);
    };
    const [shortBytes, shortFlops] = ms(128);
    assert.ok(shortBytes > 2 * shortFlops, `${shortBytes} ms of bytes, ${shortFlops} ms of FLOPs`);
    const [longBytes, longFlops] = ms(32768);
    assert.ok(longFlops > 50 * longBytes, `${longBytes} ms of bytes, ${longFlops} ms of FLOPs`);
  });
});
