// The fp8 quantizer (--quantize fp8) against hand-computed rows, and its round trip through the format's
// dequantization (engine/fp8_format.ts), which the CPU backend loads by.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { quantizeFp8 } from "../../src/builder/passes/quantize_fp8.ts";
import { dequantizeFp8, fp8ByteLength } from "../../src/engine/fp8_format.ts";
import { randn } from "../backends/cpu/helpers.ts";

const scalesOf = (bytes: Uint8Array, rows: number, cols: number) =>
  new Float32Array(bytes.slice(rows * cols).buffer);

describe("quantizeFp8 (E4M3, one scale per output row)", () => {
  it("scale = max|w| / 448; q = E4M3(w / scale), round to nearest even; a zero row is all zero", () => {
    const w = new Float32Array([
      ...[448, 1.0625, 1.1875, -3 * 2 ** -10, 2 ** -10, 0.001], // scale 1
      ...[1, 0.3, -2, 0, 0, 0], // scale 2 / 448
      ...[0, 0, 0, 0, 0, 0], // scale 0
    ]);
    const bytes = quantizeFp8(w, [3, 6]);
    assert.equal(bytes.length, fp8ByteLength([3, 6], "dynamic"));
    assert.deepEqual([...scalesOf(bytes, 3, 6)], [1, Math.fround(2 / 448), 0]);
    // Row 0: 448 → 0x7e; 1.0625 (between 1 and 1.125) → 1 = 0x38 (even); 1.1875 (between 1.125 and 1.25)
    // → 1.25 = 0x3a (even); subnormals are m × 2^-9: -1.5 → -2 = 0x82, 0.5 → 0 = 0x00, 0.512 → 1 = 0x01.
    assert.deepEqual([...bytes.slice(0, 6)], [0x7e, 0x38, 0x3a, 0x82, 0x00, 0x01]);
    // Row 1: w / scale = 224 → 0x76 (1.75 × 2^7), 67.2 → 64 = 0x68 (steps of 8 there), -448 → 0xfe.
    assert.deepEqual([...bytes.slice(6, 12)], [0x76, 0x68, 0xfe, 0, 0, 0]);
    assert.deepEqual([...bytes.slice(12, 18)], [0, 0, 0, 0, 0, 0]);
  });

  it("round trip: each w within half an E4M3 step of its row's scale, the row max exact", () => {
    const [rows, cols] = [9, 301];
    const w = randn(rows * cols, 5, 0.05);
    w[3 * cols + 7] = -1.5; // an outlier row
    const bytes = quantizeFp8(w, [rows, cols]);
    const back = dequantizeFp8(bytes, [rows, cols]);
    const scales = scalesOf(bytes, rows, cols);
    for (let r = 0; r < rows; r++) {
      let max = 0;
      for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]));
      assert.equal(scales[r], Math.fround(max / 448));
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const v = Math.abs(w[i]) / scales[r];
        // Half a step: 2^-4 of |v| for normal values (3 mantissa bits), 2^-10 below 2^-6 (subnormal).
        const bound = Math.max(v / 16, 2 ** -10) * scales[r] * (1 + 2 ** -20);
        assert.ok(Math.abs(back[i] - w[i]) <= bound, `[${r},${c}] ${w[i]} → ${back[i]}`);
      }
    }
    assert.ok(Math.abs(back[3 * cols + 7] + 1.5) <= 1.5 * 2 ** -20, `${back[3 * cols + 7]}`);
  });
});
