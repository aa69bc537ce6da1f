// The GEMMs an engine runs and the cuBLASLt algorithm chosen for each, at build time on the target
// GPU: every linear op of the lowered plan at every row bucket the runtime uses (powers of two up to
// the engine's largest step). Stored in the engine as JSON; the runtime creates each GEMM with its
// stored algorithm and falls back to the heuristic if the cuBLAS version rejects it.
import type { DTypeName } from "../../dtype.ts";
import { EngineError } from "../../engine/errors.ts";
import type { Lowered } from "./lowering.ts";

export interface GemmShape {
  m: number;
  n: number;
  k: number;
  bias: boolean;
  fp32Out: boolean;
}

export interface GemmChoice extends GemmShape {
  /** The opaque cublasLtMatmulAlgo_t, base64. */
  algo: string;
  ms: number;
}

export const GEMM_TABLE_BLOB = "gemm/algos.json";
export const GEMM_WORKSPACE_BYTES = 8 << 20;

export const gemmKey = (s: GemmShape) => `${s.m}:${s.n}:${s.k}:${s.bias}:${s.fp32Out}`;

const pow2Upto = (max: number) => {
  const out: number[] = [];
  for (let m = 1; m <= max; m *= 2) out.push(m);
  return out;
};

/** Every GEMM shape the runtime can ask for in the engine dtype: linears over `skip`'s weights (fp8:
 * their own FP8 GEMMs) are left out. */
export function gemmShapes(
  lowered: Lowered,
  dtype: DTypeName,
  maxTokens: number,
  maxLogitRows: number,
  skip: ReadonlySet<string> = new Set(),
): GemmShape[] {
  const seen = new Map<string, GemmShape>();
  for (const step of lowered.steps) {
    if (step.kind !== "linear" || skip.has(step.op.weight)) continue;
    const logitRows = lowered.storage.get(step.op.x)?.rows === "logits";
    for (const m of pow2Upto(logitRows ? maxLogitRows : maxTokens)) {
      const s = {
        m,
        n: step.op.outFeatures,
        k: step.op.inFeatures,
        bias: Boolean(step.op.bias),
        fp32Out: step.logits && dtype !== "fp32",
      };
      seen.set(gemmKey(s), s);
    }
  }
  return [...seen.values()];
}

export const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** The rows a step of `rows` rows runs its GEMMs (and a decode graph its batch) at: a power of two up
 * to 64 rows, then eight buckets per octave (72, 80, …, 128, 144, …, 256, 288, …), at most 1/8 more
 * rows (the next power of two could double the work: a decode of 260 sequences as 512). */
export function rowBucket(rows: number): number {
  const p = nextPow2(rows);
  if (p <= 64) return p;
  const step = p / 16;
  return Math.ceil(rows / step) * step;
}

/** Every bucket rowBucket gives for 1 … max rows, ascending. */
export function rowBuckets(max: number): number[] {
  const out = new Set<number>();
  for (let p = 1; p <= nextPow2(max); p *= 2) {
    if (p <= 64) out.add(p);
    else for (let b = p / 2 + p / 16; b <= p; b += p / 16) out.add(b);
  }
  return [...out].filter((b) => b <= rowBucket(max));
}

/** Rows the arena and GEMM buckets are sized for. */
export function engineRowLimits(build: { maxNumTokens: number; maxBatchSize: number }): {
  maxTokens: number;
  maxLogitRows: number;
} {
  return {
    maxTokens: nextPow2(build.maxNumTokens),
    maxLogitRows: nextPow2(Math.max(build.maxBatchSize, 64)),
  };
}

/** Throws EngineError when a step of `tokens` tokens and `logitRows` rows of logits exceeds `limits`. */
export function assertStepFits(
  tokens: number,
  logitRows: number,
  limits: { maxTokens: number; maxLogitRows: number },
): void {
  if (tokens > limits.maxTokens)
    throw new EngineError(
      `a step of ${tokens} tokens exceeds this engine's maxNumTokens (${limits.maxTokens}); rebuild with a larger --max-num-tokens`,
    );
  if (logitRows > limits.maxLogitRows)
    throw new EngineError(
      `a step asks for ${logitRows} rows of logits; this engine returns at most ${limits.maxLogitRows} per step (rebuild with a larger --max-batch-size)`,
    );
}
