// The weight-only quantizer against hand-computed groups, and its round trip through the format's
// dequantization (engine/weight_format.ts), which the CPU backend loads by.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { quantize } from "../../src/builder/passes/quantize_weights.ts";
import {
  dequantize,
  GROUP_SIZE,
  type IntWoFormat,
  quantizedByteLength,
  quantizedDataBytes,
} from "../../src/engine/weight_format.ts";
import { randn } from "../backends/cpu/helpers.ts";

const scalesOf = (bytes: Uint8Array, shape: number[], format: IntWoFormat) =>
  new Float32Array(bytes.slice(quantizedDataBytes(shape, format)).buffer);

describe("quantize (weight-only, symmetric, group 128)", () => {
  it("int8-wo: one row, two groups with known max: exact q and scales", () => {
    // Group 0 cycles -2, -1.5, .., 1.5 (max |w| = 2); group 1 is 1.27 but one -12.7 (max 12.7).
    const shape = [1, 256];
    const w = new Float32Array(256);
    for (let c = 0; c < 128; c++) w[c] = ((c % 8) - 4) * 0.5; // max |w| = 2 (c%8 = 0 → -2)
    for (let c = 128; c < 256; c++) w[c] = c === 200 ? -12.7 : 1.27; // max |w| = 12.7
    const bytes = quantize(w, shape, "int8-wo");
    assert.equal(bytes.byteLength, 256 + 2 * 4);
    const scales = scalesOf(bytes, shape, "int8-wo");
    assert.deepEqual([...scales], [Math.fround(2 / 127), Math.fround(12.7 / 127)]);
    const q = new Int8Array(bytes.buffer, 0, 256);
    // group 0: w = -2 → -127; w = 0.5 → round(0.5 / (2/127)) = round(31.75) = 32
    assert.equal(q[0], -127);
    assert.equal(q[5], 32);
    assert.equal(q[4], 0);
    assert.equal(q[7], 95); // 1.5 / (2/127) = 95.25
    // group 1: 1.27 / 0.1 = 12.7 → 13; -12.7 → -127
    assert.equal(q[128], 13);
    assert.equal(q[200], -127);
  });

  it("int4-wo: two values a byte, even feature in the low nibble, two's complement", () => {
    const shape = [1, 128];
    const w = new Float32Array(128);
    w[0] = -7; // q = -7 → nibble 0x9
    w[1] = 3; //  q = 3  → nibble 0x3
    w[2] = 7; //  q = 7
    w[3] = -1; // q = -1 → nibble 0xf
    w[4] = 0.5; // 0.5 / 1 = 0.5 → rounds away from zero to 1
    w[5] = -0.5; // → -1
    const bytes = quantize(w, shape, "int4-wo");
    assert.equal(bytes.byteLength, 64 + 4);
    assert.deepEqual([...scalesOf(bytes, shape, "int4-wo")], [1]);
    assert.equal(bytes[0], 0x39);
    assert.equal(bytes[1], 0xf7);
    assert.equal(bytes[2], 0xf1);
    const back = dequantize(bytes, shape, "int4-wo");
    assert.deepEqual([...back.slice(0, 6)], [-7, 3, 7, -1, 1, -1]);
  });

  for (const format of ["int8-wo", "int4-wo"] as const) {
    it(`${format}: round trip within scale/2 per element, a padded last group, an all-zero group`, () => {
      const shape = [5, 300]; // 300 = 2 groups + 44: the last group is padded to 128
      const w = randn(5 * 300, 7, 0.05);
      w.fill(0, 300, 600); // row 1 all zero: scale 0, q 0
      const bytes = quantize(w, shape, format);
      assert.equal(bytes.byteLength, quantizedByteLength(shape, format));
      const groups = Math.ceil(300 / GROUP_SIZE);
      const scales = scalesOf(bytes, shape, format);
      assert.deepEqual([...scales.slice(groups, 2 * groups)], [0, 0, 0]);
      const back = dequantize(bytes, shape, format);
      assert.equal(back.length, w.length);
      let worst = 0;
      for (let r = 0; r < 5; r++) {
        for (let c = 0; c < 300; c++) {
          const scale = scales[r * groups + Math.floor(c / GROUP_SIZE)];
          const err = Math.abs(back[r * 300 + c] - w[r * 300 + c]);
          worst = Math.max(worst, err / (scale || 1));
          // scale/2, plus fp32 rounding of w/scale and of q·scale
          assert.ok(err <= scale / 2 + 4 * 2 ** -23 * Math.abs(w[r * 300 + c]), `[${r},${c}] err ${err}`);
        }
      }
      assert.ok(worst > 0.3, `the check saw real rounding (worst ${worst} of a scale)`);
    });
  }
});
