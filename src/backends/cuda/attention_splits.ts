// How the decode attention (kernels/attention_decode.cu) splits a context over CTAs: the split count
// per launch (eager steps and CUDA graphs), the key ranges the kernel gives each split, and which kernel
// runs: attention_decode (flash-decoding splits, for few sequences) or attention_decode_batch (no
// splits, a cp.async tile pipeline, once the sequences alone fill the GPU). Pure, so the planning is
// tested on the CPU; the kernel's formula is mirrored in `splitRanges`.
//
//   context of 300 keys, 8 splits (a graph's):   [0,64) [64,128) [128,192) [192,256) [256,300) ∅ ∅ ∅
//   the same context, 5 splits (an eager step):   [0,64) [64,128) [128,192) [192,256) [256,300)
import { InvalidEnvironmentError } from "../../errors.ts";

/** Most splits of one launch (the partial buffers are sized for it). */
export const MAX_SPLITS = 32;
/** attention_decode's kMinSplitKeys: every non-empty split but the last takes at least this many keys. */
export const MIN_SPLIT_KEYS = 64;
/** attention_decode's kSplitAlign: split lengths are multiples of it. */
const SPLIT_ALIGN = 16;

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** The GPU shape the split count fills: SMs, and attention_decode CTAs per sequence and split. */
export interface SplitTarget {
  smCount: number;
  ctasPerSeq: number;
}

/** CTAs per SM a decode launch aims for: the splits fill the GPU this many times over, and a step whose
 * sequences alone give this many (S · ctasPerSeq ≥ FILL_WAVES · SMs) takes attention_decode_batch. */
export const FILL_WAVES = 2;

/** Splits for `numSeqs` sequences: enough CTAs to fill the GPU FILL_WAVES times over, at most
 * MAX_SPLITS, and no more than ⌈longest context / MIN_SPLIT_KEYS⌉ when it is known. */
export function decodeSplits(
  t: SplitTarget,
  numSeqs: number,
  maxContextLen = Number.POSITIVE_INFINITY,
): number {
  const fill = Math.ceil((FILL_WAVES * t.smCount) / (t.ctasPerSeq * numSeqs));
  return Math.max(1, Math.min(MAX_SPLITS, fill, Math.ceil(maxContextLen / MIN_SPLIT_KEYS)));
}

/** Splits of a decode graph of `bucket` sequences whose longest context is `longest`: the next power
 * of two of ⌈longest / MIN_SPLIT_KEYS⌉ (capped as decodeSplits caps it). The runtime captures one graph
 * per (bucket, splits), at most log2(MAX_SPLITS) + 1 per bucket: a short context does not launch the
 * splits a long one needs, and a long one is not left with the few splits of the context its graph was
 * captured at. */
export function graphSplits(t: SplitTarget, bucket: number, longest: number): number {
  return decodeSplits(t, bucket, MIN_SPLIT_KEYS * nextPow2(Math.ceil(Math.max(1, longest) / MIN_SPLIT_KEYS)));
}

/** The key range [start, end) of each split for a context of `ctx` keys (window `window`, 0 = none),
 * exactly as attention_decode computes it; an empty split has start ≥ end. */
export function splitRanges(ctx: number, splits: number, window = 0): [number, number][] {
  const lo = window > 0 ? Math.max(0, ctx - window) : 0;
  let per = Math.max(Math.ceil((ctx - lo) / splits), MIN_SPLIT_KEYS);
  per = Math.ceil(per / SPLIT_ALIGN) * SPLIT_ALIGN;
  return Array.from({ length: splits }, (_, z) => {
    const ks = lo + z * per;
    return [ks, Math.min(ctx, ks + per)];
  });
}

/** When attention_decode lets the next kernel (programmatic dependent launch) start: right after its
 * wait (`wait`), after its key loop (`keys`, the default), or as its CTAs exit (`exit`), so that the
 * o-projection GEMV's weight prefetch competes less, or not at all, with the attention's memory traffic.
 * `keys` measured best (docs/PERFORMANCE.md). From KILN_ATTN_TRIGGER; the kernel's `trigger` argument
 * is the index in this list. */
export const ATTENTION_TRIGGERS = ["wait", "keys", "exit"] as const;
export type AttentionTrigger = (typeof ATTENTION_TRIGGERS)[number];

export function parseAttentionTrigger(env: string | undefined): AttentionTrigger {
  if (env === undefined || env === "") return "keys";
  const t = ATTENTION_TRIGGERS.find((x) => x === env);
  if (t === undefined)
    throw new InvalidEnvironmentError(`KILN_ATTN_TRIGGER must be wait, keys or exit; got ${env}`);
  return t;
}

/** attention_decode's threads: 8 warps (kSplitWarps). */
export const DECODE_SPLIT_THREADS = 256;

/** Bytes of attention_decode's dynamic shared memory, sizeof(attn::DecodeSmem<8>) for `group` query
 * heads per kv head: the new key's K and V rows of the fused RoPE prologue (4 bytes per element whatever
 * the dtype, each rounded up to 16 bytes), the cluster merge's gather buffer (the heads' merge items of accVec floats, accVec = 4, 2 or 1 as headDim allows,
 * their count rounded up to 8, the largest cluster, times accVec floats), queries and the 8 warps' acc
 * ([heads, headDim] floats: 1 + 8), the warps' m and l (8 + 8 per head), the cluster merge's
 * gathered m and l of 8 splits (8 + 8 per head), an int; 16-byte aligned. */
export function decodeSharedBytes(group: number, headDim: number): number {
  const warps = DECODE_SPLIT_THREADS / 32;
  const heads = Math.min(group, 8); // kHeadsPerCta
  const newKeyRow = 4 * Math.ceil(headDim / 4) * 4;
  const accVec = headDim % 4 === 0 ? 4 : headDim % 2 === 0 ? 2 : 1; // kAccVec
  const gatherAcc = Math.ceil((heads * (headDim / accVec)) / 8) * 8 * accVec; // kGatherAcc
  const bytes =
    2 * newKeyRow + 4 * (gatherAcc + (1 + warps) * heads * headDim + (2 * warps + 16) * heads + 1);
  return Math.ceil(bytes / 16) * 16;
}

/** Split counts whose CTAs form one thread-block cluster (attention_decode_c2/4/8, sm_90+): the splits
 * merge through distributed shared memory instead of global partials, a fence and a counter. */
export const CLUSTER_SPLITS: readonly number[] = [2, 4, 8];

/** Whether a decode step of `numSeqs` sequences (a graph's: its bucket) takes attention_decode_batch:
 * when its S · ctasPerSeq CTAs alone fill the GPU FILL_WAVES times over. Then decodeSplits is 1 for
 * every context (its fill term is 1), so a graph captured for the bucket holds for every step it
 * replays; the choice depends on nothing else (not the contexts). */
export function useBatchKernel(t: SplitTarget, numSeqs: number): boolean {
  return t.ctasPerSeq * numSeqs >= FILL_WAVES * t.smCount;
}

/** The decode attention kernel for `splits` splits: `batch` (useBatchKernel; splits must be 1)
 * attention_decode_batch; else a cluster kernel where the GPU has clusters (`clusters`: compute
 * capability ≥ 9.0, and not switched off by KILN_ATTN_CLUSTER=0) and the split count is one of
 * CLUSTER_SPLITS, else the kernel whose last CTA merges the splits; `rope`: its twin with the RoPE
 * prologue fused in (`…_rope…`, which replaces rope_qkv_fused in decode steps). */
export function decodeKernel(splits: number, clusters: boolean, rope = false, batch = false): string {
  if (batch) {
    if (splits !== 1) throw new Error(`internal: attention_decode_batch takes 1 split, not ${splits}`);
    return rope ? "attention_decode_batch_rope" : "attention_decode_batch";
  }
  const base = rope ? "attention_decode_rope" : "attention_decode";
  return clusters && CLUSTER_SPLITS.includes(splits) ? `${base}_c${splits}` : base;
}

const floorPow2 = (n: number) => 2 ** Math.floor(Math.log2(n));

/** Bytes of attention_decode_batch's dynamic shared memory, sizeof(attn::BatchSmem) for `group` query
 * heads per kv head: the new key's K and V rows (4 bytes per element whatever the dtype, each rounded
 * up to 16 bytes); a union of the 3 pipeline stages of a K and a V tile (kTileKeysF32 keys of such rows:
 * 8 KiB / row, a power of two ≤ 64, at least one round of the CTA's fp32 keys, 4 warps × 32 / lanes per
 * key) with the warps' acc (4 × heads × headDim floats); queries (heads × headDim) and the warps' m and
 * l (4 + 4 per head). One size for every dtype; 16-byte aligned. */
export function decodeBatchSharedBytes(group: number, headDim: number): number {
  const heads = Math.min(group, 8); // kHeadsPerCta
  const rowWords = Math.ceil(headDim / 4) * 4;
  let vec = 4; // fp32's kVec: the largest power of two ≤ 4 that divides headDim
  while (vec > 1 && headDim % vec !== 0) vec /= 2;
  const lanesPerKey = Math.min(2 ** Math.ceil(Math.log2(headDim / vec)), 32);
  const ctaKeysF32 = 4 * (32 / lanesPerKey);
  const fit = floorPow2(Math.min(64, Math.max(1, Math.floor(8192 / (rowWords * 4)))));
  const tileWords = Math.max(fit, ctaKeysF32) * rowWords;
  const words = 2 * rowWords + Math.max(3 * 2 * tileWords, 4 * heads * headDim) + heads * headDim + 8 * heads;
  return Math.ceil((4 * words) / 16) * 16;
}

/** KILN_ROPE_TRIGGER: `early` makes RoPE (rope_kv.cu) trigger the decode attention before its own wait,
 * so the attention's pre-wait loads overlap the QKV GEMV; `wait` (the default) triggers after it, as
 * every other kernel does. Returns whether to trigger early. */
export function parseRopeTrigger(env: string | undefined): boolean {
  if (env === undefined || env === "" || env === "wait") return false;
  if (env === "early") return true;
  throw new InvalidEnvironmentError(`KILN_ROPE_TRIGGER must be early or wait; got ${env}`);
}

/** Where attention_decode stops, for profiling only (KILN_ATTN_STOP; the outputs are then wrong): the
 * empty string (unset) runs it whole; `wait` returns right after its PDL wait, `keys` after its key
 * loop, `partials` after writing the split partials (before the fence or the cluster barrier). TPOT with
 * each shows what the kernel's stages cost inside the decode graph. The kernel's `stop` argument is the
 * index here. */
export const ATTENTION_STOPS = ["", "wait", "keys", "partials"] as const;
export type AttentionStop = (typeof ATTENTION_STOPS)[number];

export function parseAttentionStop(env: string | undefined): AttentionStop {
  const t = ATTENTION_STOPS.find((x) => x === (env ?? ""));
  if (t === undefined)
    throw new InvalidEnvironmentError(`KILN_ATTN_STOP must be wait, keys or partials; got ${env}`);
  return t;
}
