// Qwen2 / Qwen2.5 (HF Qwen2ForCausalLM): bias on q/k/v (not o), no MLP bias.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { buildDecoder } from "./decoder.ts";
import type { Network } from "./network.ts";
import { qwenSlidingWindow } from "./qwen_window.ts";
import type { Architecture } from "./registry.ts";
import { HF_DECODER_WEIGHTS } from "./weight_map.ts";

export const qwen2: Architecture = {
  names: ["Qwen2ForCausalLM"],
  weightMap: HF_DECODER_WEIGHTS,
  build(config: ModelConfig): Network {
    return buildDecoder(config, HF_DECODER_WEIGHTS, {
      qkvBias: true,
      oBias: false,
      mlpBias: false,
      qkNorm: false,
      slidingWindow: qwenSlidingWindow(config),
    });
  },
};
