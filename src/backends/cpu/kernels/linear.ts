// nn.Linear on the CPU: out = x · wᵀ + bias, with w in HF's [outFeatures, inFeatures] layout.
//
// Every dot product runs over contiguous memory (a row of x against a row of w) and sums in double
// (JS numbers), rounded once to fp32 on the store: at least as accurate as torch's fp32 GEMM, whose
// summation order we cannot reproduce anyway. Tiles of 4 rows of w × 2 rows of x keep 8 accumulators
// in registers, so each loaded w value is used twice and each x value four times; decode (m = 1) runs
// the 4 × 1 tile. Rows of w are the outer loop so a 4-row slab of w stays in cache while it meets
// every row of x.

import { checkSize } from "./check.ts";

export function linear(
  x: Float32Array, // [m, k]
  w: Float32Array, // [n, k]
  bias: Float32Array | null, // [n]
  m: number,
  k: number,
  n: number,
  out: Float32Array, // [m, n]; must not overlap x or w
): void {
  checkSize("linear x", x, m * k);
  checkSize("linear w", w, n * k);
  if (bias !== null) checkSize("linear bias", bias, n);
  checkSize("linear out", out, m * n);

  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const w0 = j * k;
    const w1 = w0 + k;
    const w2 = w1 + k;
    const w3 = w2 + k;
    const b0 = bias === null ? 0 : bias[j];
    const b1 = bias === null ? 0 : bias[j + 1];
    const b2 = bias === null ? 0 : bias[j + 2];
    const b3 = bias === null ? 0 : bias[j + 3];
    let r = 0;
    for (; r + 2 <= m; r += 2) {
      const xa = r * k;
      const xb = xa + k;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let c0 = 0;
      let c1 = 0;
      let c2 = 0;
      let c3 = 0;
      for (let t = 0; t < k; t++) {
        const va = x[xa + t];
        const vb = x[xb + t];
        const u0 = w[w0 + t];
        const u1 = w[w1 + t];
        const u2 = w[w2 + t];
        const u3 = w[w3 + t];
        a0 += va * u0;
        a1 += va * u1;
        a2 += va * u2;
        a3 += va * u3;
        c0 += vb * u0;
        c1 += vb * u1;
        c2 += vb * u2;
        c3 += vb * u3;
      }
      const oa = r * n + j;
      const ob = oa + n;
      out[oa] = a0 + b0;
      out[oa + 1] = a1 + b1;
      out[oa + 2] = a2 + b2;
      out[oa + 3] = a3 + b3;
      out[ob] = c0 + b0;
      out[ob + 1] = c1 + b1;
      out[ob + 2] = c2 + b2;
      out[ob + 3] = c3 + b3;
    }
    for (; r < m; r++) {
      const xa = r * k;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let t = 0; t < k; t++) {
        const va = x[xa + t];
        a0 += va * w[w0 + t];
        a1 += va * w[w1 + t];
        a2 += va * w[w2 + t];
        a3 += va * w[w3 + t];
      }
      const oa = r * n + j;
      out[oa] = a0 + b0;
      out[oa + 1] = a1 + b1;
      out[oa + 2] = a2 + b2;
      out[oa + 3] = a3 + b3;
    }
  }
  // The last n % 4 rows of w, one at a time.
  for (; j < n; j++) {
    const w0 = j * k;
    const b0 = bias === null ? 0 : bias[j];
    for (let r = 0; r < m; r++) {
      const xa = r * k;
      let a0 = 0;
      for (let t = 0; t < k; t++) a0 += x[xa + t] * w[w0 + t];
      out[r * n + j] = a0 + b0;
    }
  }
}
