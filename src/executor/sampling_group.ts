// The sequences of a sampling request (numReturnSequences n ≥ 1) as the executor decodes them. The
// prompt is one sequence until its last row is sampled; that row is then sampled n times, once per
// sequence index k (the RNG key (seed, k, step), as ModelRunner.generate's numReturnSequences), and
// the request becomes n sequences that share the prompt's blocks. Each sequence then decodes as its
// own row, stops on its own and leaves the group (its blocks freed); the request ends with the last.
//
//   rows of one step:  fan-out   [ root ×n ]      →  branches  [ (0, t0) (0, t1) … (0, t(n−1)) ]
//                      after     [ s0 s1 s3 ]     →  branches  [ (0, t) (2, t') ]   (s1 stopped)
import { RequestCallbackError, RequestLogitsNotFiniteError } from "./errors.ts";
import type { DecodingState } from "./executor_request.ts";
import type { Request, RequestFinishReason } from "./request.ts";
import type { SequenceUpdate, TokenLogProb } from "./request_results.ts";
import type { SampledRow } from "./sample_rows.ts";
import type { Branch } from "./scheduler.ts";

/** One sampled row's outcome, as a synchronous step's read returns it (sample_rows.ts). */
export interface RowSample {
  token: number;
  logProb: number;
  raw: Float32Array | null;
  /** The row's top log-probs when its request asks for them, else null. */
  top: TokenLogProb[] | null;
  failed: RequestCallbackError | null;
}

/** What a group makes of one step: the scheduler's branches (none: the request is done), the events
 * to emit (isFinal is the caller's), or the error that ends the request. */
export type GroupStep =
  | { branches: Branch[]; updates: Omit<SequenceUpdate, "isFinal">[] }
  | { error: unknown };

export class SamplingGroup {
  /** The states of the live sequences, in Request.seqs order once forked; all n before. */
  private live: DecodingState[];
  private forked: boolean;

  constructor(state: DecodingState) {
    const n = state.cfg.numReturnSequences;
    this.live = Array.from({ length: n }, (_, k) => (k === 0 ? state : state.forSequence(k)));
    this.forked = n === 1;
  }

  /** Whether each sequence's next input is its own sampled token (the fan-out is done). */
  get fannedOut(): boolean {
    return this.forked;
  }

  /** The rows to sample for sequence `seq`'s logits row `row`: the root's row once per sequence
   * before the fan-out, else the sequence's own. */
  rows(r: Request, seq: number, row: number): SampledRow[] {
    if (!this.forked)
      return this.live.map((state) => ({ requestId: r.id, state, tokens: r.seqs[0].tokens, row }));
    return [{ requestId: r.id, state: this.live[seq], tokens: r.seqs[seq].tokens, row }];
  }

  /** `samples`: the outcome of each row rows() gave, in that order. `before`: the sequence's tokens
   * before the sampled one, when its token list runs on past it (the overlapped loop's placeholders);
   * default all of them. */
  step(r: Request, samples: readonly RowSample[], before?: number): GroupStep {
    const branches: Branch[] = [];
    const updates: Omit<SequenceUpdate, "isFinal">[] = [];
    const next: DecodingState[] = [];
    for (const [i, s] of samples.entries()) {
      const parent = this.forked ? i : 0;
      const state = this.live[i];
      const all = r.seqs[parent].tokens;
      const tokens = before === undefined ? all : all.slice(0, before);
      if (s.failed) return { error: s.failed };
      if (Number.isNaN(s.logProb) || s.logProb === Number.POSITIVE_INFINITY)
        return {
          error: new RequestLogitsNotFiniteError(r.id, tokens.length - r.promptLength, state.sequenceIndex),
        };
      let accepted: ReturnType<DecodingState["accept"]>;
      try {
        accepted = state.accept(r.id, [...tokens, s.token], s.token);
      } catch (e) {
        if (e instanceof RequestCallbackError) return { error: e };
        throw e;
      }
      const { stop, text } = accepted;
      updates.push({
        sequenceIndex: state.sequenceIndex,
        tokenIds: [s.token],
        logProbs: [s.logProb],
        text,
        finishReason: stop?.reason ?? null,
        rawLogits: s.raw ? [s.raw] : undefined,
        topLogProbs: s.top ? [s.top] : undefined,
      });
      if (stop) continue;
      branches.push({ parent, token: s.token });
      next.push(state);
    }
    this.live = next;
    this.forked = true;
    return { branches, updates };
  }

  /** The request ends early (cancelled, timed out): each live sequence's last update. */
  close(reason: RequestFinishReason): Omit<SequenceUpdate, "isFinal">[] {
    const out = this.live.map((state) => ({
      sequenceIndex: state.sequenceIndex,
      tokenIds: [],
      logProbs: [],
      text: state.text.finish(),
      finishReason: reason,
    }));
    this.live = [];
    return out;
  }
}
