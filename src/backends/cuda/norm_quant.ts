// Norms that quantize their output for the fp8 linears reading it (W8A8 engines). Every fp8 linear
// quantizes its input per token before its GEMV or GEMM (quant_fp8_act: one launch each, fp8_linears.ts).
// Where a norm's output is read only by fp8 linears that quantize it alike (the same k, and dynamic
// scales or one static scale), the norm kernel writes that quantization itself, bit for bit
// quant_fp8_act's of its stored output (rms_norm_q8 / add_rms_norm_q8, kernels/rmsnorm.cu), into the fp8
// scratch, and those linears launch none (measured faster: docs/PERFORMANCE.md). In a Llama layer:
// input_layernorm → qkv_proj and post_attention_layernorm → gate_up_proj; o_proj and down_proj still
// quantize their inputs.
//
//   norm (marked `fp8Out`)  ──out──▶ arena (still written: the arena's liveness is unchanged)
//                           ──xq, s (x̂)──▶ fp8 scratch ──▶ linear(s) marked `inputQuantized`
//
// The scratch is one buffer every fp8 linear shares, so nothing between the norm and its last reader may
// write it: no other fp8 linear and no other norm. Decided once per engine, at lowering (lowering.ts),
// from the plan and the fp8 weights: pure, so tested on the CPU. Whether a step also writes x̂ depends on
// its rows (the decode GEMV that reads it): LinearLauncher.fp8NormTarget.
import type { Op } from "../../engine/format.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { LoweredStep } from "./lowering.ts";
import type { DeviceWeights } from "./weights.ts";

type LinearOp = Extract<Op, { kind: "linear" }>;
type LinearStep = Extract<LoweredStep, { kind: "linear" }>;
type NormStep = Extract<LoweredStep, { kind: "rms_norm" | "add_rms_norm" }>;

/** How an fp8 linear quantizes its input: k features a row, per token (staticScale null) or by the
 * weight's static input scale (its value). */
export interface Fp8Input {
  k: number;
  staticScale: number | null;
}

/** Each weight's fp8 input quantization; undefined for a weight that is not fp8. */
export type Fp8InputOf = (weight: string) => Fp8Input | undefined;

/** What a fused norm step writes besides its output: the quantization its readers share. */
export interface NormQuant {
  /** The fp8 weight whose input scale the kernel reads (static: every reader's is the same value). */
  weight: string;
  /** The fp8 linears that read the norm's output (a fused gate_up among them: `gated`), in step order. */
  readers: readonly { op: LinearOp; gated: boolean }[];
}

/** The kernels a fused norm runs (kernels/rmsnorm.cu); engines built before them lack the exports. */
export const NORM_Q8_KERNELS = ["rms_norm_q8", "add_rms_norm_q8"] as const;

/** The fp8 inputs of an engine's linears, for lower(): undefined when the engine has no fp8 weight or its
 * rmsnorm module lacks the fused kernels (an engine built before them: every norm stays as it was). */
export function fp8InputsOf(weights: DeviceWeights, kernels: KernelLauncher): Fp8InputOf | undefined {
  if ([...weights.allFp8].length === 0) return undefined;
  if (!NORM_Q8_KERNELS.every((k) => kernels.hasKernel("rmsnorm", k))) return undefined;
  return (name) => {
    const w = weights.fp8(name);
    return w && { k: w.cols, staticScale: w.inputScaleValue };
  };
}

/** `steps` with each norm that can quantize for its readers marked (`fp8Out`) and those readers marked
 * (`inputQuantized`); the other steps as they were. A norm qualifies when it is a plain RMSNorm of the
 * hidden width (rms_norm without groups, not the decoder's final norm; or add_rms_norm) whose output every
 * reader is an fp8 linear (not the LM head) with one Fp8Input, k a multiple of 16 and the norm's width,
 * and no step between it and its last reader writes the fp8 scratch. */
export function markNormQuant(steps: readonly LoweredStep[], fp8Input: Fp8InputOf): LoweredStep[] {
  const out = [...steps];
  const readersOf = new Map<string, number[]>();
  steps.forEach((st, i) => {
    for (const r of st.reads) readersOf.set(r, [...(readersOf.get(r) ?? []), i]);
  });
  const candidate = (st: LoweredStep): st is NormStep =>
    st.kind === "add_rms_norm" || (st.kind === "rms_norm" && !st.op.groupWidth && !st.finalNorm);
  const fp8Linear = (st: LoweredStep): st is LinearStep =>
    st.kind === "linear" && !st.logits && fp8Input(st.op.weight) !== undefined;
  const writesScratch = (st: LoweredStep) =>
    fp8Linear(st) || st.kind === "rms_norm" || st.kind === "add_rms_norm";
  steps.forEach((st, i) => {
    if (!candidate(st)) return;
    const at = (readersOf.get(st.op.out) ?? []).filter((j) => j !== i);
    const readers = at.map((j) => steps[j]);
    if (readers.length === 0 || at.some((j) => j < i) || !readers.every(fp8Linear)) return;
    const inputs = readers.map((r) => fp8Input(r.op.weight) as Fp8Input);
    const { k, staticScale } = inputs[0];
    if (k !== st.op.width || k % 16 !== 0) return;
    if (!inputs.every((q) => q.k === k && q.staticScale === staticScale)) return;
    for (let j = i + 1; j < Math.max(...at); j++) if (!at.includes(j) && writesScratch(steps[j])) return;
    const fp8Out: NormQuant = {
      weight: readers[0].op.weight,
      readers: readers.map((r) => ({ op: r.op, gated: r.gated !== undefined })),
    };
    out[i] = { ...st, fp8Out };
    for (const j of at) out[j] = { ...(out[j] as LinearStep), inputQuantized: true };
  });
  return out;
}
