// Perplexity of a token stream under the sliding-window scheme of transformers' perplexity guide
// (huggingface.co/docs/transformers/perplexity): windows of at most `maxLength` tokens start every
// `stride` tokens; window [begin, end) scores only its last trgLen = end − prevEnd tokens, the rest is
// context. A window's first token has no logits before it, so it is never scored (the guide's label
// shift): with stride < maxLength every token but the text's first is scored exactly once; with
// stride = maxLength each window's first token goes unscored, as in the guide.
//
// PPL = exp(Σ NLL / scored tokens), the exact token-weighted mean (docs/EVAL.md says how it relates to
// the guide's per-window weighting). Each window is scored by a WindowScorer from a fresh context at
// position 0; scoring reduces logits chunk by chunk, so memory is one chunk's rows, never a window's.
import type { ExecutionBackend, StepInput } from "../backends/backend.ts";
import { PerplexityOptionsError, TextTooShortError } from "./perplexity_errors.ts";
import type { Session } from "./session.ts";

/** One window: ids[begin, end) are fed; positions from `firstScored` (absolute, ≥ begin + 1) on are scored. */
export interface Window {
  begin: number;
  end: number;
  firstScored: number;
}

/** Scores a window: Σ −log p(ids[t] | ids[0, t)) over window-relative t in [from, ids.length), from ≥ 1. */
export interface WindowScorer {
  scoreWindow(ids: Int32Array, from: number): { nll: number; count: number };
}

export interface PerplexityOptions {
  maxLength: number;
  stride: number;
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean NLL per scored token (natural log). */
  meanNll: number;
  totalNll: number;
  /** Tokens scored (every token but the first with stride < maxLength). */
  scoredTokens: number;
  /** Tokens of the text evaluated. */
  tokens: number;
  windows: number;
  maxLength: number;
  stride: number;
}

/** The guide's loop over begin = 0, stride, 2·stride, … until a window reaches the end. */
export function slidingWindows(numTokens: number, { maxLength, stride }: PerplexityOptions): Window[] {
  checkWindowOptions(numTokens, { maxLength, stride });
  const windows: Window[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < numTokens; begin += stride) {
    const end = Math.min(begin + maxLength, numTokens);
    const trgLen = end - prevEnd;
    windows.push({ begin, end, firstScored: Math.max(end - trgLen, begin + 1) });
    prevEnd = end;
    if (end === numTokens) break;
  }
  return windows;
}

function checkWindowOptions(numTokens: number, { maxLength, stride }: PerplexityOptions): void {
  if (!Number.isInteger(maxLength) || maxLength < 2)
    throw new PerplexityOptionsError(`--max-length must be an integer ≥ 2, got ${maxLength}`);
  if (!Number.isInteger(stride) || stride < 1)
    throw new PerplexityOptionsError(`--stride must be an integer ≥ 1, got ${stride}`);
  checkStride(maxLength, stride);
  if (numTokens < 2) throw new TextTooShortError(numTokens);
}

/** A stride above the window would skip the tokens between windows. */
export function checkStride(maxLength: number, stride: number): void {
  if (stride > maxLength)
    throw new PerplexityOptionsError(
      `--stride ${stride} is larger than --max-length ${maxLength}, so tokens between windows would never be scored; use a stride of at most ${maxLength}`,
    );
}

export function perplexity(
  ids: Int32Array,
  options: PerplexityOptions,
  scorer: WindowScorer,
): PerplexityResult {
  const windows = slidingWindows(ids.length, options);
  let totalNll = 0;
  let scoredTokens = 0;
  for (const w of windows) {
    const r = scorer.scoreWindow(ids.subarray(w.begin, w.end), w.firstScored - w.begin);
    totalNll += r.nll;
    scoredTokens += r.count;
  }
  const meanNll = totalNll / scoredTokens;
  return {
    perplexity: Math.exp(meanNll),
    meanNll,
    totalNll,
    scoredTokens,
    tokens: ids.length,
    windows: windows.length,
    maxLength: options.maxLength,
    stride: options.stride,
  };
}

/** The defaults of `kiln eval`: maxLength = the engine's context window, stride = half of it (every
 * token but the first scored once, each with at least maxLength/2 tokens of context once the windows
 * slide). A maxLength beyond the context window is refused. */
export function resolvePerplexityOptions(
  contextWindow: number,
  { maxLength, stride }: Partial<PerplexityOptions>,
): PerplexityOptions {
  const length = maxLength ?? contextWindow;
  if (length > contextWindow)
    throw new PerplexityOptionsError(
      `--max-length ${length} exceeds the engine's context window of ${contextWindow} tokens; use at most ${contextWindow}`,
    );
  return { maxLength: length, stride: stride ?? Math.max(1, Math.floor(length / 2)) };
}

/** Perplexity of `ids` under `session`'s model, on its backend (whose KV pool it resizes). */
export function sessionPerplexity(
  session: Session,
  ids: Int32Array,
  options: Partial<PerplexityOptions> = {},
): PerplexityResult {
  const opts = resolvePerplexityOptions(session.config.maxSeqLen, options);
  slidingWindows(ids.length, opts); // checks the options before the KV pool is sized
  return perplexity(ids, opts, new BackendScorer(session.backend, opts.maxLength));
}

/** −log softmax(row)[target] in float64. */
export function negLogProb(row: Float32Array, target: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum) - row[target];
}

/** Scores windows on a backend directly: window positions 0…n−1 live in KV blocks 0…⌈n/B⌉−1 (slot =
 * position), fed in chunks of at most `chunkTokens` tokens whose logits rows are only the rows that
 * predict a scored token, at most `maxRows` of them per step (never more than the backend's
 * maxLogitRows). Owns nothing: the caller's backend keeps its KV pool, resized here once. */
export class BackendScorer implements WindowScorer {
  private readonly chunkTokens: number;
  private readonly maxRows: number;

  constructor(
    private readonly backend: ExecutionBackend,
    maxLength: number,
    { chunkTokens = 256, maxRows = chunkTokens }: { chunkTokens?: number; maxRows?: number } = {},
  ) {
    this.chunkTokens = Math.min(chunkTokens, backend.maxStepTokens ?? chunkTokens);
    this.maxRows = Math.min(maxRows, backend.maxLogitRows);
    const blocks = Math.ceil(maxLength / backend.kvBlockSize);
    if (backend.numKvBlocks < blocks) backend.allocateKvCache(blocks);
  }

  scoreWindow(ids: Int32Array, from: number): { nll: number; count: number } {
    const n = ids.length;
    if (from >= n) return { nll: 0, count: 0 }; // a last window of one token: nothing to score
    const B = this.backend.kvBlockSize;
    const blockTable = Int32Array.from({ length: Math.ceil(n / B) }, (_, i) => i);
    const V = this.backend.vocabSize;
    let nll = 0;
    let count = 0;
    // Row at position p predicts ids[p + 1]: rows from − 1 … n − 2 are wanted.
    const firstRow = from - 1;
    for (let start = 0; start < n; ) {
      const end = Math.min(start + this.chunkTokens, n, Math.max(start, firstRow) + this.maxRows);
      const len = end - start;
      const lo = Math.max(start, firstRow);
      const hi = Math.min(end, n - 1);
      const rows = Math.max(0, hi - lo);
      const positions = Int32Array.from({ length: len }, (_, i) => start + i);
      const step: StepInput = {
        tokenIds: ids.slice(start, start + len),
        positions,
        slotMapping: positions.slice(),
        seqs: [{ queryStart: 0, queryLen: len, contextLen: start + len, blockTable }],
        logitRows: Int32Array.from({ length: rows }, (_, i) => lo - start + i),
      };
      const logits = this.backend.forward(step); // [rows × V]
      for (let r = 0; r < rows; r++) {
        nll += negLogProb(logits.subarray(r * V, (r + 1) * V), ids[lo + r + 1]);
        count++;
      }
      start = end;
    }
    return { nll, count };
  }
}
