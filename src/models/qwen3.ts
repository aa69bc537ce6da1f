// Qwen3 (HF Qwen3ForCausalLM): per-head RMSNorm on q and k before RoPE; head_dim independent of
// hidden_size / num_heads; `attention_bias` on all four projections.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { buildDecoder } from "./decoder.ts";
import type { Network } from "./network.ts";
import { qwenSlidingWindow } from "./qwen_window.ts";
import type { Architecture } from "./registry.ts";
import { type DecoderWeightMap, HF_DECODER_WEIGHTS } from "./weight_map.ts";

const QWEN3_WEIGHTS: DecoderWeightMap = {
  ...HF_DECODER_WEIGHTS,
  layer: {
    ...HF_DECODER_WEIGHTS.layer,
    qNorm: "model.layers.{i}.self_attn.q_norm.weight",
    kNorm: "model.layers.{i}.self_attn.k_norm.weight",
  },
};

export const qwen3: Architecture = {
  names: ["Qwen3ForCausalLM"],
  weightMap: QWEN3_WEIGHTS,
  build(config: ModelConfig): Network {
    return buildDecoder(config, QWEN3_WEIGHTS, {
      qkvBias: config.attentionBias,
      oBias: config.attentionBias,
      mlpBias: false,
      qkNorm: true,
      slidingWindow: qwenSlidingWindow(config),
    });
  },
};
