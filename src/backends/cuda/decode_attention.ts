// Decode attention's geometry and scratch (kernels/attention_decode.cu, attention_decode_mma.cu): how
// many CTAs and context splits a decode step launches on this GPU, which kernel runs (once the sequences
// alone fill the GPU, attention_splits.ts useBatchKernel, the tensor-core attention_decode_mma where
// decode_mma.ts says it applies, else attention_decode_batch; below that attention_decode, whose splits
// merge in a thread-block cluster on sm_90+ or through global partials by the last CTA), its dynamic
// shared memory, and the split partials and arrival counters, sized once for the engine's largest
// decode bucket. Owns the partials until dispose().
//
//   partials:  acc [S, H, splits, headDim] f32 | m, l [S, H, splits] f32 | counters [S, ctasPerSeq] u32
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { KvCacheDtype } from "../kv_cache_dtype.ts";
import {
  DECODE_SPLIT_THREADS,
  decodeBatchSharedBytes,
  decodeSharedBytes,
  decodeSplits,
  type SplitTarget,
  useBatchKernel,
} from "./attention_splits.ts";
import { type DecodeRoute, decodeMmaSharedBytesFor, decodeRoute } from "./decode_mma.ts";
import { type CudaDevice, DeviceBuffer, type KernelArg, type Stream } from "./device/index.ts";
import { nextPow2 } from "./gemm_algorithms.ts";

export class DecodeAttention {
  /** attention_decode's dynamic shared memory per CTA (attention_splits.ts decodeSharedBytes). */
  private readonly splitSharedBytes: number;
  /** attention_decode_batch's (decodeBatchSharedBytes). */
  private readonly batchSharedBytes: number;
  /** attention_decode_mma's or, over FP8 pools, attention_decode_mma_kv8's (decodeMmaSharedBytesFor). */
  readonly mmaSharedBytes: number;
  private readonly numKvHeads: number;
  /** CTAs per sequence and split: kv heads × head groups of ≤ 8 query heads. */
  readonly ctasPerSeq: number;
  /** Most sequences the partials hold (graph buckets pad the batch to a power of two). */
  private readonly seqs: number;
  private readonly partials: { acc: DeviceBuffer; m: DeviceBuffer; l: DeviceBuffer; counters: DeviceBuffer };

  constructor(
    private readonly device: CudaDevice,
    stream: Stream,
    model: ModelConfig,
    maxSeqs: number,
    /** KILN_ATTN_CLUSTER: whether the cluster kernels may be used where the GPU has clusters. */
    private readonly clusters: boolean,
    /** Whether attention_decode_mma may run (decode_mma.ts mmaDecodeApplies): for every step that takes
     * the batch kernel, and for split steps over long contexts (decodeRoute). */
    private readonly mma: boolean,
    /** Whether the engine exports attention_decode_mma_rope (decodeRoute: split steps over long contexts). */
    private readonly mmaRope: boolean,
    /** The KV pools' storage: FP8 pools take attention_decode_mma_kv8 and its shared memory. */
    kvDtype: KvCacheDtype,
  ) {
    this.numKvHeads = model.numKvHeads;
    const group = model.numHeads / model.numKvHeads;
    this.ctasPerSeq = model.numKvHeads * Math.ceil(group / Math.min(group, 8));
    // Partials for the largest S·splits any launch uses (none at 1 split); counters zeroed once here:
    // every launch leaves them zero.
    this.seqs = nextPow2(maxSeqs);
    let partialRows = 1;
    for (let s = 1; s <= this.seqs; s++) {
      const splits = this.splits(s);
      if (splits > 1) partialRows = Math.max(partialRows, s * model.numHeads * splits);
    }
    this.partials = {
      acc: DeviceBuffer.alloc(device, 4 * partialRows * model.headDim),
      m: DeviceBuffer.alloc(device, 4 * partialRows),
      l: DeviceBuffer.alloc(device, 4 * partialRows),
      counters: DeviceBuffer.alloc(device, 4 * this.seqs * this.ctasPerSeq),
    };
    this.partials.counters.fillBytes(stream, 0);
    this.splitSharedBytes = decodeSharedBytes(group, model.headDim);
    this.batchSharedBytes = decodeBatchSharedBytes(group, model.headDim);
    this.mmaSharedBytes = decodeMmaSharedBytesFor(model.headDim, kvDtype);
  }

  /** What the split count depends on: the GPU's SMs and the CTAs per sequence. */
  splitTarget(): SplitTarget {
    return { smCount: this.device.smCount, ctasPerSeq: this.ctasPerSeq };
  }

  /** Context splits for a step of numSeqs sequences (attention_splits.ts). */
  splits(numSeqs: number, maxContextLen = Number.POSITIVE_INFINITY): number {
    return decodeSplits(this.splitTarget(), numSeqs, maxContextLen);
  }

  /** The decode attention of a step of numSeqs sequences (a graph's bucket) and `splits` splits, with
   * the RoPE prologue fused where `ropeFuse` and the kernel has one (decode_mma.ts decodeRoute), and its
   * dynamic shared memory: attention_decode_mma or attention_decode_batch where useBatchKernel says so (then
   * splits is 1), else a cluster kernel where the GPU has clusters (compute capability ≥ 9.0) and
   * KILN_ATTN_CLUSTER allows them, else attention_decode. Depends on numSeqs and splits alone, so the
   * rope step and the attention step of one step agree. */
  route(
    numSeqs: number,
    splits: number,
    ropeFuse: boolean,
  ): DecodeRoute & { sharedBytes: number; threads: number } {
    const batch = splits === 1 && useBatchKernel(this.splitTarget(), numSeqs);
    const clusters = this.clusters && this.device.properties.computeCapability[0] >= 9;
    const r = decodeRoute(splits, {
      batch,
      mma: this.mma,
      fillSplits: this.splits(numSeqs),
      mmaRope: this.mmaRope,
      clusters,
      ropeFuse,
      ctasPerSeq: this.ctasPerSeq,
      numKvHeads: this.numKvHeads,
    });
    const sharedBytes =
      r.module === "attn_decode_mma"
        ? this.mmaSharedBytes
        : batch
          ? this.batchSharedBytes
          : this.splitSharedBytes;
    // The split kernels run 8 warps; the batch and tensor-core kernels 4.
    return { ...r, sharedBytes, threads: r.module === "attn_decode" && !batch ? DECODE_SPLIT_THREADS : 128 };
  }

  /** The grid of a route's launch over numSeqs sequences and `splits` splits: (CTAs per sequence,
   * numSeqs, splits). */
  grid(route: DecodeRoute, numSeqs: number, splits: number): [number, number, number] {
    return [route.ctasPerSeq, numSeqs, splits];
  }

  /** The partials' four arguments (acc, m, l, counters) for a launch of numSeqs × splits, which the
   * buffers must hold. */
  partialArgs(numSeqs: number, splits: number): KernelArg[] {
    if (splits > 1 && (numSeqs > this.seqs || splits > this.splits(numSeqs)))
      throw new Error(
        `internal: decode attention over ${numSeqs} sequences × ${splits} splits exceeds its buffers (${this.seqs} sequences)`,
      );
    const p = this.partials;
    return [{ ptr: p.acc.ptr }, { ptr: p.m.ptr }, { ptr: p.l.ptr }, { ptr: p.counters.ptr }];
  }

  dispose(): void {
    for (const b of Object.values(this.partials)) b.dispose();
  }
}
