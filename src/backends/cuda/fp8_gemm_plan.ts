// Which cuBLASLt FP8 GEMM plan a linear over an fp8 weight runs (fp8_linears.ts). Tried in this order,
// the first plan cuBLASLt creates winning:
//   1. "outer-vector": OUTER_VEC_32F scales (s per token, sw per output feature) and, for a biased linear,
//      cuBLASLt's bias epilogue: y = s[t]·sw[r]·Σ xq·q (+ bias) in one call;
//   2. "outer-vector + bias_add" (biased linears only): the same plan without the bias epilogue, then
//      activation.cu's bias_add over y (cuBLASLt 13.1 refused plan 1 with a bias epilogue on the H200);
//   3. "unit scales + fp8_scale_rows": unit scales and an fp32 output into a scratch, which fp8_scale_rows
//      scales, biases and rounds as gemv_fp8 does (where no outer-vector algorithm exists: Ada).
// A refusal is a CublasError at plan creation (no algorithm from the heuristic); it is kept, so tests and
// tools can say why a linear runs the plan it runs. Any other error, and the last plan's refusal, propagate.
import { CublasError } from "./ffi/errors.ts";

export type Fp8PlanKind = "outer-vector" | "outer-vector + bias_add" | "unit scales + fp8_scale_rows";

/** One plan to try: whether cuBLASLt adds the bias, and whether it takes the scale vectors. */
export interface Fp8PlanAttempt {
  kind: Fp8PlanKind;
  biasEpilogue: boolean;
  unitScales: boolean;
}

/** The plans tried, in order, for a linear with or without a bias. */
export function fp8PlanAttempts(bias: boolean): Fp8PlanAttempt[] {
  const unit: Fp8PlanAttempt = {
    kind: "unit scales + fp8_scale_rows",
    biasEpilogue: false,
    unitScales: true,
  };
  if (!bias) return [{ kind: "outer-vector", biasEpilogue: false, unitScales: false }, unit];
  return [
    { kind: "outer-vector", biasEpilogue: true, unitScales: false },
    { kind: "outer-vector + bias_add", biasEpilogue: false, unitScales: false },
    unit,
  ];
}

export interface Fp8PlanChoice<G> {
  gemm: G;
  kind: Fp8PlanKind;
  /** The refusals of the plans tried before it, "kind: message". */
  refused: string[];
}

/** The first plan `create` makes, trying fp8PlanAttempts(bias) in order. */
export function chooseFp8Plan<G>(bias: boolean, create: (attempt: Fp8PlanAttempt) => G): Fp8PlanChoice<G> {
  const attempts = fp8PlanAttempts(bias);
  const refused: string[] = [];
  for (const [i, attempt] of attempts.entries()) {
    try {
      return { gemm: create(attempt), kind: attempt.kind, refused };
    } catch (e) {
      if (!(e instanceof CublasError) || i === attempts.length - 1) throw e;
      refused.push(`${attempt.kind}: ${e.message}`);
    }
  }
  throw new Error("internal: no FP8 GEMM plan attempted");
}
