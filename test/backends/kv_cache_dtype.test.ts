// checkKvCacheDtype: which backends store an fp8 KV cache (both now), and kvBytesPerToken's arithmetic.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkKvCacheDtype, kvBytesPerToken } from "../../src/backends/kv_cache_dtype.ts";

describe("checkKvCacheDtype", () => {
  test("fp8 and auto are accepted on the CPU and CUDA backends", () => {
    for (const backend of ["cpu", "cuda"] as const) {
      assert.doesNotThrow(() => checkKvCacheDtype(backend, "fp8"));
      assert.doesNotThrow(() => checkKvCacheDtype(backend, "auto"));
    }
  });
});

describe("kvBytesPerToken", () => {
  test("fp8: a byte per value and a 4-byte scale per (layer, K/V, kv head) row; auto: the activation bytes", () => {
    assert.equal(kvBytesPerToken("fp8", 32, 8, 128, 2), 2 * 32 * 8 * (128 + 4));
    assert.equal(kvBytesPerToken("auto", 32, 8, 128, 2), 2 * 32 * 8 * 128 * 2);
    assert.equal(kvBytesPerToken("auto", 2, 1, 80, 4), 2 * 2 * 80 * 4);
  });
});
