// The paged KV-cache layout, shared by the CPU kernels and the CUDA kernels.
//
// Per layer there are two pools, K and V, each one Float32Array (on the GPU: one buffer)
//   [numBlocks, blockSize, numKvHeads, headDim]
// A block holds `blockSize` consecutive token positions of ONE sequence; a sequence owns a list of
// blocks, its block table, in position order. Blocks need not be contiguous or ordered in the pool.
//
//   blockTable of sequence A = [5, 2, 7]   blockSize = 4
//
//   position p:    0 1 2 3 | 4 5 6 7 | 8 9
//   logical block:    0    |    1    |  2
//   pool block:       5    |    2    |  7
//
//   pool:  block 0 | block 1 | block 2      | … | block 5      | block 6 | block 7     |
//                            | A: p 4..7    |   | A: p 0..3    |         | A: p 8,9    |
//
//   slot(p) = blockTable[floor(p / blockSize)] * blockSize + p % blockSize     (p = 9 → 7*4 + 1 = 29)
//   K of position p, kv head h, dim d = kCache[(slot(p) * numKvHeads + h) * headDim + d]
//
// The runtime turns each new token's position into a slot (the slot mapping) before the step; the
// step writes that token's K and V there (kvCacheWrite), then attention reads keys 0..p through the
// block table. Slot −1 marks a padding token whose K/V is not stored.
//
// With `--kv-cache-dtype fp8` each pool is E4M3 bytes in this layout plus one fp32 scale per
// (slot, kv head) (kv_fp8.ts; the format is backends/kv_cache_dtype.ts): the same slots, so a block's
// scales travel with its bytes.

import { checkSize } from "./check.ts";
import { type KvPool, poolSlots, writeFp8Slot } from "./kv_fp8.ts";

/** The slot of position `position` of a sequence with this block table. */
export function slotOf(
  blockTable: Int32Array, // [numBlocksOfSequence]
  blockSize: number,
  position: number,
): number {
  const logicalBlock = Math.floor(position / blockSize);
  if (logicalBlock >= blockTable.length) {
    throw new RangeError(
      `position ${position} needs block ${logicalBlock} but the block table has ${blockTable.length}`,
    );
  }
  return blockTable[logicalBlock] * blockSize + (position % blockSize);
}

/** Writes each token's K and V into its slot of the pools (quantizing them for FP8 pools); tokens with
 * slot −1 are skipped. */
export function kvCacheWrite(
  k: Float32Array, // [numTokens, numKvHeads, headDim]
  v: Float32Array, // [numTokens, numKvHeads, headDim]
  slotMapping: Int32Array, // [numTokens]
  numTokens: number,
  numKvHeads: number,
  headDim: number,
  kCache: KvPool, // [numBlocks, blockSize, numKvHeads, headDim]
  vCache: KvPool, // [numBlocks, blockSize, numKvHeads, headDim]
): void {
  const rowLen = numKvHeads * headDim;
  checkSize("kvCacheWrite k", k, numTokens * rowLen);
  checkSize("kvCacheWrite v", v, numTokens * rowLen);
  checkSize("kvCacheWrite slotMapping", slotMapping, numTokens);
  const numSlots = poolSlots(kCache, numKvHeads, headDim);
  if (poolSlots(vCache, numKvHeads, headDim) < numSlots) {
    throw new RangeError(`vCache has fewer slots than kCache's ${numSlots}`);
  }
  for (let t = 0; t < numTokens; t++) {
    const slot = slotMapping[t];
    if (slot === -1) continue;
    if (slot < 0 || slot >= numSlots) {
      throw new RangeError(`token ${t} maps to slot ${slot}, outside the pool's ${numSlots} slots`);
    }
    const src = t * rowLen;
    if (kCache instanceof Float32Array) kCache.set(k.subarray(src, src + rowLen), slot * rowLen);
    else writeFp8Slot(k, src, kCache, slot, numKvHeads, headDim);
    if (vCache instanceof Float32Array) vCache.set(v.subarray(src, src + rowLen), slot * rowLen);
    else writeFp8Slot(v, src, vCache, slot, numKvHeads, headDim);
  }
}
