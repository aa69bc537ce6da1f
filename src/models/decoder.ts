// The pre-norm decoder-only transformer shared by Llama, Mistral, Qwen2 and Qwen3:
//   h = embed(ids)
//   for each layer:  h = h + attn(rmsnorm(h));  h = h + mlp(rmsnorm(h))
//   logits = lm_head(rmsnorm(h)[rows that need logits])
// Architectures differ only in the options below and in their weight maps.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import { attention } from "./layers/attention.ts";
import { embedding } from "./layers/embedding.ts";
import { linear } from "./layers/linear.ts";
import { gatedMlp } from "./layers/mlp.ts";
import { rmsNorm } from "./layers/norm.ts";
import type { Network } from "./network.ts";
import { NetworkBuilder } from "./network_builder.ts";
import { type DecoderWeightMap, layerName } from "./weight_map.ts";

export interface DecoderOptions {
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Per-head RMSNorm on queries and keys before RoPE (Qwen3). */
  qkNorm: boolean;
  /** Sliding window of layer i (null = full attention); defaults to config.slidingWindow for every layer. */
  slidingWindow?: (layer: number) => number | null;
}

export function buildDecoder(config: ModelConfig, names: DecoderWeightMap, opts: DecoderOptions): Network {
  const nb = new NetworkBuilder(config);
  const c = config;
  let h = embedding(nb, names.embed, c.vocabSize, c.hiddenSize); // [T, hidden]
  for (let i = 0; i < c.numLayers; i++) {
    const L = names.layer;
    const x = rmsNorm(nb, h, layerName(L.inputNorm, i), c.hiddenSize, c.normEps);
    const a = attention(
      nb,
      x,
      i,
      {
        q: L.q,
        k: L.k,
        v: L.v,
        o: L.o,
        ...(opts.qkNorm ? { qNorm: L.qNorm, kNorm: L.kNorm } : {}),
      },
      {
        qkvBias: opts.qkvBias,
        oBias: opts.oBias,
        slidingWindow: opts.slidingWindow ? opts.slidingWindow(i) : c.slidingWindow,
      },
    );
    h = nb.add(h, a, c.hiddenSize);
    const y = rmsNorm(nb, h, layerName(L.postAttentionNorm, i), c.hiddenSize, c.normEps);
    const m = gatedMlp(
      nb,
      y,
      { gate: layerName(L.gate, i), up: layerName(L.up, i), down: layerName(L.down, i) },
      opts.mlpBias,
    );
    h = nb.add(h, m, c.hiddenSize);
  }
  const last = nb.gatherRows(h, c.hiddenSize); // [R, hidden]
  const normed = rmsNorm(nb, last, names.finalNorm, c.hiddenSize, c.normEps);
  // Tied embeddings: the LM head reads the embedding table (the checkpoint has no lm_head tensor).
  const head = c.tieWordEmbeddings
    ? names.embed.replace(/\.weight$/, "")
    : names.lmHead.replace(/\.weight$/, "");
  const logits = linear(nb, normed, head, c.hiddenSize, c.vocabSize, false); // [R, vocab]
  return nb.finish(logits);
}
