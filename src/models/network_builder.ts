// The functional model-definition API: each call appends one op to the network and returns the name
// of the activation it produces. Layers (models/layers/) and architectures (models/*.ts) are written
// in terms of these calls and know nothing of backends, fusion or batching.
import type { HiddenAct, ModelConfig, RopeConfig } from "../checkpoint/model_config.ts";
import type { Network, Op, WeightSpec } from "./network.ts";

export class NetworkBuilder {
  private readonly ops: Op[] = [];
  private readonly weights: Record<string, WeightSpec> = {};
  private counter = 0;

  constructor(readonly config: ModelConfig) {}

  /** Declares a weight read straight from the checkpoint tensor of the same name. */
  weight(name: string, shape: number[]): string {
    this.weights[name] = { shape, source: [name] };
    return name;
  }

  private fresh(hint: string): string {
    return `${hint}#${this.counter++}`;
  }

  embedding(weight: string, width: number): string {
    const out = this.fresh("embed");
    this.ops.push({ kind: "embedding", out, width, weight });
    return out;
  }

  linear(x: string, inFeatures: number, outFeatures: number, weight: string, bias?: string): string {
    const out = this.fresh(weight.replace(/\.weight$/, ""));
    this.ops.push({ kind: "linear", x, out, inFeatures, outFeatures, weight, ...(bias ? { bias } : {}) });
    return out;
  }

  rmsNorm(x: string, width: number, eps: number, weight: string, groupWidth?: number): string {
    const out = this.fresh(weight.replace(/\.weight$/, ""));
    this.ops.push({ kind: "rms_norm", x, out, width, eps, weight, ...(groupWidth ? { groupWidth } : {}) });
    return out;
  }

  layerNorm(x: string, width: number, eps: number, weight: string, bias: string): string {
    const out = this.fresh(weight.replace(/\.weight$/, ""));
    this.ops.push({ kind: "layer_norm", x, out, width, eps, weight, bias });
    return out;
  }

  add(a: string, b: string, width: number): string {
    const out = this.fresh("residual");
    this.ops.push({ kind: "add", a, b, out, width });
    return out;
  }

  gatedAct(gate: string, up: string, width: number, act: HiddenAct): string {
    const out = this.fresh("act");
    this.ops.push({ kind: "gated_act2", gate, up, out, width, act });
    return out;
  }

  act(x: string, width: number, act: HiddenAct): string {
    const out = this.fresh("act");
    this.ops.push({ kind: "act", x, out, width, act });
    return out;
  }

  attention(
    q: string,
    k: string,
    v: string,
    a: {
      layer: number;
      numHeads: number;
      numKvHeads: number;
      headDim: number;
      rope: RopeConfig;
      slidingWindow: number | null;
    },
  ): string {
    const out = this.fresh(`attn${a.layer}`);
    this.ops.push({ kind: "attention", q, k, v, out, ...a, scale: 1 / Math.sqrt(a.headDim) });
    return out;
  }

  /** Keeps only the rows of the step that need logits (see StepInput.logitRows). */
  gatherRows(x: string, width: number): string {
    const out = this.fresh("last");
    this.ops.push({ kind: "gather_rows", x, out, width });
    return out;
  }

  finish(output: string): Network {
    return { config: this.config, ops: this.ops, output, weights: this.weights };
  }
}
