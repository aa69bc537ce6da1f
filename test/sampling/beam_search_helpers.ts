// Drives a BeamSearch with a log-prob function instead of a model, so the unit tests (toy language
// models) and model-driven fixture tests (HF beam outputs) share one loop.
import { type BeamResult, BeamSearch, type BeamSearchParams } from "../../src/sampling/beam_search.ts";

/**
 * Runs beam search to completion. logProbsFn gets each running beam's generated tokens (prompt not
 * included; beamWidth rows, in running-beam order) and returns their log-probs, [beamWidth, V].
 */
export function runBeamSearchOnLogProbFn(
  params: BeamSearchParams,
  logProbsFn: (beamTokens: number[][]) => Float32Array,
): { hypotheses: BeamResult[]; steps: number } {
  const search = new BeamSearch(params);
  const B = params.beamWidth;
  let beams: number[][] = Array.from({ length: B }, () => []);
  while (!search.done && search.steps < params.maxNewTokens) {
    const lp = logProbsFn(beams);
    const V = lp.length / B;
    if (!Number.isInteger(V)) throw new Error(`logProbsFn returned ${lp.length} values for ${B} beams`);
    const { parents, tokens } = search.step(lp, V);
    beams = parents.map((p, i) => [...beams[p], tokens[i]]);
  }
  return { hypotheses: search.finalize(), steps: search.steps };
}

/** log-softmax of one row, computed in float64 and stored as float32. */
export function logSoftmax(logits: readonly number[]): Float32Array {
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((s, x) => s + Math.exp(x - m), 0));
  return Float32Array.from(logits, (x) => x - lse);
}

/** Stacks a per-sequence model (tokens → [V] log-probs) into the [beams, V] layout step() takes. */
export function batched(lm: (tokens: number[]) => Float32Array): (beamTokens: number[][]) => Float32Array {
  return (beamTokens) => {
    const rows = beamTokens.map(lm);
    const V = rows[0].length;
    const out = new Float32Array(rows.length * V);
    rows.forEach((r, i) => {
      out.set(r, i * V);
    });
    return out;
  };
}
