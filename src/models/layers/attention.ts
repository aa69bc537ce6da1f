// Self-attention with MHA / GQA / MQA, RoPE, optional q/k/v/o biases and per-head q/k RMSNorm.
// The `attention` op does RoPE, the KV-cache write and paged causal attention; its per-step metadata
// (positions, block tables) is an argument of the backend's forward, never state of the layer.
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { NetworkBuilder } from "../network_builder.ts";
import { layerName } from "../weight_map.ts";
import { linear } from "./linear.ts";
import { rmsNorm } from "./norm.ts";

export interface AttentionWeights {
  q: string;
  k: string;
  v: string;
  o: string;
  qNorm?: string;
  kNorm?: string;
}

export interface AttentionOptions {
  /** Bias on q, k and v projections. */
  qkvBias: boolean;
  /** Bias on the output projection. */
  oBias: boolean;
  /** Keys older than this many positions are masked (Mistral); null = full causal attention. */
  slidingWindow: number | null;
}

export function attention(
  nb: NetworkBuilder,
  x: string, // [T, hidden]
  layer: number,
  names: AttentionWeights,
  opts: AttentionOptions,
): string /* [T, hidden] */ {
  const c: ModelConfig = nb.config;
  const qWidth = c.numHeads * c.headDim;
  const kvWidth = c.numKvHeads * c.headDim;
  const n = (p: string) => layerName(p, layer);
  let q = linear(nb, x, n(names.q), c.hiddenSize, qWidth, opts.qkvBias); // [T, H·D]
  let k = linear(nb, x, n(names.k), c.hiddenSize, kvWidth, opts.qkvBias); // [T, Hkv·D]
  const v = linear(nb, x, n(names.v), c.hiddenSize, kvWidth, opts.qkvBias); // [T, Hkv·D]
  if (names.qNorm) q = rmsNorm(nb, q, n(names.qNorm), qWidth, c.normEps, c.headDim);
  if (names.kNorm) k = rmsNorm(nb, k, n(names.kNorm), kvWidth, c.normEps, c.headDim);
  const out = nb.attention(q, k, v, {
    layer,
    numHeads: c.numHeads,
    numKvHeads: c.numKvHeads,
    headDim: c.headDim,
    rope: c.rope,
    slidingWindow: opts.slidingWindow,
  });
  return linear(nb, out, n(names.o), qWidth, c.hiddenSize, opts.oBias);
}
