// The logits of a forward step on their way to the host (ExecutionBackend.forward, enqueueForward):
// queued after the step on the backend's stream, the copy goes device → pinned host memory without
// blocking the host, an event recorded after it; ready() asks the event (cuEventQuery), collect()
// waits on it. One ticket at a time: queuing the next drops an uncollected one (the stream runs them
// in order, so its copy is done before the next one writes the same memory). Owns its pinned buffer
// (grown to the largest step's rows, a power of two of them) and its event until dispose().
//
//   host (pinned): [ logits row 0 [vocab] | row 1 | … | row rows−1 | (unused up to maxLogitRows) ]

import type { ForwardTicket, StepInput } from "../backend.ts";
import type { ActivationArena } from "./activations.ts";
import { type CudaDevice, Event, PinnedBuffer, type Stream } from "./device/index.ts";

export class LogitsReadback {
  private host: PinnedBuffer | null = null;
  private readonly done: Event;
  private tickets = 0;
  /** The ticket queued and not collected yet (null: none). */
  private outstanding: number | null = null;

  constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    private readonly arena: ActivationArena,
    private readonly vocabSize: number,
    private readonly maxLogitRows: number,
    /** Queues a step's launches on the stream (the backend's forward on the device). */
    private readonly run: (step: StepInput) => void,
  ) {
    this.done = Event.create(device, { timing: false });
  }

  /** Queues `step`, then the copy of its logits rows. */
  queue(step: StepInput): ForwardTicket {
    const rows = step.logitRows.length;
    if (rows > this.maxLogitRows)
      throw new Error(`internal: ${rows} logits rows over the arena's ${this.maxLogitRows}`);
    this.outstanding = null;
    const host = this.fit(rows);
    this.run(step);
    this.arena.downloadLogits(this.stream, host, rows, this.vocabSize);
    this.done.record(this.stream);
    const id = this.tickets++;
    this.outstanding = id;
    return { id, rows };
  }

  /** Grows the pinned buffer to hold `rows` rows (a power of two of them, at most maxLogitRows): most
   * steps that read logits on the host carry a few rows, and pinned memory is locked RAM. The old buffer
   * is freed only after the copy queued into it (if any) is done. */
  private fit(rows: number): PinnedBuffer {
    const need = 4 * rows * this.vocabSize;
    if (this.host && this.host.byteLength >= need) return this.host;
    const grown = Math.min(this.maxLogitRows, 2 ** Math.ceil(Math.log2(Math.max(rows, 1))));
    if (this.host) {
      this.done.synchronize();
      this.host.dispose();
      this.host = null;
    }
    this.host = PinnedBuffer.alloc(this.device, 4 * Math.max(grown, rows) * this.vocabSize);
    return this.host;
  }

  /** Whether collect(ticket) would not wait: the copy is done. Never blocks. */
  ready(ticket: ForwardTicket): boolean {
    this.check(ticket);
    return this.done.query();
  }

  /** Waits for the copy; the logits [ticket.rows, vocab] are a view of the pinned buffer, valid until
   * the next queue(). */
  collect(ticket: ForwardTicket): Float32Array {
    this.check(ticket);
    this.done.synchronize();
    this.outstanding = null;
    const host = this.host as PinnedBuffer;
    return new Float32Array(host.arrayBuffer(), 0, ticket.rows * this.vocabSize);
  }

  private check(ticket: ForwardTicket): void {
    if (ticket.id !== this.outstanding)
      throw new Error(`internal: forward ticket ${ticket.id} is not outstanding (${this.outstanding})`);
  }

  dispose(): void {
    this.host?.dispose();
    this.host = null;
    this.done.dispose();
  }
}
