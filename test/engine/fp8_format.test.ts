// The fp8 weight format's definition (src/engine/fp8_format.ts): region layout, dequantization by
// per-row scales, the static input scale, and the activation quantization every backend must compute.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UnknownWeightFormatError } from "../../src/engine/errors.ts";
import {
  dequantizeFp8,
  fakeQuantizeActivations,
  fp8ByteLength,
  fp8InputScale,
} from "../../src/engine/fp8_format.ts";
import { assertKnownFormat, dequantize, quantizedByteLength } from "../../src/engine/weight_format.ts";
import { e4m3ToF32, f32ToE4m3 } from "../../src/fp8_e4m3.ts";

/** A hand-made region: q codes row-major, then row scales, then (optionally) the input scale. */
function region(q: number[], scales: number[], inputScale?: number): Uint8Array {
  const tail = new Float32Array([...scales, ...(inputScale === undefined ? [] : [inputScale])]);
  const out = new Uint8Array(q.length + tail.byteLength);
  out.set(q);
  out.set(new Uint8Array(tail.buffer), q.length);
  return out;
}

describe("fp8 weight format", () => {
  test("byte length: q, one fp32 scale a row, and 4 more bytes for a static input scale", () => {
    assert.equal(fp8ByteLength([3, 5], "dynamic"), 15 + 12);
    assert.equal(fp8ByteLength([3, 5], "static"), 15 + 12 + 4);
    assert.equal(quantizedByteLength([3, 5], "fp8", { activation: "static" }), 31);
  });

  test("w = e4m3(q) × the scale of its row", () => {
    // Row 0: 1, 1.5, -2 scaled by 0.5; row 1: 448, 2^-9, 0 scaled by 2.
    const bytes = region([0x38, 0x3c, 0xc0, 0x7e, 0x01, 0x00], [0.5, 2], 0.25);
    assert.deepEqual([...dequantizeFp8(bytes, [2, 3])], [0.5, 0.75, -1, 896, 2 ** -8, 0]);
    assert.deepEqual([...dequantize(bytes, [2, 3], "fp8")], [0.5, 0.75, -1, 896, 2 ** -8, 0]);
    assert.equal(fp8InputScale(bytes, [2, 3]), 0.25);
  });

  test("an fp8 weight must say how its activations are scaled", () => {
    assert.throws(() => assertKnownFormat("w", "fp8", {}), UnknownWeightFormatError);
    assert.throws(
      () => assertKnownFormat("w", "fp8", { activation: "per-block" as never }),
      /fp8 with activation \\"per-block\\"/,
    );
    assertKnownFormat("w", "fp8", { activation: "dynamic" });
  });
});

describe("fp8 activation quantization", () => {
  test("dynamic: each row scaled by its own max |x| / 448, so the max maps to 448 exactly", () => {
    const x = new Float32Array([1, -0.3, 0.7, 100, 3, -50, 0, 0, 0]);
    fakeQuantizeActivations(x, 3);
    assert.equal(x[0], 1); // the row max survives exactly
    assert.equal(x[3], 100);
    assert.deepEqual([...x.slice(6)], [0, 0, 0]); // a zero row stays zero (no 0/0)
    const s = Math.fround(1 / 448);
    assert.equal(x[1], e4m3ToF32(f32ToE4m3(-0.3 / s)) * s); // the nearest E4M3 step, rescaled
    assert.notEqual(x[1], -0.3); // 3 mantissa bits cannot hold -0.3 × 448
    assert.ok(Math.abs(x[1] + 0.3) <= 0.3 / 16, `${x[1]}`); // within half a mantissa step
  });

  test("static: one scale for every row, saturating at ±448 × scale", () => {
    const x = new Float32Array([1, 2, 1000, -1000]);
    fakeQuantizeActivations(x, 2, 0.5);
    assert.deepEqual([...x], [1, 2, 224, -224]);
  });
});
