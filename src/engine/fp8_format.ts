// The fp8 weight format (W8A8, E4M3; what `--quantize fp8` builds and FP8 checkpoints load into), for a
// linear weight of shape [out, in]:
//   region = q, then scales, then (static activations only) the input scale; no gaps, no padding:
//     q            [out, in] E4M3 bytes (src/fp8_e4m3.ts), row-major
//     scales       [out] fp32 little-endian: one per output channel (a per-tensor checkpoint scale is
//                  repeated, which is exact)
//     inputScale   1 fp32, present only when activations are "static"
//   w[r, c] = e4m3(q[r, c]) × scales[r]
// Activations are quantized to E4M3 before the product, per token (one row of x):
//   dynamic  s = max|x_row| / 448 (a zero row stays zero)     static  s = inputScale
//   x̂ = e4m3(x / s) × s (saturating at ±448), and the linear computes x̂ · wᵀ (fp32 accumulation).
// The CPU backend computes exactly this; FP8 GEMM kernels are checked against it.
import { E4M3_MAX, e4m3ToF32, f32ToE4m3 } from "../fp8_e4m3.ts";

/** How an fp8 weight's input is scaled at run time. */
export type Fp8Activation = "dynamic" | "static";

/** Bytes of an fp8 weight's region. */
export function fp8ByteLength(shape: readonly number[], activation: Fp8Activation): number {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  return rows * cols + rows * 4 + (activation === "static" ? 4 : 0);
}

/** An fp8 region from its parts: q [rows, cols] E4M3 bytes, per-row scales, and the static input scale
 * (null for dynamic activations). */
export function fp8Region(q: Uint8Array, scales: Float32Array, inputScale: number | null): Uint8Array {
  const tail = new Float32Array(scales.length + (inputScale === null ? 0 : 1));
  tail.set(scales);
  if (inputScale !== null) tail[scales.length] = inputScale;
  const out = new Uint8Array(q.length + tail.byteLength);
  out.set(q);
  out.set(new Uint8Array(tail.buffer), q.length);
  return out;
}

/** The fp32 weight [out, in] an fp8 region stands for: w = e4m3(q) × scale of its row. */
export function dequantizeFp8(bytes: Uint8Array, shape: readonly number[]): Float32Array {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const scales = readF32s(bytes, rows * cols, rows);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = e4m3ToF32(bytes[r * cols + c]) * scales[r];
  }
  return out;
}

/** The calibrated input scale of a "static" fp8 region. */
export function fp8InputScale(bytes: Uint8Array, shape: readonly number[]): number {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  return readF32s(bytes, rows * cols + rows * 4, 1)[0];
}

/**
 * Quantizes each row of x ([rows, cols], in place) to E4M3 and back, as the fp8 format defines:
 * `inputScale` undefined = dynamic (one scale per row from its max |x|), else that static scale.
 */
export function fakeQuantizeActivations(x: Float32Array, cols: number, inputScale?: number): void {
  for (let start = 0; start < x.length; start += cols) {
    let s = inputScale;
    if (s === undefined) {
      let max = 0;
      for (let i = start; i < start + cols; i++) max = Math.max(max, Math.abs(x[i]));
      s = Math.fround(max / E4M3_MAX);
    }
    if (s === 0) {
      x.fill(0, start, start + cols);
      continue;
    }
    for (let i = start; i < start + cols; i++) x[i] = e4m3ToF32(f32ToE4m3(x[i] / s)) * s;
  }
}

function readF32s(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const values = new Float32Array(count);
  new Uint8Array(values.buffer).set(bytes.subarray(offset, offset + count * 4));
  return values;
}
