import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { linear } from "../../../src/backends/cpu/kernels/linear.ts";
import { assertClose, EPS32, randn } from "./helpers.ts";

/** out[r, j] = Σ_t x[r, t] w[j, t] + b[j] in double, and Σ |x w| + |b| (the scale of its rounding). */
function reference(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  m: number,
  k: number,
  n: number,
) {
  const out = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let s = b === null ? 0 : b[j];
      let a = b === null ? 0 : Math.abs(b[j]);
      for (let t = 0; t < k; t++) {
        s += x[r * k + t] * w[j * k + t];
        a += Math.abs(x[r * k + t] * w[j * k + t]);
      }
      out[r * n + j] = s;
      scale[r * n + j] = a;
    }
  }
  return { out, scale };
}

describe("linear", () => {
  // Shapes: m = 1 (decode, the 4×1 tile), m = 2 and 5 (2-row tiles plus a leftover row); n = 33 and 7
  // leave n % 4 rows of w for the single-row tail; k = 769 is odd.
  const cases = [
    { m: 1, k: 769, n: 33 },
    { m: 2, k: 769, n: 8 },
    { m: 5, k: 769, n: 33 },
    { m: 5, k: 7, n: 7 },
  ];
  for (const { m, k, n } of cases) {
    for (const withBias of [false, true]) {
      it(`m=${m} k=${k} n=${n} ${withBias ? "with" : "without"} bias equals a double-precision reference`, () => {
        const x = randn(m * k, 1 + m);
        const w = randn(n * k, 2 + n);
        const b = withBias ? randn(n, 3) : null;
        const out = new Float32Array(m * n).fill(Number.NaN);
        linear(x, w, b, m, k, n, out);
        const ref = reference(x, w, b, m, k, n);
        // The kernel sums in double and rounds once to fp32: the error is half an fp32 ulp of the result
        // plus double rounding, far below EPS32 × Σ|x w|. A wrong index would be off by O(1).
        assertClose(out, ref.out, (i) => EPS32 * ref.scale[i], "linear");
      });
    }
  }

  it("adds the bias of the output column", () => {
    const x = new Float32Array([1, 2]); // [1, 2]
    const w = new Float32Array([1, 0, 0, 1, 1, 1, 2, 0, 0, 3]); // [5, 2]
    const b = new Float32Array([10, 20, 30, 40, 50]);
    const out = new Float32Array(5);
    linear(x, w, b, 1, 2, 5, out);
    assert.deepEqual(Array.from(out), [11, 22, 33, 42, 56]);
  });

  it("refuses arrays smaller than their shape", () => {
    assert.throws(
      () => linear(new Float32Array(3), new Float32Array(8), null, 1, 4, 2, new Float32Array(2)),
      RangeError,
    );
  });
});
