// Pass: quantization (--quantize int8-wo | int4-wo | fp8) of the transformer blocks' linear layers.
// Each eligible weight's engine-dtype values are replaced, as the writer reaches them, by the region
// engine/weight_format.ts defines (fp8: quantize_fp8.ts, dynamic activations); the LM head and the
// embedding table (one tensor when tied) keep their dtype.
import { type DType, toF32 } from "../../dtype.ts";
import type { BuiltWeightFormat } from "../../engine/build_config.ts";
import {
  GROUP_SIZE,
  type IntWoFormat,
  QMAX,
  quantizedByteLength,
  quantizedDataBytes,
  quantizedLayout,
} from "../../engine/weight_format.ts";
import type { EngineWeight } from "../../engine/writer.ts";
import type { Network } from "../../models/network.ts";
import type { QuantizePool } from "../quantize_pool.ts";
import { quantizeFp8 } from "./quantize_fp8.ts";

/** Names of the weights --quantize replaces: those read as a linear op's matrix, except the LM head
 * (the linear that writes the network's output) and any weight an embedding op also reads. */
export function quantizableWeights(net: Network): Set<string> {
  const embedded = new Set(net.ops.flatMap((op) => (op.kind === "embedding" ? [op.weight] : [])));
  const names = new Set<string>();
  for (const op of net.ops) {
    if (op.kind !== "linear" || op.out === net.output || embedded.has(op.weight)) continue;
    names.add(op.weight);
  }
  return names;
}

/** `weights` with every quantizable one replaced by its `format` region (computed when written; with
 * `pool`, on its worker threads ahead of the writer). fp8 with `inputScales` (by weight name,
 * fp8-static's calibration) stores static activation scales. */
export function quantizeWeights(
  net: Network,
  weights: EngineWeight[],
  format: BuiltWeightFormat,
  inputScales?: ReadonlyMap<string, number>,
  pool?: QuantizePool,
): EngineWeight[] {
  const eligible = quantizableWeights(net);
  return weights.map((w) => {
    if (!eligible.has(w.name)) return w;
    const inputScale = format === "fp8" ? (inputScales?.get(w.name) ?? null) : null;
    if (format === "fp8" && inputScales && inputScale === null)
      throw new Error(`internal: no input scale for ${w.name}`);
    const spec: QuantizeSpec = { dtype: w.dtype, shape: w.shape, format, inputScale };
    const bytes = pool ? pool.add(w.bytes, spec) : () => quantizeRegion(w.bytes(), spec);
    if (format === "fp8") {
      const params = { activation: inputScale === null ? "dynamic" : "static" } as const;
      return { ...w, format, params, byteLength: quantizedByteLength(w.shape, format, params), bytes };
    }
    return { ...w, format, byteLength: quantizedByteLength(w.shape, format), bytes };
  });
}

/** What quantizing one weight needs besides its bytes (a worker thread gets it as is). */
export interface QuantizeSpec {
  dtype: DType;
  shape: readonly number[];
  format: BuiltWeightFormat;
  /** fp8-static's calibrated input scale; null otherwise. */
  inputScale: number | null;
}

/** The `spec.format` region of a weight's engine-dtype bytes. */
export function quantizeRegion(bytes: Uint8Array, spec: QuantizeSpec): Uint8Array {
  const values = toF32(bytes, spec.dtype);
  return spec.format === "fp8"
    ? quantizeFp8(values, spec.shape, spec.inputScale)
    : quantize(values, spec.shape, spec.format);
}

/** Quantizes fp32 `values` of shape [out, in] into `format`'s region: per group of GROUP_SIZE input
 * features, scale = max|w| / QMAX (fp32; 0 for an all-zero group) and q = round(w / scale), halves away
 * from zero, so |w − q·scale| ≤ scale / 2. */
export function quantize(values: Float32Array, shape: readonly number[], format: IntWoFormat): Uint8Array {
  const { rows, cols, padded, groups } = quantizedLayout(shape);
  const qmax = QMAX[format];
  const out = new Uint8Array(quantizedByteLength(shape, format));
  const dataBytes = quantizedDataBytes(shape, format);
  const scales = new Float32Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * GROUP_SIZE;
      const end = r * cols + Math.min(cols, (g + 1) * GROUP_SIZE);
      let max = 0;
      for (let i = start; i < end; i++) max = Math.max(max, Math.abs(values[i]));
      const scale = Math.fround(max / qmax);
      scales[r * groups + g] = scale;
      if (scale === 0) continue; // q stays 0
      for (let i = start; i < end; i++) {
        const v = values[i] / scale;
        const q = Math.min(qmax, Math.max(-qmax, Math.sign(v) * Math.round(Math.abs(v))));
        put(out, format, r * padded + (i - r * cols), q);
      }
    }
  }
  out.set(new Uint8Array(scales.buffer), dataBytes);
  return out;
}

/** Stores q at flat index i (int4: even index in the low nibble, odd in the high; 4-bit two's complement). */
function put(out: Uint8Array, format: IntWoFormat, i: number, q: number): void {
  if (format === "int8-wo") out[i] = q & 0xff;
  else out[i >> 1] |= (q & 0x0f) << (i & 1 ? 4 : 0);
}
