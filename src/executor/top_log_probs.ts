// The k most likely tokens of one log-probability row, as result events carry them
// (ExecutorRequest.topLogProbs): largest first, ties by lower token id, so every run and backend
// lists the same tokens in the same order.
import type { TokenLogProb } from "./request_results.ts";

/** The `k` largest entries of `row` [V] (k ≤ V), most likely first, ties by lower id. One pass with a
 * sorted list of the best so far: k is small (≤ 20). */
export function topEntries(row: Float32Array, k: number): TokenLogProb[] {
  const best: TokenLogProb[] = [];
  const n = Math.min(k, row.length);
  if (n <= 0) return best;
  for (let id = 0; id < row.length; id++) {
    const v = row[id];
    // Ids come in increasing order: a tie with the last kept entry never displaces it.
    if (best.length === n && !(v > best[n - 1].logProb)) continue;
    let at = best.length;
    while (at > 0 && v > best[at - 1].logProb) at--;
    best.splice(at, 0, { tokenId: id, logProb: v });
    if (best.length > n) best.pop();
  }
  return best;
}
