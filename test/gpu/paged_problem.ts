// The inputs of an attention kernel test on the paged KV layout (src/backends/cpu/kernels/paged_kv.ts):
// sequences' blocks taken from a seeded shuffle of the pool (or in order), random K and V (K scaled by 2
// so some softmax rows are peaked, as in trained models) and queries, all rounded to the dtype; slots no
// sequence owns are NaN, so a kernel that reads one fails. Shared by the GPU attention tests.
import type { AttentionSequence } from "../../src/backends/cpu/kernels/attention.ts";
import type { DTypeName } from "../../src/dtype.ts";
import { randn, roundTo } from "./kernels/harness.ts";

export interface PagedShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** One sequence of a call: `queryLen` new tokens at the end of `contextLen` cached ones. */
export interface SeqSpec {
  queryLen: number;
  contextLen: number;
}

export interface PagedProblem {
  dtype: DTypeName;
  seqs: AttentionSequence[];
  q: Float32Array; // [T, numHeads, headDim]
  kCache: Float32Array; // [numBlocks, blockSize, numKvHeads, headDim]; unwritten slots NaN
  vCache: Float32Array; // same
  tables: Int32Array; // [S, stride], unused entries -1
  stride: number;
  maxAbsV: number;
}

/** 0..n-1 in a seeded random order (Fisher–Yates). */
export function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let a = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    a = (Math.imul(a ^ (a >>> 15), 2246822507) + 0x9e3779b9) >>> 0;
    const j = a % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Writes sequence `index`'s `contextLen` random K and V rows (seeds from `seed`) into the pools
 * through its block table. */
export function writeSequenceKv(
  pools: { kCache: Float32Array; vCache: Float32Array },
  table: ArrayLike<number>,
  contextLen: number,
  shape: PagedShape,
  dtype: DTypeName,
  seed: number,
  index: number,
): void {
  const slotLen = shape.numKvHeads * shape.headDim;
  const bs = shape.blockSize;
  const k = roundTo(randn(contextLen * slotLen, seed + 10 * index + 1, 2), dtype);
  const v = roundTo(randn(contextLen * slotLen, seed + 10 * index + 2), dtype);
  for (let p = 0; p < contextLen; p++) {
    const slot = table[Math.floor(p / bs)] * bs + (p % bs);
    pools.kCache.set(k.subarray(p * slotLen, (p + 1) * slotLen), slot * slotLen);
    pools.vCache.set(v.subarray(p * slotLen, (p + 1) * slotLen), slot * slotLen);
  }
}

/** The largest |v| of a pool (NaN slots aside): the fp16 bound's subnormal term. */
export function maxAbs(pool: Float32Array): number {
  let m = 0;
  for (const x of pool) if (Math.abs(x) > m) m = Math.abs(x);
  return m;
}

/**
 * Sequences packed in query order; each gets ceil(contextLen / blockSize) pool blocks, taken from a
 * shuffled pool (scattered, out of order) or in order (contiguous), with `spareBlocks` blocks nobody
 * owns. Positions < contextLen hold K/V.
 */
export function makePagedProblem(
  shape: PagedShape,
  dtype: DTypeName,
  specs: readonly SeqSpec[],
  seed: number,
  {
    layout = "scattered",
    spareBlocks = 3,
  }: { layout?: "scattered" | "contiguous"; spareBlocks?: number } = {},
): PagedProblem {
  const { numHeads, numKvHeads, headDim, blockSize } = shape;
  const blocksOf = (s: SeqSpec) => Math.ceil(s.contextLen / blockSize);
  const numBlocks = specs.reduce((n, s) => n + blocksOf(s), 0) + spareBlocks;
  const stride = Math.max(1, ...specs.map(blocksOf)) + 1;
  const order =
    layout === "scattered" ? shuffled(numBlocks, seed) : Array.from({ length: numBlocks }, (_, i) => i);
  const slotLen = numKvHeads * headDim;
  const pools = {
    kCache: new Float32Array(numBlocks * blockSize * slotLen).fill(Number.NaN),
    vCache: new Float32Array(numBlocks * blockSize * slotLen).fill(Number.NaN),
  };
  const tables = new Int32Array(specs.length * stride).fill(-1);
  const seqs: AttentionSequence[] = [];
  let next = 0;
  let queryStart = 0;
  specs.forEach((spec, i) => {
    const table = tables.subarray(i * stride, i * stride + blocksOf(spec));
    for (let b = 0; b < table.length; b++) table[b] = order[next++];
    writeSequenceKv(pools, table, spec.contextLen, shape, dtype, seed, i);
    seqs.push({ queryStart, queryLen: spec.queryLen, contextLen: spec.contextLen, blockTable: table });
    queryStart += spec.queryLen;
  });
  const q = roundTo(randn(queryStart * numHeads * headDim, seed + 7), dtype);
  return { dtype, seqs, q, ...pools, tables, stride, maxAbsV: maxAbs(pools.vCache) };
}
