// The paged KV cache on the device: per layer one K and one V pool of numBlocks blocks, each
// [blockSize, numKvHeads, headDim] of the engine's dtype. Reallocated whole (contents dropped) when the
// runtime sizes the pool; owned until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { type CudaDevice, DeviceBuffer, type Stream } from "./device/index.ts";

export class DeviceKvCache {
  /** K and V pools per layer: [numBlocks, blockSize, numKvHeads, headDim]. */
  private k: DeviceBuffer[] = [];
  private v: DeviceBuffer[] = [];
  private blocks = 0;

  constructor(
    private readonly device: CudaDevice,
    private readonly model: ModelConfig,
    private readonly blockSize: number,
    private readonly elemBytes: number,
  ) {}

  /** Bytes of one block of one layer's K (or V) pool. */
  get blockBytes(): number {
    return this.blockSize * this.model.numKvHeads * this.model.headDim * this.elemBytes;
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

  /** Frees the pools and allocates `numBlocks` blocks per layer. The caller first makes sure no queued
   * work or captured graph still uses the old pools. */
  allocate(numBlocks: number): void {
    this.dispose();
    const perLayer = numBlocks * this.blockBytes;
    for (let l = 0; l < this.model.numLayers; l++) {
      this.k.push(DeviceBuffer.alloc(this.device, perLayer));
      this.v.push(DeviceBuffer.alloc(this.device, perLayer));
    }
    this.blocks = numBlocks;
  }

  /** Queues the copy of whole blocks src[i] → dst[i] in every pool. */
  copyBlocks(stream: Stream, src: readonly number[], dst: readonly number[]): void {
    const bytes = this.blockBytes;
    for (const pool of [...this.k, ...this.v]) {
      src.forEach((s, i) => pool.copyFromAsync(stream, pool, bytes, dst[i] * bytes, s * bytes));
    }
  }

  /** Queues zeroing every pool: a step that reads slots nothing wrote (graph capture ahead of any
   * request) then reads zeros, never NaN. */
  clear(stream: Stream): void {
    for (const pool of [...this.k, ...this.v]) pool.fillBytes(stream, 0);
  }

  dispose(): void {
    for (const b of [...this.k, ...this.v]) b.dispose();
    this.k = [];
    this.v = [];
    this.blocks = 0;
  }
}
