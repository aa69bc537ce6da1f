// TensorRT-LLM's `beamSearchDiversityRate`: a ranking-only adjustment of the candidate scores before
// the global top-k. Transformers 5 removed group (diverse) beam search, so this follows TensorRT-LLM.
//
// "sourceBeam" (TensorRT-LLM today): every candidate of running beam b is ranked by
//   cum + rate · b
// — cpp/tensorrt_llm/kernels/beamSearchKernels.cu `addCumLogProbs` (`cumLogProbs[..] + diversityRate
// * iBMIn`) and beamSearchKernels/beamSearchKernelsTemplate.h `beamStage3Kernel` (`pStage2LogProbs[i] +
// diversityRate * index`, index = i / 2 / nBM, the source beam). Running beams are ordered best first,
// so a positive rate favours children of lower-ranked parents and spreads the next beams over more
// parents. The V1 kernel ranks by the adjusted value but stores the raw cumulative log-prob; we do
// the same (the V2 kernel adds the term into the stored log-probs).
//
// "siblingRank" (Li et al. 2016, "A Simple, Fast Diverse Decoding Algorithm"; FasterTransformer and
// early TensorRT-LLM `beam_topK_kernel`: `total.u[i] + diversity_rate * i`, i = rank within the
// beam's own top-k): each candidate is ranked by cum − rate · (its rank among its beam's candidates),
// so siblings compete against the best children of other beams. Sign chosen so a positive rate
// diversifies, as in the paper.

/** How the diversity rate adjusts candidate ranking. */
export type DiversityMode = "sourceBeam" | "siblingRank";

/**
 * Ranking keys [B, V] for the global top-k. acc: [B, V] float32 cumulative scores of every (beam,
 * token) continuation. Only the per-beam best `perBeam` candidates can be chosen in "siblingRank"
 * mode (the kernels keep 2·beamWidth per beam too); the others get −∞.
 */
export function diversityKeys(
  acc: Float32Array,
  B: number,
  V: number,
  rate: number,
  mode: DiversityMode,
  perBeamOrder: (row: Float32Array, k: number) => number[],
  perBeam: number,
): Float32Array {
  const keys = new Float32Array(B * V);
  if (mode === "sourceBeam") {
    for (let b = 0; b < B; b++) {
      const bonus = Math.fround(rate * b);
      for (let v = 0; v < V; v++) keys[b * V + v] = acc[b * V + v] + bonus;
    }
    return keys;
  }
  keys.fill(Number.NEGATIVE_INFINITY);
  const k = Math.min(perBeam, V);
  for (let b = 0; b < B; b++) {
    const row = acc.subarray(b * V, (b + 1) * V);
    perBeamOrder(row, k).forEach((v, rank) => {
      keys[b * V + v] = row[v] - Math.fround(rate * rank);
    });
  }
  return keys;
}
