import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addRmsNorm, layerNorm, rmsNorm } from "../../../src/backends/cpu/kernels/norm.ts";
import { assertClose, assertSame, EPS32, randn } from "./helpers.ts";

const M = 7;
const D = 769;

describe("rmsNorm", () => {
  it("equals weight * x / sqrt(mean(x²) + eps) computed in double", () => {
    const x = randn(M * D, 11, 3, 0.25);
    const weight = randn(D, 12);
    const eps = 1e-5;
    const out = new Float32Array(M * D);
    rmsNorm(x, weight, eps, M, D, out);
    const ref = new Float64Array(M * D);
    for (let r = 0; r < M; r++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
      const rstd = 1 / Math.sqrt(ss / D + eps);
      for (let i = 0; i < D; i++) ref[r * D + i] = weight[i] * x[r * D + i] * rstd;
    }
    // HF's order has 7 fp32 roundings (square, mean, + eps, sqrt, reciprocal, x * rstd, weight *), each
    // within 2^-24 relative, so 8 × 2^-24 relative covers them; an indexing slip would not fit.
    assertClose(out, ref, (i) => 4 * EPS32 * Math.abs(ref[i]) + 1e-30, "rmsNorm");
  });

  it("works in place", () => {
    const x = randn(M * D, 13);
    const weight = randn(D, 14);
    const expected = new Float32Array(M * D);
    rmsNorm(x, weight, 1e-6, M, D, expected);
    rmsNorm(x, weight, 1e-6, M, D, x);
    assertSame(x, expected, "in place");
  });
});

describe("addRmsNorm", () => {
  it("adds x into the residual (fp32 sum) and normalises the sum", () => {
    const residual = randn(M * D, 21);
    const x = randn(M * D, 22);
    const weight = randn(D, 23);
    const before = residual.slice();
    const out = new Float32Array(M * D);
    addRmsNorm(residual, x, weight, 1e-6, M, D, out);
    const sum = new Float32Array(M * D);
    for (let i = 0; i < sum.length; i++) sum[i] = before[i] + x[i];
    assertSame(residual, sum, "residual");
    const expected = new Float32Array(M * D);
    rmsNorm(sum, weight, 1e-6, M, D, expected);
    assertSame(out, expected, "normalised");
  });
});

describe("layerNorm", () => {
  function reference(x: Float32Array, w: Float32Array | null, b: Float32Array | null, eps: number) {
    const out = new Float64Array(M * D);
    const scale = new Float64Array(M * D);
    for (let r = 0; r < M; r++) {
      let mean = 0;
      for (let i = 0; i < D; i++) mean += x[r * D + i];
      mean /= D;
      let variance = 0;
      for (let i = 0; i < D; i++) variance += (x[r * D + i] - mean) ** 2;
      variance /= D; // biased, as torch
      const rstd = 1 / Math.sqrt(variance + eps);
      for (let i = 0; i < D; i++) {
        const wi = w === null ? 1 : w[i];
        const bi = b === null ? 0 : b[i];
        out[r * D + i] = (x[r * D + i] - mean) * rstd * wi + bi;
        // torch computes x * rstd + (-mean * rstd): its roundings scale with |x| + |mean|, not |x - mean|.
        scale[r * D + i] =
          ((Math.abs(x[r * D + i]) + Math.abs(mean)) * rstd + 1) * Math.abs(wi) + Math.abs(bi);
      }
    }
    return { out, scale };
  }

  for (const affine of [true, false]) {
    it(`equals (x - mean) / sqrt(var + eps) ${affine ? "* weight + bias" : "without weight and bias"}`, () => {
      const x = randn(M * D, 31, 2, 0.5);
      const w = affine ? randn(D, 32) : null;
      const b = affine ? randn(D, 33) : null;
      const out = new Float32Array(M * D);
      layerNorm(x, w, b, 1e-5, M, D, out);
      const ref = reference(x, w, b, 1e-5);
      // About 8 fp32 roundings, each within 2^-24 of the magnitude it rounds (see `scale`).
      assertClose(out, ref.out, (i) => 4 * EPS32 * ref.scale[i], "layerNorm");
    });
  }

  it("gives mean 0 and variance 1 per row without affine parameters", () => {
    const x = randn(M * D, 34, 5, -3);
    const out = new Float32Array(M * D);
    layerNorm(x, null, null, 0, M, D, out);
    for (let r = 0; r < M; r++) {
      const row = out.subarray(r * D, (r + 1) * D);
      const mean = row.reduce((a, v) => a + v, 0) / D;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / D;
      assert.ok(Math.abs(mean) < 1e-6, `row ${r} mean ${mean}`);
      assert.ok(Math.abs(variance - 1) < 1e-5, `row ${r} variance ${variance}`);
    }
  });
});
