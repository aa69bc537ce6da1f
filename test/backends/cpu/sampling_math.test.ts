import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { argmax, logSoftmax } from "../../../src/backends/cpu/kernels/sampling_math.ts";
import { assertClose, EPS32, randn } from "./helpers.ts";

function reference(x: Float32Array): { out: number[]; lse: number } {
  // log Σ exp(x) by summing exp(x - max) in double, straight from the definition.
  const max = Math.max(...x);
  const lse = max + Math.log(x.reduce((a, v) => a + Math.exp(v - max), 0));
  return { out: Array.from(x, (v) => v - lse), lse };
}

describe("logSoftmax", () => {
  for (const [name, offset] of [
    ["ordinary logits", 0],
    ["logits offset by 1e4 (exp would overflow without the max)", 1e4],
  ] as const) {
    it(`equals x - logsumexp(x) on ${name}`, () => {
      const x = randn(769, 91, 5, offset);
      const out = new Float32Array(769);
      logSoftmax(x, 769, out);
      const ref = reference(x);
      // Double arithmetic rounded once to fp32: half an fp32 ulp of |x| + |lse|, the largest term.
      assertClose(out, ref.out, (i) => EPS32 * (Math.abs(x[i]) + Math.abs(ref.lse)), name);
      const total = out.reduce((a, v) => a + Math.exp(v), 0);
      assert.ok(Math.abs(total - 1) < 1e-5, `probabilities sum to ${total}`);
    });
  }

  it("keeps -Infinity logits at -Infinity", () => {
    const x = new Float32Array([1, Number.NEGATIVE_INFINITY, 2, Number.NEGATIVE_INFINITY, 3]);
    const out = new Float32Array(5);
    logSoftmax(x, 5, out);
    assert.equal(out[1], Number.NEGATIVE_INFINITY);
    assert.equal(out[3], Number.NEGATIVE_INFINITY);
    const lse = 3 + Math.log(1 + Math.exp(-1) + Math.exp(-2));
    assertClose([out[0], out[2], out[4]], [1 - lse, 2 - lse, 3 - lse], 4 * EPS32, "finite");
  });
});

describe("argmax", () => {
  it("returns the index of the largest value", () => {
    const x = randn(769, 92);
    let best = 0;
    for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
    assert.equal(argmax(x, x.length), best);
  });

  it("returns the first index on ties, like torch.argmax", () => {
    assert.equal(argmax(new Float32Array([1, 5, 3, 5, 5]), 5), 1);
    assert.equal(argmax(new Float32Array([-2, -2]), 2), 0);
  });

  it("treats NaN as the largest value, like torch.argmax", () => {
    assert.equal(argmax(new Float32Array([1, Number.NaN, 9, Number.NaN]), 4), 1);
    assert.equal(argmax(new Float32Array([Number.NaN, 9]), 2), 0);
  });

  it("looks at the first n values only, and returns -1 for none", () => {
    assert.equal(argmax(new Float32Array([1, 2, 9]), 2), 1);
    assert.equal(argmax(new Float32Array([1]), 0), -1);
  });
});
