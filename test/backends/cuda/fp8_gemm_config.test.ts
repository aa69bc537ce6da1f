// The FP8 GEMM configuration of cuBLASLt plans (device/cublaslt_descriptors.ts), on the CPU: fp8 plans
// read 1-byte x and W whatever the engine dtype, may write fp32 (fp32 engines) or 16-bit outputs, and
// describe themselves as e4m3; the descriptor attributes an fp8 plan sets (FP8 fast accumulation off,
// stated; outer-vector scale modes, with placeholder scale pointers for the heuristic, unless unit
// scales; the bias in D's type), recorded by a stand-in cuBLASLt. Whether cuBLASLt
// accepts them needs a GPU (test/gpu/kernels/gemv_fp8.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  createPlan,
  describeGemm,
  inputBytes,
  normalize,
  takesScales,
} from "../../../src/backends/cuda/device/cublaslt_descriptors.ts";
import type { CudaDevice } from "../../../src/backends/cuda/device/device.ts";
import {
  CUBLASLT_MATMUL_DESC,
  CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
  CUDA_R_16BF,
  CUDA_R_16F,
  CUDA_R_32F,
} from "../../../src/backends/cuda/ffi/cublaslt.ts";
import { InvalidArgumentError } from "../../../src/errors.ts";

describe("FP8 GEMM configuration", () => {
  /** The matmul-descriptor attributes createPlan sets, by a stand-in for cuBLASLt. */
  const attributes = (config: Parameters<typeof normalize>[0]) => {
    const set = new Map<number, ArrayBufferView>();
    const api = {
      matmulDescCreate: () => 1n,
      matmulDescSetAttribute: (_d: bigint, attr: number, v: ArrayBufferView) => set.set(attr, v),
      matrixLayoutCreate: () => 2n,
    };
    const device = {
      blasLt: () => ({ api, handle: 3n }),
      assertOpen: () => {},
      driver: { memAlloc: () => 0x7000n },
      liveBytes: 0,
      liveObjects: 0,
    } as unknown as CudaDevice;
    createPlan(device, normalize(config));
    return set;
  };

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

  test("fp8 plans state FAST_ACCUM = 0 (one byte); outer-vector scale modes unless unit scales", () => {
    const base = { m: 16, n: 32, k: 64, dtypeIn: "bf16" as const };
    const outer = attributes({ ...base, fp8: true });
    const fast = outer.get(CUBLASLT_MATMUL_DESC.FAST_ACCUM);
    assert.ok(fast instanceof Int8Array && fast.length === 1 && fast[0] === 0, "FAST_ACCUM: int8_t 0");
    for (const mode of [CUBLASLT_MATMUL_DESC.A_SCALE_MODE, CUBLASLT_MATMUL_DESC.B_SCALE_MODE])
      assert.deepEqual(outer.get(mode), Int32Array.of(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F));
    // The heuristic refuses vector scale modes without scale pointers: the plan's placeholder is set.
    for (const ptr of [CUBLASLT_MATMUL_DESC.A_SCALE_POINTER, CUBLASLT_MATMUL_DESC.B_SCALE_POINTER])
      assert.deepEqual(outer.get(ptr), BigUint64Array.of(0x7000n));
    const unit = attributes({ ...base, fp8: true, fp8UnitScales: true, dtypeOut: "fp32" });
    assert.deepEqual(unit.get(CUBLASLT_MATMUL_DESC.FAST_ACCUM), Int8Array.of(0));
    assert.equal(unit.has(CUBLASLT_MATMUL_DESC.A_SCALE_MODE), false);
    assert.equal(unit.has(CUBLASLT_MATMUL_DESC.A_SCALE_POINTER), false);
    assert.equal(attributes(base).has(CUBLASLT_MATMUL_DESC.FAST_ACCUM), false, "not on plain GEMMs");
  });

  test("a biased fp8 plan states its bias type as D's (cuBLASLt's FP8 default is not D's)", () => {
    const base = { m: 16, n: 32, k: 64, bias: true, fp8: true };
    for (const [dtypeIn, type] of [
      ["fp32", CUDA_R_32F],
      ["bf16", CUDA_R_16BF],
      ["fp16", CUDA_R_16F],
    ] as const) {
      const set = attributes({ ...base, dtypeIn });
      assert.deepEqual(set.get(CUBLASLT_MATMUL_DESC.BIAS_DATA_TYPE), Int32Array.of(type), dtypeIn);
    }
    assert.equal(
      attributes({ ...base, dtypeIn: "bf16", bias: false }).has(CUBLASLT_MATMUL_DESC.BIAS_DATA_TYPE),
      false,
    );
    // Plain GEMMs keep cuBLASLt's default (D's type).
    assert.equal(
      attributes({ m: 16, n: 32, k: 64, dtypeIn: "bf16", bias: true }).has(
        CUBLASLT_MATMUL_DESC.BIAS_DATA_TYPE,
      ),
      false,
    );
  });
});
