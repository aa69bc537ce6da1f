// The CPU backend's paged KV pool: per layer, K and V as [numBlocks, blockSize, numKvHeads, headDim]
// (see kernels/paged_kv.ts for the layout the GPU kernels share).
export class CpuKvPool {
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];

  constructor(
    readonly numLayers: number,
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly numKvHeads: number,
    readonly headDim: number,
  ) {
    const n = numBlocks * blockSize * numKvHeads * headDim;
    for (let l = 0; l < numLayers; l++) {
      this.k.push(new Float32Array(n));
      this.v.push(new Float32Array(n));
    }
  }

  static bytesPerBlock(numLayers: number, blockSize: number, numKvHeads: number, headDim: number): number {
    return 2 * numLayers * blockSize * numKvHeads * headDim * 4;
  }
}
