// The kernels/gemv_fp8.cu kernels that run a linear over an fp8 weight, and their launch shapes: every
// step quantizes its input per token first (quant_fp8_act); decode steps of at most FP8_GEMV_MAX_ROWS
// rows then run, in 16-bit engines, the tensor-core gemv_fp8_mma and gemv_fp8_mma_gated_ACT
// (kernels/gemv_fp8_mma.cuh: the FP8 MMA's sums, bounded as the FP8 GEMM's), in fp32 engines
// gemv_fp8_bits (gemv_fp8's exact-product fp32 sums without conversion instructions: it reads x̂,
// quant_fp8_act's fp32 copy of xq, from the scratch) and, for a fused gate_up, gemv_fp8_gated_ACT;
// KILN_FP8_GEMV chooses one for every dtype (fma: gemv_fp8_r2uUw4 for plain linears too). Larger steps
// run a cuBLASLt FP8 GEMM (fp8_linears.ts).
import type { DTypeName } from "../../dtype.ts";
import { InvalidEnvironmentError } from "../../errors.ts";
import { GEMV_MAX_M } from "./gemv_variants.ts";

/** Most rows a linear over an fp8 weight runs on gemv_fp8 (the kernels' GEMV_MAX_M); beyond, the FP8
 * GEMM. Not yet measured on a GPU. */
export const FP8_GEMV_MAX_ROWS = GEMV_MAX_M;

/** Rows per block of gemv_fp8_r2uUw4 (R = 2 rows per warp, W = 4 warps) and of the gated kernels. */
const ROWS_PER_BLOCK = 8;

/** quant_fp8_act over `rows` rows of `k` features of `elementBytes` each: one block per row, a thread per
 * 16-byte vector of it in whole warps, at most 1,024 (longer rows loop): at decode's one row, the
 * row's loads are in flight at once instead of a few rounds of them. */
export function fp8QuantLaunch(
  rows: number,
  k: number,
  elementBytes: number,
): { kernel: string; grid: number; block: number } {
  const vectors = Math.ceil((k * elementBytes) / 16);
  return { kernel: "quant_fp8_act", grid: rows, block: Math.min(1024, Math.ceil(vectors / 32) * 32) };
}

/** gemv_fp8_r2uUw4 for an [n, k] weight: U = 8 vectors per lane and row in flight when a row has at
 * least one whole iteration of them (32·8 vectors of 16 features: k ≥ 4096), else U = 4. */
export function fp8GemvLaunch(n: number, k: number): { kernel: string; grid: number; block: number } {
  const u = k / 16 >= 32 * 8 ? 8 : 4;
  return { kernel: `gemv_fp8_r2u${u}w4`, grid: Math.ceil(n / ROWS_PER_BLOCK), block: 128 };
}

/** gemv_fp8_gated_ACT for `inter` output features: one feature (gate and up rows) per warp, 8 warps. */
export function fp8GemvGatedLaunch(
  act: string,
  inter: number,
): { kernel: string; grid: number; block: number } {
  return { kernel: `gemv_fp8_gated_${act}`, grid: Math.ceil(inter / ROWS_PER_BLOCK), block: 256 };
}

/** Which decode GEMVs fp8 linears run (KILN_FP8_GEMV): `auto` (the default) resolves by the engine's
 * dtype (resolveFp8Gemv); `mma`, the tensor-core gemv_fp8_mma and gemv_fp8_mma_gated_ACT (sums by the
 * FP8 MMA, bounded as the FP8 GEMM's: test/gpu/kernels/tolerances.ts); `bits`, gemv_fp8_bits_r4u2w4 for
 * plain linears (gemv_fp8's exact-product fp32 sums bit for bit without conversion instructions: the
 * weight decoded by integer ops, x read as quant_fp8_act's fp32 x̂) and gemv_fp8_gated_ACT for a fused
 * gate_up; `fma`, the CUDA-core gemv_fp8_r2uUw4 for plain linears too (the conversions' kernel, the
 * reference the bits kernel is checked against). Figures: docs/PERFORMANCE.md. */
export type Fp8GemvKind = "auto" | "bits" | "fma" | "mma";

/** A decode GEMV kind as an engine runs it (`auto` resolved). */
export type Fp8DecodeGemv = Exclude<Fp8GemvKind, "auto">;

const FP8_GEMV_KINDS: readonly Fp8GemvKind[] = ["auto", "bits", "fma", "mma"];

export function parseFp8Gemv(env: string | undefined): Fp8GemvKind {
  if (env === undefined || env === "") return "auto";
  const kind = FP8_GEMV_KINDS.find((k) => k === env);
  if (kind === undefined)
    throw new InvalidEnvironmentError(`KILN_FP8_GEMV must be ${FP8_GEMV_KINDS.join(", ")}; got ${env}`);
  return kind;
}

/** The decode GEMV an engine of `dtype` runs for `kind`: `auto` is the tensor-core kernel in 16-bit
 * engines (measured 12% faster end to end at batch 1 on the 8B, and the same logits as bits on the GPU
 * tests' bf16 models), and in fp32 engines the bits kernel, whose exact-product fp32 sums are what an
 * fp32 engine is asked for. */
export function resolveFp8Gemv(kind: Fp8GemvKind, dtype: DTypeName): Fp8DecodeGemv {
  if (kind !== "auto") return kind;
  return dtype === "fp32" ? "bits" : "mma";
}

/** Weight rows per block of the tensor-core kernels: one m16n8k32 tile (8 warps split k). */
const MMA_ROWS_PER_BLOCK = 16;

/** gemv_fp8_mma for an [n, k] weight (any k a multiple of 16: a partial last chunk reads zeros). */
export function fp8GemvMmaLaunch(n: number): { kernel: string; grid: number; block: number } {
  return { kernel: "gemv_fp8_mma", grid: Math.ceil(n / MMA_ROWS_PER_BLOCK), block: 256 };
}

/** gemv_fp8_mma_gated_ACT for `inter` output features: 16 (gate and up rows) per block. */
export function fp8GemvMmaGatedLaunch(
  act: string,
  inter: number,
): { kernel: string; grid: number; block: number } {
  return { kernel: `gemv_fp8_mma_gated_${act}`, grid: Math.ceil(inter / MMA_ROWS_PER_BLOCK), block: 256 };
}

/** Weight rows per block of gemv_fp8_bits_r4u2w4: R = 4 rows per warp, W = 4 warps. */
const BITS_ROWS_PER_BLOCK = 16;

/** gemv_fp8_bits_r4u2w4 for an [n, k] weight (any k a multiple of 16): 4 rows per warp, so each x̂ load
 * serves 4 rows; U = 2 vectors per lane and row in flight. */
export function fp8GemvBitsLaunch(n: number): { kernel: string; grid: number; block: number } {
  return { kernel: "gemv_fp8_bits_r4u2w4", grid: Math.ceil(n / BITS_ROWS_PER_BLOCK), block: 128 };
}

/** The decode GEMV launch of `kind` for an [n, k] weight, or with `gatedAct` the gated kernel over the
 * fused gate_up weight (n = inter output features). */
export function fp8DecodeLaunch(
  kind: Fp8DecodeGemv,
  n: number,
  k: number,
  gatedAct?: string,
): { kernel: string; grid: number; block: number } {
  if (kind === "mma") return gatedAct ? fp8GemvMmaGatedLaunch(gatedAct, n) : fp8GemvMmaLaunch(n);
  if (gatedAct) return fp8GemvGatedLaunch(gatedAct, n);
  return kind === "bits" ? fp8GemvBitsLaunch(n) : fp8GemvLaunch(n, k);
}

/** Whether the `kind` decode GEMV of a plain (`gated` false) or fused gate_up linear reads x̂ (the bits
 * kernel) rather than xq. */
export function fp8DecodeReadsXhat(kind: Fp8DecodeGemv, gated: boolean): boolean {
  return kind === "bits" && !gated;
}

/** fp8_scale_rows over y [m, n] (the FP8 GEMM's fallback epilogue): one thread per element. */
export function fp8ScaleRowsLaunch(m: number, n: number): { kernel: string; grid: number; block: number } {
  return { kernel: "fp8_scale_rows", grid: Math.ceil((m * n) / 256), block: 256 };
}

/** Rows of x̂ (quant_fp8_act's fp32 copy of xq, which gemv_fp8_bits reads) the scratch holds for a
 * `kind` decode GEMV at up to `rows` rows: the GEMV's rows (≤ FP8_GEMV_MAX_ROWS) for `bits`, else none. */
export function fp8XhatRows(kind: Fp8DecodeGemv, rows: number): number {
  return kind === "bits" ? Math.min(rows, FP8_GEMV_MAX_ROWS) : 0;
}

/** Bytes of the quantized-activation scratch: E4M3 x [rows, k] for the widest fp8 input, then the
 * per-row fp32 scales (at fp8ScaleOffset, 256-byte aligned), then, for `xhatRows` > 0, x̂ [xhatRows,
 * widest] fp32 (at fp8XhatOffset, 256-byte aligned); 0 when there is no fp8 weight. */
export function fp8ScratchBytes(weights: Iterable<{ cols: number }>, rows: number, xhatRows = 0): number {
  let widest = 0;
  for (const w of weights) widest = Math.max(widest, w.cols);
  if (widest === 0) return 0;
  return xhatRows > 0
    ? fp8XhatOffset(widest, rows) + xhatRows * widest * 4
    : fp8ScaleOffset(widest, rows) + rows * 4;
}

/** Where the scales start in the scratch: after xq [rows, widest], rounded up to 256 bytes. */
export function fp8ScaleOffset(widest: number, rows: number): number {
  return Math.ceil((rows * widest) / 256) * 256;
}

/** Where x̂ starts in the scratch: after the scales [rows], rounded up to 256 bytes. */
export function fp8XhatOffset(widest: number, rows: number): number {
  return Math.ceil((fp8ScaleOffset(widest, rows) + rows * 4) / 256) * 256;
}
