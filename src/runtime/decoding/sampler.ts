// Picks the next token from one row of logits: greedy argmax, or temperature / top-k / top-p sampling
// with the counter-based generator. Returns the token and its log-probability under the model's raw
// distribution (log_softmax of the unmodified logits, as Hugging Face reports scores).
import { argmax, logSoftmax } from "../../backends/cpu/kernels/index.ts";
import { uniform } from "./counter_rng.ts";

export interface SamplingParams {
  greedy: boolean;
  temperature: number;
  topK: number; // 0 = off
  topP: number; // 1 = off
  seed: number;
}

export function sampleToken(
  logits: Float32Array, // [vocab]
  p: SamplingParams,
  sequence: number,
  step: number,
): { token: number; logProb: number } {
  const V = logits.length;
  const lp = new Float32Array(V);
  logSoftmax(logits, V, lp);
  if (p.greedy || p.topK === 1) {
    const token = argmax(logits, V);
    return { token, logProb: lp[token] };
  }
  // Candidates sorted by logit, descending (ties by id, like a stable sort).
  let order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (p.topK > 0 && p.topK < V) order = order.slice(0, p.topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / p.temperature));
  let total = weights.reduce((s, w) => s + w, 0);
  if (p.topP < 1) {
    // Keep the smallest prefix whose probability mass reaches topP (always at least one token).
    let mass = 0;
    let keep = 0;
    while (keep < order.length) {
      mass += weights[keep] / total;
      keep++;
      if (mass >= p.topP) break;
    }
    order = order.slice(0, keep);
    weights.length = keep;
    total = weights.reduce((s, w) => s + w, 0);
  }
  const u = uniform(p.seed, sequence, step) * total;
  let acc = 0;
  for (let i = 0; i < order.length; i++) {
    acc += weights[i];
    if (u < acc) return { token: order[i], logProb: lp[order[i]] };
  }
  const last = order[order.length - 1];
  return { token: last, logProb: lp[last] };
}
