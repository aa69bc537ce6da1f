// How a prefill attention launch splits its keys over CTAs (kernels/attention_prefill.cu's `_split`
// entries, then attention_prefill_merge): a launch of few query rows over a long context has fewer CTAs
// than the GPU has SMs (128 rows over 2,176 keys: 32 CTAs, one per head, each walking every key alone),
// so its keys are cut into ranges and the ranges' partial softmax states merged. Pure, so the planning
// is tested on the CPU; the kernel's ranges are mirrored in `prefillSplitKeys`.
//
//   128 rows, 32 heads, 2,176 keys, 132 SMs:  32 CTAs → 8 splits of 5 key tiles (320 keys) → 256 CTAs
import { FILL_WAVES } from "./attention_splits.ts";

/** Most splits of one launch. The merge reads each split's fp32 partial row of every (row, head), up to
 * 16 × 4 × 2 times the bytes of the 16-bit output it writes; decode's MAX_SPLITS (32) is for CTAs of one
 * row, whose partials are 128 times smaller. */
export const MAX_PREFILL_SPLITS = 16;
/** Key tiles (of KEY_TILE keys) a split takes at least. A split's CTA loads 128 query rows and writes
 * 128 fp32 partial rows (64 KiB at head 128) beside the K/V it reads (256 B per key and head at head
 * 128, 16-bit): with 4 tiles, 256 keys, the partials are at most half its K/V traffic. attention_decode
 * needs only 64 keys a split (MIN_SPLIT_KEYS): its CTA carries one row. */
export const MIN_SPLIT_TILES = 4;
/** The tensor-core path's key tile (kBlockN); the generic path's is smaller, so its splits hold more
 * tiles. */
export const KEY_TILE = 64;
/** Most partial rows (query rows × splits) of a launch: the scratch holds this many rows of every head,
 * fp32 [rows × H × splits × (headDim + 2)]; so only launches of ≤ 512 rows split at all. */
export const MAX_PARTIAL_ROWS = 1024;

/** The smallest head dim whose launches split: at head 64 (Llama-3.2-1B) a split's few key tiles are
 * too little work for its fixed costs, and the unsplit kernel measured faster in both A/Bs
 * (docs/PERFORMANCE.md, sessions 17 and 18); at head 128 (the 8B) the split wins. */
export const MIN_SPLIT_HEAD_DIM = 128;

/** Whether a model of `headDim` splits its prefill launches at all (MIN_SPLIT_HEAD_DIM). */
export const splitsPay = (headDim: number): boolean => headDim >= MIN_SPLIT_HEAD_DIM;

/** A prefill attention launch: its sequences, their longest query and context, and its query rows. */
export interface PrefillLaunch {
  numSeqs: number;
  maxQueryLen: number;
  maxContextLen: number;
  rows: number;
}

/** The GPU and kernel shape a launch fills: SMs, query heads (grid.y) and rows per CTA (blockM). */
export interface PrefillSplitTarget {
  smCount: number;
  heads: number;
  blockM: number;
}

/** Splits for launch `l`: 1 (the unsplit kernel) when its CTAs already fill the GPU FILL_WAVES times
 * over; else as many as bring it to FILL_WAVES waves, at most MAX_PREFILL_SPLITS, each split at least
 * MIN_SPLIT_TILES key tiles of the longest context, and rows × splits ≤ MAX_PARTIAL_ROWS. */
export function prefillSplits(t: PrefillSplitTarget, l: PrefillLaunch): number {
  const ctas = Math.ceil(l.maxQueryLen / t.blockM) * t.heads * l.numSeqs;
  if (ctas === 0 || l.rows === 0) return 1;
  const fill = Math.floor((FILL_WAVES * t.smCount) / ctas);
  const byKeys = Math.floor(l.maxContextLen / (MIN_SPLIT_TILES * KEY_TILE));
  const byScratch = Math.floor(MAX_PARTIAL_ROWS / l.rows);
  return Math.max(1, Math.min(MAX_PREFILL_SPLITS, fill, byKeys, byScratch));
}

/** The keys [start, end) of each split of a sequence of `qlen` query rows at the end of `ctx` keys
 * (window 0 = none), exactly as the kernel's split_keys cuts them: whole tiles of `keyTile` keys
 * from the tile of the first key any row may see; an empty split has start ≥ end. */
export function prefillSplitKeys(
  ctx: number,
  qlen: number,
  splits: number,
  window = 0,
  keyTile = KEY_TILE,
): [number, number][] {
  const first = window > 0 ? Math.floor(Math.max(0, ctx - qlen - window + 1) / keyTile) * keyTile : 0;
  const tiles = Math.ceil((ctx - first) / keyTile);
  const per = Math.ceil(tiles / splits) * keyTile;
  return Array.from({ length: splits }, (_, z) => {
    const start = first + z * per;
    return [start, Math.min(ctx, start + per)];
  });
}
