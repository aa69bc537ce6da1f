// How sample_topk_topp (kernels/sampling.cu) spreads a row of logits over CTAs: P slices per row, each
// reduced (max, argmax, count, Σ exp) into a 24-byte SliceStats by a team of warps, grid (Q, B) with
// ⌈P / Q⌉ (a power of two) slices a CTA; the last CTA of the row to finish merges the P of them. Pure,
// so the sizing is tested on the CPU.
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

/** Most slices one CTA reduces (a warp each: the sampler's block is 32 warps). */
export const MAX_SLICES_PER_CTA = 32;

/**
 * CTAs per row for `rows` rows of `slices` slices on a GPU of `smCount` SMs: the most (a CTA a slice,
 * the row's reads spread over SMs) while rows × CTAs fit one wave of the sampler's one CTA an SM; past
 * that, 2, 4, … slices a CTA, down to 32 (a warp a slice). Any count gives the same tokens.
 */
export function samplingCtas(slices: number, rows: number, smCount: number): number {
  for (const n of [slices, rows, smCount])
    if (!Number.isSafeInteger(n) || n < 1)
      throw new RangeError(`sampler sizing: ${n} is not a positive integer`);
  let per = 1;
  while (per < MAX_SLICES_PER_CTA && Math.ceil(slices / per) * rows > smCount) per *= 2;
  return Math.ceil(slices / per);
}

/** Byte layout of the workspace for up to `rows` rows at up to `slices` CTAs each. */
export function samplingWorkspace(rows: number, slices: number): { countersOffset: number; bytes: number } {
  const countersOffset = SLICE_STATS_BYTES * rows * slices;
  return { countersOffset, bytes: countersOffset + 4 * rows };
}
