// Which kernels/gemv.cu variant runs a decode GEMM y[m, n] = x[m, k] · W[n, k]ᵀ (m ≤ 8), chosen per
// weight shape. A variant gemv_rRuUwW gives each warp R output rows, keeps U 16-byte vectors per lane
// and row in flight, and runs W warps per block; its first U vectors are prefetched before the PDL
// wait. One iteration of a row covers 32·U vectors, so U must fit the row: a row of k = 2048 bf16 is
// 256 vectors, one U = 8 iteration (U = 16 would leave it all to the one-vector tail loop).
//
// Measured on an H100 (bf16, m = 1, PDL on, tools/microbench/gemv_pdl.cu), read GB/s of the best
// variant against the previous kernel (r1u4w8):
//   n × k            vectors/row  best          GB/s (previous)
//   6144 × 4096      512          r1u16w8       2839 (2795)
//   28672 × 4096     512          r1u16w8       3132 (3066)
//   128256 × 4096    512          r1u16w8       3200 (3141)
//   4096 × 4096      512          r2u8w4        2780 (2456)
//   4096 × 14336     1792         r1u16w8       2998 (2652)
//   2048 × 8192      1024         r1u16w8       2759 (2362)
//   3072 × 2048      256          r1u8w8        2498 (2159)
//   2048 × 2048      256          r2u8w4        2285 (1819)
//   16384 × 2048     256          r2u4w8        2967 (2922)
//   128256 × 2048    256          r1u8w8        3145
// Shapes between the measured ones take the rule of their neighbours (below); re-measure before
// tuning further.
import { InvalidEnvironmentError } from "../../errors.ts";

export type GemvVariantName = "r1u4w8" | "r1u16w8" | "r1u8w8" | "r2u8w4" | "r2u4w8" | "r1u4w8s2" | "r1u4w8s4";

export interface GemvVariant {
  name: GemvVariantName;
  /** R: output rows per warp. */
  rowsPerWarp: number;
  /** U: 16-byte vectors per lane and row in flight. */
  vecsInFlight: number;
  /** W: warps per block. */
  warps: number;
  /** Whether gemv.cu compiles its fused-RMSNorm twins (`_norm`, 16-bit engines). */
  norm: boolean;
  /** S: warps that share each row (split-K, gemv_rRuUwWsS); 1 for the one-warp variants. */
  splitK: number;
}

export const GEMV_VARIANTS: Readonly<Record<GemvVariantName, GemvVariant>> = {
  r1u4w8: { name: "r1u4w8", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, norm: true, splitK: 1 },
  r1u16w8: { name: "r1u16w8", rowsPerWarp: 1, vecsInFlight: 16, warps: 8, norm: false, splitK: 1 },
  r1u8w8: { name: "r1u8w8", rowsPerWarp: 1, vecsInFlight: 8, warps: 8, norm: false, splitK: 1 },
  r2u8w4: { name: "r2u8w4", rowsPerWarp: 2, vecsInFlight: 8, warps: 4, norm: true, splitK: 1 },
  r2u4w8: { name: "r2u4w8", rowsPerWarp: 2, vecsInFlight: 4, warps: 8, norm: false, splitK: 1 },
  // Split-K (2 or 4 warps per row): fewer dependent load rounds for long rows at r1u4w8's registers.
  // Measured in whole decode steps (H200, 2026-12-03, on the down GEMV): s2 8B 4.264 ms vs 4.194, 1B 0.810
  // vs 0.814 (noise); s4 4.340 / 0.834. Only KILN_GEMV_VARIANT / KILN_GEMV_SHAPES choose them.
  r1u4w8s2: { name: "r1u4w8s2", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, norm: false, splitK: 2 },
  r1u4w8s4: { name: "r1u4w8s4", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, norm: false, splitK: 4 },
};

/** The activations gemv.cu has gated kernels for, in the order of its GEMV_ACT macro (index + 1). */
export const GATED_ACTS = ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"] as const;

/** gemv.cu's GEMV_ACT for a model whose gated MLPs use `acts`: that one activation's kernels, none (0)
 * without a gated MLP, or every activation's (undefined: the macro is left out) otherwise. */
export function gemvActMacro(acts: ReadonlySet<string>): number | undefined {
  if (acts.size === 0) return 0;
  const i = acts.size === 1 ? (GATED_ACTS as readonly string[]).indexOf([...acts][0]) : -1;
  return i >= 0 ? i + 1 : undefined;
}

/** gemv.cu's GEMV_MAX_M: the most rows of x one launch takes (the macro's default). */
export const GEMV_MAX_M = 8;

/** Most rows a decode GEMM runs on our GEMV (KILN_GEMV_MAX_ROWS overrides it, 0–8); more go to cuBLASLt.
 * Each row costs the GEMV a full pass of FMAs and x loads per weight vector, while cuBLASLt's tensor
 * cores take 8 rows for the price of one. H100, Llama-3.2-1B, kiln bench TPOT, 2026-11-22:
 *   batch 1: GEMV 1.125 ms;  batch 2: GEMV 1.254, cuBLASLt 1.303;  batch 4: GEMV 1.579, cuBLASLt 1.329;
 *   batch 8: GEMV 2.391, cuBLASLt 1.355 (norm unfused in every GEMV figure but batch 1's). */
export const GEMV_MAX_ROWS = 2;

export function parseGemvMaxRows(env: string | undefined): number {
  if (env === undefined || env === "") return GEMV_MAX_ROWS;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0 || n > 8)
    throw new InvalidEnvironmentError(`KILN_GEMV_MAX_ROWS must be an integer from 0 to 8; got ${env}`);
  return n;
}

/** How decode GEMVs take over the RMSNorm before them (`KILN_FUSE_NORM`). `on`: in the GEMV's prologue
 * (`_norm` twins) wherever it can; `off` (the default; `auto` is an alias): the norm is its own launch.
 * `tail`: a residual add + RMSNorm after a GEMV runs in that GEMV's tail instead — the producer (o_proj,
 * down) stores the residual sum and its last CTA normalises the rows (`_addnorm`).
 * `carry`: a residual add + RMSNorm between two GEMVs has no work of its own — the producer stores the
 * residual sum, h·γ in fp32 and Σ h² (`_addcarry`), the consumer streams h·γ and scales its sums by
 * rstd (`_carry`); the same values up to the rounding of the normalised x, which it skips. Measured on
 * the H200 (2026-12-03): Llama-3.2-1B 0.887 ms against 0.820 apart, 0.855 against 0.814 once the producer
 * loaded its epilogue's operands before the PDL wait; Llama-3.1-8B 4.338 against 4.235 (before that).
 * Why is not yet known (a guess: the norm's launch gives the consumer's CTAs room to launch and prefetch
 * once the producer is done, where the carried consumer's CTAs crowd in beside the producer); kept as a
 * switch, off, like the prologue and tail fusions before it.
 * Measured on the H200 (kiln bench TPOT, 2026-12-02), with rmsnorm.cu normalising from registers and its
 * weight loaded before the PDL wait: Llama-3.2-1B 0.840 ms apart vs 0.866 with the prologue fusion the
 * old `auto` chose for k < 4096 (every CTA normalises the whole row before its first dot product);
 * Llama-3.1-8B tail 4.649 vs 4.429 apart (the next GEMV's weight prefetch then overlaps the producer's
 * stream instead of the norm's latency). On the H100 (2026-11-22), before the register path, the 1B's
 * prologue fusion paid (1.125 vs 1.147 ms) and the 8B's did not (6.107 vs 6.021).
 * Session 9 (H200, 2026-12-03; docs/PERFORMANCE.md): leaving every add_rms_norm launch out (profiling only)
 * takes the 1B from 0.811 to 0.760 ms, so the 33 launches cost 51 µs, but every fusion tried costs more
 * than that. Two more were measured and removed (commits 8647536 and 53ac92a, reverted; both gave the unfused bits):
 *   - the producer storing only the residual sum, and the consumer normalising it once per CTA into
 *     registers (one barrier) then streaming rows against it, on a grid of 1–4 CTAs per SM or a CTA per
 *     8 features: 1B 0.946–1.041 ms against 0.811;
 *   - the same producer with the `_norm` twin as consumer (no residual add in its prologue): 1B 0.835
 *     against 0.810 (`on` in the same call: 0.839); 8B 4.282 against 4.197.
 * A consumer that does the norm itself pays the norm's latency in every CTA wave, where the norm kernel
 * pays it once. */
export type NormFusion = "on" | "off" | "tail" | "carry";

export function parseNormFusion(env: string | undefined): NormFusion {
  if (env === undefined || env === "" || env === "auto" || env === "0" || env === "off") return "off";
  if (env === "1" || env === "on") return "on";
  if (env === "tail" || env === "carry") return env;
  throw new InvalidEnvironmentError(
    `KILN_FUSE_NORM must be 0 (off, also auto), 1 (on), tail or carry; got ${env}`,
  );
}

/** Whether a decode GEMV normalises its input in its prologue (mode `on`). */
export function normFusionPays(mode: NormFusion): boolean {
  return mode === "on";
}

/** Bytes of dynamic shared memory a fused-norm GEMV takes for m rows of k (the normalised rows), and the
 * most the backend lets it take: past that (e.g. m = 8 at k = 8192) the norm runs as its own kernel. */
export const gemvNormSharedBytes = (m: number, k: number, elemBytes: number): number => m * k * elemBytes;
export const GEMV_NORM_MAX_SHARED = 64 * 1024;

/** How the backend picks a variant: `steady` (default), `by-shape`, or one variant for every shape
 * (`KILN_GEMV_VARIANT`, for measurements). */
export type GemvPolicy = "steady" | "by-shape" | GemvVariantName;

export function parseGemvPolicy(env: string | undefined): GemvPolicy {
  if (env === undefined || env === "" || env === "steady") return "steady";
  if (env === "by-shape" || env in GEMV_VARIANTS) return env as GemvPolicy;
  throw new InvalidEnvironmentError(
    `KILN_GEMV_VARIANT must be steady, by-shape or one of ${Object.keys(GEMV_VARIANTS).join(", ")}; got ${env}`,
  );
}

/** Per-shape variants that take precedence over the policy: "N×K" → variant, from KILN_GEMV_SHAPES
 * ("2048x8192:r1u16w8,2048x2048:r2u8w4"; N output features × K input features, as the weight is [N, K]). */
export type GemvShapes = ReadonlyMap<string, GemvVariantName>;

export function parseGemvShapes(env: string | undefined): GemvShapes {
  const shapes = new Map<string, GemvVariantName>();
  for (const entry of (env ?? "").split(",").filter((e) => e.trim() !== "")) {
    const m = /^\s*(\d+)x(\d+):(\w+)\s*$/.exec(entry);
    if (!m || !(m[3] in GEMV_VARIANTS))
      throw new InvalidEnvironmentError(
        `KILN_GEMV_SHAPES entries must be NxK:variant with a variant of ${Object.keys(GEMV_VARIANTS).join(", ")} (e.g. 2048x8192:r1u16w8); got ${entry}`,
      );
    shapes.set(`${Number(m[1])}x${Number(m[2])}`, m[3] as GemvVariantName);
  }
  return shapes;
}

/** The variant a decode step uses for an [n, k] weight under `policy` (a `shapes` entry for [n, k] first).
 *
 * `steady`: r2u8w4 for large weights (k ≥ 4096 16-bit, n ≥ 4096: every Llama-3.1-8B GEMM), else
 * r1u4w8. Measured in whole decode steps (H100, kiln bench, 2026-11-22; TPOT with each variant for
 * every shape: 8B r2u8w4 6.142 ms, r1u4w8 6.206, by-shape 6.384; 1B r1u4w8 1.225, by-shape 1.246,
 * r2u8w4 1.251), it beats the per-shape choice below — alone, each by-shape variant streams its shape faster in a
 * chain of identical GEMVs, but between the small kernels of a real step (norm, RoPE, attention)
 * the deeper prefetch of r1u16w8 and its 102 registers (2 blocks per SM) cost more than they gain;
 * tools/microbench/gemv_pdl.cu's "+norm+pdl" column shows the same on the 8B chain. */
export function chooseGemv(
  n: number,
  k: number,
  elemBytes: number,
  policy: GemvPolicy = "steady",
  shapes: GemvShapes = new Map(),
): GemvVariant {
  const pinned = shapes.get(`${n}x${k}`);
  if (pinned) return GEMV_VARIANTS[pinned];
  if (policy === "steady") {
    const rowVecs = (k * elemBytes) / 16;
    return rowVecs >= 512 && n >= 4096 ? GEMV_VARIANTS.r2u8w4 : GEMV_VARIANTS.r1u4w8;
  }
  if (policy === "by-shape") return planGemv(n, k, elemBytes);
  return GEMV_VARIANTS[policy];
}

/** The variant that streams an [n, k] weight of `elemBytes`-byte elements fastest in a chain of
 * identical GEMVs (k·elemBytes a multiple of 16): the microbenchmark's per-shape winner. */
export function planGemv(n: number, k: number, elemBytes: number): GemvVariant {
  const rowVecs = (k * elemBytes) / 16;
  const v = GEMV_VARIANTS;
  if (rowVecs >= 1024) return v.r1u16w8; // k ≥ 8192 (16-bit): long rows, the most bytes in flight
  if (rowVecs >= 512) return n >= 6144 ? v.r1u16w8 : v.r2u8w4; // k = 4096: few rows want 2 per warp
  if (rowVecs >= 256) {
    // k = 2048
    if (n <= 2048) return v.r2u8w4;
    if (n >= 8192 && n < 65536) return v.r2u4w8;
    return v.r1u8w8;
  }
  return v.r2u4w8; // short rows (tiny models): the smallest U, two rows in flight per warp
}

/** A GEMV's norm twin (kernels/gemv.cu): none, the RMSNorm in its prologue (`norm`), the tail norm's
 * producer (`addnorm`: stores residual + y, then its last CTA the normalised rows; kiln_t output only),
 * or a carried norm's producer (`addcarry`: residual + y, h·γ and Σ h²; kiln_t output only) and consumer
 * (`carry`: x is the producer's h·γ, each sum scaled by rstd). Only variants with `norm` set have twins. */
export type GemvTwin = "" | "norm" | "addnorm" | "addcarry" | "carry";

/** Kernel name and launch shape of `variant` for n output features, or of one of its twins. */
export function gemvLaunch(
  variant: GemvVariant,
  n: number,
  fp32Out: boolean,
  twin: GemvTwin = "",
): { kernel: string; grid: number; block: number } {
  if (twin && !variant.norm) throw new Error(`internal: gemv_${variant.name} has no fused-norm twin`);
  if ((twin === "addnorm" || twin === "addcarry") && fp32Out)
    throw new Error(`internal: gemv_*_${twin} has no fp32 output`);
  return {
    kernel: `gemv_${variant.name}${fp32Out ? "_f32out" : ""}${twin ? `_${twin}` : ""}`,
    grid: Math.ceil(n / ((variant.rowsPerWarp * variant.warps) / variant.splitK)),
    block: 32 * variant.warps,
  };
}

/** Kernel name and launch shape of gemv_gated_ACT (kernels/gemv.cu) for `inter` output features: one
 * feature (its gate and up rows) per warp, 8 warps per block. */
export function gemvGatedLaunch(
  act: string,
  inter: number,
  twin: "" | "norm" | "carry" = "",
): { kernel: string; grid: number; block: number } {
  const warps = 8; // gemv.cu's kGatedWarps
  return {
    kernel: `gemv_gated_${act}${twin ? `_${twin}` : ""}`,
    grid: Math.ceil(inter / warps),
    block: 32 * warps,
  };
}
