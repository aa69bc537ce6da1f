// Shared by the CPU kernel tests: a seeded random source and a closeness assertion that reports the
// worst element.

import assert from "node:assert/strict";

/** One ulp of fp32 at 1: 2^-23. Tolerances below are written as multiples of it (or of 2^-24). */
export const EPS32 = 2 ** -23;

/** mulberry32: a small seeded generator, so every run of a test sees the same numbers. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller), as fp32. */
export function randn(n: number, seed: number, scale = 1, mean = 0): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - next();
    const v = next();
    out[i] = mean + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/**
 * Asserts |got[i] - want[i]| <= tol(i) for every i, where tol is a number or a per-element function;
 * the message names the first failing index, both values and the bound.
 */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number | ((i: number) => number),
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length} vs ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const bound = typeof tol === "number" ? tol : tol(i);
    const diff = Math.abs(got[i] - want[i]);
    if (!(diff <= bound) && !(Object.is(got[i], want[i]) || got[i] === want[i])) {
      assert.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]} (diff ${diff}, bound ${bound})`);
    }
  }
}

/** Asserts two arrays are identical element for element (bitwise for finite fp32 values). */
export function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assertClose(got, want, 0, what);
}
