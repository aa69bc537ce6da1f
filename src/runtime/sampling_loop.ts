// Sampling (beam width 1): every prompt's numReturnSequences samples decode token by token until each
// stops. Step 0 samples from the prompt's last logits; the samples fork from the prompt's sequence
// once its KV is written. Each step runs pipelined (pipelined_decode.ts) or synchronously
// (sync_decode.ts); every token then goes through accept_token.ts and out as an event.
import type { StepInput } from "../backends/backend.ts";
import { TextTracker } from "../executor/text_tracker.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import { BuiltinStops } from "../sampling/stopping.ts";
import { acceptToken, type StopRules } from "./accept_token.ts";
import { type DecodeContext, type DecodeOptions, list, yieldToEventLoop } from "./decode_context.ts";
import { NonFiniteLogitsError } from "./errors.ts";
import type { LiveSequence } from "./live_sequence.ts";
import type { RequestOutput, StepOutput, TokenEvent } from "./outputs.ts";
import { DecodePipeline } from "./pipelined_decode.ts";
import { prefill, prefillStep } from "./prefill.ts";
import { concatRows, sequenceOutput } from "./request_output.ts";
import type { Sequence } from "./sequence.ts";
import { buildStep } from "./step_builder.ts";
import { syncStep } from "./sync_decode.ts";

export async function* runSampling(
  ctx: DecodeContext,
  roots: Sequence[],
  cfg: ResolvedSamplingConfig,
  badWordIds: number[][][],
  stopWords: ResolvedSamplingConfig["stopWords"],
  opts: DecodeOptions,
): AsyncGenerator<StepOutput, RequestOutput[]> {
  const { backend, alloc } = ctx;
  const V = backend.vocabSize;
  const processors = list(opts.logitsProcessors);
  const n = cfg.numReturnSequences;
  const endIds = new Set(cfg.endIds);
  const rules: StopRules = {
    cfg,
    stops: roots.map((_, p) => new BuiltinStops(endIds, cfg.maxNewTokens, stopWords[p])),
    criteria: list(opts.stoppingCriteria),
    maxSeqLen: ctx.maxSeqLen,
  };
  // Text held back from the stream: a stop string may still complete over the next tokens.
  const holdback = (p: number) =>
    Math.max(0, ...stopWords[p].map((w) => (typeof w === "string" ? w.length - 1 : 0)));
  const copy = (a: number[], b: number[]) => backend.copyKvBlocks(a, b);

  opts.signal?.throwIfAborted();
  let live: LiveSequence[] = roots.flatMap((root, p) =>
    Array.from({ length: n }, (_, k) => ({
      seq: root,
      promptIndex: p,
      sequenceIndex: k,
      text: new TextTracker(ctx.tokenizer, root.promptIds, holdback(p)),
      topP: cfg.topP[p],
      genLogits: [],
    })),
  );
  let hostLogits: Float32Array | null = null;
  let pending: StepInput | null = null;
  let context: Float32Array[] = [];
  if (cfg.returnContextLogits) {
    const pre = prefill(ctx, roots, cfg);
    context = pre.context;
    hostLogits = new Float32Array(live.length * V);
    live.forEach((l, r) =>
      hostLogits?.set(pre.last.subarray(l.promptIndex * V, (l.promptIndex + 1) * V), r * V),
    );
  } else {
    pending = prefillStep(ctx, roots);
    pending.logitRows = Int32Array.from(live, (l) => pending?.logitRows[l.promptIndex] as number);
  }
  const forked = () => {
    for (const r of roots) r.numComputed = r.ids.length;
    live = live.map((l) =>
      l.sequenceIndex === n - 1 ? l : { ...l, seq: l.seq.fork(l.promptIndex, alloc, copy) },
    );
  };
  if (hostLogits) forked();
  const all: LiveSequence[] = [];
  const onDevice = !!backend.forwardSample && !cfg.returnGenerationLogits && processors.length === 0;
  const pipe = onDevice ? DecodePipeline.open(backend, cfg, badWordIds, alloc, ctx.maxSeqLen) : null;
  const sync = { backend, cfg, badWordIds, processors, onDevice };
  /** After a step's forward is queued: its tokens are in the KV cache (step 0 forks the samples).
   * Returns the live sequences from then on. */
  const computed = (step: number): readonly LiveSequence[] => {
    if (step === 0 && pending) forked();
    else for (const l of live) l.seq.numComputed = l.seq.ids.length;
    return live;
  };
  try {
    for (let step = 0; live.length > 0; step++) {
      opts.signal?.throwIfAborted();
      const B = live.length;
      let tokens: Int32Array;
      let logProbs: Float32Array;
      let speculated = false;
      if (pipe) ({ tokens, logProbs, speculated } = pipe.step(live, pending as StepInput, step, computed));
      else {
        ({ tokens, logProbs } = syncStep(sync, live, pending, hostLogits, step));
        hostLogits = null;
        computed(step);
      }
      // NaN/inf logits make the log-probs NaN: checked on what the backend already returned (no
      // extra copy from the device).
      for (let r = 0; r < B; r++) {
        if (Number.isNaN(logProbs[r]) || logProbs[r] === Number.POSITIVE_INFINITY)
          throw new NonFiniteLogitsError(step, live[r].promptIndex, live[r].sequenceIndex);
      }
      if (step === 0) all.push(...live);
      const events: TokenEvent[] = live.map((l, r) =>
        acceptToken(l, tokens[r], logProbs[r], speculated, step, rules),
      );
      yield { step, tokens: events };
      for (const l of live) if (l.seq.finishReason) l.seq.release(alloc);
      pipe?.dropFinished(live);
      live = live.filter((l) => !l.seq.finishReason);
      if (live.length === 0) break;
      if (!pipe?.hasQueued) {
        for (const l of live) l.seq.reserve(l.seq.ids.length, alloc);
        pending = buildStep(live.map((l) => l.seq));
      }
      await yieldToEventLoop();
    }
  } finally {
    pipe?.drain();
  }
  return roots.map((root, p) => {
    const mine = all.filter((l) => l.promptIndex === p);
    const out: RequestOutput = {
      promptIds: [...root.promptIds],
      sequences: mine.map((l) =>
        sequenceOutput(l.seq.generated, l.seq.logProbs, l.seq.finishReason ?? "length", cfg, l.text.text),
      ),
    };
    if (cfg.returnContextLogits) out.contextLogits = context[p];
    if (cfg.returnGenerationLogits) out.generationLogits = mine.map((l) => concatRows(l.genLogits, V));
    return out;
  });
}
