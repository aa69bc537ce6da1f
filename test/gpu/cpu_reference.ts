// Shared by the quantized-engine GPU tests (quantized, prequantized, fp8): greedy decoding with each
// step's logits on one runner, and the CPU backend's logits at the same positions, to compare per-token
// log-probabilities of CUDA against the CPU reference.
import type { ModelRunner } from "../../src/runtime/model_runner.ts";

/** Greedy decode steps per comparison. */
export const STEPS = 8;

/** log softmax(row)[token], in fp64. */
export function logProb(row: Float32Array, token: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of row) max = Math.max(max, v);
  let z = 0;
  for (const v of row) z += Math.exp(v - max);
  return row[token] - max - Math.log(z);
}

/** Greedy STEPS tokens on `runner` with each step's logits ([STEPS, V]; steps 2… are decode steps). */
export async function greedy(runner: ModelRunner, ids: number[]) {
  const [o] = await runner.generate(
    { ids },
    { greedy: true, maxNewTokens: STEPS, ignoreEos: true, returnGenerationLogits: true },
  );
  return { tokens: o.outputIds, logits: o.generationLogits?.[0] as Float32Array };
}

/** Greedy STEPS tokens for every prompt, generated together (decode steps of prompts.length rows), with
 * each sequence's step logits ([STEPS, V]). */
export async function greedyBatch(runner: ModelRunner, prompts: number[][]) {
  const outs = await runner.generate(
    prompts.map((ids) => ({ ids })),
    { greedy: true, maxNewTokens: STEPS, ignoreEos: true, returnGenerationLogits: true },
  );
  return outs.map((o) => ({ tokens: o.outputIds, logits: o.generationLogits?.[0] as Float32Array }));
}

/** Prompts of `count` sequences, lengths 1 … `longest` by turns, token ids below `vocab` (deterministic). */
export function manyPrompts(count: number, longest: number, vocab: number): number[][] {
  return Array.from({ length: count }, (_, i) =>
    Array.from({ length: 1 + ((i * 7) % longest) }, (_, j) => (i * 31 + j * 17 + 5) % vocab),
  );
}

/** The CPU's logits for prompt + tokens at the positions that produced each token ([STEPS, V]). */
export async function cpuLogits(cpu: ModelRunner, ids: number[], tokens: number[]): Promise<Float32Array> {
  const all = [...ids, ...tokens.slice(0, -1)];
  const [o] = await cpu.generate({ ids: all }, { greedy: true, maxNewTokens: 1, returnContextLogits: true });
  const V = cpu.session.config.model.vocabSize;
  return (o.contextLogits as Float32Array).subarray((ids.length - 1) * V, all.length * V);
}
