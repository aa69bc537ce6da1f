import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applyRope, ropeInvFreq } from "../../../src/backends/cpu/kernels/rope.ts";
import type { RopeConfig, RopeScaling } from "../../../src/checkpoint/model_config.ts";
import { assertClose, assertSame, EPS32, randn } from "./helpers.ts";

const config = (theta: number, rotaryDim: number, scaling: RopeScaling): RopeConfig => ({
  theta,
  rotaryDim,
  scaling,
});

/** θ^(-2i/dim) in double: the closed form of the default inverse frequencies. */
function closedForm(theta: number, dim: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => theta ** (-(2 * i) / dim));
}

/**
 * HF rounds the exponent 2i/dim to fp32 before the pow, which moves θ^-e by up to ln(θ) × 2^-24
 * relative; the pow and the reciprocal add two more fp32 roundings.
 */
const invFreqTolerance = (theta: number) => (Math.log(theta) + 2) * 2 ** -24;

describe("ropeInvFreq", () => {
  it("default: theta 10000, dim 8 is [1, 0.1, 0.01, 0.001] in fp32", () => {
    const { invFreq, attentionScaling } = ropeInvFreq(config(10000, 8, { type: "default" }), 1);
    assert.deepEqual(Array.from(invFreq), [1, 0.1, 0.01, 0.001].map(Math.fround));
    assert.equal(attentionScaling, 1);
  });

  it("default: theta 500000, dim 128 follows θ^(-2i/dim)", () => {
    const { invFreq } = ropeInvFreq(config(500000, 128, { type: "default" }), 1);
    const want = closedForm(500000, 128);
    assertClose(invFreq, want, (i) => invFreqTolerance(500000) * want[i], "default");
  });

  it("linear divides the default frequencies by the factor", () => {
    const base = ropeInvFreq(config(10000, 64, { type: "default" }), 1).invFreq;
    const { invFreq } = ropeInvFreq(config(10000, 64, { type: "linear", factor: 3.7 }), 1);
    // torch rounds the factor to fp32 (≤ 2^-24 relative) and divides in fp32 (≤ 2^-24 more).
    assertClose(
      invFreq,
      Array.from(base, (v) => v / 3.7),
      (i) => 2 * 2 ** -24 * invFreq[i],
      "linear",
    );
  });

  it("linear rotates position p as the default rotates position p / factor", () => {
    const factor = 4; // a power of two, so dividing inv_freq or the position by it is exact in fp32
    const positions = new Int32Array([0, 4, 12, 400, 4092]);
    const defaultFreq = ropeInvFreq(config(10000, 32, { type: "default" }), 1).invFreq;
    const linearFreq = ropeInvFreq(config(10000, 32, { type: "linear", factor }), 1).invFreq;
    const x = randn(positions.length * 2 * 32, 61);
    const scaled = x.slice();
    applyRope(scaled, positions.length, 2, 32, 32, positions, linearFreq, 1);
    const reference = x.slice();
    applyRope(
      reference,
      positions.length,
      2,
      32,
      32,
      positions.map((p) => p / factor),
      defaultFreq,
      1,
    );
    assertSame(scaled, reference, "linear vs divided positions");
  });

  // Llama 3.1's parameters; dim 128 puts frequencies in all three bands.
  const llama3: RopeScaling = {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  };

  it("llama3 follows HF's formula, worked out here in double", () => {
    const theta = 500000;
    const dim = 128;
    const { invFreq, attentionScaling } = ropeInvFreq(config(theta, dim, llama3), 1);
    assert.equal(attentionScaling, 1);
    const lowFreqWavelen = 8192 / 1; // original_max_position_embeddings / low_freq_factor
    const highFreqWavelen = 8192 / 4; // original_max_position_embeddings / high_freq_factor
    const bands = { high: 0, low: 0, medium: 0 };
    const want = closedForm(theta, dim).map((inv) => {
      const wavelen = (2 * Math.PI) / inv;
      if (wavelen < highFreqWavelen) {
        bands.high++;
        return inv; // high frequency: kept
      }
      if (wavelen > lowFreqWavelen) {
        bands.low++;
        return inv / 8; // low frequency: divided by factor
      }
      bands.medium++;
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      return ((1 - smooth) * inv) / 8 + smooth * inv;
    });
    assert.ok(bands.high > 0 && bands.low > 0 && bands.medium > 0, `bands ${JSON.stringify(bands)}`);
    // invFreqTolerance for the default frequencies, and a few more fp32 ops in the smoothing.
    assertClose(invFreq, want, (i) => (invFreqTolerance(theta) + 8 * 2 ** -24) * want[i], "llama3");
    assert.equal(invFreq[0], 1);
  });

  const dynamic: RopeScaling = { type: "dynamic", factor: 2, originalMaxPositionEmbeddings: 64 };

  it("dynamic equals default up to the original length", () => {
    const base = ropeInvFreq(config(10000, 64, { type: "default" }), 1).invFreq;
    for (const seqLen of [1, 17, 64]) {
      assertSame(ropeInvFreq(config(10000, 64, dynamic), seqLen).invFreq, base, `seqLen ${seqLen}`);
    }
  });

  it("dynamic grows the base beyond the original length", () => {
    const base = ropeInvFreq(config(10000, 64, { type: "default" }), 1).invFreq;
    for (const seqLen of [65, 100, 1000]) {
      const { invFreq } = ropeInvFreq(config(10000, 64, dynamic), seqLen);
      assert.notDeepEqual(Array.from(invFreq), Array.from(base), `seqLen ${seqLen}`);
      // base' = θ ((factor · seqLen / origMax) − (factor − 1)) ^ (dim / (dim − 2))
      const grown = 10000 * ((2 * seqLen) / 64 - 1) ** (64 / 62);
      const want = closedForm(grown, 64);
      // HF computes base' with fp32 tensor ops (a few more roundings of 2^-24, each scaled by ln θ).
      assertClose(invFreq, want, (i) => (invFreqTolerance(grown) + 4 * 2 ** -24 * 10) * want[i], "dynamic");
      assert.equal(invFreq[0], 1);
      assert.ok(invFreq[31] < base[31], "lower frequencies slow down");
    }
  });

  it("rejects an odd rotary dimension", () => {
    assert.throws(() => ropeInvFreq(config(10000, 7, { type: "default" }), 1), RangeError);
  });
});

describe("applyRope", () => {
  const numHeads = 3;
  const headDim = 64;
  const positions = new Int32Array([0, 1, 2, 17, 255, 4095, 5000]);
  const invFreq = ropeInvFreq(config(10000, headDim, { type: "default" }), 1).invFreq;

  it("leaves position 0 unchanged", () => {
    const x = randn(2 * numHeads * headDim, 71);
    const rotated = x.slice();
    applyRope(rotated, 2, numHeads, headDim, headDim, new Int32Array([0, 0]), invFreq, 1);
    assertSame(rotated, x, "position 0");
  });

  it("rotates each (x_i, x_{i+half}) pair by position · invFreq[i] (rotate_half convention)", () => {
    const n = positions.length;
    const x = randn(n * numHeads * headDim, 72);
    const rotated = x.slice();
    applyRope(rotated, n, numHeads, headDim, headDim, positions, invFreq, 1);
    const half = headDim / 2;
    const want = new Float64Array(x.length);
    const tol = new Float64Array(x.length);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < numHeads; h++) {
        const b = (t * numHeads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const angle = positions[t] * invFreq[i];
          const [x1, x2] = [x[b + i], x[b + i + half]];
          want[b + i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
          want[b + i + half] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
          // HF rounds the angle to fp32 (error ≤ angle × 2^-24, which moves the result by that much
          // times the pair's norm), then rounds cos, sin, two products and a sum (≤ 6 × 2^-24 × norm).
          const norm = Math.hypot(x1, x2);
          tol[b + i] = tol[b + i + half] = (angle + 6) * 2 ** -24 * norm;
        }
      }
    }
    assertClose(rotated, want, (i) => tol[i], "rotation");
  });

  it("preserves the norm of every rotated pair", () => {
    const n = positions.length;
    const x = randn(n * numHeads * headDim, 73);
    const rotated = x.slice();
    applyRope(rotated, n, numHeads, headDim, headDim, positions, invFreq, 1);
    const half = headDim / 2;
    for (let r = 0; r < n * numHeads; r++) {
      for (let i = 0; i < half; i++) {
        const b = r * headDim;
        const before = Math.hypot(x[b + i], x[b + i + half]);
        const after = Math.hypot(rotated[b + i], rotated[b + i + half]);
        // fp32 cos² + sin² is 1 within 2^-23, plus the roundings of the products and sums.
        assert.ok(Math.abs(after - before) <= 4 * EPS32 * before, `row ${r} pair ${i}: ${before} → ${after}`);
      }
    }
  });

  it("with partial rotary, rotates only the first rotaryDim dims of each head", () => {
    const rotaryDim = 16;
    const partialFreq = ropeInvFreq(config(10000, rotaryDim, { type: "default" }), 1).invFreq;
    const n = positions.length;
    const x = randn(n * numHeads * headDim, 74);
    const rotated = x.slice();
    applyRope(rotated, n, numHeads, headDim, rotaryDim, positions, partialFreq, 1);
    for (let r = 0; r < n * numHeads; r++) {
      const b = r * headDim;
      assertSame(
        rotated.subarray(b + rotaryDim, b + headDim),
        x.subarray(b + rotaryDim, b + headDim),
        "pass",
      );
      // The rotated part is what a head of size rotaryDim gets.
      const alone = x.slice(b, b + rotaryDim);
      applyRope(
        alone,
        1,
        1,
        rotaryDim,
        rotaryDim,
        positions.subarray(Math.floor(r / numHeads)),
        partialFreq,
        1,
      );
      assertSame(rotated.subarray(b, b + rotaryDim), alone, `row ${r}`);
    }
  });

  it("scales cos and sin by attentionScaling", () => {
    const x = randn(numHeads * headDim, 75);
    const once = x.slice();
    const scaled = x.slice();
    applyRope(once, 1, numHeads, headDim, headDim, new Int32Array([9]), invFreq, 1);
    applyRope(scaled, 1, numHeads, headDim, headDim, new Int32Array([9]), invFreq, 2);
    // × 2 is exact in fp32, so the scaled rotation is exactly twice the plain one.
    assertSame(
      scaled,
      Array.from(once, (v) => 2 * v),
      "scaled",
    );
  });
});
