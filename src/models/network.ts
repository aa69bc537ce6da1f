// A Network is the model definition's output and the builder's input: a straight-line list of ops
// over named activations and named weights. Activations are 2-D, [numTokens, width]; numTokens is
// the packed token count of one forward step (prefill chunks and decode tokens of several sequences),
// so no op needs to know about batching except `attention`, which reads the step's metadata.
import type { HiddenAct, ModelConfig, RopeConfig } from "../checkpoint/model_config.ts";

/** A weight the network reads. `source` says how to make it from checkpoint tensors. */
export interface WeightSpec {
  /** Shape in the engine, e.g. [outFeatures, inFeatures] for a linear layer (HF layout). */
  shape: number[];
  /** Checkpoint tensor names concatenated along axis 0 (one name = a plain rename). */
  source: string[];
}

export type Op =
  /** out[t] = table[ids[t]] — input is the step's token ids. */
  | { kind: "embedding"; out: string; width: number; weight: string }
  /** y = x·wᵀ + b, x [T, inFeatures] → y [T, outFeatures]. */
  | {
      kind: "linear";
      x: string;
      out: string;
      inFeatures: number;
      outFeatures: number;
      weight: string;
      bias?: string;
    }
  /** y = RMSNorm(x) over each row of width `width` (or over each head of `groupWidth` when given). */
  | {
      kind: "rms_norm";
      x: string;
      out: string;
      width: number;
      eps: number;
      weight: string;
      groupWidth?: number;
    }
  | { kind: "layer_norm"; x: string; out: string; width: number; eps: number; weight: string; bias: string }
  /** Fused: residual += x (in place), out = RMSNorm(residual). */
  | {
      kind: "add_rms_norm";
      residual: string;
      x: string;
      out: string;
      width: number;
      eps: number;
      weight: string;
    }
  /** out = a + b, elementwise. */
  | { kind: "add"; a: string; b: string; out: string; width: number }
  /** Splits x [T, sum(widths)] column-wise into outs[i] [T, widths[i]]. */
  | { kind: "split"; x: string; outs: string[]; widths: number[] }
  /** out = act(gate) * up with gateUp [T, 2·width] = [gate | up]. */
  | { kind: "gated_act"; gateUp: string; out: string; width: number; act: HiddenAct }
  /** Same as gated_act with gate and up in separate tensors (before the gate-up fusion). */
  | { kind: "gated_act2"; gate: string; up: string; out: string; width: number; act: HiddenAct }
  | { kind: "act"; x: string; out: string; width: number; act: HiddenAct }
  /** RoPE on q and k, KV-cache write of layer `layer`, paged causal attention. q [T, H·D], k/v [T, Hkv·D] → out [T, H·D]. */
  | {
      kind: "attention";
      q: string;
      k: string;
      v: string;
      out: string;
      layer: number;
      numHeads: number;
      numKvHeads: number;
      headDim: number;
      rope: RopeConfig;
      slidingWindow: number | null;
      scale: number;
    }
  /** Keeps only the rows the step needs logits for (the last token of each sequence, or all). */
  | { kind: "gather_rows"; x: string; out: string; width: number };

export type OpKind = Op["kind"];

export interface Network {
  config: ModelConfig;
  ops: Op[];
  /** Name of the activation that holds the logits, [numLogitRows, vocabSize]. */
  output: string;
  weights: Record<string, WeightSpec>;
}

/** Activation names an op reads, in the order renameInputs visits them. */
export function opInputs(op: Op): string[] {
  const names: string[] = [];
  renameInputs(op, (n) => {
    names.push(n);
    return n;
  });
  return names;
}

/** `op` reading `name(x)` wherever it reads the activation x (the names opInputs lists). */
export function renameInputs(op: Op, name: (n: string) => string): Op {
  switch (op.kind) {
    case "embedding":
      return op;
    case "linear":
    case "rms_norm":
    case "layer_norm":
    case "split":
    case "act":
    case "gather_rows":
      return { ...op, x: name(op.x) };
    case "add_rms_norm":
      return { ...op, residual: name(op.residual), x: name(op.x) };
    case "add":
      return { ...op, a: name(op.a), b: name(op.b) };
    case "gated_act":
      return { ...op, gateUp: name(op.gateUp) };
    case "gated_act2":
      return { ...op, gate: name(op.gate), up: name(op.up) };
    case "attention":
      return { ...op, q: name(op.q), k: name(op.k), v: name(op.v) };
  }
}

/** Activation names an op writes (add_rms_norm also updates `residual` in place). */
export function opOutputs(op: Op): string[] {
  if (op.kind === "split") return op.outs;
  if (op.kind === "add_rms_norm") return [op.out, op.residual];
  return [op.out];
}

/** Weight names an op reads. */
export function opWeights(op: Op): string[] {
  switch (op.kind) {
    case "embedding":
    case "rms_norm":
    case "add_rms_norm":
      return [op.weight];
    case "linear":
      return op.bias ? [op.weight, op.bias] : [op.weight];
    case "layer_norm":
      return [op.weight, op.bias];
    default:
      return [];
  }
}
