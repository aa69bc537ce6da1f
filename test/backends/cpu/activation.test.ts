import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { act, erf, gatedAct } from "../../../src/backends/cpu/kernels/activation.ts";
import type { HiddenAct } from "../../../src/checkpoint/model_config.ts";
import { assertClose, assertSame, EPS32, randn } from "./helpers.ts";

/**
 * erf by its series with positive terms only (no cancellation):
 * erf(x) = 2/√π · e^{-x²} · Σ_n 2^n x^{2n+1} / (1·3·5···(2n+1)). Accurate to ~1e-15 for |x| ≤ 6.
 */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 500 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

const REFERENCE: Record<HiddenAct, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => {
    const z = x / Math.SQRT2;
    return 0.5 * x * (1 + (Math.abs(z) > 6 ? Math.sign(z) : erfSeries(z))); // 1 - erf(6) < 3e-17
  },
  gelu_pytorch_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  relu: (x) => Math.max(0, x),
};
const ACTS = Object.keys(REFERENCE) as HiddenAct[];

/** Inputs: a grid over [-12, 12] plus random ones, 769 in all. */
function inputs(): Float32Array {
  const x = new Float32Array(769);
  for (let i = 0; i < 481; i++) x[i] = -12 + (24 * i) / 480;
  x.set(randn(288, 41, 4), 481);
  return x;
}

/**
 * The kernels compute in HF's fp32 order, up to ~6 fp32 roundings. Each is within 2^-24 of what it
 * rounds; the largest intermediate is 1 + erf/tanh (≤ 2) times 0.5|x|, so the error is bounded by
 * 8 × 2^-24 × (|result| + |x|): for negative x, (1 + erf) cancels and the result's own relative error
 * is large (exactly as in torch), but its absolute error stays ~|x| × 2^-24.
 */
const tolerance = (x: number, ref: number) => 4 * EPS32 * (Math.abs(ref) + Math.abs(x)) + 1e-30;

describe("erf", () => {
  it("matches tabulated values", () => {
    // erf(0.5), erf(1), erf(2), erf(3), to 17 significant digits (Abramowitz & Stegun table 7.1).
    const table: [number, number][] = [
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
    ];
    for (const [x, value] of table) {
      assert.ok(Math.abs(erf(x) - value) < 4e-16, `erf(${x}) = ${erf(x)}, expected ${value}`);
      assert.ok(Math.abs(erf(-x) + value) < 4e-16, `erf(${-x}) = ${erf(-x)}, expected ${-value}`);
    }
    assert.equal(erf(0), 0);
    assert.equal(erf(Number.POSITIVE_INFINITY), 1);
    assert.equal(erf(-30), -1);
    assert.ok(Number.isNaN(erf(Number.NaN)));
  });

  it("matches the series to double accuracy over [-6, 6]", () => {
    // fdlibm's erf is within 1 ulp; the series is within ~1e-15. Abramowitz–Stegun 7.1.26 (error
    // 1.5e-7) would fail this by eight orders of magnitude.
    for (let i = 0; i <= 1200; i++) {
      const x = -6 + i / 100;
      const want = erfSeries(x);
      assert.ok(Math.abs(erf(x) - want) < 2e-15, `erf(${x}) = ${erf(x)}, series ${want}`);
    }
  });
});

describe("act", () => {
  for (const name of ACTS) {
    it(`${name} equals its double-precision formula`, () => {
      const x = inputs();
      const out = new Float32Array(x.length);
      act(x, x.length, name, out);
      const ref = Array.from(x, REFERENCE[name]);
      assertClose(out, ref, (i) => tolerance(x[i], ref[i]), name);
    });
  }

  it("works in place", () => {
    const x = inputs();
    const expected = new Float32Array(x.length);
    act(x, x.length, "gelu", expected);
    act(x, x.length, "gelu", x);
    assertSame(x, expected, "in place");
  });
});

describe("gatedAct", () => {
  for (const name of ACTS) {
    it(`${name}: act(gate) * up on the fused [m, 2 * inter] layout`, () => {
      const m = 3;
      const inter = 33;
      const gateUp = randn(m * 2 * inter, 51, 3);
      const out = new Float32Array(m * inter);
      gatedAct(gateUp, m, inter, name, out);
      const ref = new Float64Array(m * inter);
      const tol = new Float64Array(m * inter);
      for (let r = 0; r < m; r++) {
        for (let i = 0; i < inter; i++) {
          const g = gateUp[r * 2 * inter + i];
          const u = gateUp[r * 2 * inter + inter + i];
          ref[r * inter + i] = REFERENCE[name](g) * u;
          // act's own bound, scaled by |up|, plus the rounding of the product.
          tol[r * inter + i] =
            tolerance(g, REFERENCE[name](g)) * Math.abs(u) + EPS32 * Math.abs(ref[r * inter + i]);
        }
      }
      assertClose(out, ref, (i) => tol[i], `gated ${name}`);
    });
  }
});
