// Engine weights as fp32 arrays for the CPU backend (bf16/fp16 are widened exactly at load).
import { toF32 } from "../../dtype.ts";
import type { LoadedEngine } from "../../engine/reader.ts";

export function loadCpuWeights(engine: LoadedEngine): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  for (const entry of engine.header.weights)
    weights.set(entry.name, toF32(engine.readWeight(entry), entry.dtype));
  return weights;
}
