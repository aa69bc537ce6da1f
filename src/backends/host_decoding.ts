// The decoding ops (decoding_ops.ts) on the host: the CPU backend's, the CUDA backend's for logits it
// returns to the host, and the reference the GPU sampling kernels are tested against.
import { uniform } from "./counter_rng.ts";
import { argmax, logSoftmax } from "./cpu/kernels/sampling_math.ts";
import type { DecodingOps, PenaltyParams, SampleParams } from "./decoding_ops.ts";

export const cpuDecodingOps: DecodingOps = {
  addBias(logits, B, V, bias) {
    for (let r = 0; r < B; r++) for (let i = 0; i < V; i++) logits[r * V + i] += bias[i];
  },

  applyPenalties(logits, B, V, p: PenaltyParams) {
    if (p.fed?.some((f) => f >= 0))
      throw new Error(
        "internal: penalty lists with fed entries reach applyPenalties (enqueueSample resolves them)",
      );
    for (let r = 0; r < B; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      const toks = p.tokens[r];
      const rep = p.repetition[r];
      if (rep !== 1) {
        const seen = new Set<number>(toks);
        for (const t of seen) row[t] = row[t] < 0 ? Math.fround(row[t] * rep) : Math.fround(row[t] / rep);
      }
      if (p.presence[r] !== 0 || p.frequency[r] !== 0) {
        const counts = new Map<number, number>();
        for (let i = p.promptLens[r]; i < toks.length; i++)
          counts.set(toks[i], (counts.get(toks[i]) ?? 0) + 1);
        for (const [t, n] of counts) row[t] -= p.presence[r] + p.frequency[r] * n;
      }
    }
  },

  banTokens(logits, B, V, banned) {
    for (let r = 0; r < B; r++) for (const id of banned[r]) logits[r * V + id] = Number.NEGATIVE_INFINITY;
  },

  logSoftmax(logits, B, V, temperature, greedy, out) {
    const tmp = new Float32Array(V);
    for (let r = 0; r < B; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      const t = greedy[r] ? 1 : temperature[r];
      for (let i = 0; i < V; i++) tmp[i] = t === 1 ? row[i] : row[i] / t;
      logSoftmax(tmp, V, out.subarray(r * V, (r + 1) * V));
    }
  },

  sample(logits, B, V, p: SampleParams, lp = new Float32Array(B * V)) {
    const tokens = new Int32Array(B);
    const logProbs = new Float32Array(B);
    this.logSoftmax(logits, B, V, p.temperature, p.greedy, lp);
    for (let r = 0; r < B; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      const token = p.greedy[r] || p.topK[r] === 1 ? argmax(row, V) : draw(row, V, p, r);
      tokens[r] = token;
      logProbs[r] = lp[r * V + token];
    }
    return { tokens, logProbs };
  },
};

/** temperature → top-k → top-p → min-p, then one draw from the counter-based generator. */
function draw(row: Float32Array, V: number, p: SampleParams, r: number): number {
  const t = p.temperature[r];
  // Candidates by logit, descending; ties by id (a stable order every backend can reproduce).
  let order = Array.from({ length: V }, (_, i) => i).filter((i) => row[i] !== Number.NEGATIVE_INFINITY);
  if (order.length === 0) return argmax(row, V);
  order.sort((a, b) => row[b] - row[a] || a - b);
  const k = p.topK[r];
  if (k > 0 && k < order.length) order = order.slice(0, k);
  const max = row[order[0]];
  let weights = order.map((i) => Math.exp((row[i] - max) / t));
  let total = weights.reduce((s, w) => s + w, 0);
  if (p.topP[r] < 1) {
    // The smallest prefix whose mass reaches topP (at least one token).
    let mass = 0;
    let keep = 0;
    while (keep < order.length) {
      mass += weights[keep] / total;
      keep++;
      if (mass >= p.topP[r]) break;
    }
    order = order.slice(0, keep);
    weights = weights.slice(0, keep);
    total = weights.reduce((s, w) => s + w, 0);
  }
  if (p.minP[r] > 0) {
    const cut = p.minP[r] * weights[0];
    const keep = weights.filter((w) => w >= cut).length;
    order = order.slice(0, keep);
    weights = weights.slice(0, keep);
    total = weights.reduce((s, w) => s + w, 0);
  }
  const u = uniform(p.seed[r], p.sequence[r], p.step[r]) * total;
  let acc = 0;
  for (let i = 0; i < order.length; i++) {
    acc += weights[i];
    if (u < acc) return order[i];
  }
  return order[order.length - 1];
}
