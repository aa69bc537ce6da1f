// Per-iteration statistics (TensorRT-LLM's IterationStats): what one step scheduled, how long the host
// waited for its tokens and how long it worked besides, reported to ExecutorOptions.onIteration once
// the step's tokens are read. A queued step (overlap.ts) is read an iteration after it was scheduled,
// so the counts known at scheduling travel with it (StepCounts) and the rest is measured when read.
import type { KvCacheManager, KvCacheStats } from "./kv_cache_manager.ts";
import type { Scheduler } from "./scheduler.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";

export interface IterationStats {
  iteration: number;
  /** Host and device time of the step, schedule to results, on the executor's clock. */
  latencyMs: number;
  /** Whether the step was queued before the previous one was read (overlap.ts). */
  overlapped: boolean;
  /** Host ms (performance.now) the loop waited for this step's tokens: polling and in collectSample,
   * or queueing, polling and reading a synchronous step (its host decoding too). Near zero in a steady overlapped decode: the host, not the device, paces. */
  hostWaitMs: number;
  /** Host ms of the loop iteration that read this step, besides that wait: scheduling and building
   * the next step, accepting tokens, text, events. */
  hostMs: number;
  /** Chunks (rows of sequences) in the step; a beam or sample of a request is a row of its own. */
  numScheduled: number;
  /** Of them, chunks of prompt (or recompute) and single-token decodes. */
  numContext: number;
  numGeneration: number;
  numContextTokens: number;
  numQueued: number;
  /** Requests preempted in this iteration (they wait to recompute). */
  numPaused: number;
  kv: KvCacheStats;
}

/** The stats of a step known when it is scheduled. */
export type StepCounts = Pick<IterationStats, "iteration" | "numContext" | "numContextTokens">;

/** The counts of the step of `out`, scheduled in `iteration`. A decode is the one token after the
 * prompt's end (`promptLength` of its request); any other chunk is prompt or recompute. */
export function stepCounts(
  iteration: number,
  out: SchedulerOutput,
  promptLength: (requestId: number) => number,
): StepCounts {
  let numContext = 0;
  let numContextTokens = 0;
  for (const c of out.chunks) {
    const decode = c.tokenIds.length === 1 && c.start >= promptLength(c.requestId);
    if (!decode) {
      numContext++;
      numContextTokens += c.tokenIds.length;
    }
  }
  return { iteration, numContext, numContextTokens };
}

/** Times the loop's iterations and reports each step read to `onIteration` (when set). */
export class IterationReporter {
  /** performance.now() when the current loop iteration began. */
  private iterationStart = 0;

  constructor(
    private readonly onIteration: ((s: IterationStats) => void) | undefined,
    private readonly scheduler: Scheduler,
    private readonly kv: KvCacheManager,
  ) {}

  /** Marks the start of a loop iteration (hostMs counts from here). */
  begin(): void {
    this.iterationStart = performance.now();
  }

  /** Reports the step of `out`, read in this iteration. */
  report(
    out: SchedulerOutput,
    counts: StepCounts,
    latencyMs: number,
    overlapped: boolean,
    hostWaitMs: number,
  ): void {
    this.onIteration?.({
      iteration: counts.iteration,
      latencyMs,
      overlapped,
      hostWaitMs,
      hostMs: Math.max(0, performance.now() - this.iterationStart - hostWaitMs),
      numScheduled: out.chunks.length,
      numContext: counts.numContext,
      numGeneration: out.chunks.length - counts.numContext,
      numContextTokens: counts.numContextTokens,
      numQueued: this.scheduler.numWaiting,
      numPaused: out.preempted.length,
      kv: this.kv.stats(),
    });
  }
}
