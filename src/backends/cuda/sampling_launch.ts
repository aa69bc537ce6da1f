// How sample_topk_topp (kernels/sampling.cu) spreads a row of logits over CTAs: grid (P, B), CTA p
// reduces one contiguous slice of row b (max, argmax, count, Σ exp) into a 24-byte SliceStats, and the
// last CTA of the row to finish merges the P of them. Pure, so the sizing is tested on the CPU.
//
//   workspace:  [ SliceStats [rows, P] (24 bytes each) | counters u32 [rows] (zero between launches) ]
/** Logits per CTA that the slice count aims at: 128,256 logits (Llama 3) → 32 CTAs per row. */
export const SLICE_LOGITS = 4096;
/** Most CTAs per row. */
export const MAX_SLICES = 64;
/** sizeof(SliceStats) in sampling.cu: f64 Σ exp | f32 max | f32 argmax value | i32 argmax id | i32 count. */
export const SLICE_STATS_BYTES = 24;

/** CTAs per row of a `vocab`-wide row: ⌈vocab / SLICE_LOGITS⌉, clamped to [1, MAX_SLICES]. */
export function samplingSlices(vocab: number): number {
  if (!Number.isSafeInteger(vocab) || vocab < 1)
    throw new RangeError(`vocabulary size ${vocab} is not a positive integer`);
  return Math.min(MAX_SLICES, Math.max(1, Math.ceil(vocab / SLICE_LOGITS)));
}

/** Byte layout of the workspace for up to `rows` rows at up to `slices` CTAs each. */
export function samplingWorkspace(rows: number, slices: number): { countersOffset: number; bytes: number } {
  const countersOffset = SLICE_STATS_BYTES * rows * slices;
  return { countersOffset, bytes: countersOffset + 4 * rows };
}
