// The CPU backend's paged KV pool: per layer, K and V as [numBlocks, blockSize, numKvHeads, headDim]
// (see kernels/paged_kv.ts for the layout the GPU kernels share), fp32 values or, with
// `--kv-cache-dtype fp8`, E4M3 bytes with a scale per (slot, kv head) (backends/kv_cache_dtype.ts).
import { type KvCacheDtype, kvBytesPerToken } from "../kv_cache_dtype.ts";
import { allocFp8KvPool, type KvPool } from "./kernels/index.ts";

export class CpuKvPool {
  readonly k: KvPool[] = [];
  readonly v: KvPool[] = [];

  constructor(
    readonly numLayers: number,
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly numKvHeads: number,
    readonly headDim: number,
    readonly dtype: KvCacheDtype = "auto",
  ) {
    const slots = numBlocks * blockSize;
    const make = (): KvPool =>
      dtype === "fp8"
        ? allocFp8KvPool(slots, numKvHeads, headDim)
        : new Float32Array(slots * numKvHeads * headDim);
    for (let l = 0; l < numLayers; l++) {
      this.k.push(make());
      this.v.push(make());
    }
  }

  static bytesPerBlock(
    numLayers: number,
    blockSize: number,
    numKvHeads: number,
    headDim: number,
    dtype: KvCacheDtype = "auto",
  ): number {
    return blockSize * kvBytesPerToken(dtype, numLayers, numKvHeads, headDim, 4);
  }

  /** Copies whole blocks src[i] → dst[i] in every layer, K and V, an FP8 pool's scales with its bytes. */
  copyBlocks(src: readonly number[], dst: readonly number[]): void {
    const rows = this.blockSize * this.numKvHeads; // (slot, kv head) rows per block
    const copy = (a: Float32Array | Uint8Array, perBlock: number) =>
      src.forEach((s, i) => a.copyWithin(dst[i] * perBlock, s * perBlock, (s + 1) * perBlock));
    for (const pool of [...this.k, ...this.v]) {
      if (pool instanceof Float32Array) copy(pool, rows * this.headDim);
      else {
        copy(pool.data, rows * this.headDim);
        copy(pool.scale, rows);
      }
    }
  }
}
