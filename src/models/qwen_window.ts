// Qwen2/Qwen3 sliding window: only when `use_sliding_window` is true, and then only for layers at or
// above `max_window_layers` (HF's default `layer_types`), unless `layer_types` lists them explicitly.
import type { ModelConfig } from "../checkpoint/model_config.ts";

export function qwenSlidingWindow(config: ModelConfig): (layer: number) => number | null {
  const raw = config.raw;
  const window = typeof raw.sliding_window === "number" ? raw.sliding_window : null;
  const layerTypes = Array.isArray(raw.layer_types) ? (raw.layer_types as unknown[]) : null;
  if (layerTypes) return (i) => (layerTypes[i] === "sliding_attention" ? window : null);
  if (raw.use_sliding_window !== true || window === null) return () => null;
  const maxWindowLayers =
    typeof raw.max_window_layers === "number" ? raw.max_window_layers : config.numLayers;
  return (i) => (i >= maxWindowLayers ? window : null);
}
