// Prefill attention's key splits on this GPU (kernels/attention_prefill.cu's `_split` entries and
// attention_prefill_merge; planning in prefill_splits.ts): whether a launch splits, and the partial
// scratch the split CTAs write and the merge reads, allocated once when the backend opens (before the
// KV cache is sized from free memory) for MAX_PARTIAL_ROWS rows of every head. Owns the scratch until
// dispose(). Launches on the backend's one stream run in order, so every layer reuses it.
//
//   scratch:  acc [rows, H, splits, headDim] f32 | m [rows, H, splits] f32 | l [rows, H, splits] f32
//             (rows · splits ≤ MAX_PARTIAL_ROWS; dense for the launch's splits)
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { type CudaDevice, DeviceBuffer, type KernelArg, offsetPtr } from "./device/index.ts";
import { MAX_PARTIAL_ROWS, type PrefillLaunch, prefillSplits } from "./prefill_splits.ts";

/** attention_prefill_merge's threads per CTA. */
export const MERGE_THREADS = 128;

export class PrefillAttention {
  private readonly scratch: DeviceBuffer | null;
  /** Byte offsets of m and l in the scratch. */
  private readonly mOffset: number;
  private readonly lOffset: number;
  private readonly heads: number;
  private readonly headDim: number;

  constructor(
    private readonly device: CudaDevice,
    model: ModelConfig,
    /** Whether launches may split: KILN_PREFILL_SPLIT, and the engine has the `_split` kernel of the
     * variant that runs (one built before them has not). No scratch is allocated otherwise. */
    private readonly enabled: boolean,
  ) {
    this.heads = model.numHeads;
    this.headDim = model.headDim;
    const partials = MAX_PARTIAL_ROWS * model.numHeads;
    this.mOffset = 4 * partials * model.headDim;
    this.lOffset = this.mOffset + 4 * partials;
    this.scratch = enabled ? DeviceBuffer.alloc(device, this.lOffset + 4 * partials) : null;
  }

  /** Splits for a launch of `l` with `blockM` query rows per CTA: 1 when splitting is off. */
  splits(l: PrefillLaunch, blockM: number): number {
    if (!this.enabled) return 1;
    return prefillSplits({ smCount: this.device.smCount, heads: this.heads, blockM }, l);
  }

  /** The split kernel's four extra arguments (partial_acc, partial_m, partial_l, num_splits) for a launch
   * of `rows` query rows, which the scratch must hold. */
  splitArgs(rows: number, splits: number): KernelArg[] {
    const s = this.scratchFor(rows, splits);
    return [
      { ptr: s.ptr },
      { ptr: offsetPtr(s.ptr, this.mOffset) },
      { ptr: offsetPtr(s.ptr, this.lOffset) },
      { i32: splits },
    ];
  }

  /** attention_prefill_merge's partial arguments (acc, m, l) and its grid for `rows` rows: one thread a
   * 4-float slice of a (row, head) (the kernel loops over any more). */
  merge(rows: number, splits: number): { partials: KernelArg[]; grid: number } {
    const s = this.scratchFor(rows, splits);
    return {
      partials: [
        { ptr: s.ptr },
        { ptr: offsetPtr(s.ptr, this.mOffset) },
        { ptr: offsetPtr(s.ptr, this.lOffset) },
      ],
      grid: Math.max(1, Math.ceil((rows * this.heads * Math.ceil(this.headDim / 4)) / MERGE_THREADS)),
    };
  }

  private scratchFor(rows: number, splits: number): DeviceBuffer {
    if (!this.scratch || rows * splits > MAX_PARTIAL_ROWS)
      throw new Error(
        `internal: prefill split scratch for ${rows} rows × ${splits} splits (holds ${MAX_PARTIAL_ROWS})`,
      );
    return this.scratch;
  }

  dispose(): void {
    this.scratch?.dispose();
  }
}
