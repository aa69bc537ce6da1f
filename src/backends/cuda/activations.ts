// The activation arena: one device buffer for every storage of the lowered plan, sized for the engine's
// largest step (maxTokens token rows, maxLogitRows logit rows) and placed by liveness (arena.ts), so
// storages that are never live at once share memory. The logits are its fp32 [maxLogitRows, vocab]
// output region.
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import { planArena, type Region } from "./arena.ts";
import {
  type CudaDevice,
  DeviceBuffer,
  type DevicePtr,
  offsetPtr,
  type PinnedBuffer,
  type Stream,
} from "./device/index.ts";
import type { Lowered } from "./lowering.ts";

export class ActivationArena {
  private constructor(
    private readonly buffer: DeviceBuffer,
    private readonly regions: Map<string, Region>,
    private readonly output: string,
  ) {}

  static allocate(
    device: CudaDevice,
    lowered: Lowered,
    dtype: DTypeName,
    rows: { maxTokens: number; maxLogitRows: number },
  ): ActivationArena {
    const bytesOf = (name: string) => {
      const s = lowered.storage.get(name);
      if (!s) throw new Error(`internal: no storage for ${name}`);
      return (
        s.width *
        (s.rows === "tokens" ? rows.maxTokens : rows.maxLogitRows) *
        (s.fp32 ? 4 : ELEMENT_BYTES[dtype])
      );
    };
    const { regions, totalBytes } = planArena(lowered.steps, bytesOf, new Set([lowered.output]));
    return new ActivationArena(
      DeviceBuffer.alloc(device, Math.max(256, totalBytes)),
      regions,
      lowered.output,
    );
  }

  /** Where storage `name` lives in the arena. */
  region(name: string): Region {
    const r = this.regions.get(name);
    if (!r) throw new Error(`internal: no arena region for ${name}`);
    return r;
  }

  /** The device address of storage `name`. */
  ptr(name: string): DevicePtr {
    return offsetPtr(this.buffer.ptr, this.region(name).offset);
  }

  /** The logits: fp32 [maxLogitRows, vocab] at the output's region. */
  get logits(): DevicePtr {
    return this.ptr(this.output);
  }

  /** Queues the copy of the first `rows` logits rows of `vocab` fp32 each to the start of `into`. */
  downloadLogits(stream: Stream, into: PinnedBuffer, rows: number, vocab: number): void {
    this.buffer.downloadAsync(stream, into, this.region(this.output).offset, 4 * rows * vocab);
  }

  /** Copies the first `into.length` elements of fp32 storage `name` to the host, after the work queued
   * on `stream` (returns once the copy is done). */
  download(stream: Stream, name: string, into: Float32Array): void {
    this.buffer.downloadAsync(stream, into, this.region(name).offset);
  }

  /** Queues the copy of row rows[i] of storage x to row i of storage out (rows of rowBytes bytes). */
  gatherRows(stream: Stream, x: string, out: string, rowBytes: number, rows: Int32Array): void {
    const src = this.region(x);
    const dst = this.region(out);
    rows.forEach((r, i) => {
      this.buffer.copyFromAsync(
        stream,
        this.buffer,
        rowBytes,
        dst.offset + i * rowBytes,
        src.offset + r * rowBytes,
      );
    });
  }

  dispose(): void {
    this.buffer.dispose();
  }
}
