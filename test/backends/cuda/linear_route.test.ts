// Which kernels run a linear (src/backends/cuda/linear_route.ts), on the CPU: plain weights on gemv.cu
// up to KILN_GEMV_MAX_ROWS rows, quantized ones on gemv_wo.cu up to 8 rows (never the logits), and
// cuBLASLt otherwise, after dequantization for a quantized weight; fp32 engines, rows of x that are not
// 16 bytes, KILN_GEMV=0 and an engine without the module all take the GEMM. Quantized weights past 8
// rows: gemm_wo.cu up to KILN_WO_GEMM_MAX_M rows, then dequantization + GEMM. fp8 weights: gemv_fp8.cu
// up to 8 rows whatever the engine dtype, else the FP8 GEMM (KILN_GEMV=0 and no module: the GEMM).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type LinearSettings,
  type LinearShape,
  linearRoute,
} from "../../../src/backends/cuda/linear_route.ts";

const settings: LinearSettings = {
  dtype: "bf16",
  gemv: true,
  gemvMaxRows: 2,
  hasGemv: true,
  hasGemvWo: true,
  hasGemvFp8: true,
};
const plain: LinearShape = { rows: 1, inFeatures: 4096, quantized: false, logits: false };
const quant: LinearShape = { ...plain, quantized: true };

describe("linearRoute", () => {
  test("plain weights: gemv.cu up to gemvMaxRows rows, cuBLASLt beyond", () => {
    assert.equal(linearRoute(plain, settings), "gemv");
    assert.equal(linearRoute({ ...plain, rows: 2 }, settings), "gemv");
    assert.equal(linearRoute({ ...plain, rows: 3 }, settings), "gemm");
    assert.equal(linearRoute({ ...plain, logits: true }, settings), "gemv", "gemv.cu has an fp32 output");
  });

  test("quantized weights: gemv_wo.cu up to 8 rows whatever gemvMaxRows, then dequantize + GEMM", () => {
    for (const rows of [1, 2, 3, 8])
      assert.equal(linearRoute({ ...quant, rows }, settings), "gemv_wo", `${rows}`);
    assert.equal(linearRoute({ ...quant, rows: 9 }, settings), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, rows: 4096 }, settings), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, rows: 1 }, { ...settings, gemvMaxRows: 0 }), "gemv_wo");
  });

  test("a quantized weight gemv_wo has no kernel for (int4-zp, k not a multiple of 32): dequantize + GEMM", () => {
    assert.equal(linearRoute({ ...quant, quantizedGemv: false }, settings), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, quantizedGemv: true }, settings), "gemv_wo");
  });

  test("the logits of a quantized weight: dequantize + GEMM (gemv_wo has no fp32 output)", () => {
    assert.equal(linearRoute({ ...quant, logits: true }, settings), "dequant_gemm");
  });

  test("fp32 engines, k not a multiple of 8, KILN_GEMV=0, no module: the GEMM", () => {
    for (const [shape, plainOr] of [
      [plain, "gemm"],
      [quant, "dequant_gemm"],
    ] as const) {
      assert.equal(linearRoute(shape, { ...settings, dtype: "fp32" }), plainOr);
      assert.equal(linearRoute({ ...shape, inFeatures: 4100 }, settings), plainOr);
      assert.equal(linearRoute(shape, { ...settings, gemv: false }), plainOr);
    }
    assert.equal(linearRoute(plain, { ...settings, hasGemv: false }), "gemm");
    assert.equal(linearRoute(quant, { ...settings, hasGemvWo: false }), "dequant_gemm");
    assert.equal(
      linearRoute(quant, { ...settings, hasGemv: false }),
      "gemv_wo",
      "gemv_wo needs only its module",
    );
  });

  test("quantized weights past 8 rows: gemm_wo.cu up to woGemmMaxM rows, then dequantize + GEMM", () => {
    const on = { ...settings, hasGemmWo: true, woGemmMaxM: 256 };
    for (const rows of [9, 16, 17, 64, 100, 256])
      assert.equal(linearRoute({ ...quant, rows }, on), "wo_gemm", `${rows}`);
    assert.equal(linearRoute({ ...quant, rows: 257 }, on), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, rows: 8 }, on), "gemv_wo", "the GEMV keeps its rows");
    assert.equal(linearRoute({ ...quant, rows: 64 }, { ...on, woGemmMaxM: 64 }), "wo_gemm");
    assert.equal(linearRoute({ ...quant, rows: 65 }, { ...on, woGemmMaxM: 64 }), "dequant_gemm");
    assert.equal(
      linearRoute({ ...quant, rows: 9 }, { ...on, woGemmMaxM: 0 }),
      "dequant_gemm",
      "switched off",
    );
    assert.equal(
      linearRoute({ ...quant, rows: 9 }, { ...on, hasGemmWo: false }),
      "dequant_gemm",
      "no module",
    );
    assert.equal(
      linearRoute({ ...quant, rows: 9, quantizedGemm: false }, on),
      "dequant_gemm",
      "no kernel for this weight (int4-zp with g_idx, say)",
    );
    assert.equal(linearRoute({ ...quant, rows: 9, logits: true }, on), "dequant_gemm", "no fp32 output");
    assert.equal(linearRoute({ ...quant, rows: 9 }, { ...on, dtype: "fp32" }), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, rows: 9, inFeatures: 4100 }, on), "dequant_gemm");
    assert.equal(linearRoute({ ...quant, rows: 9 }, { ...on, gemv: false }), "wo_gemm", "its own switch");
    assert.equal(linearRoute({ ...quant, rows: 1, quantizedGemv: false }, on), "dequant_gemm");
    assert.equal(linearRoute({ ...plain, rows: 9 }, on), "gemm", "plain weights never");
  });

  test("fp8 weights: gemv_fp8.cu up to 8 rows (any dtype), else the FP8 GEMM", () => {
    const fp8: LinearShape = { ...plain, fp8: true };
    for (const rows of [1, 2, 8])
      assert.equal(linearRoute({ ...fp8, rows }, settings), "fp8_gemv", `${rows}`);
    assert.equal(linearRoute({ ...fp8, rows: 9 }, settings), "fp8_gemm");
    assert.equal(linearRoute({ ...fp8, rows: 4096 }, settings), "fp8_gemm");
    assert.equal(linearRoute(fp8, { ...settings, dtype: "fp32" }), "fp8_gemv");
    assert.equal(linearRoute(fp8, { ...settings, gemvMaxRows: 0 }), "fp8_gemv");
    assert.equal(linearRoute(fp8, { ...settings, gemv: false }), "fp8_gemm");
    assert.equal(linearRoute(fp8, { ...settings, hasGemvFp8: false }), "fp8_gemm");
  });
});
