// Sampling draws from exactly the truncated distribution it claims: over many seeded draws the
// empirical frequencies pass a chi-square goodness-of-fit test against the distribution computed
// here independently (double precision). Threshold: the 0.999 quantile of χ²(df) (Wilson–Hilferty
// approximation, z = 3.090), so a correct sampler fails with probability 0.001 — and since the
// generator is counter-based and the seeds are fixed, the outcome is deterministic, not flaky.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SampleParams } from "../../src/backends/decoding_ops.ts";
import { cpuDecodingOps } from "../../src/backends/host_decoding.ts";

const LOGITS = [2.1, 1.7, 1.7, 0.9, 0.3, -0.2, -0.5, -1.1, -1.4, -2.0, -2.6, -3.3];
const V = LOGITS.length;
const N = 40000;

/** The distribution after temperature → top-k → top-p → min-p, as documented in SamplingConfig. */
function expected(t: number, topK: number, topP: number, minP: number): number[] {
  const order = LOGITS.map((_, i) => i).sort((a, b) => LOGITS[b] - LOGITS[a] || a - b);
  let keep = topK > 0 ? order.slice(0, topK) : order;
  const w = (i: number) => Math.exp(LOGITS[i] / t);
  let total = keep.reduce((s, i) => s + w(i), 0);
  if (topP < 1) {
    let mass = 0;
    let n = 0;
    while (n < keep.length) {
      mass += w(keep[n]) / total;
      n++;
      if (mass >= topP) break;
    }
    keep = keep.slice(0, n);
    total = keep.reduce((s, i) => s + w(i), 0);
  }
  if (minP > 0) {
    const top = w(keep[0]);
    keep = keep.filter((i) => w(i) >= minP * top);
    total = keep.reduce((s, i) => s + w(i), 0);
  }
  const p = new Array(V).fill(0);
  for (const i of keep) p[i] = w(i) / total;
  return p;
}

function chiSquareCritical(df: number): number {
  const z = 3.090232; // one-sided 0.999 normal quantile
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

function draw(t: number, topK: number, topP: number, minP: number, seed: number): number[] {
  const logits = new Float32Array(N * V);
  for (let r = 0; r < N; r++) logits.set(LOGITS, r * V);
  const p: SampleParams = {
    greedy: new Uint8Array(N),
    temperature: new Float32Array(N).fill(t),
    topK: new Int32Array(N).fill(topK),
    topP: new Float32Array(N).fill(topP),
    minP: new Float32Array(N).fill(minP),
    seed: new Float64Array(N).fill(seed),
    sequence: new Int32Array(N),
    step: Int32Array.from({ length: N }, (_, i) => i),
  };
  const counts = new Array(V).fill(0);
  for (const tok of cpuDecodingOps.sample(logits, N, V, p).tokens) counts[tok]++;
  return counts;
}

const CASES: [string, number, number, number, number][] = [
  ["temperature 0.7", 0.7, 0, 1, 0],
  ["temperature 1.5", 1.5, 0, 1, 0],
  ["top-k 5", 1, 5, 1, 0],
  ["top-p 0.8", 1, 0, 0.8, 0],
  ["min-p 0.1", 1, 0, 1, 0.1],
  ["temperature 1.3 + top-k 6 + top-p 0.9", 1.3, 6, 0.9, 0],
];

describe("sampling matches the truncated distribution (chi-square, α = 0.001)", () => {
  for (const [name, t, k, p, m] of CASES) {
    test(name, () => {
      const probs = expected(t, k, p, m);
      const counts = draw(t, k, p, m, 1234);
      let chi = 0;
      let df = -1;
      for (let i = 0; i < V; i++) {
        if (probs[i] === 0) {
          assert.equal(
            counts[i],
            0,
            `token ${i} is outside the truncated set but was drawn ${counts[i]} times`,
          );
          continue;
        }
        const e = probs[i] * N;
        chi += (counts[i] - e) ** 2 / e;
        df++;
      }
      assert.ok(
        chi < chiSquareCritical(df),
        `χ² = ${chi.toFixed(2)} ≥ ${chiSquareCritical(df).toFixed(2)} (df ${df})`,
      );
    });
  }

  test("the test detects a wrong distribution (temperature 1 draws vs temperature 0.7 expectation)", () => {
    const probs = expected(0.7, 0, 1, 0);
    const counts = draw(1, 0, 1, 0, 99);
    let chi = 0;
    for (let i = 0; i < V; i++) chi += (counts[i] - probs[i] * N) ** 2 / (probs[i] * N);
    assert.ok(chi > chiSquareCritical(V - 1));
  });

  test("topK = 1 is greedy, whatever the temperature", () => {
    const c = draw(2.5, 1, 1, 0, 7);
    assert.equal(c[0], N);
  });
});
