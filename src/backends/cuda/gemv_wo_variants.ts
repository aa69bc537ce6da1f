// The kernels/gemv_wo.cu kernels that run a linear over a weight-only quantized weight (int8-wo,
// int4-wo), and their launch shapes. Decode steps of at most WO_GEMV_MAX_ROWS rows (16-bit engines) run
// over the quantized bytes as they are: int8-wo on gemv_wo8_r2uUw4 and its gated kernel, int4-wo on the
// tensor-core gemv_wo4_mma and its gated kernel (its CUDA-core kernels measured slower and were
// removed: docs/PERFORMANCE.md); other steps dequantize the weight into a scratch of the engine dtype
// (dequant_woB) for the cuBLASLt GEMM (quantized_linears.ts).
import type { CudaWeightFormat } from "../../engine/build_config.ts";
import { GEMV_MAX_M } from "./gemv_variants.ts";

/** Weight rows per block of gemv_wo4_mma (one m16n8k16 tile; 8 warps split k) and of its gated kernel
 * (16 features: their gate and up rows). */
const MMA_ROWS_PER_BLOCK = 16;

/** Bits per weight of a format gemv_wo.cu has kernels for: the B of gemv_woB_* and dequant_woB. */
export function woBits(format: CudaWeightFormat): 8 | 4 {
  if (format === "int8-wo") return 8;
  if (format === "int4-wo") return 4;
  throw new Error(`internal: kernels/gemv_wo.cu has no kernels for ${format}`);
}

/** Input features per 16-byte q vector: 16 (int8) or 32 (int4). */
const featuresPerVector = (format: CudaWeightFormat) => 128 / woBits(format);

/** Most rows a linear over a quantized weight runs on gemv_wo (the kernels' GEMV_MAX_M), beyond the
 * plain GEMV's GEMV_MAX_ROWS: the alternative is not one GEMM but dequantization first, which writes
 * and reads the weight in the engine dtype (3-5× the quantized bytes). Not yet measured on a GPU. */
export const WO_GEMV_MAX_ROWS = GEMV_MAX_M;

/** Rows per block of gemv_woB_r2uUw4 (R = 2 rows per warp, W = 4 warps) and of the gated kernels. */
const WO_ROWS_PER_BLOCK = 8;

/** Input features one step of gemv_wo4_mma's block covers (8 warps × 4 chunks of 128): a longer row
 * takes several load rounds. */
const MMA_STEP_FEATURES = 8 * 4 * 128;

/** The decode GEMV for an [n, k] weight: int4-wo's gemv_wo4_mma (16 rows a block of 256 threads), or for
 * rows of several load rounds (k > 4,096) its twin gemv_wo4_mma_p, the same bits with the next round's
 * loads out while a round is summed (measured faster there); int8-wo's
 * gemv_wo8_r2uUw4, U = 8 vectors per lane and row in flight when a row has at least one whole iteration
 * of them (32·8 vectors: k ≥ 4096), else U = 4. */
export function woGemvLaunch(
  format: CudaWeightFormat,
  n: number,
  k: number,
): { kernel: string; grid: number; block: number } {
  if (format === "int4-wo") {
    const kernel = k > MMA_STEP_FEATURES ? "gemv_wo4_mma_p" : "gemv_wo4_mma";
    return { kernel, grid: Math.ceil(n / MMA_ROWS_PER_BLOCK), block: 256 };
  }
  const vectors = Math.ceil(k / featuresPerVector(format));
  const u = vectors >= 32 * 8 ? 8 : 4;
  return { kernel: `gemv_wo${woBits(format)}_r2u${u}w4`, grid: Math.ceil(n / WO_ROWS_PER_BLOCK), block: 128 };
}

/** The gated decode GEMV for `inter` output features: int4-wo's gemv_wo4_mma_gated_ACT (16 features a
 * block); int8-wo's gemv_wo8_gated_ACT, one feature (gate and up rows) per warp, 8 warps. */
export function woGemvGatedLaunch(
  format: CudaWeightFormat,
  act: string,
  inter: number,
): { kernel: string; grid: number; block: number } {
  if (format === "int4-wo")
    return { kernel: `gemv_wo4_mma_gated_${act}`, grid: Math.ceil(inter / MMA_ROWS_PER_BLOCK), block: 256 };
  return {
    kernel: `gemv_wo${woBits(format)}_gated_${act}`,
    grid: Math.ceil(inter / WO_ROWS_PER_BLOCK),
    block: 256,
  };
}

/** dequant_woB for an [n, k] weight: one thread per q vector that holds a feature below k. */
export function dequantLaunch(
  format: CudaWeightFormat,
  n: number,
  k: number,
): { kernel: string; grid: number; block: number } {
  const vectors = Math.ceil(k / featuresPerVector(format));
  return { kernel: `dequant_wo${woBits(format)}`, grid: Math.ceil((n * vectors) / 256), block: 256 };
}

/** Bytes of the dequantization scratch: the largest quantized weight in the engine dtype (0: none). */
export function dequantScratchBytes(
  weights: Iterable<{ rows: number; cols: number }>,
  elemBytes: number,
): number {
  let most = 0;
  for (const w of weights) most = Math.max(most, w.rows * w.cols * elemBytes);
  return most;
}
