// Which kernels run a linear step y[rows, n] = x[rows, k]·Wᵀ: kiln's GEMV for decode shapes of 16-bit
// engines (gemv.cu; gemv_wo.cu over a quantized weight), else a cuBLASLt GEMM, after dequantizing a
// quantized weight into the engine dtype (quantized_linears.ts). An fp8 weight's input is quantized
// first, then gemv_fp8.cu runs decode shapes and cuBLASLt's FP8 GEMM the rest (fp8_linears.ts). Pure, so
// the choice is tested on the CPU.
import type { DTypeName } from "../../dtype.ts";
import { FP8_GEMV_MAX_ROWS } from "./fp8_variants.ts";
import { WO_GEMV_MAX_ROWS } from "./gemv_wo_variants.ts";

export type LinearRoute = "gemv" | "gemv_wo" | "gemm" | "dequant_gemm" | "fp8_gemv" | "fp8_gemm";

export interface LinearShape {
  /** Rows of x in this step. */
  rows: number;
  /** k: input features (x's row width). */
  inFeatures: number;
  /** The weight is weight-only quantized. */
  quantized: boolean;
  /** false: gemv_wo has no kernel for this quantized weight's shape (int4-zp with k not a multiple of
   * 32: QuantizedLinears.gemvTakes), so it is dequantized for every step. */
  quantizedGemv?: boolean;
  /** The step writes the plan's logits (fp32 output; gemv_wo has none). */
  logits: boolean;
  /** The weight is fp8 (W8A8 E4M3). */
  fp8?: boolean;
}

export interface LinearSettings {
  dtype: DTypeName;
  /** KILN_GEMV (tuning.gemv): false runs every linear on cuBLASLt. */
  gemv: boolean;
  /** KILN_GEMV_MAX_ROWS: most rows on gemv.cu. */
  gemvMaxRows: number;
  /** The engine has the gemv module / the module of this weight's quantized GEMV (gemv_wo; gemv_zp for
   * int4-zp, whose kernels the route also calls "gemv_wo"). */
  hasGemv: boolean;
  hasGemvWo: boolean;
  /** The engine has the gemv_fp8 module (every fp8 engine has). */
  hasGemvFp8?: boolean;
}

/** The route of one linear: our GEMVs need 16-bit activations and 16-byte rows of x (k a multiple of
 * 8); gemv.cu takes up to gemvMaxRows rows, gemv_wo.cu up to WO_GEMV_MAX_ROWS (not the logits);
 * gemv_fp8.cu up to FP8_GEMV_MAX_ROWS of any dtype, else the FP8 GEMM. */
export function linearRoute(l: LinearShape, s: LinearSettings): LinearRoute {
  // fp8: whatever the engine dtype (gemv_fp8 reads quantized x; load refused k not a multiple of 16).
  if (l.fp8) return s.gemv && s.hasGemvFp8 && l.rows <= FP8_GEMV_MAX_ROWS ? "fp8_gemv" : "fp8_gemm";
  const fallback = l.quantized ? "dequant_gemm" : "gemm";
  if (!s.gemv || s.dtype === "fp32" || l.inFeatures % 8 !== 0) return fallback;
  if (l.quantized)
    return s.hasGemvWo && l.quantizedGemv !== false && l.rows <= WO_GEMV_MAX_ROWS && !l.logits
      ? "gemv_wo"
      : fallback;
  return s.hasGemv && l.rows <= s.gemvMaxRows ? "gemv" : fallback;
}
