// How long a sequence a model can serve.
import type { ModelConfig } from "../checkpoint/model_config.ts";

/** The context window: max_position_embeddings, stretched by `factor` for dynamic NTK RoPE (whose
 * point is to run past the trained length; HF itself sets no limit there). */
export function contextWindow(config: ModelConfig): number {
  const s = config.rope.scaling;
  if (s.type === "dynamic") return Math.floor(config.maxPositionEmbeddings * s.factor);
  return config.maxPositionEmbeddings;
}
