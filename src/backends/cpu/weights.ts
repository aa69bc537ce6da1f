// Engine weights as fp32 arrays for the CPU backend: bf16/fp16 are widened exactly at load, and
// quantized weights dequantized exactly as engine/weight_format.ts defines (int-wo: w = q × group
// scale; fp8: w = e4m3(q) × row scale). An fp8 weight also quantizes its linear's input (fp8_format.ts):
// how, per weight, is read here from the same region.
import { toF32 } from "../../dtype.ts";
import { fp8InputScale } from "../../engine/fp8_format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import { dequantize } from "../../engine/weight_format.ts";

/** How the input of a linear with an fp8 weight is quantized: per token, or by one calibrated scale. */
export type Fp8Input = { activation: "dynamic" } | { activation: "static"; scale: number };

export interface CpuWeights {
  /** Every weight by name, as fp32 values of its logical shape. */
  tensors: Map<string, Float32Array>;
  /** The fp8 weights (by name) and how their linears quantize their input. */
  fp8Inputs: Map<string, Fp8Input>;
}

export function loadCpuWeights(engine: LoadedEngine): CpuWeights {
  const tensors = new Map<string, Float32Array>();
  const fp8Inputs = new Map<string, Fp8Input>();
  for (const entry of engine.header.weights) {
    const bytes = engine.readWeight(entry);
    tensors.set(
      entry.name,
      entry.format ? dequantize(bytes, entry.shape, entry.format, entry.params) : toF32(bytes, entry.dtype),
    );
    if (entry.format !== "fp8") continue;
    fp8Inputs.set(
      entry.name,
      entry.params?.activation === "static"
        ? { activation: "static", scale: fp8InputScale(bytes, entry.shape) }
        : { activation: "dynamic" },
    );
  }
  return { tensors, fp8Inputs };
}
