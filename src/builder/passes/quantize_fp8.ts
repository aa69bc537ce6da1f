// The fp8 quantizer of `--quantize fp8 | fp8-static`: one fp32 weight [out, in] into the region
// engine/fp8_format.ts defines, with dynamic activations (no input scale; the backend scales each
// token's input itself) or a calibrated static input scale.
import { fp8Region } from "../../engine/fp8_format.ts";
import { E4M3_MAX, f32BitsToE4m3 } from "../../fp8_e4m3.ts";

/** Per output row: scale = max|w_row| / 448 (fp32; 0 for an all-zero row, whose q stay 0) and
 * q = E4M3(w / scale), round to nearest even, saturating at ±448 (a scale rounded down to fp32 can put
 * the row's max a hair above 448). */
export function quantizeFp8(
  values: Float32Array,
  shape: readonly number[],
  inputScale: number | null = null,
): Uint8Array {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  // One row of w / scale: each quotient computed in double and stored as fp32 (the correctly rounded
  // fp32 quotient), then read back as bits for f32BitsToE4m3.
  const quotients = new Float32Array(cols);
  const bits = new Int32Array(quotients.buffer);
  const toE4m3 = f32BitsToE4m3; // a local: the loop then calls it directly, not through the import
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    let max = 0;
    let sum = 0; // NaN when the row holds a NaN, which then poisons the scale (as Math.max would)
    for (let i = start; i < start + cols; i++) {
      const a = Math.abs(values[i]);
      sum += a;
      if (a > max) max = a;
    }
    if (Number.isNaN(sum)) max = Number.NaN;
    const scale = Math.fround(max / E4M3_MAX);
    scales[r] = scale;
    if (scale === 0) continue; // q stays 0 (E4M3 +0)
    for (let c = 0; c < cols; c++) quotients[c] = values[start + c] / scale;
    for (let c = 0; c < cols; c++) q[start + c] = toE4m3(bits[c]);
  }
  return fp8Region(q, scales, inputScale);
}
