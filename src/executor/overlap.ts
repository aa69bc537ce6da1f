// Overlapping the host with the device (step_pipeline.ts runs it): step N+1 is scheduled, built and queued
// before step N's tokens are read, each decode of N+1 fed on the device with the token N samples for
// it (backends/token_feed.ts). Then N is collected, its tokens accepted and emitted while N+1 runs.
//
//   host:    schedule+queue N+1 (feed ← N) │ collect N │ stops, text, events N │ schedule+queue N+2 …
//   device:  [ step N ][ step N+1 ]                                            [ step N+2 ] …
//
// The scheduler plans N+1 as if every token of N arrives (a placeholder at its position; vLLM v1's
// async scheduling). A request (or a sample of a group) that N's token ends keeps its row in N+1:
// that row's token is dropped. The host reads at most one step per loop iteration, so a caller can
// cancel between any two steps' events, as with the synchronous loop.
// Its blocks are freed when N is read, while N+1 may still write its placeholder's slot: safe, since
// the device runs steps (and block copies) in queue order, so a later owner of the block writes it
// only after N+1 did, and reads only slots it wrote itself (the block holding the placeholder's slot
// is never keyed for prefix hits: the request ended before its next resolve). The same order covers
// a request preempted while a step of it is queued, and full blocks keyed (Scheduler.resolve) before
// the queued step that fills them has run: a step that reads them is queued after that one.
// A request cancelled or timed out while a step of it is queued loses that step's token.
// Repetition/presence/frequency penalties overlap too: their lists are built on the host from the
// sequence's tokens, whose newest one is N's placeholder when N+1 is built. That row's list ends with
// the placeholder and names the feed row that holds its token (feedPenalties, PenaltyParams.fed); the
// backend substitutes it before the penalties apply, as the embedding does for the input token.
import type { SampleTicket, TokenFeed } from "../backends/backend.ts";
import type { StepTransforms } from "../backends/decoding_ops.ts";
import { HOST_TOKEN } from "../backends/token_feed.ts";
import { invariant } from "./errors.ts";
import type { DecodingState } from "./executor_request.ts";
import type { StepCounts } from "./iteration_stats.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";

/** How the loop may run a request's steps (the fallback rules, in one place). `ownInputs`: each of
 * its sequences' next input is its own sampled token (false for beams, whose reordering decides the
 * next inputs, and for numReturnSequences > 1 before the first sample fans out).
 *  - "sync": its rows need the synchronous step (forward, logits on the host): not ownInputs,
 *    LogitsProcessors, embedding bias, returnGenerationLogits, returnContextLogits. While such a
 *    request runs or is the next to be admitted, every step is read before the next is built;
 *    further back in the queue it only keeps itself out of queued steps (Scheduler.schedule's
 *    `admits`).
 *  - "afterRead": its rows are sampled on the device, but its next step's decoding inputs are built
 *    on the host from its token's value: no-repeat n-gram and bad-word bans, top-p decay. The step
 *    after one it samples in is built once that step is read.
 *  - "overlap": neither. Min length only counts tokens; repetition/presence/frequency penalties read
 *    the newest token on the device (feedPenalties).
 */
export function overlapMode(state: DecodingState, ownInputs: boolean): "sync" | "afterRead" | "overlap" {
  const c = state.cfg;
  if (!ownInputs || state.needsHostLogits || c.returnContextLogits) return "sync";
  const tokenFree =
    c.noRepeatNgramSize[0] === 0 &&
    state.badWordIds.length === 0 &&
    c.topPDecay[0] === 1 &&
    c.topPMin[0] <= c.topP[0];
  return tokenFree ? "overlap" : "afterRead";
}

/** A step queued on the device whose tokens the host has not read yet; its StepCounts are the
 * iteration's stats known at queue time (the rest is measured when it is read). */
export interface Flight extends StepCounts {
  out: SchedulerOutput;
  ticket: SampleTicket;
  /** Per sampling sequence, by KV table id: its request, its row in the ticket and its placeholder's
   * position; in row order. */
  pending: Map<number, { requestId: number; row: number; position: number }>;
  /** The executor's clock when the loop began scheduling it. */
  started: number;
  /** Whether it was queued while an earlier step was in flight. */
  overlapped: boolean;
}

/** The feed of the step of `out` from the queued step `prev`: a decode whose input is `prev`'s
 * placeholder reads that row's token on the device; every other sequence takes the host's tokens.
 * `kvIds`: each chunk's sequence's KV table id. Null when nothing is fed. */
export function feedFrom(
  prev: Flight | null,
  out: SchedulerOutput,
  kvIds: readonly number[],
): TokenFeed | null {
  if (!prev) return null;
  let fed = false;
  const rows = Int32Array.from(out.chunks, (c, i) => {
    const p = prev.pending.get(kvIds[i]);
    if (!p || p.position >= c.start + c.tokenIds.length) return HOST_TOKEN;
    invariant(
      c.start === p.position && c.tokenIds.length === 1,
      `request ${c.requestId}'s chunk covers its pending token but is not its decode`,
    );
    fed = true;
    return p.row;
  });
  return fed ? { from: prev.ticket, rows } : null;
}

/** `t` with its penalty lists' fed entries (PenaltyParams.fed): the list of a sampled row whose
 * sequence `feed` feeds ends with the placeholder of the step in flight, whose token is that feed
 * row's. Sampled rows are the step's sampling chunks in order (as Flight.pending numbers them); a row
 * without penalties has an empty list and reads nothing. */
export function feedPenalties(
  t: StepTransforms,
  feed: TokenFeed | null,
  out: SchedulerOutput,
): StepTransforms {
  const p = t.penalties;
  if (!p || !feed) return t;
  const rowSeqs = out.chunks.flatMap((c, i) => (c.sample ? [i] : []));
  invariant(rowSeqs.length === p.tokens.length, "a queued step's sampled rows are its sampling chunks");
  const fed = Int32Array.from(rowSeqs, (i, r) => {
    if (p.tokens[r].length === 0) return HOST_TOKEN;
    const f = feed.rows[i];
    invariant(
      f === HOST_TOKEN || p.tokens[r].length === out.chunks[i].start + 1,
      `request ${out.chunks[i].requestId}'s penalty list does not end with its fed token`,
    );
    return f;
  });
  return fed.some((f) => f !== HOST_TOKEN) ? { ...t, penalties: { ...p, fed } } : t;
}
