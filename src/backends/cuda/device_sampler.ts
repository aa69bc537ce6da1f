// Sampling on the device (kernels/sampling.cu): the logit transforms (embedding bias, penalties, bans),
// sample_topk_topp into one of two output slots, and the tickets of pipelined decoding. A queued step's
// tokens and log-probs are copied to pinned host memory on a second stream, so the next step's uploads
// and graph do not queue behind the copy; collect() waits for that copy only. Owns its buffers, events
// and stream until dispose().
//
//   sampled (device, int32/f32):  [ slot 0: tokens [maxLogitRows] | log-probs [maxLogitRows] | slot 1: … ]
//   ticket id → slot id % 2; the slot is rewritten by ticket id + 2, queued only after id is collected.

import type { SampleTicket } from "../backend.ts";
import type { PenaltyParams, SampleParams, StepTransforms } from "../decoding_ops.ts";
import {
  type CudaDevice,
  DeviceBuffer,
  type DevicePtr,
  Event,
  type KernelArg,
  offsetPtr,
  PinnedBuffer,
  Stream,
} from "./device/index.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import { pinnedStaging } from "./pinned_staging.ts";
import { samplingCtas, samplingSlices, samplingWorkspace } from "./sampling_launch.ts";
import type { StagingRing } from "./staging_ring.ts";
import { type PackedStep, samplingLayout } from "./step_metadata.ts";

/** Greedy settings for B rows (row r: sequence r, step 0), as profileDecode's sampling graph runs. */
export function greedySampleParams(B: number): SampleParams {
  return {
    greedy: new Uint8Array(B).fill(1),
    temperature: new Float32Array(B).fill(1),
    topK: new Int32Array(B),
    topP: new Float32Array(B).fill(1),
    minP: new Float32Array(B),
    seed: new Float64Array(B),
    sequence: Int32Array.from({ length: B }, (_, i) => i),
    step: new Int32Array(B),
  };
}

/** A kernel's null pointer argument. */
const NULL_PTR = 0n as DevicePtr;

interface Slot {
  /** Byte offset of the slot in the device buffer. */
  offset: number;
  host: PinnedBuffer;
  /** Recorded on the main stream after the sampler; the readback stream waits for it. */
  ready: Event;
  /** Recorded on the readback stream after the copy to `host`. */
  done: Event;
}

export class DeviceSampler {
  /** sample_topk_topp's per-slice statistics [maxLogitRows, slices] and per-row arrival counters
   * [maxLogitRows] (at `counters` bytes in), zeroed once here: every launch leaves them zero. */
  private readonly workspace: { buffer: DeviceBuffer; slices: number; counters: number };
  private readonly sampled: DeviceBuffer;
  private readonly slots: Slot[];
  private readonly readback: Stream;
  private readonly biasDevice: DeviceBuffer;
  private biasSource: Float32Array | null = null;
  /** [maxLogitRows, vocab] int32 zeros for apply_penalties (the kernel leaves it zeroed). */
  private penaltyCounts: DeviceBuffer | null = null;
  /** This step's small uploads (penalty and ban lists). */
  private scratch: DeviceBuffer | null = null;
  private tickets = 0;
  private collected = 0;
  /** Host time spent waiting for the device (polling ready(), blocking in collect()), and collections. */
  private readonly wait = { ms: 0, count: 0 };
  /** When ready() first said "not yet" for the next ticket (null: it has not). */
  private pollingSince: number | null = null;
  /** Pinned staging of the bias, penalty and ban uploads (pinned_staging.ts): no wait for the stream. */
  private readonly staging: StagingRing<PinnedBuffer>;

  constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    private readonly launcher: KernelLauncher,
    private readonly vocabSize: number,
    private readonly maxLogitRows: number,
  ) {
    const slices = samplingSlices(vocabSize);
    const ws = samplingWorkspace(maxLogitRows, slices);
    this.workspace = { buffer: DeviceBuffer.alloc(device, ws.bytes), slices, counters: ws.countersOffset };
    this.workspace.buffer.fillBytes(stream, 0);
    this.sampled = DeviceBuffer.alloc(device, 2 * 8 * maxLogitRows);
    this.slots = [0, 1].map((s) => ({
      offset: s * 8 * maxLogitRows,
      host: PinnedBuffer.alloc(device, 8 * maxLogitRows),
      ready: Event.create(device, { timing: false }),
      done: Event.create(device, { timing: false }),
    }));
    this.readback = Stream.create(device, { nonBlocking: true });
    this.biasDevice = DeviceBuffer.alloc(device, 4 * vocabSize);
    this.staging = pinnedStaging(device, stream, 3); // bias, penalties, bans
  }

  /** The sampled tokens' buffer, which the embedding reads fed tokens from (by int32 element). */
  get tokens(): DevicePtr {
    return this.sampled.ptr;
  }

  /** Whether every queued ticket has been collected. */
  get idle(): boolean {
    return this.tickets === this.collected;
  }

  /** The last queued ticket's id (−1 before any): the only one a step may be fed from. */
  get lastTicket(): number {
    return this.tickets - 1;
  }

  /** The int32 element of the sampled buffer where `from`'s tokens start (the caller checked that
   * `from` is the last queued ticket: token_feed.ts checkFeed). */
  feedBase(from: SampleTicket): number {
    return this.slots[from.id % 2].offset / 4;
  }

  /** The next ticket's id and slot. Two uncollected tickets mean a caller abandoned them (an aborted
   * generation): they are dropped. */
  begin(): { id: number; slot: number } {
    if (this.tickets - this.collected >= 2) {
      this.stream.synchronize();
      this.collected = this.tickets;
    }
    return { id: this.tickets, slot: this.tickets % 2 };
  }

  /** Allocates the buffers the transforms otherwise allocate on first use (penalty counts, the
   * scratch of penalty and ban lists), so free memory read after it is what the KV pool may take. */
  warmUp(): void {
    this.penaltyCountsBuffer();
    this.scratchFor(1 << 20);
  }

  /** [maxLogitRows, vocab] int32 zeros for apply_penalties, allocated once. */
  private penaltyCountsBuffer(): DeviceBuffer {
    if (!this.penaltyCounts) {
      this.penaltyCounts = DeviceBuffer.alloc(this.device, 4 * this.maxLogitRows * this.vocabSize);
      this.penaltyCounts.fillBytes(this.stream, 0);
    }
    return this.penaltyCounts;
  }

  /** Embedding bias, penalties and bans over the first B logit rows (HF's order). `feedBase`: the
   * element of the sampled buffer where the step's feed ticket's tokens start (feedBase()), which
   * the penalty lists' fed entries (PenaltyParams.fed) are read from; null without a feed. */
  transform(logits: DevicePtr, B: number, t: StepTransforms, feedBase: number | null = null): void {
    const bias = t.bias;
    if (bias) {
      if (this.biasSource !== bias) {
        const dst = this.biasDevice;
        this.staging.upload(bias, (p, bytes) => dst.uploadAsync(this.stream, p, 0, bytes));
        this.biasSource = bias;
      }
      const grid = Math.max(1, Math.min(Math.ceil((B * this.vocabSize) / 256), 65535));
      this.launcher.launch("sampling", "add_logit_bias", [grid], 256, [
        { ptr: logits },
        { ptr: this.biasDevice.ptr },
        { i32: B },
      ]);
    }
    if (t.penalties) this.applyPenalties(logits, B, t.penalties, feedBase);
    if (t.banned) this.ban(logits, B, t.banned);
  }

  /** sample_topk_topp over the first B logit rows, its settings from the step's sampling block (on the
   * device at `settings`), into `slot`: tokens [maxLogitRows] then log-probs [maxLogitRows]. */
  launch(logits: DevicePtr, settings: DevicePtr, packed: PackedStep, B: number, slot: number): void {
    const layout = samplingLayout(packed.samplingRows);
    const setting = (bytes: number): KernelArg => ({ ptr: offsetPtr(settings, bytes) });
    const out = this.sampled.at(this.slots[slot].offset);
    const ws = this.workspace;
    const ctas = samplingCtas(ws.slices, B, this.device.smCount);
    this.launcher.launch("sampling", "sample_topk_topp", [ctas, B], 1024, [
      { ptr: logits },
      setting(layout.greedy),
      setting(layout.temperature),
      setting(layout.topK),
      setting(layout.topP),
      setting(layout.minP),
      setting(layout.seed),
      setting(layout.sequence),
      setting(layout.step),
      { ptr: out },
      { ptr: offsetPtr(out, 4 * this.maxLogitRows) },
      { ptr: ws.buffer.ptr },
      { ptr: ws.buffer.at(ws.counters) },
      { i32: ws.slices },
    ]);
  }

  /** Queues the copy of `slot` to the host once the main stream has sampled into it; returns the ticket. */
  finish(slot: number, rows: number): SampleTicket {
    const id = this.tickets++;
    const s = this.slots[slot];
    s.ready.record(this.stream);
    this.readback.waitEvent(s.ready);
    this.sampled.downloadAsync(this.readback, s.host, s.offset);
    s.done.record(this.readback);
    return { id, rows };
  }

  /** Whether collect(ticket) would not wait: the ticket's copy to the host is done. From the first
   * "not yet" to "done" counts as waiting (waitStats), as collect's blocking time does. */
  ready(ticket: SampleTicket): boolean {
    if (ticket.id !== this.collected)
      throw new Error(`internal: asking after ticket ${ticket.id}, but ${this.collected} is next`);
    const done = this.slots[ticket.id % 2].done.query();
    const now = performance.now();
    if (!done) this.pollingSince ??= now;
    else if (this.pollingSince !== null) {
      this.wait.ms += now - this.pollingSince;
      this.pollingSince = null;
    }
    return done;
  }

  /** Waits for a queued step's tokens (tickets are collected in queue order). */
  collect(ticket: SampleTicket): { tokens: Int32Array; logProbs: Float32Array } {
    if (ticket.id !== this.collected)
      throw new Error(`internal: collecting ticket ${ticket.id}, but ${this.collected} is next`);
    const slot = this.slots[ticket.id % 2];
    const t0 = performance.now();
    if (this.pollingSince !== null) this.wait.ms += t0 - this.pollingSince; // polled, then blocked
    this.pollingSince = null;
    slot.done.synchronize();
    this.wait.ms += performance.now() - t0;
    this.wait.count++;
    this.collected++;
    const host = slot.host.arrayBuffer();
    return {
      tokens: new Int32Array(host, 0, ticket.rows).slice(),
      logProbs: new Float32Array(host, 4 * this.maxLogitRows, ticket.rows).slice(),
    };
  }

  waitStats(): { ms: number; count: number } {
    return { ...this.wait };
  }

  /** A device scratch buffer of at least `bytes` for this step's small uploads. */
  private scratchFor(bytes: number): DeviceBuffer {
    if (!this.scratch || this.scratch.bytes < bytes) {
      this.stream.synchronize();
      this.scratch?.dispose();
      this.scratch = DeviceBuffer.alloc(this.device, Math.max(bytes, 1 << 20));
    }
    return this.scratch;
  }

  private applyPenalties(logits: DevicePtr, B: number, pen: PenaltyParams, feedBase: number | null): void {
    const counts = this.penaltyCountsBuffer();
    const maxTokens = Math.max(1, ...pen.tokens.map((x) => x.length));
    // A fed row's last entry is read from the feed ticket's slot of the sampled buffer, as the
    // embedding reads the fed input token (checkPenaltyFeed made feedBase non-null for any fed row).
    const fed = pen.fed && feedBase !== null && pen.fed.some((f) => f >= 0) ? pen.fed : null;
    // [tokens B×maxTokens | token_lens B | prompt_lens B | fed B (with a feed)] int32, then
    // [repetition | presence | frequency] f32
    // One upload: the ints, then the floats, in one buffer (staged in pinned memory).
    const numInts = B * maxTokens + (fed ? 3 : 2) * B;
    const block = new ArrayBuffer(4 * (numInts + 3 * B));
    const ints = new Int32Array(block, 0, numInts);
    pen.tokens.forEach((row, r) => {
      ints.set(row, r * maxTokens);
      ints[B * maxTokens + r] = row.length;
    });
    ints.set(pen.promptLens, B * maxTokens + B);
    if (fed)
      fed.forEach((f, r) => {
        ints[B * maxTokens + 2 * B + r] = f >= 0 ? (feedBase as number) + f : -1;
      });
    const floats = new Float32Array(block, ints.byteLength, 3 * B);
    floats.set(pen.repetition, 0);
    floats.set(pen.presence, B);
    floats.set(pen.frequency, 2 * B);
    const buf = this.scratchFor(ints.byteLength + floats.byteLength);
    this.staging.upload(new Uint8Array(block), (p, bytes) => buf.uploadAsync(this.stream, p, 0, bytes));
    const scratchArg = (bytes: number): KernelArg => ({ ptr: offsetPtr(buf.ptr, bytes) });
    this.launcher.launch("sampling", "apply_penalties", [B], 1024, [
      { ptr: logits },
      scratchArg(0),
      scratchArg(4 * B * maxTokens),
      scratchArg(4 * (B * maxTokens + B)),
      scratchArg(ints.byteLength),
      scratchArg(ints.byteLength + 4 * B),
      scratchArg(ints.byteLength + 8 * B),
      { ptr: counts.ptr },
      { i32: maxTokens },
      { ptr: fed ? this.sampled.ptr : NULL_PTR },
      fed ? scratchArg(4 * (B * maxTokens + 2 * B)) : { ptr: NULL_PTR },
    ]);
  }

  private ban(logits: DevicePtr, B: number, banned: number[][]): void {
    const width = Math.max(1, ...banned.map((b) => b.length));
    const ids = new Int32Array(B * width).fill(-1);
    banned.forEach((b, r) => ids.set(b, r * width));
    // Penalties may have used the scratch earlier in this step: put the bans after them.
    const buf = this.scratchFor(2 * ids.byteLength + (1 << 20));
    const offset = buf.bytes - ids.byteLength;
    this.staging.upload(ids, (p, bytes) => buf.uploadAsync(this.stream, p, offset, bytes));
    this.launcher.launch("sampling", "ban_tokens", [B], 128, [
      { ptr: logits },
      { ptr: offsetPtr(buf.ptr, offset) },
      { i32: width },
    ]);
  }

  /** Waits for the readback stream (the main stream is the owner's to synchronise). */
  synchronize(): void {
    this.readback.synchronize();
  }

  dispose(): void {
    for (const b of [
      this.workspace.buffer,
      this.biasDevice,
      this.sampled,
      ...this.slots.flatMap((s) => [s.host, s.ready, s.done]),
      this.readback,
    ])
      b.dispose();
    this.penaltyCounts?.dispose();
    this.scratch?.dispose();
    this.staging.dispose();
  }
}
