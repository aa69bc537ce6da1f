// Which kernels/gemv.cu variant runs a decode GEMM y[m, n] = x[m, k] · W[n, k]ᵀ (m ≤ 8), chosen per
// weight shape. A variant gemv_rRuUwW gives each warp R output rows, keeps U 16-byte vectors per lane
// and row in flight, and runs W warps per block; its first U vectors are prefetched before the PDL
// wait. One iteration of a row covers 32·U vectors, so U must fit the row: a row of k = 2048 bf16 is
// 256 vectors, one U = 8 iteration (U = 16 would leave it all to the one-vector tail loop).
// docs/PERFORMANCE.md ("Moved from source comments") has the measurements behind the choices below.
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
  /** S: warps that share each row (split-K, gemv_rRuUwWsS); 1 for the one-warp variants. */
  splitK: number;
}

export const GEMV_VARIANTS: Readonly<Record<GemvVariantName, GemvVariant>> = {
  r1u4w8: { name: "r1u4w8", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, splitK: 1 },
  r1u16w8: { name: "r1u16w8", rowsPerWarp: 1, vecsInFlight: 16, warps: 8, splitK: 1 },
  r1u8w8: { name: "r1u8w8", rowsPerWarp: 1, vecsInFlight: 8, warps: 8, splitK: 1 },
  r2u8w4: { name: "r2u8w4", rowsPerWarp: 2, vecsInFlight: 8, warps: 4, splitK: 1 },
  r2u4w8: { name: "r2u4w8", rowsPerWarp: 2, vecsInFlight: 4, warps: 8, splitK: 1 },
  // Split-K (2 or 4 warps per row): fewer dependent load rounds for long rows at r1u4w8's registers.
  // Not faster in whole decode steps; only KILN_GEMV_VARIANT / KILN_GEMV_SHAPES choose them.
  r1u4w8s2: { name: "r1u4w8s2", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, splitK: 2 },
  r1u4w8s4: { name: "r1u4w8s4", rowsPerWarp: 1, vecsInFlight: 4, warps: 8, splitK: 4 },
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
 * cores take 8 rows for the price of one: past 2 rows cuBLASLt is faster. */
export const GEMV_MAX_ROWS = 2;

export function parseGemvMaxRows(env: string | undefined): number {
  if (env === undefined || env === "") return GEMV_MAX_ROWS;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0 || n > 8)
    throw new InvalidEnvironmentError(`KILN_GEMV_MAX_ROWS must be an integer from 0 to 8; got ${env}`);
  return n;
}

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
 * r1u4w8. In whole decode steps it beats the per-shape choice below: alone, each by-shape variant
 * streams its shape faster in a chain of identical GEMVs, but between the small kernels of a real step
 * (norm, RoPE, attention) the deeper prefetch of r1u16w8 and its 102 registers (2 blocks per SM) cost
 * more than they gain. */
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

/** Kernel name and launch shape of `variant` for n output features. */
export function gemvLaunch(
  variant: GemvVariant,
  n: number,
  fp32Out: boolean,
): { kernel: string; grid: number; block: number } {
  return {
    kernel: `gemv_${variant.name}${fp32Out ? "_f32out" : ""}`,
    grid: Math.ceil(n / ((variant.rowsPerWarp * variant.warps) / variant.splitK)),
    block: 32 * variant.warps,
  };
}

/** Kernel name and launch shape of gemv_gated_ACT (kernels/gemv.cu) for `inter` output features: one
 * feature (its gate and up rows) per warp, 8 warps per block. */
export function gemvGatedLaunch(act: string, inter: number): { kernel: string; grid: number; block: number } {
  const warps = 8; // gemv.cu's kGatedWarps
  return { kernel: `gemv_gated_${act}`, grid: Math.ceil(inter / warps), block: 32 * warps };
}
