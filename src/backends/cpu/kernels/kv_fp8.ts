// The FP8 KV cache's rows (backends/kv_cache_dtype.ts defines the format): one (token, kv head) row of
// headDim values is stored as E4M3 bytes with one fp32 scale, s = max|x| / 448.
import { E4M3_MAX, e4m3ToF32, f32ToE4m3 } from "../../../fp8_e4m3.ts";

const f32 = Math.fround;

/** One layer's K (or V) pool stored as FP8. */
export interface Fp8KvPool {
  data: Uint8Array; // [numBlocks, blockSize, numKvHeads, headDim], E4M3
  scale: Float32Array; // [numBlocks, blockSize, numKvHeads]
}

/** A layer's K (or V) pool: fp32 values, or FP8 bytes with their scales. */
export type KvPool = Float32Array | Fp8KvPool;

export function allocFp8KvPool(numSlots: number, numKvHeads: number, headDim: number): Fp8KvPool {
  return {
    data: new Uint8Array(numSlots * numKvHeads * headDim),
    scale: new Float32Array(numSlots * numKvHeads),
  };
}

/** The scale of a row whose largest magnitude is `absMax`. */
export function fp8RowScale(absMax: number): number {
  return f32(absMax / E4M3_MAX);
}

/** Quantizes the numKvHeads rows of one token, src[srcOff, srcOff + numKvHeads·headDim), into `slot`. */
export function writeFp8Slot(
  src: Float32Array, // [.., numKvHeads, headDim]
  srcOff: number,
  pool: Fp8KvPool,
  slot: number,
  numKvHeads: number,
  headDim: number,
): void {
  for (let h = 0; h < numKvHeads; h++) {
    const from = srcOff + h * headDim;
    let absMax = 0;
    for (let d = 0; d < headDim; d++) {
      const a = Math.abs(src[from + d]);
      if (a > absMax || Number.isNaN(a)) absMax = a;
    }
    const row = slot * numKvHeads + h;
    const s = fp8RowScale(absMax);
    pool.scale[row] = s;
    const to = row * headDim;
    if (s === 0) {
      pool.data.fill(0, to, to + headDim);
      continue;
    }
    for (let d = 0; d < headDim; d++) pool.data[to + d] = f32ToE4m3(src[from + d] / s);
  }
}

/** Dequantizes the numKvHeads rows of `slot` into out[outOff, outOff + numKvHeads·headDim). */
export function readFp8Slot(
  pool: Fp8KvPool,
  slot: number,
  numKvHeads: number,
  headDim: number,
  out: Float32Array, // [.., numKvHeads, headDim]
  outOff: number,
): void {
  for (let h = 0; h < numKvHeads; h++) {
    const row = slot * numKvHeads + h;
    const s = pool.scale[row];
    const from = row * headDim;
    const to = outOff + h * headDim;
    for (let d = 0; d < headDim; d++) out[to + d] = e4m3ToF32(pool.data[from + d]) * s;
  }
}

/** Slots of a pool (fp32 or FP8) with rows of numKvHeads·headDim values. */
export function poolSlots(pool: KvPool, numKvHeads: number, headDim: number): number {
  const values = pool instanceof Float32Array ? pool.length : pool.data.length;
  return Math.floor(values / (numKvHeads * headDim));
}
