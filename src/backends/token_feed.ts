// Fed tokens (ExecutionBackend.enqueueSample's `feed`): per sequence of a step, the row of an earlier
// queued step whose sampled token is that sequence's input token, or HOST_TOKEN (−1) for the host's
// own token in step.tokenIds. A step may mix both, so the host can queue an iteration that adds a new
// prompt chunk beside running decodes before it has read the previous iteration's tokens.
//
//   step.tokenIds:  [ s0: p0 p1 p2 | s1: x | s2: 17 ]    s0 a prompt chunk, s1 and s2 decode
//   feed.rows:      [ −1           | 3    | −1     ]    s1's token is row 3 of feed.from's samples
//                                                      (x is a placeholder); s0, s2 as given
// Only a sequence with queryLen 1 may be fed. Both backends check a feed with checkFeed before they
// run anything: a bad feed is the caller's bug, and would otherwise read another row's token.
//
// Penalties (decoding_ops.ts PenaltyParams.fed) read the fed token too: a logits row whose penalty
// list ends with the placeholder names the row of feed.from whose token that entry is, so a request
// with repetition/presence/frequency penalties is queued before its newest token is read.
//   penalties.tokens[r]: [ prompt … g0 g1 x ]    penalties.fed[r]: 3   (x ← feed.from's row 3)
import type { StepInput, TokenFeed } from "./backend.ts";
import type { PenaltyParams, StepTransforms } from "./decoding_ops.ts";

/** feed.rows[i] of a sequence whose input comes from the host's step.tokenIds. */
export const HOST_TOKEN = -1;

/** A feed that breaks enqueueSample's contract (a caller's bug, not the user's). */
export class TokenFeedError extends Error {
  constructor(message: string) {
    super(`internal: ${message}`);
    this.name = "TokenFeedError";
  }
}

/** Throws TokenFeedError unless `feed` fits `step`: one row per sequence, each HOST_TOKEN or a row of
 * `feed.from`, and a fed sequence carries exactly one query token. `last`: the last queued ticket's id
 * (a step is fed only from the step queued just before it). */
export function checkFeed(step: StepInput, feed: TokenFeed, last: number): void {
  const { from, rows } = feed;
  if (from.id !== last)
    throw new TokenFeedError(
      `a step is fed from the last queued one (ticket ${last}), not ticket ${from.id}`,
    );
  if (rows.length !== step.seqs.length)
    throw new TokenFeedError(`${rows.length} feed rows for a step of ${step.seqs.length} sequences`);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r === HOST_TOKEN) continue;
    if (!Number.isInteger(r) || r < 0 || r >= from.rows)
      throw new TokenFeedError(
        `sequence ${i} is fed row ${r}; ticket ${from.id} sampled rows 0..${from.rows - 1}`,
      );
    if (step.seqs[i].queryLen !== 1)
      throw new TokenFeedError(
        `sequence ${i} is fed row ${r} but carries ${step.seqs[i].queryLen} query tokens; only a decode token is fed`,
      );
  }
}

/** step.tokenIds with every fed sequence's token replaced by `sampled[feed.rows[i]]` (a copy). */
export function fedTokenIds(step: StepInput, rows: Int32Array, sampled: Int32Array): Int32Array {
  const ids = Int32Array.from(step.tokenIds);
  step.seqs.forEach((s, i) => {
    if (rows[i] !== HOST_TOKEN) ids[s.queryStart] = sampled[rows[i]];
  });
  return ids;
}

/** Throws TokenFeedError unless `t.penalties.fed` fits the step and its feed: one entry per logits
 * row, each HOST_TOKEN or a row of `feed.from` (a feed is needed then), on a non-empty list. */
export function checkPenaltyFeed(step: StepInput, t: StepTransforms, feed: TokenFeed | undefined): void {
  const p = t.penalties;
  if (!p?.fed) return;
  const B = step.logitRows.length;
  if (p.fed.length !== B) throw new TokenFeedError(`${p.fed.length} penalty feed rows for ${B} logits rows`);
  for (let r = 0; r < B; r++) {
    const f = p.fed[r];
    if (f === HOST_TOKEN) continue;
    if (!feed) throw new TokenFeedError(`penalty row ${r} is fed row ${f}, but the step has no feed`);
    if (!Number.isInteger(f) || f < 0 || f >= feed.from.rows)
      throw new TokenFeedError(
        `penalty row ${r} is fed row ${f}; ticket ${feed.from.id} sampled rows 0..${feed.from.rows - 1}`,
      );
    if (p.tokens[r].length === 0)
      throw new TokenFeedError(`penalty row ${r} is fed row ${f} but its token list is empty`);
  }
}

/** `p` with each fed row's last token replaced by `sampled[p.fed[r]]` (copies of those lists), and no
 * `fed`: complete lists for DecodingOps.applyPenalties. */
export function fedPenalties(p: PenaltyParams, sampled: Int32Array): PenaltyParams {
  const { fed, ...rest } = p;
  if (!fed) return p;
  const tokens = p.tokens.map((list, r) => {
    if (fed[r] === HOST_TOKEN) return list;
    const out = list.slice();
    out[out.length - 1] = sampled[fed[r]];
    return out;
  });
  return { ...rest, tokens };
}
