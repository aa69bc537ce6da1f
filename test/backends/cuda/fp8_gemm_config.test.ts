// The FP8 GEMM configuration of cuBLASLt plans (device/cublaslt_descriptors.ts), on the CPU: fp8 plans
// read 1-byte x and W whatever the engine dtype, may write fp32 (fp32 engines) or 16-bit outputs, and
// describe themselves as e4m3; the plan's descriptors themselves need a GPU (test/gpu/fp8_gemm.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  describeGemm,
  inputBytes,
  normalize,
  takesScales,
} from "../../../src/backends/cuda/device/cublaslt_descriptors.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";

describe("FP8 GEMM configuration", () => {
  test("fp8 inputs are 1 byte; plain ones their dtype's", () => {
    assert.equal(inputBytes(normalize({ m: 16, n: 32, k: 64, dtypeIn: "bf16", fp8: true })), 1);
    assert.equal(inputBytes(normalize({ m: 16, n: 32, k: 64, dtypeIn: "bf16" })), 2);
    assert.equal(normalize({ m: 1, n: 1, k: 16, dtypeIn: "bf16" }).fp8, false);
  });

  test("an fp32 engine's FP8 GEMM writes fp32; a plain fp32 GEMM still refuses a 16-bit output", () => {
    const c = normalize({ m: 16, n: 32, k: 64, dtypeIn: "fp32", fp8: true });
    assert.equal(c.dtypeOut, "fp32");
    assert.doesNotThrow(() =>
      normalize({ m: 16, n: 32, k: 64, dtypeIn: "fp32", dtypeOut: "bf16", fp8: true }),
    );
    assert.throws(
      () => normalize({ m: 16, n: 32, k: 64, dtypeIn: "fp32", dtypeOut: "bf16" }),
      InvalidArgumentError,
    );
  });

  test("describes itself as e4m3 → output", () => {
    const c = normalize({ m: 16, n: 32, k: 64, dtypeIn: "bf16", bias: true, fp8: true });
    assert.equal(describeGemm(c), "m=16 n=32 k=64 e4m3→bf16 +bias");
  });

  test("scale vectors: fp8 plans take them unless built with unit scales (the epilogue fallback)", () => {
    const base = { m: 16, n: 32, k: 64, dtypeIn: "bf16" as const };
    assert.equal(takesScales(normalize({ ...base, fp8: true })), true);
    assert.equal(
      takesScales(normalize({ ...base, fp8: true, fp8UnitScales: true, dtypeOut: "fp32" })),
      false,
    );
    assert.equal(takesScales(normalize(base)), false);
  });
});
