// Which kernels run a linear step y[rows, n] = x[rows, k]·Wᵀ: kiln's GEMV for decode shapes of 16-bit
// engines (gemv.cu; gemv_wo.cu over a quantized weight), else a cuBLASLt GEMM, after dequantizing a
// quantized weight into the engine dtype (quantized_linears.ts) — except batches past the quantized GEMV
// up to KILN_WO_GEMM_MAX_M rows, which gemm_wo.cu's tensor-core GEMM runs straight from the quantized
// bytes. An fp8 weight's input is quantized first, then gemv_fp8.cu runs decode shapes and cuBLASLt's
// FP8 GEMM the rest (fp8_linears.ts). Pure, so the choice is tested on the CPU.
import type { DTypeName } from "../../dtype.ts";
import { FP8_GEMV_MAX_ROWS } from "./fp8_variants.ts";
import { WO_GEMV_MAX_ROWS } from "./gemv_wo_variants.ts";

export type LinearRoute = "gemv" | "gemv_wo" | "wo_gemm" | "gemm" | "dequant_gemm" | "fp8_gemv" | "fp8_gemm";

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
  /** false: gemm_wo has no kernel for this quantized weight (int4-zp with g_idx, G or k not a multiple
   * of 32, or zero points for which q − z is not exact in 16 bits: QuantizedLinears.gemmTakes). */
  quantizedGemm?: boolean;
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
  /** The engine has the gemm_wo module (16-bit engines with quantized weights). */
  hasGemmWo?: boolean;
  /** KILN_WO_GEMM_MAX_M (tuning.woGemmMaxM): most rows on gemm_wo.cu (0: none). */
  woGemmMaxM?: number;
}

/** The route of one linear: our GEMVs need 16-bit activations and 16-byte rows of x (k a multiple of
 * 8); gemv.cu takes up to gemvMaxRows rows, gemv_wo.cu up to WO_GEMV_MAX_ROWS (not the logits), and
 * gemm_wo.cu the quantized linears of more rows up to woGemmMaxM (not the logits; KILN_GEMV=0 leaves
 * it on: its own switch is KILN_WO_GEMM_MAX_M); gemv_fp8.cu up to FP8_GEMV_MAX_ROWS of any dtype,
 * else the FP8 GEMM. */
export function linearRoute(l: LinearShape, s: LinearSettings): LinearRoute {
  // fp8: whatever the engine dtype (gemv_fp8 reads quantized x; load refused k not a multiple of 16).
  if (l.fp8) return s.gemv && s.hasGemvFp8 && l.rows <= FP8_GEMV_MAX_ROWS ? "fp8_gemv" : "fp8_gemm";
  const fallback = l.quantized ? "dequant_gemm" : "gemm";
  if (s.dtype === "fp32" || l.inFeatures % 8 !== 0) return fallback;
  if (l.quantized) {
    if (l.logits) return fallback;
    if (l.rows <= WO_GEMV_MAX_ROWS)
      return s.gemv && s.hasGemvWo && l.quantizedGemv !== false ? "gemv_wo" : fallback;
    return s.hasGemmWo && l.quantizedGemm !== false && l.rows <= (s.woGemmMaxM ?? 0) ? "wo_gemm" : fallback;
  }
  return s.gemv && s.hasGemv && l.rows <= s.gemvMaxRows ? "gemv" : fallback;
}
