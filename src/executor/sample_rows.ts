// Runs one step and picks a token for each sampled logits row, every row with its own sequence's
// sampling (startStep queues the step where the backend can; the caller reads it once it is ready): the runtime's pipeline (sampling/logits_pipeline.ts: penalties, bad words, min length)
// and the backend's decoding ops, over the whole batch at once. Each row's settings are built as the
// runtime's sync path builds them for a batch of one, then concatenated. The RNG key of a row is
// (seed, sequence index, index of the token being generated), as ModelRunner.generate's
// numReturnSequences: a sequence draws the same numbers alone, in any batch, and when it is
// recomputed after a preemption. Rows that are not sampled (beams, context logits) need the logits
// on the host: the step then returns them all.
//
// Per-row stages the batch-wide ops cannot express run on the host, row by row, in the runtime's
// order: embedding bias first (before penalties and bans), the request's LogitsProcessors last. A
// processor sees only its own request's row; one that throws fails only its row. A row whose request
// asks for top log-probs gets the k largest entries of the log-softmax its token's logProb is read
// from (the processed row, temperature applied as the sampler applies it).
import type { ExecutionBackend, StepInput } from "../backends/backend.ts";
import {
  applyTransforms,
  type PenaltyParams,
  type SampleParams,
  type StepTransforms,
} from "../backends/decoding_ops.ts";
import { stepTransforms } from "../sampling/logits_pipeline.ts";
import { RequestCallbackError } from "./errors.ts";
import type { DecodingState } from "./executor_request.ts";
import type { TokenLogProb } from "./request_results.ts";
import { topEntries } from "./top_log_probs.ts";

export interface SampledRow {
  requestId: number;
  state: DecodingState;
  /** The sequence's tokens so far (prompt + generated). */
  tokens: readonly number[];
  /** Its row in the step's logits. */
  row: number;
}

export interface SampledTokens {
  tokens: Int32Array;
  logProbs: Float32Array;
  /** Per row: its raw logits [V] when the request returns generation logits, else null. */
  rawLogits: (Float32Array | null)[];
  /** Per row: its top log-probs, most likely first, when its request asks for them, else null. */
  topLogProbs: (TokenLogProb[] | null)[];
  /** Per row: the error of a LogitsProcessor that threw (its token is meaningless), else null. */
  failed: (RequestCallbackError | null)[];
  /** With `allLogits`: every logits row of the step, [logitRows × V], as the model gave them. */
  logits: Float32Array | null;
}

/** A step queued on the device by startStep: whether its results are on the host, and its read.
 * `read` waits for the device if need be, then does the step's host work (logits rows, transforms,
 * LogitsProcessors, sampling); `live(requestId)` false skips the processors of a request that left
 * while the step ran (its row's token is dropped). `drop` waits for the device and discards. */
export interface StepInFlight {
  ready(): boolean;
  read(live?: (requestId: number) => boolean): SampledTokens;
  drop(): void;
}

/** Logits of a step queued with the backend's enqueueForward, or run now with forward. */
function queueForward(backend: ExecutionBackend, step: StepInput) {
  const { enqueueForward, collectForward, forwardReady } = backend;
  if (!enqueueForward || !collectForward) {
    const logits = backend.forward(step);
    return { ready: () => true, collect: () => logits };
  }
  const ticket = enqueueForward.call(backend, step);
  return {
    ready: () => forwardReady?.call(backend, ticket) ?? true,
    collect: () => collectForward.call(backend, ticket),
  };
}

/** Queues the step: `rows` (in row order) sampled on the device when the backend can (its sample
 * queue, else forwardSample now) and none needs host logits, else the logits copied to the host and
 * the rows sampled there in `read`; `allLogits`: return every row's logits too. A backend without
 * a queue runs the step here: it is ready at once. */
export function startStep(
  backend: ExecutionBackend,
  step: StepInput,
  rows: readonly SampledRow[],
  allLogits = false,
): StepInFlight {
  if (rows.length === 0) {
    const f = queueForward(backend, step);
    const empty = {
      tokens: new Int32Array(0),
      logProbs: new Float32Array(0),
      rawLogits: [],
      topLogProbs: [],
      failed: [],
    };
    return {
      ready: f.ready,
      read: () => {
        const all = f.collect();
        return { ...empty, logits: allLogits ? all.slice() : null };
      },
      drop: () => void f.collect(),
    };
  }
  const { transforms, params } = rowSampling(rows);
  const rawLogits: (Float32Array | null)[] = rows.map(() => null);
  const topLogProbs: (TokenLogProb[] | null)[] = rows.map(() => null);
  const failed: (RequestCallbackError | null)[] = rows.map(() => null);
  const everyRow = rows.length === step.logitRows.length && rows.every((r, i) => r.row === i);
  const onDevice = !allLogits && everyRow && !rows.some((r) => r.state.needsHostLogits);
  const { enqueueSample, collectSample, sampleReady } = backend;
  if (onDevice && enqueueSample && collectSample) {
    const ticket = enqueueSample.call(backend, step, params, transforms);
    return {
      ready: () => sampleReady?.call(backend, ticket) ?? true,
      read: () => ({ ...collectSample.call(backend, ticket), rawLogits, topLogProbs, failed, logits: null }),
      drop: () => void collectSample.call(backend, ticket),
    };
  }
  if (onDevice && backend.forwardSample) {
    const got = { ...backend.forwardSample(step, params, transforms), rawLogits, topLogProbs, failed };
    return { ready: () => true, read: () => ({ ...got, logits: null }), drop: () => {} };
  }
  const f = queueForward(backend, step);
  return {
    ready: f.ready,
    read: (live = () => true) => {
      const all = f.collect();
      return sampleOnHost(backend, all, rows, transforms, params, allLogits, live);
    },
    drop: () => void f.collect(),
  };
}

/** The host half of a step whose logits `all` [logitRows × V] came back: each row's embedding bias,
 * the batch's transforms, the LogitsProcessors of live requests, then `sample`. */
function sampleOnHost(
  backend: ExecutionBackend,
  all: Float32Array,
  rows: readonly SampledRow[],
  transforms: StepTransforms,
  params: SampleParams,
  allLogits: boolean,
  live: (requestId: number) => boolean,
): SampledTokens {
  const rawLogits: (Float32Array | null)[] = rows.map(() => null);
  const topLogProbs: (TokenLogProb[] | null)[] = rows.map(() => null);
  const failed: (RequestCallbackError | null)[] = rows.map(() => null);
  const V = backend.vocabSize;
  const ops = backend.decoding;
  // [rows.length × V]: the sampled rows, copied out of the step's logits.
  const logits = new Float32Array(rows.length * V);
  rows.forEach((r, i) => {
    logits.set(all.subarray(r.row * V, (r.row + 1) * V), i * V);
  });
  const out = allLogits ? all.slice() : null;
  const rowOf = (i: number) => logits.subarray(i * V, (i + 1) * V);
  rows.forEach((r, i) => {
    if (r.state.cfg.returnGenerationLogits) rawLogits[i] = rowOf(i).slice();
    const bias = r.state.cfg.embeddingBias;
    if (bias) ops.addBias(rowOf(i), 1, V, bias);
  });
  applyTransforms(ops, logits, rows.length, V, transforms);
  rows.forEach((r, i) => {
    if (r.state.processors.length === 0 || !live(r.requestId)) return;
    const generated = r.tokens.length - r.state.promptIds.length;
    const view = r.state.row(r.tokens);
    for (const [k, proc] of r.state.processors.entries()) {
      try {
        proc.process(rowOf(i), V, [view], generated);
      } catch (e) {
        failed[i] = new RequestCallbackError(r.requestId, `logitsProcessors[${k}]`, e);
        rowOf(i).fill(0); // any finite row: its token is dropped
        break;
      }
    }
  });
  // The log-softmax the sampler reads logProbs from [rows × V], kept for the rows that return its top.
  const lp = new Float32Array(rows.length * V);
  const sampled = ops.sample(logits, rows.length, V, params, lp);
  rows.forEach((r, i) => {
    const k = r.state.topLogProbs;
    if (k > 0) topLogProbs[i] = topEntries(lp.subarray(i * V, (i + 1) * V), k);
  });
  return { ...sampled, rawLogits, topLogProbs, failed, logits: out };
}

/** The batch's decoding inputs, each row's built as for a batch of one: the merged transforms and
 * the sampler's settings (also what the overlapped loop queues). */
export function rowSampling(rows: readonly SampledRow[]): {
  transforms: StepTransforms;
  params: SampleParams;
} {
  return { transforms: mergeTransforms(rows.map(rowTransforms)), params: sampleParams(rows) };
}

const NO_TRANSFORMS: StepTransforms = { bias: null, penalties: null, banned: null };

/** A row's transforms as the pipeline builds them for a batch of one; a row with no penalty, ban or
 * unmet min length skips the pipeline (its transforms are all neutral), which most rows are. */
function rowTransforms(r: SampledRow): StepTransforms {
  const c = r.state.cfg;
  const generated = r.tokens.length - r.state.promptIds.length;
  const neutral =
    c.repetitionPenalty[0] === 1 &&
    c.presencePenalty[0] === 0 &&
    c.frequencyPenalty[0] === 0 &&
    c.noRepeatNgramSize[0] === 0 &&
    r.state.badWordIds.length === 0 &&
    generated >= c.minLength[0];
  return neutral ? NO_TRANSFORMS : stepTransforms([r.state.row(r.tokens)], c, [r.state.badWordIds]);
}

/** The sampler's settings per row, as runtime/live_sequence.ts's sampleParamsOf for one sequence. */
function sampleParams(rows: readonly SampledRow[]): SampleParams {
  const c = (r: SampledRow) => r.state.cfg;
  return {
    greedy: Uint8Array.from(rows, (r) => (c(r).greedy[0] ? 1 : 0)),
    temperature: Float32Array.from(rows, (r) => c(r).temperature[0]),
    topK: Int32Array.from(rows, (r) => c(r).topK[0]),
    topP: Float32Array.from(rows, (r) => r.state.topP),
    minP: Float32Array.from(rows, (r) => c(r).minP[0]),
    seed: Float64Array.from(rows, (r) => c(r).randomSeed[0]),
    sequence: Int32Array.from(rows, (r) => r.state.sequenceIndex),
    step: Int32Array.from(rows, (r) => r.tokens.length - r.state.promptIds.length),
  };
}

const NO_TOKENS = new Int32Array(0);

/** One batch's transforms from each row's own (batch of one). A stage runs if any row needs it;
 * rows without it get its neutral values (penalty 1/0/0 over an empty list, nothing banned). */
function mergeTransforms(each: readonly StepTransforms[]): StepTransforms {
  let penalties: PenaltyParams | null = null;
  if (each.some((t) => t.penalties)) {
    const pick = (f: (p: PenaltyParams) => Float32Array, off: number) =>
      Float32Array.from(each, (t) => (t.penalties ? f(t.penalties)[0] : off));
    penalties = {
      repetition: pick((p) => p.repetition, 1),
      presence: pick((p) => p.presence, 0),
      frequency: pick((p) => p.frequency, 0),
      tokens: each.map((t) => t.penalties?.tokens[0] ?? NO_TOKENS),
      promptLens: Int32Array.from(each, (t) => t.penalties?.promptLens[0] ?? 0),
    };
  }
  const banned = each.some((t) => t.banned) ? each.map((t) => t.banned?.[0] ?? []) : null;
  return { bias: null, penalties, banned };
}
