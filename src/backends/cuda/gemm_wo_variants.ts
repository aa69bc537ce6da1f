// The kernels/gemm_wo.cu GEMMs (module gemm_wo) that run a linear over a weight-only quantized weight
// (int8-wo, int4-wo; int4-zp with integer zero points, G a multiple of 32 and no g_idx) for batches past
// the GEMV (more than WO_GEMV_MAX_ROWS rows) up to KILN_WO_GEMM_MAX_M rows, straight from the quantized
// bytes; their launch shapes mirror the kernel's tiles (BM rows of x × BN weight rows a CTA of 128
// threads, stages of 128 input features in dynamic shared memory). Pure: tested on the CPU.
import { InvalidEnvironmentError } from "../../errors.ts";

/** Most rows a linear runs on gemm_wo by default; more run dequantization + cuBLASLt. Not yet measured
 * on a GPU against dequantization + cuBLASLt (docs/PERFORMANCE.md says what the next device call measures). */
export const WO_GEMM_MAX_M = 256;

/** KILN_WO_GEMM_MAX_M: most rows on gemm_wo (0 turns it off: dequantization + cuBLASLt past the GEMV). */
export function parseWoGemmMaxM(env: string | undefined): number {
  if (env === undefined || env === "") return WO_GEMM_MAX_M;
  const n = Number(env);
  if (!/^\d+$/.test(env) || !Number.isSafeInteger(n) || n > 4096)
    throw new InvalidEnvironmentError(`KILN_WO_GEMM_MAX_M must be an integer from 0 to 4096; got ${env}`);
  return n;
}

/** A weight gemm_wo has a kernel for: int8-wo / int4-wo (bits 8, 4), or int4-zp ("zp"). */
export type WoGemmFormat = 8 | 4 | "zp";

/** The kernel's tiles (gemm_wo.cu's table): rows of x and weight rows a CTA, pipeline stages. */
const TILES = [
  { bm: 16, bn: 64, stages: 6 },
  { bm: 32, bn: 64, stages: 6 },
  { bm: 64, bn: 128, stages: 3 },
] as const;

const GROUP = 128; // input features a stage
const X_STRIDE = GROUP + 8; // elements of an x row in shared memory

/** Dynamic shared memory of a variant: stages × (x [bm][136] 16-bit + q [bn][16·B + 16] bytes). */
export function woGemmSharedBytes(bits: 8 | 4, bm: number, bn: number, stages: number): number {
  return stages * (bm * X_STRIDE * 2 + bn * ((GROUP * bits) / 8 + 16));
}

export interface WoGemmLaunch {
  kernel: string;
  grid: [number, number];
  block: number;
  sharedBytes: number;
}

/** The gemm_wo variant for `rows` rows of x and n output features: the smallest tile that holds the
 * rows (16, 32), else 64 rows a CTA (one CTA row per 64 rows of x); grid (row blocks, feature blocks).
 * With `gatedAct`, the gated kernel over the fused gate_up weight [2·n, ·] (n = inter): a CTA's BN
 * weight rows are BN / 2 features' gate and up rows. Given the GPU's `smCount`, a grid of fewer CTAs
 * than half the SMs (the 8B's o and down projections, n = 4,096: 32 CTAs at 33…64 rows on the 64-row
 * tile, 64 at 17…32 or 65…128 rows) takes the next smaller tile while that gives more CTAs: the weight
 * is then read and converted once per 16 or 32 rows instead of 64, by twice the SMs or more. */
export function woGemmLaunch(
  format: WoGemmFormat,
  rows: number,
  n: number,
  gatedAct?: string,
  smCount = 0,
): WoGemmLaunch {
  const ctas = (t: (typeof TILES)[number]) =>
    Math.ceil(rows / t.bm) * Math.ceil(n / (gatedAct ? t.bn / 2 : t.bn));
  let i = TILES.findIndex((t) => rows <= t.bm);
  if (i < 0) i = TILES.length - 1;
  while (i > 0 && ctas(TILES[i]) < smCount / 2 && ctas(TILES[i - 1]) > ctas(TILES[i])) i--;
  return tileLaunch(format, TILES[i], rows, n, gatedAct);
}

/** Every gemm_wo kernel a weight of `format` may run (each tile; with `gatedAct`, the gated ones). */
export function woGemmKernels(
  format: WoGemmFormat,
  gatedAct?: string,
): { kernel: string; sharedBytes: number }[] {
  return TILES.map((t) => {
    const { kernel, sharedBytes } = tileLaunch(format, t, t.bm, 1, gatedAct);
    return { kernel, sharedBytes };
  });
}

function tileLaunch(
  format: WoGemmFormat,
  tile: (typeof TILES)[number],
  rows: number,
  n: number,
  gatedAct?: string,
): WoGemmLaunch {
  const bits = format === "zp" ? 4 : format;
  const family = format === "zp" ? "gemm_zp" : `gemm_wo${format}`;
  const perCta = gatedAct ? tile.bn / 2 : tile.bn;
  return {
    kernel: `${family}_m${tile.bm}n${tile.bn}${gatedAct ? `_gated_${gatedAct}` : ""}`,
    grid: [Math.ceil(rows / tile.bm), Math.ceil(n / perCta)],
    block: 128,
    sharedBytes: woGemmSharedBytes(bits, tile.bm, tile.bn, tile.stages),
  };
}

/** Whether gemm_zp takes an int4-zp weight: 16-byte q rows (k a multiple of 32), groups of whole k16
 * steps (G a multiple of 32), no g_idx, and zero points whose q − z is exact in 16 bits (zerosExact). */
export function zpGemmTakes(k: number, groupSize: number, actOrder: boolean, zerosExact: boolean): boolean {
  return k % 32 === 0 && groupSize % 32 === 0 && !actOrder && zerosExact;
}

/** Whether every zero point is an integer with |z| ≤ 240, so that q − z (q 0…15) is an integer of
 * magnitude ≤ 255: exact in bf16 and fp16, as gemm_zp feeds it to the tensor cores. */
export function zerosExactIn16Bit(zeros: Float32Array): boolean {
  for (const z of zeros) if (!Number.isInteger(z) || Math.abs(z) > 240) return false;
  return true;
}
