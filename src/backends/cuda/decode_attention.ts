// Decode attention's geometry and scratch (kernels/attention_decode.cu): how many CTAs and context
// splits a decode step launches on this GPU, which kernel merges the splits (a thread-block cluster on
// sm_90+, else the last CTA through global partials), its dynamic shared memory, and the split partials
// and arrival counters, sized once for the engine's largest decode bucket. Owns the partials until
// dispose().
//
//   partials:  acc [S, H, splits, headDim] f32 | m, l [S, H, splits] f32 | counters [S, ctasPerSeq] u32
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { decodeKernel, decodeSharedBytes, decodeSplits, type SplitTarget } from "./attention_splits.ts";
import { type CudaDevice, DeviceBuffer, type KernelArg, type Stream } from "./device/index.ts";
import { nextPow2 } from "./gemm_algorithms.ts";

export class DecodeAttention {
  /** attention_decode's dynamic shared memory per CTA (attention_splits.ts decodeSharedBytes). */
  readonly sharedBytes: number;
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
  ) {
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
    this.sharedBytes = decodeSharedBytes(group, model.headDim);
  }

  /** What the split count depends on: the GPU's SMs and the CTAs per sequence. */
  splitTarget(): SplitTarget {
    return { smCount: this.device.smCount, ctasPerSeq: this.ctasPerSeq };
  }

  /** Context splits for a step of numSeqs sequences (attention_splits.ts). */
  splits(numSeqs: number, maxContextLen = Number.POSITIVE_INFINITY): number {
    return decodeSplits(this.splitTarget(), numSeqs, maxContextLen);
  }

  /** The kernel for `splits` splits (with the RoPE prologue when `rope`): a cluster kernel where the GPU
   * has clusters (compute capability ≥ 9.0) and KILN_ATTN_CLUSTER allows them. */
  kernel(splits: number, rope: boolean): string {
    return decodeKernel(splits, this.clusters && this.device.properties.computeCapability[0] >= 9, rope);
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
