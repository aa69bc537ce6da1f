// Beam hypotheses and the float32 ranking rules they are compared by, ported from Hugging Face
// transformers' vectorized beam search (generation/utils.py, 4.5x–5.x: `_update_finished_beams`,
// `_check_early_stop_heuristic`). HF keeps, per prompt, `beamWidth` finished slots
// (`sequences`, `beam_scores`, `is_sent_finished`) that start as placeholders scored −1e9; every step
// merges the step's candidates into them with one top-k. Masked candidates keep their score plus
// −1e9 per mask, so they lose to any real hypothesis but still fill empty slots, exactly as in HF.

/** HF's "very large negative" mask. Exact in float32 (1e9 = 2^9 · 1953125). */
export const MASK = -1e9;

/** One path through the beam tree: generated tokens only (the end id included when it ended with one). */
export interface Hypothesis {
  tokens: number[];
  /** Per token: its log-probability in the row it was chosen from. */
  logProbs: number[];
  /** float32 running sum of logProbs, HF's `running_beam_scores` / `topk_log_probs` entry. */
  cumLogProb: number;
  /** HF's `beam_scores` entry: cumLogProb / length ** lengthPenalty (float32), plus −1e9 per mask. */
  score: number;
  /** HF's `is_sent_finished`: false for placeholder slots. */
  finished: boolean;
}

/** True when (a, values[a]) ranks before (b, values[b]): larger value first, NaN above everything (as
 * torch.topk), equal values by lower index. torch.topk leaves the order of ties unspecified; the lower
 * index first is our assumption (what CPU top-k gives in practice for small k). */
function ranksBefore(values: ArrayLike<number>, a: number, b: number): boolean {
  const va = values[a];
  const vb = values[b];
  if (va > vb) return true;
  if (va < vb) return false;
  const aNaN = Number.isNaN(va);
  const bNaN = Number.isNaN(vb);
  if (aNaN !== bNaN) return aNaN;
  return a < b;
}

/** Indices of the k best values, best first (torch.topk(values, k)[1] with ties by lower index).
 * A heap of the k best seen so far: O(n log k). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const n = values.length;
  if (k > n) throw new Error(`topK: k=${k} exceeds the ${n} values`);
  const heap: number[] = []; // heap[0] = the worst of the kept ones
  const worse = (a: number, b: number) => ranksBefore(values, b, a);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < heap.length && worse(heap[l], heap[w])) w = l;
      if (r < heap.length && worse(heap[r], heap[w])) w = r;
      if (w === i) return;
      [heap[i], heap[w]] = [heap[w], heap[i]];
      i = w;
    }
  };
  for (let i = 0; i < n && k > 0; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!worse(heap[c], heap[p])) break;
        [heap[c], heap[p]] = [heap[p], heap[c]];
        c = p;
      }
    } else if (ranksBefore(values, i, heap[0])) {
      heap[0] = i;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (ranksBefore(values, a, b) ? -1 : 1));
}

/** float32 `x / length ** lengthPenalty` as torch computes it on the CPU: Python's `int ** float` is a
 * double, rounded to float32 as the scalar operand, then an IEEE float32 division. */
export function lengthNormalize(x: number, length: number, lengthPenalty: number): number {
  return Math.fround(x / Math.fround(length ** lengthPenalty));
}

/** A step's candidate as the finished set sees it: its masked, length-normalized score and a builder
 * for its path (only the few that are kept get their token arrays copied). */
export interface FinishCandidate {
  score: number;
  finished: boolean;
  build: () => Hypothesis;
}

/** HF's finished set: `beamWidth` slots, best first; placeholders (score −1e9) until filled. */
export class FinishedHypotheses {
  slots: Hypothesis[];

  constructor(readonly beamWidth: number) {
    this.slots = Array.from({ length: beamWidth }, () => ({
      tokens: [],
      logProbs: [],
      cumLogProb: 0,
      score: MASK,
      finished: false,
    }));
  }

  /** torch.all(is_sent_finished) */
  get allFinished(): boolean {
    return this.slots.every((s) => s.finished);
  }

  /** torch.min(beam_scores) over every slot, placeholders included (as HF does). */
  get minScore(): number {
    let m = Number.POSITIVE_INFINITY;
    for (const s of this.slots) if (s.score < m || Number.isNaN(s.score)) m = s.score;
    return m;
  }

  /** HF `_update_finished_beams`' merge: concatenate [slots, candidates] and keep the top beamWidth
   * scores (slots first on ties, since they come first in the concatenation). */
  merge(candidates: readonly FinishCandidate[]): void {
    const B = this.beamWidth;
    const scores = new Float64Array(B + candidates.length);
    this.slots.forEach((s, i) => {
      scores[i] = s.score;
    });
    candidates.forEach((c, i) => {
      scores[B + i] = c.score;
    });
    this.slots = topK(scores, B).map((j) => {
      if (j < B) return this.slots[j];
      const c = candidates[j - B];
      return { ...c.build(), score: c.score, finished: c.finished };
    });
  }
}
