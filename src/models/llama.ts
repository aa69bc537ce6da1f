// Llama 2 / 3 / 3.1 / 3.2 and TinyLlama (HF LlamaForCausalLM): optional attention and MLP biases.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { buildDecoder } from "./decoder.ts";
import type { Network } from "./network.ts";
import type { Architecture } from "./registry.ts";
import { HF_DECODER_WEIGHTS } from "./weight_map.ts";

export const llama: Architecture = {
  names: ["LlamaForCausalLM"],
  weightMap: HF_DECODER_WEIGHTS,
  build(config: ModelConfig): Network {
    return buildDecoder(config, HF_DECODER_WEIGHTS, {
      qkvBias: config.attentionBias,
      oBias: config.attentionBias,
      mlpBias: config.mlpBias,
      qkNorm: false,
    });
  },
};
