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
import type { StepInput, TokenFeed } from "./backend.ts";

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
