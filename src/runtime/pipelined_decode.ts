// Pipelined decoding: step N+1 is queued, fed with step N's tokens on the device, before the host
// reads them, so the host's bookkeeping overlaps the GPU. Only when the next step's inputs cannot
// depend on the token being sampled (no penalties, n-gram or bad-word bans, top-p decay), and only
// on a backend with enqueueSample/collectSample.
//
//   host:    enqueue N │ enqueue N+1 (feed: N's tokens) │ collect N │ events N │ enqueue N+2 │ collect N+1 …
//   device:  [ step N ][ step N+1 ]                                           [ step N+2 ] …
import type { ExecutionBackend, SampleTicket, StepInput } from "../backends/backend.ts";
import { stepTransforms } from "../sampling/logits_pipeline.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import type { BlockAllocator } from "./block_allocator.ts";
import { type LiveSequence, rowsOf, sampleParamsOf } from "./live_sequence.ts";
import { buildStep } from "./step_builder.ts";

/** A queued step whose tokens the host has not read yet, and each live sequence's row in it. */
interface QueuedStep {
  ticket: SampleTicket;
  rowOf: number[];
}

/** The token id a speculatively queued step carries until the device feeds it the sampled one. */
const PLACEHOLDER_TOKEN = 0;

type Enqueue = NonNullable<ExecutionBackend["enqueueSample"]>;
type Collect = NonNullable<ExecutionBackend["collectSample"]>;

export class DecodePipeline {
  /** The queued step whose tokens come next; null before the first step and after the last. */
  private queued: QueuedStep | null = null;

  private constructor(
    private readonly enqueue: Enqueue,
    private readonly collect: Collect,
    private readonly cfg: ResolvedSamplingConfig,
    private readonly badWordIds: number[][][],
    private readonly alloc: BlockAllocator,
    private readonly maxSeqLen: number,
  ) {}

  /** A pipeline when the backend and the request allow one, else null (the synchronous path). */
  static open(
    backend: ExecutionBackend,
    cfg: ResolvedSamplingConfig,
    badWordIds: number[][][],
    alloc: BlockAllocator,
    maxSeqLen: number,
  ): DecodePipeline | null {
    const enqueue = backend.enqueueSample?.bind(backend);
    const collect = backend.collectSample?.bind(backend);
    if (!enqueue || !collect || cfg.returnContextLogits || !tokenIndependent(cfg, badWordIds)) return null;
    return new DecodePipeline(enqueue, collect, cfg, badWordIds, alloc, maxSeqLen);
  }

  /** Whether a step is queued (then the loop does not build the next step itself). */
  get hasQueued(): boolean {
    return this.queued !== null;
  }

  /** The tokens of step `step`. Queues `pending` first when nothing is queued (the first step;
   * `computed` runs once it is queued and returns the live sequences after it: step 0 forks the
   * samples), then queues step + 1 with placeholders when some sequence goes on (`speculated`: the
   * caller writes each token over its placeholder). */
  step(
    live: readonly LiveSequence[],
    pending: StepInput,
    step: number,
    computed: (step: number) => readonly LiveSequence[],
  ): { tokens: Int32Array; logProbs: Float32Array; speculated: boolean } {
    const { cfg, badWordIds, alloc } = this;
    if (!this.queued) {
      const ticket = this.enqueue(
        pending,
        sampleParamsOf(live, step, cfg),
        stepTransforms(rowsOf(live), cfg, badWordIds),
      );
      this.queued = { ticket, rowOf: live.map((_, r) => r) };
      live = computed(step);
    }
    const current = this.queued;
    let next: QueuedStep | null = null;
    const more = live.some(
      (l) => l.seq.generated.length + 1 < cfg.maxNewTokens && l.seq.ids.length + 1 < this.maxSeqLen,
    );
    if (more) {
      // The token being sampled goes where the placeholder is; step N+1 reads it on the device.
      for (const l of live) {
        l.seq.ids.push(PLACEHOLDER_TOKEN);
        l.seq.reserve(l.seq.ids.length, alloc);
      }
      const nextStep = buildStep(live.map((l) => l.seq));
      for (const l of live) l.seq.numComputed = l.seq.ids.length;
      const ticket = this.enqueue(
        nextStep,
        sampleParamsOf(live, step + 1, cfg),
        stepTransforms(rowsOf(live), cfg, badWordIds),
        { from: current.ticket, rows: Int32Array.from(current.rowOf) },
      );
      next = { ticket, rowOf: live.map((_, r) => r) };
    }
    const got = this.collect(current.ticket);
    const rowOf = current.rowOf;
    this.queued = next;
    return {
      tokens: Int32Array.from(rowOf, (row) => got.tokens[row]),
      logProbs: Float32Array.from(rowOf, (row) => got.logProbs[row]),
      speculated: more,
    };
  }

  /** Drops the rows of the sequences that finished this step from the queued step. `live`: the
   * sequences before they are dropped, in the queued step's row order. */
  dropFinished(live: readonly LiveSequence[]): void {
    if (this.queued) this.queued.rowOf = this.queued.rowOf.filter((_, r) => !live[r].seq.finishReason);
  }

  /** Reads a step queued for sequences that have all finished (or an abandoned generation), so the
   * backend's queue is empty for the next call. */
  drain(): void {
    if (this.queued) this.collect(this.queued.ticket);
  }
}

/** Whether a step's decoding inputs (penalties, bans, top-p) are known before the previous step's
 * token: then the step may be queued before that token is read (pipelined decoding). Min length
 * only counts tokens, so it does not stand in the way. */
function tokenIndependent(
  cfg: ResolvedSamplingConfig,
  badWordIds: readonly (readonly (readonly number[])[])[],
): boolean {
  const all = <T>(xs: readonly T[], ok: (x: T, i: number) => boolean) => xs.every(ok);
  return (
    all(cfg.repetitionPenalty, (x) => x === 1) &&
    all(cfg.presencePenalty, (x) => x === 0) &&
    all(cfg.frequencyPenalty, (x) => x === 0) &&
    all(cfg.noRepeatNgramSize, (x) => x === 0) &&
    all(badWordIds, (x) => x.length === 0) &&
    all(cfg.topPDecay, (x, i) => x === 1 && cfg.topPMin[i] <= cfg.topP[i])
  );
}
