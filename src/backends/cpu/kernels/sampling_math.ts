// The arithmetic under decoding: log-probabilities and greedy choice over one row of logits.

import { checkSize } from "./check.ts";

/**
 * out[i] = logits[i] - max - log(Σ exp(logits[j] - max)), computed in double and rounded to fp32
 * once (torch.log_softmax's formula; -Infinity logits give -Infinity). `out` may be `logits`.
 */
export function logSoftmax(
  logits: Float32Array, // [n]
  n: number,
  out: Float32Array, // [n]
): void {
  checkSize("logSoftmax logits", logits, n);
  checkSize("logSoftmax out", out, n);
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
  const shift = max + Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = logits[i] - shift;
}

/**
 * Index of the largest logit, the first one on ties, like torch.argmax; a NaN counts as the largest
 * (torch propagates NaN), so the first NaN wins. Returns -1 when n is 0.
 */
export function argmax(
  logits: Float32Array, // [n]
  n: number,
): number {
  checkSize("argmax logits", logits, n);
  if (n === 0) return -1;
  let best = 0;
  let bestValue = logits[0];
  if (Number.isNaN(bestValue)) return 0;
  for (let i = 1; i < n; i++) {
    const v = logits[i];
    if (v > bestValue) {
      best = i;
      bestValue = v;
    } else if (Number.isNaN(v)) {
      return i;
    }
  }
  return best;
}
