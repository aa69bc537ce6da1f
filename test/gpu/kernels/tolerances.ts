// How far a CUDA kernel may be from the CPU reference (src/backends/cpu/kernels/), and why.
//
// Inputs of every test are first rounded to the dtype under test, so the reference (fp32) and the
// kernel see the same values; the differences left are:
//   fp32        the kernel runs the reference's fp32 ops in its order (__f*_rn, no FMA), so only
//               reductions (summation order; the reference sums in double) and CUDA's math library
//               (expf, erff, tanhf, cosf, sinf: ≤ 2 ulp where the reference is correctly rounded) differ:
//               a few ulps (2⁻²⁴ relative each).
//   fp16, bf16  each place where Hugging Face rounds to the model dtype (a torch op on T tensors) is a
//               rounding the fp32 reference does not have: at most U (half an ulp, relative) each, U =
//               2⁻¹¹ for fp16 (11 significant bits) and 2⁻⁸ for bf16 (8 significant bits). A bound
//               counts the roundings a kernel does and scales each by the magnitude it applies to.
// fp16 outputs below 2⁻¹⁴ are subnormal, where a rounding is absolute (≤ 2⁻²⁵), hence FLOOR.
import type { DTypeName } from "../../../src/dtype.ts";

/** Unit roundoff of one rounding to the dtype: relative error ≤ U[dtype]. */
export const U: Record<DTypeName, number> = { fp32: 2 ** -24, fp16: 2 ** -11, bf16: 2 ** -8 };

/** Absolute error of one rounding near zero (fp16 subnormals; fp32 and bf16 have fp32's range). */
export const FLOOR: Record<DTypeName, number> = { fp32: 1e-37, fp16: 2 ** -25, bf16: 1e-37 };

/** The fp32 part every kernel has: `ulps` roundings of fp32 at magnitude `scale`. */
const fp32Slop = (ulps: number, scale: number) => ulps * U.fp32 * scale;

export interface Tolerance {
  /** Why the bound is what it is (printed by nothing; read by people). */
  why: string;
  /** The largest |kernel − reference| allowed for one element. */
  bound: (dtype: DTypeName, c: { want: number; scale: number }) => number;
}

export const TOLERANCES = {
  embedding: {
    why: "a row copy: bit-exact in every dtype (zeros for ids outside the table)",
    bound: () => 0,
  },
  rmsNorm: {
    why:
      "fp32: the reference's ops in its order; the sum of squares is fp64 in another order, which can move " +
      "rstd by an ulp (4 ulps of out). T: h = x·rstd rounded to T before the weight (HF " +
      "`weight * h.to(T)`) and the product rounded to T: 2 roundings of |out|.",
    bound: (dtype, { want }) => fp32Slop(4, Math.abs(want)) + 2 * (U[dtype] * Math.abs(want) + FLOOR[dtype]),
  },
  layerNorm: {
    why:
      "fp32: the reference's op order y = (x·rstd + (−rstd·mean))·w + b; mean/variance in fp64 in another " +
      "order can move them by an ulp, whose effect scales with (|x| + |mean|)·rstd·|w| + |b| (`scale`). " +
      "T: torch computes in fp32 and rounds the output once: 1 rounding of |out|.",
    bound: (dtype, { want, scale }) => fp32Slop(8, scale) + U[dtype] * Math.abs(want) + FLOOR[dtype],
  },
  rope: {
    why:
      "`scale` = |x_i| + |x_{i+half}| of the rotated pair (after the q/k norm). fp32: cosf/sinf are ≤ 2 " +
      "ulps from the correctly rounded cos/sin, plus the products and the sum: 6 ulps of scale. T: HF " +
      "rounds cos and sin to T, both products and the sum to T: 5 roundings of scale; with a q/k norm, " +
      "its 2 roundings of the input (see rmsNorm) add 2 more. Pass-through dims and v are exact copies.",
    bound: (dtype, { scale }) => fp32Slop(6, scale) + 7 * (U[dtype] * scale + FLOOR[dtype]),
  },
  gatedAct: {
    why:
      "`scale` = |gate·up|. fp32: expf/erff/tanhf are ≤ 2 ulps from correctly rounded; through " +
      "1 + erf or 1 + tanh (values in [0, 2]) that is an absolute error of 2⁻²² on a factor " +
      "multiplying 0.5·x, so the bound scales with |x·up|, not |out| (gelu(x) ≪ x for x ≪ 0): 8 ulps " +
      "of scale. T: act(gate) rounded to T (one torch kernel) and the product with up rounded to T: " +
      "2 roundings of |out|. gelu_new is a chain of T ops (each rounded): ≤ 4 roundings of |x·up| " +
      "(the tanh derivative damps the inner ones).",
    bound: (dtype, { want, scale }) =>
      fp32Slop(8, scale) + 2 * U[dtype] * Math.abs(want) + 4 * U[dtype] * scale + 2 * FLOOR[dtype],
  },
  add: {
    why: "one fp32 add, then one rounding to T: exact in fp32 (correctly rounded both sides), 1 rounding in T.",
    bound: (dtype, { want }) => (dtype === "fp32" ? 0 : U[dtype] * Math.abs(want) + FLOOR[dtype]),
  },
  logSoftmax: {
    why:
      "fp32 output of l/t − (max + log Σ exp(l/t − max)). The reference sums in double; the kernel sums " +
      "expf (≤ 2 ulps) in fp64 and rounds the output once: 2 ulps of the log-sum plus 1 of the output.",
    bound: (_dtype, { want, scale }) => fp32Slop(4, Math.abs(want) + scale) + 1e-7,
  },
  penalties: {
    why: "fp32 multiply/divide and one fp64 subtraction rounded once, in the reference's order: bit-exact",
    bound: () => 0,
  },
} satisfies Record<string, Tolerance>;

/**
 * Sampling (tokens): the kernel draws with the reference's counter-based generator (bit-exact u) and
 * fp64 weights; its sums run in another order, so a token can differ only when u · total lies within
 * ~1e-15 relative of a boundary between two candidates. Tests compare tokens exactly.
 */
export const SAMPLING_TOKENS_EXACT = true;

/**
 * The FP8 GEMM (cuBLASLt, E4M3 × E4M3 with fp32 "compute", FAST_ACCUM = 0) on Hopper is not fp32-exact.
 * The model (gemv_fp8.test.ts prints each case's error against it):
 *   - each FP8 tensor-core MMA instruction (WGMMA or mma.sync, k = 32 E4M3 products) adds its 32 products
 *     to the carried partial sum C in a fixed-point window of 13 fraction bits below the largest addend's
 *     exponent: each addend a (C and the products) is cut to that window, losing less than
 *     min(|a|, u) with u = 2^(⌊log₂ max|a|⌋ − 13), and the result keeps 13 fraction bits of its own,
 *     losing less than 2⁻¹³·|result|. The DeepSeek-V3 report (arXiv 2412.19437, §3.3.2) measured
 *     "around 14 bits" of accumulation precision on H800; an e8m13 accumulator aligned to the largest
 *     term is what others reverse-engineered for H100 FP8 MMAs; 13 is the conservative reading. The
 *     alignment term matters where the products cancel: a model with the result's truncation alone
 *     (session 16's) was exceeded 1.41× on the H200 at m 16, n 640, k 256 (2026-12-05).
 *   - with fast accumulation off, the tensor-core partial sum is added into an fp32 register "periodically"
 *     (the cuBLASLt docs) and restarts at 0: every 4 instructions in CUTLASS's Hopper FP8 mainloop
 *     (mma_promotion_interval) and in DeepSeek-V3 (N_C = 128 products). cuBLASLt does not say how often,
 *     so the bound is the largest over promotion every 2, 4 or 8 instructions and none.
 * For one output, with D_j the tensor-core partial sum after instruction j (exact, in k order, restarted
 * at each promotion) and A_j its addends (D_{j−1} and the 32 products): |error| ≤ (1 + ⌈k/32⌉·2⁻¹³)·
 * Σ_j (Σ_{a ∈ A_j} min(|a|, u_j) + 2⁻¹³·|D_j|) (the factor: the window and the result are the computed
 * sums', not the exact ones'), plus 2⁻²¹·Σ|x̂·w| for the fp32 adds of promoted sums and the two scale
 * products, as in gemv_fp8's bound. The output's rounding to the engine dtype comes on top. Our own
 * kernels (gemv_fp8, fp8_scale_rows) sum in fp32 and keep the strict 2⁻²¹ bound.
 */
export const FP8_MMA = {
  productsPerInstruction: 32,
  fractionBits: 13,
  /** Instructions between promotions to fp32, each a hypothesis the bound covers (∞: none). */
  promotionIntervals: [2, 4, 8, Number.POSITIVE_INFINITY],
} as const;

/** One FP8 GEMM output over k products x[xAt + c]·w[wAt + c] (E4M3 values, as doubles): the exact sum
 * (a double holds it: 8-bit significands, exponents −18…17, k ≤ 2¹⁴ terms), Σ|products|, and the
 * model's bound on the GEMM's |sum − exact| (above), all in units of the codes (unscaled). */
export function fp8Dot(x: Float64Array, xAt: number, w: Float64Array, wAt: number, k: number) {
  const { productsPerInstruction: K, fractionBits, promotionIntervals } = FP8_MMA;
  const partial = promotionIntervals.map(() => 0);
  const bound = promotionIntervals.map(() => 0);
  const products = new Float64Array(K);
  let sum = 0;
  let abs = 0;
  for (let start = 0, j = 0; start < k; start += K, j++) {
    const n = Math.min(K, k - start);
    let block = 0;
    let largest = 0;
    for (let c = 0; c < n; c++) {
      const p = x[xAt + start + c] * w[wAt + start + c];
      products[c] = p;
      block += p;
      abs += Math.abs(p);
      largest = Math.max(largest, Math.abs(p));
    }
    sum += block;
    for (const [h, interval] of promotionIntervals.entries()) {
      if (j % interval === 0) partial[h] = 0; // promoted before instruction j
      const carried = Math.abs(partial[h]);
      const top = Math.max(largest, carried);
      const u = top > 0 ? 2 ** (Math.floor(Math.log2(top)) - fractionBits) : 0;
      let window = Math.min(carried, u);
      for (let c = 0; c < n; c++) window += Math.min(Math.abs(products[c]), u);
      partial[h] += block;
      bound[h] += window + 2 ** -fractionBits * Math.abs(partial[h]);
    }
  }
  const instructions = Math.ceil(k / K);
  return { sum, abs, slop: (1 + instructions * 2 ** -fractionBits) * Math.max(...bound) + 2 ** -21 * abs };
}

/** The int4 tensor-core decode GEMVs (gemv_wo4_mma, gemv_zp_mma): the products x·q (x·(q − z)) are
 * exact; a product meets its 128-feature chunk's 8 mma accumulations (each may truncate up to 17 ulps,
 * 2⁻²³, of Σ|terms|: gemm_wo.test.ts), the scale multiply, one accumulator add per chunk, the warps' 7 adds
 * and the bias add (one rounding each), the reference's own fp32 weight and store (2⁻²⁴·(Σ|x·w| +
 * |want|)), then one rounding of kiln_t. `chunks` = ⌈k / 128⌉, `absSum` = Σ|x·w| (+ |bias|). */
export function int4MmaBound(dtype: DTypeName, chunks: number, absSum: number, want: number): number {
  return (
    (17 * 8 + chunks + 10) * 2 ** -23 * absSum +
    2 ** -24 * (absSum + Math.abs(want)) +
    U[dtype] * Math.abs(want) +
    FLOOR[dtype]
  );
}
