// Engine weights as fp32 arrays for the CPU backend: bf16/fp16 are widened exactly at load, and
// quantized weights dequantized exactly as engine/weight_format.ts defines (w = q × group scale).
import { toF32 } from "../../dtype.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import { dequantize } from "../../engine/weight_format.ts";

export function loadCpuWeights(engine: LoadedEngine): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  for (const entry of engine.header.weights) {
    const bytes = engine.readWeight(entry);
    weights.set(
      entry.name,
      entry.format ? dequantize(bytes, entry.shape, entry.format, entry.params) : toF32(bytes, entry.dtype),
    );
  }
  return weights;
}
