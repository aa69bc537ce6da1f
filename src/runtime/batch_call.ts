// One decode call of a GenerationSession: its prompts go to the executor as one request each, all
// enqueued at once (so they run in the same iterations, beside any other call's requests), and their
// result events are put back together as the runtime's outputs:
//   steps (streaming)  StepOutput s holds token s of every sequence still running at step s, prompt
//                      by prompt, then by sample index; for beam search, step s's beams of every
//                      prompt still searching. A step goes out once every sequence has reached it.
//   outputs            one RequestOutput per prompt, in prompt order (beams best first).
// A call is stopped for a reason (the caller's AbortSignal, shutdown, the idle limit): its requests
// are cancelled and its next pull throws that reason, whatever results had arrived.
//
//   lanes of a call of 2 prompts × 2 samples     (p0,k0) t0 t1 t2 ■      ■ = finished
//                                                (p0,k1) t0 t1 ■         step 2 = {p0k0, p1k0, p1k1}
//                                                (p1,k0) t0 t1 t2 t3 ■   step 3 = {p1k0}
//                                                (p1,k1) t0 t1 t2 ■
import { RequestCallbackError, RequestLogitsNotFiniteError } from "../executor/errors.ts";
import type { Executor, ExecutorRequest, ResultEvent } from "../executor/executor.ts";
import type { LogitsProcessor, StoppingCriteria } from "../sampling/logits_processor.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import { NonFiniteLogitsError, RunnerDisposedError, StreamIdleTimeoutError } from "./errors.ts";
import type { RequestOutput, SequenceOutput, StepOutput, TokenEvent } from "./outputs.ts";
import type { FinishReason } from "./sequence.ts";

export interface DecodeOptions {
  stoppingCriteria?: StoppingCriteria | readonly StoppingCriteria[];
  logitsProcessors?: LogitsProcessor | readonly LogitsProcessor[];
  signal?: AbortSignal;
}

/** What a call needs of its session. */
export interface CallHost {
  readonly executor: Executor;
  /** A stream not pulled for this long is cancelled while other requests wait in the queue. */
  readonly idleTimeoutMs: number;
  /** The call ended (finished, failed or left): the session forgets it. */
  ended(call: BatchCall): void;
}

/** One sequence of one prompt: its events so far. */
interface Lane {
  /** Streaming: one entry per step (a token, or a beam step's beams). */
  items: (TokenEvent | number[][])[];
  finished: boolean;
  out: SequenceOutput;
  logits: Float32Array[];
}

/** One prompt's request. */
interface PromptState {
  id: number;
  promptIds: number[];
  /** Sampling: one lane per sample; beam search: one lane for the steps, the beams come at the end. */
  lanes: Lane[];
  beams: SequenceOutput[];
  contextLogits?: Float32Array;
  done: boolean;
  error: unknown;
}

const NONE = Symbol("none");

export class BatchCall {
  private readonly prompts: PromptState[] = [];
  private readonly beamSearch: boolean;
  private reason: unknown = NONE;
  private wake: (() => void) | null = null;
  private parked = false;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private onAbort: (() => void) | null = null;
  /** run() returned or threw: a stop no longer changes anything. */
  private over = false;

  /** Enqueues one request per prompt (each of `requests` already holds its prompt's settings). */
  constructor(
    private readonly host: CallHost,
    inputs: readonly (readonly number[])[],
    requests: readonly ExecutorRequest[],
    private readonly cfg: ResolvedSamplingConfig,
    private readonly streaming: boolean,
    private readonly signal?: AbortSignal,
  ) {
    this.beamSearch = cfg.beamWidth > 1;
    const lanes = this.beamSearch ? 1 : cfg.numReturnSequences;
    try {
      requests.forEach((r, p) => {
        const id = host.executor.enqueue(r);
        this.prompts.push({
          id,
          promptIds: [...inputs[p]],
          lanes: Array.from({ length: lanes }, () => ({
            items: [],
            finished: false,
            out: { outputIds: [], text: "", logProbs: [], cumLogProb: 0, finishReason: "length" },
            logits: [],
          })),
          beams: [],
          done: false,
          error: null,
        });
        void this.pump(p, host.executor.results(id));
      });
    } catch (e) {
      this.cancelAll();
      throw e;
    }
    if (signal) {
      this.onAbort = () => this.stop(signal.reason);
      signal.addEventListener("abort", this.onAbort, { once: true });
    }
  }

  /** Stops the call: its live requests are cancelled and its next pull throws `reason`, even when
   * every result is already in but not yet read. */
  stop(reason: unknown): void {
    if (this.reason !== NONE || this.over) return;
    this.reason = reason;
    this.cancelAll();
    this.notify();
  }

  /** Whether one of its requests may still be running in the executor. */
  get live(): boolean {
    return this.prompts.some((q) => !q.done);
  }

  /** The call's steps (streaming only), then its outputs. Leaving it early cancels the requests. */
  async *run(): AsyncGenerator<StepOutput, RequestOutput[]> {
    let step = 0;
    try {
      for (;;) {
        this.check();
        if (this.streaming) {
          for (let out = this.stepAt(step); out; out = this.stepAt(step)) {
            step++;
            this.park();
            try {
              yield out;
            } finally {
              this.unpark();
            }
            this.check();
          }
        }
        if (!this.live) return this.outputs();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      this.over = true;
      this.unpark();
      this.cancelAll();
      if (this.onAbort) this.signal?.removeEventListener("abort", this.onAbort);
      this.host.ended(this);
    }
  }

  /** Throws the stop reason, or the first failed prompt's error as the runtime names it. */
  private check(): void {
    if (this.reason !== NONE) throw this.reason;
    for (const [p, q] of this.prompts.entries()) {
      if (q.error === null) continue;
      this.reason = runtimeError(q.error, p);
      this.cancelAll();
      throw this.reason;
    }
  }

  private async pump(p: number, events: AsyncIterable<ResultEvent>): Promise<void> {
    const q = this.prompts[p];
    try {
      for await (const ev of events) this.accept(p, q, ev);
    } catch (e) {
      q.error = e;
    }
    q.done = true;
    this.notify();
  }

  private accept(p: number, q: PromptState, ev: ResultEvent): void {
    if (ev.contextLogits) q.contextLogits = ev.contextLogits;
    if (ev.finishReason === "cancelled" || ev.finishReason === "timed_out") {
      // Only this call cancels its requests, after setting the reason; shutdown is the other way.
      if (this.reason === NONE) this.reason = new RunnerDisposedError();
      return;
    }
    const reason = ev.finishReason as FinishReason | null;
    if (this.beamSearch) {
      const lane = q.lanes[0];
      if (ev.beams) lane.items.push(ev.beams);
      else q.beams[ev.sequenceIndex] = this.sequence(ev.tokenIds, ev.logProbs, ev.cumLogProb, ev.text, ev);
      if (ev.isFinal) lane.finished = true;
      this.notify();
      return;
    }
    const lane = q.lanes[ev.sequenceIndex];
    const o = lane.out;
    ev.tokenIds.forEach((tokenId, i) => {
      const last = i === ev.tokenIds.length - 1;
      if (this.streaming) {
        const text = last ? ev.text : "";
        const finishReason = last ? reason : null;
        lane.items.push({
          promptIndex: p,
          sequenceIndex: ev.sequenceIndex,
          tokenId,
          logProb: ev.logProbs[i],
          text,
          finishReason,
        });
      }
      o.outputIds.push(tokenId);
      if (this.cfg.outputLogProbs) o.logProbs.push(ev.logProbs[i]);
    });
    o.text += ev.text;
    if (this.cfg.outputCumLogProbs) o.cumLogProb = ev.cumLogProb;
    if (ev.generationLogits) lane.logits.push(ev.generationLogits);
    if (reason) {
      o.finishReason = reason;
      lane.finished = true;
    }
    this.notify();
  }

  private sequence(
    ids: number[],
    logProbs: number[],
    cum: number,
    text: string,
    ev: ResultEvent,
  ): SequenceOutput {
    return {
      outputIds: ids,
      text,
      logProbs: this.cfg.outputLogProbs ? logProbs : [],
      cumLogProb: this.cfg.outputCumLogProbs ? cum : 0,
      ...(ev.score !== undefined ? { score: ev.score } : {}),
      finishReason: (ev.finishReason ?? "length") as FinishReason,
    };
  }

  /** Step s once every lane has reached it or finished before it; null before, or past the end. */
  private stepAt(s: number): StepOutput | null {
    let any = false;
    for (const q of this.prompts) {
      for (const lane of q.lanes) {
        if (lane.items.length > s) any = true;
        else if (!lane.finished && !q.done) return null;
      }
    }
    if (!any) return null;
    if (this.beamSearch) {
      const beams = this.prompts.flatMap((q, p) =>
        q.lanes[0].items.length > s ? [{ promptIndex: p, sequences: q.lanes[0].items[s] as number[][] }] : [],
      );
      return { step: s, tokens: [], beams };
    }
    const tokens = this.prompts.flatMap((q) =>
      q.lanes.flatMap((lane) => (lane.items.length > s ? [lane.items[s] as TokenEvent] : [])),
    );
    return { step: s, tokens };
  }

  private outputs(): RequestOutput[] {
    return this.prompts.map((q) => {
      const out: RequestOutput = {
        promptIds: q.promptIds,
        sequences: this.beamSearch ? q.beams : q.lanes.map((l) => l.out),
      };
      if (this.cfg.returnContextLogits) out.contextLogits = q.contextLogits;
      if (this.cfg.returnGenerationLogits) out.generationLogits = q.lanes.map((l) => concat(l.logits));
      return out;
    });
  }

  /** Cancels every live request; deferred, since a callback run inside an executor step may stop it. */
  private cancelAll(): void {
    const ids = this.prompts.filter((q) => !q.done).map((q) => q.id);
    if (ids.length === 0) return;
    queueMicrotask(() => {
      for (const id of ids) this.host.executor.cancel(id);
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The stream handed a step to its consumer: the idle clock runs until it pulls again. */
  private park(): void {
    this.parked = true;
    this.armIdle(this.host.idleTimeoutMs);
  }

  private unpark(): void {
    this.parked = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** After `ms` unpulled: cancelled if its requests still run and others wait for room, else looked
   * at again shortly (a timer that keeps no process alive). */
  private armIdle(ms: number): void {
    const idle = this.host.idleTimeoutMs;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (!this.parked || !this.live) return;
      if (this.host.executor.stats().numQueued > 0) this.stop(new StreamIdleTimeoutError(idle));
      else this.armIdle(Math.min(idle, 50));
    }, ms);
    this.idleTimer.unref?.();
  }
}

/** The executor's per-request errors as the runner's API names them (batch indices, the callback's own error). */
function runtimeError(e: unknown, promptIndex: number): unknown {
  if (e instanceof RequestLogitsNotFiniteError)
    return new NonFiniteLogitsError(e.step, promptIndex, e.sequenceIndex);
  if (e instanceof RequestCallbackError) return e.cause;
  return e;
}

/** [V] rows (or [n × V] blocks) joined into [steps × V]. */
function concat(parts: readonly Float32Array[]): Float32Array {
  const n = parts.reduce((a, b) => a + b.length, 0);
  const out = new Float32Array(n);
  let at = 0;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
