// What each step uploads before its launches: the packed step metadata (step_metadata.ts: ids,
// positions, slots, block tables, sampling settings; staged in pinned memory, staging_ring.ts) and the
// RoPE inverse frequencies. Owns both device buffers; the metadata buffer grows when a step needs more,
// which moves every pointer into it, so the owner is told (onMetaMoved) to drop graphs captured against
// the old one.
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { ropeInvFreq } from "../../models/rope.ts";
import type { StepInput } from "../backend.ts";
import {
  type CudaDevice,
  DeviceBuffer,
  type DevicePtr,
  type KernelArg,
  offsetPtr,
  type PinnedBuffer,
  type Stream,
} from "./device/index.ts";
import { pinnedStaging } from "./pinned_staging.ts";
import type { StagingRing } from "./staging_ring.ts";
import { metadataBytes, type PackedStep } from "./step_metadata.ts";

export class StepUploads {
  private meta: DeviceBuffer;
  /** RoPE inverse frequencies, f32 [rows, rotaryDim / 2]: one row, or one per sequence (dynamic NTK). */
  private readonly invFreq: DeviceBuffer;
  private staticInvFreqUploaded = false;
  /** Pinned staging of the metadata (staging_ring.ts), so its upload never waits for the stream. */
  private readonly staging: StagingRing<PinnedBuffer>;

  constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    private readonly model: ModelConfig,
    sizes: { maxTokens: number; maxLogitRows: number; maxBlocksPerSeq: number },
    private readonly onMetaMoved: () => void,
  ) {
    this.meta = DeviceBuffer.alloc(
      device,
      metadataBytes(sizes.maxTokens, sizes.maxLogitRows, sizes.maxBlocksPerSeq),
    );
    this.invFreq = DeviceBuffer.alloc(device, 4 * (model.rope.rotaryDim / 2) * (sizes.maxTokens + 1));
    this.staging = pinnedStaging(device, stream, 2); // the metadata, dynamic-NTK rows
  }

  /** The device address of int32 element `at` of the current step's metadata. */
  metaPtr(at: number): DevicePtr {
    return offsetPtr(this.meta.ptr, 4 * at);
  }

  /** A kernel argument pointing at int32 element `at` of the current step's metadata. */
  metaArg(at: number): KernelArg {
    return { ptr: this.metaPtr(at) };
  }

  get invFreqPtr(): DevicePtr {
    return this.invFreq.ptr;
  }

  /** Queues the upload of a packed step (growing the buffer first if it must). */
  uploadMeta(packed: PackedStep): void {
    if (packed.extent > this.meta.bytes) {
      // A larger buffer moves every pointer: graphs captured against the old one are stale.
      this.stream.synchronize();
      this.meta.dispose();
      this.meta = DeviceBuffer.alloc(this.device, 2 * packed.extent);
      this.onMetaMoved();
    }
    const meta = this.meta;
    this.staging.upload(packed.data, (pinned, bytes) => meta.uploadAsync(this.stream, pinned, 0, bytes));
  }

  /** Uploads the RoPE frequency rows this step needs; returns each sequence's row. */
  uploadInvFreq(step: StepInput): (seq: number) => number {
    const rope = this.model.rope;
    const half = rope.rotaryDim / 2;
    if (rope.scaling.type !== "dynamic") {
      if (!this.staticInvFreqUploaded) {
        const { invFreq } = ropeInvFreq(rope, 1);
        this.invFreq.upload(invFreq);
        this.staticInvFreqUploaded = true;
      }
      return () => 0;
    }
    // Dynamic NTK: each sequence's frequencies depend on its length (HF: max position + 1).
    const table = new Float32Array(step.seqs.length * half);
    step.seqs.forEach((s, i) => table.set(ropeInvFreq(rope, s.contextLen).invFreq, i * half));
    const dst = this.invFreq;
    this.staging.upload(table, (pinned, bytes) => dst.uploadAsync(this.stream, pinned, 0, bytes));
    return (i) => i;
  }

  dispose(): void {
    this.staging.dispose();
    this.meta.dispose();
    this.invFreq.dispose();
  }
}
