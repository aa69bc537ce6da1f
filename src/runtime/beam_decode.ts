// Beam search (beam width > 1): per prompt, W beams advance together; each step every beam's logits
// go through log-softmax and the logits pipeline, sampling/beam_search.ts picks the W best (parent,
// token) pairs, and the beams are forked (a parent picked twice) or released (not picked) to match.

import { beamLogProbs } from "../sampling/beam_log_probs.ts";
import { BeamSearch } from "../sampling/beam_search.ts";
import type { Row } from "../sampling/logits_pipeline.ts";
import { InvalidSamplingConfigError, type ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import { type DecodeContext, type DecodeOptions, list, yieldToEventLoop } from "./decode_context.ts";
import { NonFiniteLogitsError } from "./errors.ts";
import type { RequestOutput, StepOutput } from "./outputs.ts";
import { prefill } from "./prefill.ts";
import { concatRows, sequenceOutput } from "./request_output.ts";
import type { Sequence } from "./sequence.ts";
import { buildStep } from "./step_builder.ts";

export async function* runBeams(
  ctx: DecodeContext,
  roots: Sequence[],
  cfg: ResolvedSamplingConfig,
  badWordIds: number[][][],
  opts: DecodeOptions,
): AsyncGenerator<StepOutput, RequestOutput[]> {
  const { backend, alloc } = ctx;
  const V = backend.vocabSize;
  const W = cfg.beamWidth;
  const processors = list(opts.logitsProcessors);
  const copy = (a: number[], b: number[]) => backend.copyKvBlocks(a, b);
  if (cfg.stopWords.some((w) => w.length > 0) || list(opts.stoppingCriteria).length > 0) {
    throw new InvalidSamplingConfigError(
      "stopWords and StoppingCriteria are not supported with beam search (beams end at end ids or maxNewTokens); use beamWidth 1",
    );
  }
  opts.signal?.throwIfAborted();
  const { last, context } = prefill(ctx, roots, cfg);
  const maxSteps = roots.map((r) => Math.min(cfg.maxNewTokens, ctx.maxSeqLen - r.promptIds.length));
  const searches = roots.map(
    (r, p) =>
      new BeamSearch({
        beamWidth: W,
        lengthPenalty: cfg.lengthPenalty[p],
        earlyStopping: cfg.earlyStopping[p],
        numReturnSequences: cfg.numReturnSequences,
        endIds: cfg.endIds,
        promptLen: r.promptIds.length,
        maxNewTokens: maxSteps[p],
        diversityRate: cfg.beamSearchDiversityRate[p],
      }),
  );
  // Every prompt starts with W identical beams (HF: the prompt repeated, beams > 0 scored −1e9).
  let beams: Sequence[][] = roots.map((root, p) =>
    Array.from({ length: W }, (_, k) => (k === W - 1 ? root : root.fork(p, alloc, copy))),
  );
  let logits = new Float32Array(roots.length * W * V);
  roots.forEach((_, p) => {
    for (let k = 0; k < W; k++) logits.set(last.subarray(p * V, (p + 1) * V), (p * W + k) * V);
  });
  let active = roots.map((_, p) => p);
  const genLogits: Float32Array[][] = roots.map(() => []);
  for (let step = 0; active.length > 0; step++) {
    opts.signal?.throwIfAborted();
    const rows: Row[] = active.flatMap((p) =>
      beams[p].map((b, k) => ({
        promptIndex: p,
        sequenceIndex: k,
        promptIds: b.promptIds,
        outputIds: b.generated,
        ids: b.ids,
      })),
    );
    if (cfg.returnGenerationLogits) {
      active.forEach((p, i) => {
        genLogits[p].push(logits.slice(i * W * V, i * W * V + V));
      });
    }
    const lp = beamLogProbs(backend.decoding, logits, V, rows, cfg, badWordIds, processors, step);
    const stillActive: number[] = [];
    const beamsOut: { promptIndex: number; sequences: number[][] }[] = [];
    active.forEach((p, i) => {
      const search = searches[p];
      const { parents, tokens } = search.step(lp.subarray(i * W * V, (i + 1) * W * V), V);
      const old = beams[p];
      const taken = new Set<number>();
      const next = parents.map((parent) => {
        const src = old[parent];
        const child = taken.has(parent) ? src.fork(p, alloc, copy) : src;
        taken.add(parent);
        return child;
      });
      // Children forked before any token is appended; now append.
      next.forEach((b, k) => {
        const logProb = lp[(i * W + parents[k]) * V + tokens[k]];
        if (Number.isNaN(logProb)) throw new NonFiniteLogitsError(step, p, k);
        b.ids.push(tokens[k]);
        b.logProbs.push(logProb);
      });
      old.forEach((b, k) => {
        if (!taken.has(k)) b.release(alloc);
      });
      beams[p] = next;
      beamsOut.push({ promptIndex: p, sequences: next.map((b) => b.generated) });
      if (!search.done && step + 1 < maxSteps[p]) stillActive.push(p);
    });
    yield { step, tokens: [], beams: beamsOut };
    for (const p of active) if (!stillActive.includes(p)) for (const b of beams[p]) b.release(alloc);
    active = stillActive;
    if (active.length === 0) break;
    const seqs = active.flatMap((p) => beams[p]);
    for (const b of seqs) b.reserve(b.ids.length, alloc);
    logits = backend.forward(buildStep(seqs)).slice();
    for (const b of seqs) b.numComputed = b.ids.length;
    await yieldToEventLoop();
  }
  beams = [];
  const tok = ctx.tokenizer;
  return roots.map((root, p) => {
    const finals = searches[p].finalize();
    const out: RequestOutput = {
      promptIds: [...root.promptIds],
      sequences: finals.map((f) =>
        sequenceOutput(
          f.tokens,
          f.logProbs,
          f.finishReason,
          cfg,
          tok ? tok.decode(f.tokens, { skipSpecialTokens: true }) : "",
          f.score,
        ),
      ),
    };
    if (cfg.returnContextLogits) out.contextLogits = context[p];
    if (cfg.returnGenerationLogits) out.generationLogits = [concatRows(genLogits[p], V)];
    return out;
  });
}
