// When a decode step's attention runs on tensor cores (kernels/attention_decode_mma.cu) and what that
// changes for the step: where the engine's shapes allow it, the kernel replaces attention_decode_batch
// (many sequences, one split: attention_splits.ts useBatchKernel, by the batch alone, so a captured graph
// stays valid) and the split kernel attention_decode for steps whose contexts are long: those that take
// the most splits their batch may (the GPU's fill, not the context, sets the count; a graph's split
// count, so the choice holds for every step it replays). Shorter contexts keep attention_decode, whose
// fused RoPE prologue saves a launch (measured faster there: docs/PERFORMANCE.md).
//
// RoPE: split steps on the mma kernel take attention_decode_mma_rope, the same kernel with
// rope_qkv_fused's prologue fused in (the same bits; measured faster at a few sequences over long
// contexts, where the rope launch is a step's fixed cost). Batch-kernel steps keep rope_qkv_fused as its
// own launch before attention_decode_mma: with hundreds of sequences the fused prologue cost the kernel
// more than the launch it saves (docs/PERFORMANCE.md, session 23).
//
//   mma applies (16-bit, D 64/128, G ≤ 16; an FP8 pool where the engine has attention_decode_mma_kv8)?
//        ├─ yes, batch kernel chosen          ▶ rope_qkv_fused, then attention_decode_mma
//        ├─ yes, splits ≥ fillSplits > 1      ▶ attention_decode_mma_rope (KILN_ROPE_FUSE=0, or an engine
//        │                                      without the entry: rope_qkv_fused, attention_decode_mma)
//        └─ else: batch kernel chosen?  ── yes ▶ attention_decode_batch[_rope]
//                                       └─ no ──▶ attention_decode[_rope][_cN]  (RoPE fused if KILN_ROPE_FUSE)
//
// FP8 pools take attention_decode_mma_kv8 (the same kernel with each warp widening its own E4M3 rows),
// which has no fused-RoPE entry: their split steps keep rope_qkv_fused_kv8 as a launch of its own.
// Its K/V pipeline is as deep as lets 3 CTAs fit an SM (kernels/attention_README.md, "attention_decode_mma").
import type { DTypeName } from "../../dtype.ts";
import { EngineError } from "../../engine/errors.ts";
import type { KvCacheDtype } from "../kv_cache_dtype.ts";
import { decodeKernel } from "./attention_splits.ts";

/** The shapes attention_decode_mma.cu is built for: fp16 / bf16 activations, head dim 64 or 128, at
 * most 16 query heads per kv head (one m16 tile). The engine compiles the module for these. */
export function mmaDecodeBuilt(dtype: DTypeName, group: number, headDim: number): boolean {
  return (
    dtype !== "fp32" &&
    (headDim === 64 || headDim === 128) &&
    Number.isInteger(group) &&
    group >= 1 &&
    group <= 16
  );
}

/** The FP8 pools' entry of attention_decode_mma.cu (engines built before it lack the export). */
export const DECODE_MMA_KV8 = "attention_decode_mma_kv8";

/** Whether decode steps may take attention_decode_mma: the module's shapes, and for an FP8 pool an engine
 * that exports DECODE_MMA_KV8 (`kv8Built`; older engines keep attention_decode_batch_kv8). */
export function mmaDecodeApplies(
  dtype: DTypeName,
  kvDtype: KvCacheDtype,
  group: number,
  headDim: number,
  kv8Built: boolean,
): boolean {
  return (kvDtype !== "fp8" || kv8Built) && mmaDecodeBuilt(dtype, group, headDim);
}

/** The name an engine compiled before attention_decode_mma took the 3-CTA pipeline gave that pipeline;
 * such an engine's attention_decode_mma wants more shared memory than decodeMmaSharedBytes. */
const STALE_DECODE_MMA_ENTRY = "attention_decode_mma_occ";

/** Throws EngineError for an engine whose attn_decode_mma module still exports the old second entry
 * (`hasKernel` asks the module): launched with today's shared memory, its attention_decode_mma would trap. */
export function checkDecodeMmaCurrent(engineDir: string, hasKernel: (name: string) => boolean): void {
  if (hasKernel(STALE_DECODE_MMA_ENTRY))
    throw new EngineError(
      `engine ${engineDir} was compiled with an older attention_decode_mma (it exports ${STALE_DECODE_MMA_ENTRY}); rebuild it with kiln build --backend cuda`,
    );
}

/** Bytes of the kernel's dynamic shared memory, sizeof(attn::MmaSmem<kMmaStages>): a union of the stages'
 * K and V tiles (64 keys of headDim + 8 elements, 2 bytes each) with the warps' O rows (4 warps × 16 rows
 * × headDim + 8 floats, padded for conflict-free stores); the 16 query rows (headDim + 8 elements); the
 * new key's K and V rows of the fused-RoPE entry (headDim elements each); the warps' m and l (2 × 4 × 16
 * floats); the split launches' "last" flag (an int); rounded up to 16 bytes. */
export function decodeMmaSharedBytes(headDim: number): number {
  const lds = headDim + 8;
  const stages = headDim <= 64 ? 3 : 2; // the kernel's kMmaStages
  const tiles = stages * 2 * 64 * lds * 2;
  const bytes = Math.max(tiles, 4 * 16 * lds * 4) + 16 * lds * 2 + 2 * headDim * 2 + 2 * 4 * 16 * 4 + 4;
  return Math.ceil(bytes / 16) * 16;
}

/** Bytes of attention_decode_mma_kv8's dynamic shared memory, sizeof(attn::MmaSmemKv8<kMmaStages>): a union
 * of the warps' stages (16 keys' E4M3 K and V rows, headDim bytes each, and their 16 + 16 fp32 scales)
 * and tiles (16 keys of headDim + 8 elements, K and V, 2 bytes each) with the warps' O rows (as
 * decodeMmaSharedBytes); the 16 query rows; the warps' m and l; the "last" flag; rounded up to 16 bytes. */
export function decodeMmaKv8SharedBytes(headDim: number): number {
  const lds = headDim + 8;
  const stages = headDim <= 64 ? 3 : 2; // the kernel's kMmaStages
  const warps = 4 * (stages * (2 * 16 * headDim + 2 * 16 * 4) + 2 * 16 * lds * 2);
  const bytes = Math.max(warps, 4 * 16 * lds * 4) + 16 * lds * 2 + 2 * 4 * 16 * 4 + 4;
  return Math.ceil(bytes / 16) * 16;
}

/** The dynamic shared memory of the module's decode entry for a KV pool of `kvDtype`. */
export function decodeMmaSharedBytesFor(headDim: number, kvDtype: KvCacheDtype): number {
  return kvDtype === "fp8" ? decodeMmaKv8SharedBytes(headDim) : decodeMmaSharedBytes(headDim);
}

/** The fused-RoPE entry of attention_decode_mma.cu (engines built before it lack the export). */
export const DECODE_MMA_ROPE = "attention_decode_mma_rope";

/** The decode attention of one step: its kernel, the module that holds it, whether it does the step's
 * RoPE + KV write itself (else the rope step runs rope_qkv_fused first), and its grid's x (CTAs per
 * sequence: attention_decode_mma takes one per kv head, the others one per kv head group). */
export interface DecodeRoute {
  kernel: string;
  module: "attn_decode" | "attn_decode_mma";
  ropeFused: boolean;
  ctasPerSeq: number;
}

/** The route for a step with `splits` splits: `batch` (useBatchKernel for its batch), `mma`
 * (mmaDecodeApplies), `fillSplits` (the most splits a step of its batch takes: decodeSplits with no
 * context bound; a step at it has long contexts), `mmaRope` (the engine exports DECODE_MMA_ROPE),
 * `clusters` (cluster kernels allowed), `ropeFuse` (KILN_ROPE_FUSE); `ctasPerSeq` of the split and batch
 * kernels and `numKvHeads`. The kernel name is before the KV pool's `_kv8`. */
export function decodeRoute(
  splits: number,
  o: {
    batch: boolean;
    mma: boolean;
    fillSplits: number;
    mmaRope: boolean;
    clusters: boolean;
    ropeFuse: boolean;
    ctasPerSeq: number;
    numKvHeads: number;
  },
): DecodeRoute {
  if (o.batch && splits !== 1) throw new Error(`internal: the batch kernels take 1 split, not ${splits}`);
  if (o.mma && (o.batch || (splits > 1 && splits >= o.fillSplits))) {
    const fused = !o.batch && o.mmaRope && o.ropeFuse;
    return {
      kernel: fused ? DECODE_MMA_ROPE : "attention_decode_mma",
      module: "attn_decode_mma",
      ropeFused: fused,
      ctasPerSeq: o.numKvHeads,
    };
  }
  return {
    kernel: decodeKernel(splits, o.clusters, o.ropeFuse, o.batch),
    module: "attn_decode",
    ropeFused: o.ropeFuse,
    ctasPerSeq: o.ctasPerSeq,
  };
}
