// The FP8 GEMM's error model (test/gpu/kernels/tolerances.ts FP8_MMA, fp8Dot), on the CPU: a simulation of
// the accumulation it states — each 32-product MMA aligns its addends (the carried sum and the products)
// to 13 fraction bits below the largest and truncates, then truncates its result to 13 fraction bits,
// with the partial sum promoted to an fp32 register every `interval` instructions — never exceeds
// fp8Dot's bound, on random E4M3 data and where products cancel. There a bound on the results' truncation
// alone (the model before the H200 exceeded it, 2026-12-05) is far too small: the case shows why the
// alignment term is there.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FP8_MMA, fp8Dot } from "../../gpu/kernels/tolerances.ts";
import { rng } from "../cpu/helpers.ts";

const F = FP8_MMA.fractionBits;
const K = FP8_MMA.productsPerInstruction;

/** x truncated toward zero to a multiple of `unit`. */
const cut = (x: number, unit: number) => Math.trunc(x / unit) * unit;

/** What the modelled tensor core computes for Σ x[c]·w[c], promoting every `interval` instructions. */
function simulate(x: Float64Array, w: Float64Array, k: number, interval: number): number {
  let fp32 = 0;
  let carried = 0;
  for (let start = 0, j = 0; start < k; start += K, j++) {
    if (j % interval === 0) {
      fp32 = Math.fround(fp32 + carried);
      carried = 0;
    }
    const addends = [carried];
    for (let c = start; c < Math.min(start + K, k); c++) addends.push(x[c] * w[c]);
    const top = Math.max(...addends.map(Math.abs));
    if (top === 0) continue;
    const u = 2 ** (Math.floor(Math.log2(top)) - F);
    const s = addends.reduce((a, b) => a + cut(b, u), 0);
    carried = s === 0 ? 0 : cut(s, 2 ** (Math.floor(Math.log2(Math.abs(s))) - F));
  }
  return Math.fround(fp32 + carried);
}

/** A random E4M3 normal value: ±(1 + m/8)·2^e, e in [lo, hi]. */
function e4m3(r: () => number, lo = -6, hi = 8): number {
  const m = Math.floor(r() * 8);
  const e = lo + Math.floor(r() * (hi - lo + 1));
  return (r() < 0.5 ? -1 : 1) * (1 + m / 8) * 2 ** e;
}

/** The worst |simulated − exact| / bound over every promotion interval the model covers. */
function worstShare(x: Float64Array, w: Float64Array, k: number): number {
  const { sum, slop } = fp8Dot(x, 0, w, 0, k);
  let worst = 0;
  for (const interval of FP8_MMA.promotionIntervals)
    worst = Math.max(worst, Math.abs(simulate(x, w, k, interval) - sum) / slop);
  return worst;
}

describe("FP8 MMA error model", () => {
  test("random E4M3 data, k 256, 640 and 4,096: the simulated error stays inside fp8Dot's bound", () => {
    const r = rng(7);
    let worst = 0;
    for (const k of [256, 640, 4096])
      for (let trial = 0; trial < 40; trial++) {
        const x = Float64Array.from({ length: k }, () => e4m3(r));
        const w = Float64Array.from({ length: k }, () => e4m3(r, -9, 0));
        worst = Math.max(worst, worstShare(x, w, k));
      }
    console.log(`worst ${worst.toFixed(3)} of the bound`);
    assert.ok(worst <= 1, `worst error ${worst.toFixed(3)} of the bound`);
    assert.ok(worst > 0.01, `the simulation lost nothing (${worst}): the test lost its point`);
  });

  test("products that cancel: small ones fall out of the window; the bound covers it, the result's alone does not", () => {
    // One instruction: +2¹⁰ and −2¹⁰ cancel; 30 products of 2⁻⁵ sit below the window (u = 2⁻³) and are lost.
    const k = K;
    const x = new Float64Array(k).fill(2 ** -3);
    const w = new Float64Array(k).fill(2 ** -2);
    [x[0], w[0], x[1], w[1]] = [2 ** 5, 2 ** 5, -(2 ** 5), 2 ** 5];
    const { sum, slop } = fp8Dot(x, 0, w, 0, k);
    const error = Math.abs(simulate(x, w, k, Number.POSITIVE_INFINITY) - sum);
    assert.equal(sum, 30 * 2 ** -5);
    assert.ok(error > 0.5 * sum, `the small products were not lost (error ${error})`);
    assert.ok(error <= slop, `error ${error} > bound ${slop}`);
    const resultOnly = (1 + 2 ** -F) * 2 ** -F * Math.abs(sum) + 2 ** -21 * (2 ** 11 + 30 * 2 ** -5);
    assert.ok(error > 100 * resultOnly, "the result's truncation alone would have covered it");
  });
});
