// Shared by the sequence-group tests: read a request's events per sequence, check the event shape
// (one isFinal, on the last event), and compare with ModelRunner.generate's sequences.
import assert from "node:assert/strict";
import type { Executor, ExecutorRequest } from "../../src/executor/executor.ts";
import type { ResultEvent } from "../../src/executor/request_results.ts";
import type { ModelRunner } from "../../src/runtime/model_runner.ts";

export interface SeqResult {
  tokens: number[];
  logProbs: number[];
  text: string;
  cumLogProb: number;
  finishReason: string | null;
  score?: number;
}

export interface GroupResult {
  /** By sequenceIndex (sampling) or rank (beams). */
  seqs: SeqResult[];
  events: ResultEvent[];
  contextLogits?: Float32Array;
}

export async function collectGroup(ex: Executor, id: number): Promise<GroupResult> {
  const events: ResultEvent[] = [];
  for await (const ev of ex.results(id)) {
    assert.ok(!events.at(-1)?.isFinal, "an event after the final one");
    events.push(ev);
  }
  assert.ok(events.at(-1)?.isFinal, "the last event is not final");
  assert.equal(events.filter((e) => e.isFinal).length, 1);
  events.forEach((e, i) => {
    if (i > 0) assert.equal(e.contextLogits, undefined, "context logits after the first event");
  });
  const seqs: SeqResult[] = [];
  const beam = events.some((e) => e.score !== undefined);
  for (const e of events) {
    if (e.beams) continue;
    seqs[e.sequenceIndex] ??= { tokens: [], logProbs: [], text: "", cumLogProb: 0, finishReason: null };
    const s = seqs[e.sequenceIndex];
    assert.equal(s.finishReason, null, `an event after sequence ${e.sequenceIndex} finished`);
    s.tokens.push(...e.tokenIds);
    s.logProbs.push(...e.logProbs);
    s.text += e.text;
    s.cumLogProb = e.cumLogProb;
    s.finishReason = e.finishReason;
    if (beam) s.score = e.score;
  }
  return { seqs, events, contextLogits: events[0].contextLogits };
}

/** The same request through ModelRunner.generate: its sequences (and context logits). */
export async function viaRuntime(
  runner: ModelRunner,
  ids: readonly number[] | string,
  r: Omit<ExecutorRequest, "prompt">,
) {
  const {
    maxNewTokens,
    greedy,
    temperature,
    topK,
    topP,
    seed,
    endId,
    beamWidth,
    numReturnSequences,
    lengthPenalty,
    earlyStopping,
    returnContextLogits,
    repetitionPenalty,
    beamSearchDiversityRate,
  } = r;
  const [out] = await runner.generate(typeof ids === "string" ? ids : { ids: [...ids] }, {
    maxNewTokens,
    greedy,
    temperature,
    topK,
    topP,
    seed,
    endId,
    beamWidth,
    numReturnSequences,
    lengthPenalty,
    earlyStopping,
    returnContextLogits,
    repetitionPenalty,
    beamSearchDiversityRate,
  });
  return out;
}

/** Asserts the executor's sequences equal generate's: tokens, reasons, log-probs, scores, text. */
export function assertSameSequences(
  got: GroupResult,
  want: Awaited<ReturnType<typeof viaRuntime>>,
  what: string,
): void {
  assert.equal(got.seqs.length, want.sequences.length, `${what}: sequence count`);
  want.sequences.forEach((w, k) => {
    const g = got.seqs[k];
    assert.deepEqual(g.tokens, w.outputIds, `${what}: sequence ${k} tokens`);
    assert.equal(g.finishReason, w.finishReason, `${what}: sequence ${k} finish reason`);
    assert.equal(g.text, w.text, `${what}: sequence ${k} text`);
    assert.equal(g.logProbs.length, w.logProbs.length);
    g.logProbs.forEach((lp, t) =>
      assert.ok(Math.abs(lp - w.logProbs[t]) < 1e-4, `${what}: logProb ${k}.${t}`),
    );
    assert.ok(Math.abs(g.cumLogProb - w.cumLogProb) < 1e-3, `${what}: cumLogProb ${k}`);
    if (w.score !== undefined) assert.equal(g.score, w.score, `${what}: score ${k}`);
  });
}
