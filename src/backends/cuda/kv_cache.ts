// The paged KV cache on the device: per layer one K and one V pool of numBlocks blocks, each
// [blockSize, numKvHeads, headDim] of the engine's dtype, or, with `--kv-cache-dtype fp8`
// (backends/kv_cache_dtype.ts), of E4M3 bytes beside a scale pool [blockSize, numKvHeads] fp32 per
// block. Reallocated whole (contents dropped) when the runtime sizes the pool; owned until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { FP8_KV_SCALE_BYTES, type KvCacheDtype } from "../kv_cache_dtype.ts";
import { type CudaDevice, DeviceBuffer, type KernelArg, type Stream } from "./device/index.ts";
import { assertKvCacheKernels, kvKernel } from "./kv_cache_kernels.ts";

export type { KvCacheDtype };

/** Bytes of one block of one layer's K (or V) pool: its values, and (fp8) its row scales. */
export function kvPoolBlockBytes(
  model: Pick<ModelConfig, "numKvHeads" | "headDim">,
  blockSize: number,
  elemBytes: number,
  dtype: KvCacheDtype,
): { data: number; scale: number } {
  const rows = blockSize * model.numKvHeads; // (slot, kv head) rows
  return dtype === "fp8"
    ? { data: rows * model.headDim, scale: rows * FP8_KV_SCALE_BYTES }
    : { data: rows * model.headDim * elemBytes, scale: 0 };
}

export class DeviceKvCache {
  /** K and V pools per layer: [numBlocks, blockSize, numKvHeads, headDim]. */
  private k: DeviceBuffer[] = [];
  private v: DeviceBuffer[] = [];
  /** fp8: their scales per layer, [numBlocks, blockSize, numKvHeads] fp32 (empty for auto). */
  private kScale: DeviceBuffer[] = [];
  private vScale: DeviceBuffer[] = [];
  private blocks = 0;
  private readonly layout: { data: number; scale: number };

  constructor(
    private readonly device: CudaDevice,
    private readonly model: ModelConfig,
    private readonly blockSize: number,
    elemBytes: number,
    readonly dtype: KvCacheDtype = "auto",
  ) {
    this.layout = kvPoolBlockBytes(model, blockSize, elemBytes, dtype);
  }

  /** Throws KvCacheDtypeUnsupportedError when `engine`'s cubins lack the kernels a cache stored as
   * `dtype` needs (kv_cache_kernels.ts): checked before the backend opens the GPU. */
  static assertKernels(engine: Parameters<typeof assertKvCacheKernels>[0], dtype: KvCacheDtype): void {
    assertKvCacheKernels(engine, dtype);
  }

  /** Bytes of one block of one layer's K (or V) pool, its scales included. */
  get blockBytes(): number {
    return this.layout.data + this.layout.scale;
  }

  get numBlocks(): number {
    return this.blocks;
  }

  /** Cache slots of each pool (blocks × block size): the kernels' bound on slot indices. */
  get slots(): number {
    return this.blocks * this.blockSize;
  }

  keys(layer: number): DeviceBuffer {
    return this.k[layer];
  }

  values(layer: number): DeviceBuffer {
    return this.v[layer];
  }

  /** The name of a KV-touching kernel for this cache's dtype (the `_kv8` export for fp8). */
  kernel(name: string): string {
    return kvKernel(name, this.dtype);
  }

  /** The arguments a `_kv8` kernel takes after its own (k_scale, v_scale of `layer`); none for auto. */
  scaleArgs(layer: number): KernelArg[] {
    return this.dtype === "fp8" ? [{ ptr: this.kScale[layer].ptr }, { ptr: this.vScale[layer].ptr }] : [];
  }

  /** Frees the pools and allocates `numBlocks` blocks per layer. The caller first makes sure no queued
   * work or captured graph still uses the old pools. */
  allocate(numBlocks: number): void {
    this.dispose();
    const { data, scale } = this.layout;
    for (let l = 0; l < this.model.numLayers; l++) {
      this.k.push(DeviceBuffer.alloc(this.device, numBlocks * data));
      this.v.push(DeviceBuffer.alloc(this.device, numBlocks * data));
      if (scale > 0) {
        this.kScale.push(DeviceBuffer.alloc(this.device, numBlocks * scale));
        this.vScale.push(DeviceBuffer.alloc(this.device, numBlocks * scale));
      }
    }
    this.blocks = numBlocks;
  }

  /** Queues the copy of whole blocks src[i] → dst[i] in every pool, an fp8 pool's scales with its bytes. */
  copyBlocks(stream: Stream, src: readonly number[], dst: readonly number[]): void {
    const copy = (pools: DeviceBuffer[], bytes: number) => {
      for (const pool of pools)
        src.forEach((s, i) => pool.copyFromAsync(stream, pool, bytes, dst[i] * bytes, s * bytes));
    };
    copy([...this.k, ...this.v], this.layout.data);
    copy([...this.kScale, ...this.vScale], this.layout.scale);
  }

  /** Queues zeroing every pool, an fp8 pool's scales too: a step that reads slots nothing wrote (graph
   * capture ahead of any request) then reads zeros, never NaN. */
  clear(stream: Stream): void {
    for (const pool of [...this.k, ...this.v, ...this.kScale, ...this.vScale]) pool.fillBytes(stream, 0);
  }

  dispose(): void {
    for (const b of [...this.k, ...this.v, ...this.kScale, ...this.vScale]) b.dispose();
    this.k = [];
    this.v = [];
    this.kScale = [];
    this.vScale = [];
    this.blocks = 0;
  }
}
