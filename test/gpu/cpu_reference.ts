// Shared by the quantized-engine GPU tests (quantized, prequantized, fp8): greedy decoding with each
// step's logits on one runner, and the CPU backend's logits at the same positions, to compare per-token
// log-probabilities of CUDA against the CPU reference.
import assert from "node:assert/strict";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { ModelRunner, type RunnerOptions } from "../../src/runtime/model_runner.ts";

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

/** 12 sequences decoded at once (steps of 9…256 rows take gemm_wo / gemm_zp) on a bf16 engine of `dir`
 * built with `opts`: within 0.15 nats per token of the CPU, through gemm_wo and through dequantization
 * + cuBLASLt (KILN_WO_GEMM_MAX_M=0); and gate_up's gated activation inside gemm_wo's epilogue or after
 * it (KILN_FUSE_GATED_ACT=0) gives the same bits. `kernel`: gemm_wo or gemm_zp, for the messages. */
export async function assertManySequences(dir: string, opts: RunnerOptions, kernel: string): Promise<void> {
  const bf16 = { ...opts, dtype: "bf16" as const };
  const cpu = ModelRunner.fromDir(dir, { ...bf16, backend: "cpu" });
  const cuda = ModelRunner.fromDir(dir, { ...bf16, backend: "cuda" });
  const dequant = ModelRunner.fromDir(dir, {
    ...bf16,
    backend: "cuda",
    cudaTuning: cudaTuning({ woGemmMaxM: 0 }),
  });
  const unfused = ModelRunner.fromDir(dir, {
    ...bf16,
    backend: "cuda",
    cudaTuning: cudaTuning({ fuseGatedAct: false }),
  });
  try {
    const V = cpu.session.config.model.vocabSize;
    const prompts = [...manyPrompts(11, 7, V), Array.from({ length: 20 }, (_, j) => (13 * j + 1) % V)];
    for (const [label, runner] of [
      [kernel, cuda],
      ["dequantization + cuBLASLt", dequant],
    ] as const) {
      const outs = await greedyBatch(runner, prompts);
      for (const [i, ids] of prompts.entries()) {
        const want = await cpuLogits(cpu, ids, outs[i].tokens);
        for (let t = 0; t < STEPS; t++) {
          const tok = outs[i].tokens[t];
          const a = logProb(outs[i].logits.subarray(t * V, (t + 1) * V), tok);
          const b = logProb(want.subarray(t * V, (t + 1) * V), tok);
          assert.ok(Math.abs(a - b) <= 0.15, `${label} sequence ${i} step ${t}: ${a} vs CPU ${b}`);
        }
      }
    }
    const fused = await greedyBatch(cuda, prompts);
    const apart = await greedyBatch(unfused, prompts);
    for (const [i, f] of fused.entries()) {
      assert.deepEqual(f.tokens, apart[i].tokens, `sequence ${i}`);
      assert.deepEqual(f.logits, apart[i].logits, `sequence ${i}: fused gated activation, same logits`);
    }
  } finally {
    for (const r of [cpu, cuda, dequant, unfused]) r.dispose();
  }
}
