// Mistral (HF MistralForCausalLM): Llama without biases, with sliding-window attention when
// `sliding_window` is set.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { buildDecoder } from "./decoder.ts";
import type { Network } from "./network.ts";
import type { Architecture } from "./registry.ts";
import { HF_DECODER_WEIGHTS } from "./weight_map.ts";

export const mistral: Architecture = {
  names: ["MistralForCausalLM"],
  weightMap: HF_DECODER_WEIGHTS,
  build(config: ModelConfig): Network {
    return buildDecoder(config, HF_DECODER_WEIGHTS, {
      qkvBias: false,
      oBias: false,
      mlpBias: false,
      qkNorm: false,
    });
  },
};
