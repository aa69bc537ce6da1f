// A backend with no model and a device modelled by time alone, for measuring the host's share of
// serving at the GPU's pace on a machine without one (scripts/serve_device_sim.ts). The executor drives
// it as it drives the CUDA backend — queued sampling steps, a token feed from the step in flight,
// readiness polled between turns of the event loop — but a step computes nothing: the device is a
// queue of busy intervals, and a step's tokens are ready when its interval ends.
//
//   enqueueSample(step):  the host's cost of queuing a step (uploads, graph launch: hostMs of busy
//                         work), then device time  stepMs + seqMs·decodes + tokenMs·prompt tokens,
//                         starting when the device is free (steps run in queue order)
//   sampleReady(ticket):  now ≥ the step's end
//   collectSample(ticket): waits (busy) until its end; every row's token is TOKEN (no end id matters:
//                         the runs ignore end ids)
//
// The time model's defaults are Llama-3.1-8B bf16 on an H200 as the device runs measured it (graph of
// a decode step at 1,024 sequences ~33 ms; a prefill step of 8,192 tokens ~190 ms): docs/PERFORMANCE.md.
import type { ExecutionBackend, SampleTicket, StepInput, TokenFeed } from "../../src/backends/backend.ts";
import type { SampleParams, StepTransforms } from "../../src/backends/decoding_ops.ts";
import { cpuDecodingOps } from "../../src/backends/host_decoding.ts";

export interface DeviceModel {
  /** Device ms of every step (launch gaps, the weights' read at small batches). */
  stepMs: number;
  /** Device ms per decoding sequence (query length 1). */
  seqMs: number;
  /** Device ms per prompt token (query tokens of longer chunks). */
  tokenMs: number;
  /** Host ms the backend spends queuing a step (busy), before it returns. */
  hostMs: number;
}

export const H200_8B: DeviceModel = { stepMs: 2, seqMs: 0.03, tokenMs: 0.0225, hostMs: 1 };

/** What the device did, for the report. */
export interface DeviceLog {
  steps: number;
  /** Sum of the steps' device intervals. */
  busyMs: number;
  /** Host ms spent blocked in collectSample (the executor read a step before it ended). */
  waitMs: number;
  /** Each time the device sat idle before a step: when the step was queued (performance.now()), the
   * idle ms before it, and the step's device ms. */
  idle: { at: number; ms: number; stepMs: number }[];
  /** When each step was queued (performance.now()). */
  queuedAt: number[];
  /** Per step after the first: the device time still queued ahead of it when it was queued (ms;
   * negative: the device had been idle that long), and its own device ms. */
  slack: { ms: number; stepMs: number }[];
  /** When the first step was queued, and when the last one ended. */
  firstAt: number;
  /** firstAt on the process's monotonic clock in µs (a --cpu-prof profile's clock). */
  firstAtUs: number;
  lastEnd: number;
}

/** Device ms of a step of `decodes` decoding sequences and `prompt` prompt tokens under `m`. */
export function deviceStepMs(m: DeviceModel, decodes: number, prompt: number): number {
  return m.stepMs + m.seqMs * decodes + m.tokenMs * prompt;
}

/** When the first step queued at or after `t` (the log's clock) was queued; NaN: none. */
export function firstStepAfter(log: DeviceLog, t: number): number {
  return log.queuedAt.find((q) => q >= t) ?? Number.NaN;
}

/** `log` with its times moved by `ms` (a worker's performance.now() onto another thread's clock). */
export function shiftedLog(log: DeviceLog, ms: number): DeviceLog {
  return {
    ...log,
    idle: log.idle.map((g) => ({ ...g, at: g.at + ms })),
    queuedAt: log.queuedAt.map((q) => q + ms),
    firstAt: log.firstAt + ms,
    lastEnd: log.lastEnd + ms,
  };
}

const TOKEN = 42;

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the host's own work for this long
  }
}

export class SimulatedDevice implements ExecutionBackend {
  readonly name = "cuda";
  readonly decoding = cpuDecodingOps;
  readonly deviceName = "simulated device (no GPU)";
  readonly kvBytesPerBlock: number;
  readonly log: DeviceLog = {
    steps: 0,
    busyMs: 0,
    waitMs: 0,
    idle: [],
    slack: [],
    queuedAt: [],
    firstAt: 0,
    firstAtUs: 0,
    lastEnd: 0,
  };
  private blocks = 0;
  private nextId = 1;
  private deviceFree = 0;
  private readonly ends = new Map<number, number>();

  constructor(
    readonly vocabSize: number,
    readonly kvBlockSize: number,
    readonly maxStepTokens: number,
    readonly maxLogitRows: number,
    private readonly model: DeviceModel,
  ) {
    this.kvBytesPerBlock = kvBlockSize * 131_072; // the 8B's K and V per token over 32 layers, bf16
  }

  get numKvBlocks(): number {
    return this.blocks;
  }

  allocateKvCache(numBlocks: number): void {
    this.blocks = numBlocks;
  }

  copyKvBlocks(): void {}

  measureCopyBandwidth(): number {
    return 4.271e12; // the H200's, as the floors elsewhere use it
  }

  measureGemmFlops(): number {
    return 8.5e14;
  }

  /** Device ms of a step of `decodes` decoding sequences and `prompt` prompt tokens under the model. */
  stepMs(decodes: number, prompt: number): number {
    return deviceStepMs(this.model, decodes, prompt);
  }

  private timeOf(step: StepInput): number {
    let decodes = 0;
    let prompt = 0;
    for (const s of step.seqs) {
      if (s.queryLen === 1) decodes++;
      else prompt += s.queryLen;
    }
    return this.stepMs(decodes, prompt);
  }

  enqueueSample(step: StepInput, _p: SampleParams, _t: StepTransforms, _feed?: TokenFeed): SampleTicket {
    busy(this.model.hostMs);
    const ms = this.timeOf(step);
    const now = performance.now();
    this.log.queuedAt.push(now);
    if (this.log.steps > 0) this.log.slack.push({ ms: this.deviceFree - now, stepMs: ms });
    if (this.log.steps > 0 && now > this.deviceFree)
      this.log.idle.push({ at: now, ms: now - this.deviceFree, stepMs: ms });
    if (this.log.steps === 0) {
      this.log.firstAt = now;
      this.log.firstAtUs = Number(process.hrtime.bigint() / 1000n);
    }
    const start = Math.max(now, this.deviceFree);
    this.deviceFree = start + ms;
    const ticket = { id: this.nextId++, rows: step.logitRows.length };
    this.ends.set(ticket.id, this.deviceFree);
    this.log.steps++;
    this.log.busyMs += ms;
    this.log.lastEnd = this.deviceFree;
    return ticket;
  }

  sampleReady(ticket: SampleTicket): boolean {
    return performance.now() >= (this.ends.get(ticket.id) ?? 0);
  }

  collectSample(ticket: SampleTicket): { tokens: Int32Array; logProbs: Float32Array } {
    const end = this.ends.get(ticket.id) ?? 0;
    this.ends.delete(ticket.id);
    const wait = end - performance.now();
    if (wait > 0) {
      busy(wait);
      this.log.waitMs += wait;
    }
    return { tokens: new Int32Array(ticket.rows).fill(TOKEN), logProbs: new Float32Array(ticket.rows) };
  }

  forwardSample(
    step: StepInput,
    p: SampleParams,
    t: StepTransforms,
  ): { tokens: Int32Array; logProbs: Float32Array } {
    return this.collectSample(this.enqueueSample(step, p, t));
  }

  forward(step: StepInput): Float32Array {
    busy(this.model.hostMs + this.timeOf(step));
    return new Float32Array(step.logitRows.length * this.vocabSize);
  }

  dispose(): void {}
}
