// The CPU's peak rates for `kiln bench`'s floors, measured on the kernels and sizes the engine uses.
// A floor is a lower bound only if its rate is an upper bound, so each rate is the best of many short
// repetitions (a repetition slowed by another process does not lower it) over the plan's own linear
// shapes (the kernel's speed depends on the shape and on what fits in cache).
import { linear } from "./kernels/linear.ts";

/** A linear layer's shape: [n, k] weights. */
export interface LinearShape {
  k: number;
  n: number;
}

const REPS = 7;
/** FLOPs of one timed repetition at most: enough to time, short enough to dodge a busy core. */
const REP_FLOPS = 16e6;
/** Row counts measured: a short prompt's rows (x stays in L1), a prefill's (x in L2), and a batched
 * prefill's (the kernel may do better per FLOP with more rows of x). */
const ROWS = [8, 64, 256];

/** Best FLOP/s of the `linear` kernel over `shapes` (distinct ones; at most 8 are measured). */
export function measureLinearRate(shapes: readonly LinearShape[]): number {
  const distinct = [...new Map(shapes.map((s) => [`${s.k}x${s.n}`, s])).values()].slice(0, 8);
  if (distinct.length === 0) distinct.push({ k: 1024, n: 1024 });
  let best = 0;
  for (const { k, n: fullN } of distinct) {
    for (const m of ROWS) {
      // Fewer rows of w keep a repetition short; per FLOP the kernel does the same work (w is walked
      // in slabs of 4 rows, each meeting every row of x).
      const n = Math.max(4, Math.min(fullN, 4 * Math.floor(REP_FLOPS / (2 * m * k) / 4)));
      const x = new Float32Array(m * k).fill(0.5);
      const w = new Float32Array(n * k).fill(0.25);
      const out = new Float32Array(m * n);
      linear(x, w, null, m, k, n, out); // warm-up: the JIT's optimised code, caches
      for (let r = 0; r < REPS; r++) {
        const t0 = performance.now();
        linear(x, w, null, m, k, n, out);
        const s = (performance.now() - t0) / 1000;
        if (s > 0) best = Math.max(best, (2 * m * k * n) / s);
      }
    }
  }
  return best;
}

/** Best copy bandwidth (bytes read + written per second) for a working set of `bytes` (the weights a
 * decode step reads), so a model that fits in cache is floored at cache speed, not DRAM speed. */
export function measureCopyRate(bytes: number): number {
  const floats = Math.max(1 << 18, Math.min(32 << 20, Math.floor(bytes / 8))); // two halves: 1 MiB..256 MiB
  const a = new Float32Array(floats).fill(1);
  const b = new Float32Array(floats);
  b.set(a); // warm-up: page faults
  let best = 0;
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    b.set(a);
    const s = (performance.now() - t0) / 1000;
    if (s > 0) best = Math.max(best, (2 * 4 * floats) / s);
  }
  return best;
}
