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

// ---- torch.topk on the CPU, ties included ----------------------------------------------------------
// torch.topk leaves the order of equal values unspecified; on the CPU it is deterministic:
// aten/src/ATen/native/TopKImpl.h `topk_impl_loop` fills (value, index) pairs and runs libstdc++'s
// std::partial_sort when k·64 ≤ n, else std::nth_element(k−1) and std::sort of the first k−1, with
// comparator "x before y" = (isnan(x) && !isnan(y)) || x > y (NaN first). The functions below port
// those libstdc++ algorithms (bits/stl_algo.h, stl_heap.h: introselect, introsort with threshold 16,
// heap select) so ties come out in torch's CPU order. CUDA top-k orders ties differently.

/** A [value, index] work array, swapped in place as the libstdc++ algorithms do. */
class Pairs {
  constructor(
    readonly v: Float64Array,
    readonly i: Int32Array,
  ) {}
  /** comp(a, b): element a goes before element b. */
  before(a: number, b: number): boolean {
    const x = this.v[a];
    const y = this.v[b];
    return (Number.isNaN(x) && !Number.isNaN(y)) || x > y;
  }
  beforeVal(x: number, b: number): boolean {
    const y = this.v[b];
    return (Number.isNaN(x) && !Number.isNaN(y)) || x > y;
  }
  valBefore(a: number, y: number): boolean {
    const x = this.v[a];
    return (Number.isNaN(x) && !Number.isNaN(y)) || x > y;
  }
  swap(a: number, b: number): void {
    const v = this.v[a];
    this.v[a] = this.v[b];
    this.v[b] = v;
    const i = this.i[a];
    this.i[a] = this.i[b];
    this.i[b] = i;
  }
  move(to: number, from: number): void {
    this.v[to] = this.v[from];
    this.i[to] = this.i[from];
  }
}

const lg = (n: number) => 31 - Math.clz32(n);

/** __push_heap: bubble (v, i) up from `hole` while its parent goes after it. */
function pushHeap(p: Pairs, first: number, hole: number, top: number, v: number, i: number): void {
  let parent = Math.trunc((hole - 1) / 2);
  while (hole > top && p.valBefore(first + parent, v)) {
    p.move(first + hole, first + parent);
    hole = parent;
    parent = Math.trunc((hole - 1) / 2);
  }
  p.v[first + hole] = v;
  p.i[first + hole] = i;
}

function adjustHeap(p: Pairs, first: number, hole: number, len: number, v: number, i: number): void {
  const top = hole;
  let child = hole;
  while (child < Math.floor((len - 1) / 2)) {
    child = 2 * (child + 1);
    if (p.before(first + child, first + child - 1)) child--;
    p.move(first + hole, first + child);
    hole = child;
  }
  if ((len & 1) === 0 && child === Math.floor((len - 2) / 2)) {
    child = 2 * (child + 1);
    p.move(first + hole, first + child - 1);
    hole = child - 1;
  }
  pushHeap(p, first, hole, top, v, i);
}

function makeHeap(p: Pairs, first: number, last: number): void {
  const len = last - first;
  if (len < 2) return;
  for (let parent = Math.floor((len - 2) / 2); ; parent--) {
    adjustHeap(p, first, parent, len, p.v[first + parent], p.i[first + parent]);
    if (parent === 0) return;
  }
}

/** __pop_heap(first, last, result): *result ← *first, then re-heap the old *result. */
function popHeap(p: Pairs, first: number, last: number, result: number): void {
  const v = p.v[result];
  const i = p.i[result];
  p.move(result, first);
  adjustHeap(p, first, 0, last - first, v, i);
}

function heapSelect(p: Pairs, first: number, middle: number, last: number): void {
  makeHeap(p, first, middle);
  for (let i = middle; i < last; i++) if (p.before(i, first)) popHeap(p, first, middle, i);
}

function sortHeap(p: Pairs, first: number, last: number): void {
  while (last - first > 1) {
    last--;
    popHeap(p, first, last, last);
  }
}

function moveMedianToFirst(p: Pairs, result: number, a: number, b: number, c: number): void {
  if (p.before(a, b)) {
    if (p.before(b, c)) p.swap(result, b);
    else if (p.before(a, c)) p.swap(result, c);
    else p.swap(result, a);
  } else if (p.before(a, c)) p.swap(result, a);
  else if (p.before(b, c)) p.swap(result, c);
  else p.swap(result, b);
}

function unguardedPartitionPivot(p: Pairs, first: number, last: number): number {
  const mid = first + Math.floor((last - first) / 2);
  moveMedianToFirst(p, first, first + 1, mid, last - 1);
  let lo = first + 1;
  let hi = last;
  for (;;) {
    while (p.before(lo, first)) lo++;
    hi--;
    while (p.before(first, hi)) hi--;
    if (!(lo < hi)) return lo;
    p.swap(lo, hi);
    lo++;
  }
}

function unguardedLinearInsert(p: Pairs, last: number): void {
  const v = p.v[last];
  const i = p.i[last];
  let next = last - 1;
  while (p.beforeVal(v, next)) {
    p.move(last, next);
    last = next;
    next--;
  }
  p.v[last] = v;
  p.i[last] = i;
}

function insertionSort(p: Pairs, first: number, last: number): void {
  if (first === last) return;
  for (let i = first + 1; i < last; i++) {
    if (p.before(i, first)) {
      const v = p.v[i];
      const ix = p.i[i];
      for (let j = i; j > first; j--) p.move(j, j - 1);
      p.v[first] = v;
      p.i[first] = ix;
    } else unguardedLinearInsert(p, i);
  }
}

const SORT_THRESHOLD = 16;

function introsortLoop(p: Pairs, first: number, last: number, depth: number): void {
  while (last - first > SORT_THRESHOLD) {
    if (depth === 0) {
      heapSelect(p, first, last, last);
      sortHeap(p, first, last);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(p, first, last);
    introsortLoop(p, cut, last, depth);
    last = cut;
  }
}

function stdSort(p: Pairs, first: number, last: number): void {
  if (first === last) return;
  introsortLoop(p, first, last, lg(last - first) * 2);
  if (last - first > SORT_THRESHOLD) {
    insertionSort(p, first, first + SORT_THRESHOLD);
    for (let i = first + SORT_THRESHOLD; i < last; i++) unguardedLinearInsert(p, i);
  } else insertionSort(p, first, last);
}

function nthElement(p: Pairs, first: number, nth: number, last: number): void {
  if (first === last || nth === last) return;
  let depth = lg(last - first) * 2;
  while (last - first > 3) {
    if (depth === 0) {
      heapSelect(p, first, nth + 1, last);
      p.swap(first, nth);
      return;
    }
    depth--;
    const cut = unguardedPartitionPivot(p, first, last);
    if (cut <= nth) first = cut;
    else last = cut;
  }
  insertionSort(p, first, last);
}

/** Indices of the k largest values, best first, in torch.topk's CPU order (ties included). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const n = values.length;
  if (k > n) throw new Error(`topK: k=${k} exceeds the ${n} values`);
  if (k === 0) return [];
  const p = new Pairs(new Float64Array(n), new Int32Array(n));
  for (let j = 0; j < n; j++) {
    p.v[j] = values[j];
    p.i[j] = j;
  }
  if (k * 64 <= n) {
    heapSelect(p, 0, k, n);
    sortHeap(p, 0, k);
  } else {
    nthElement(p, 0, k - 1, n);
    stdSort(p, 0, k - 1);
  }
  return Array.from(p.i.subarray(0, k));
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
   * scores (ties in torch.topk's CPU order over that concatenation). */
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
